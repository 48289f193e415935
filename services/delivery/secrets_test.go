package delivery

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestSecretCacheLeavesOutExpiredSecretsOnly(t *testing.T) {
	box, err := secrets.NewBox(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	require.NoError(t, err)
	now := time.Now()
	c := newSecretCache(box)
	wh := &pb.Webhook{Id: "wh_1", Revision: 1, Secrets: []*pb.Secret{{Sealed: box.Seal("new")}, {Sealed: box.Seal("old")}}}
	got, _, err := c.open(wh, now)
	require.NoError(t, err)
	require.Equal(t, []string{"new", "old"}, got, "none expires: all, newest first")

	wh = &pb.Webhook{Id: "wh_1", Revision: 2, Secrets: []*pb.Secret{{Sealed: box.Seal("new")},
		{Sealed: box.Seal("rotating"), ExpiresAtMs: now.Add(time.Hour).UnixMilli()},
		{Sealed: box.Seal("old"), ExpiresAtMs: now.Add(-time.Second).UnixMilli()}}}
	got, _, err = c.open(wh, now)
	require.NoError(t, err)
	require.Equal(t, []string{"new", "rotating"}, got, "the expired one is left out")
}
