package api

import (
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// TestAReplayJobSendsOnlyTheBodyTheWebhookWasSent: the policy of which stored bodies a replay job
// may send, and which it skips.
func TestAReplayJobSendsOnlyTheBodyTheWebhookWasSent(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	box, err := secrets.NewBox(base64.StdEncoding.EncodeToString(key))
	require.NoError(t, err)
	other := make([]byte, 32)
	_, _ = rand.Read(other)
	otherBox, err := secrets.NewBox(base64.StdEncoding.EncodeToString(other))
	require.NoError(t, err)
	s := &Server{box: box}
	clear := []byte(`{"email":"ada@example.com"}`)
	masked := []byte(`{"email":"9f…"}`)
	plain := &pb.Project{Id: "p"}
	withRules := &pb.Project{Id: "p", StorageMasking: []*pb.MaskingRule{{Path: "email", Action: "hash"}}}
	for _, c := range []struct {
		name string
		b    attemptlog.ReplayBody
		p    *pb.Project
		want []byte // nil: skipped
	}{
		{"as stored", attemptlog.ReplayBody{Body: clear}, plain, clear},
		{"an empty body is a body", attemptlog.ReplayBody{Body: []byte{}}, plain, []byte{}},
		{"gone from the log", attemptlog.ReplayBody{}, plain, nil},
		{"masked: the sealed original", attemptlog.ReplayBody{Body: masked, StorageMasked: true, SealedBody: box.Seal(string(clear))}, withRules, clear},
		{"masked without a seal", attemptlog.ReplayBody{Body: masked, StorageMasked: true}, withRules, nil},
		{"sealed with another key", attemptlog.ReplayBody{Body: masked, StorageMasked: true, SealedBody: otherBox.Seal(string(clear))}, withRules, nil},
		{"cut short", attemptlog.ReplayBody{Body: clear[:5], Truncated: true}, plain, nil},
		{"unmarked, project without rules", attemptlog.ReplayBody{Body: clear, Unmarked: true}, plain, clear},
		{"unmarked, project with rules", attemptlog.ReplayBody{Body: masked, Unmarked: true}, withRules, nil},
		{"unmarked, project deleted", attemptlog.ReplayBody{Body: masked, Unmarked: true}, nil, nil},
	} {
		got, why := s.replayBody(c.b, c.p)
		require.Equal(t, c.want, got, c.name)
		require.Equal(t, c.want == nil, why != "", "%s: %q", c.name, why)
	}
}
