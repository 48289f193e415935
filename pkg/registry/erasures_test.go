package registry_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/registry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// An erasure written before a process starts is known once it caught up: deliveries of that
// respondent (by any of its hashes) created up to the erasure are erased; the same person's later
// deliveries, another project's and another respondent's are not.
func TestErasedRespondentsDeliveriesAreKnownUpToTheErasure(t *testing.T) {
	cfg, ctx, cl := cluster(t)
	v, _ := proto.Marshal(&pb.Erasure{ProjectId: "p1", Hash: "h-ada", ErasureId: "er_1", AtMs: 1000})
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Topics.Erasures, Key: []byte(registry.ErasureKey("p1", "h-ada")), Value: v},
		&kgo.Record{Topic: cfg.Topics.Erasures, Key: []byte("garbage"), Value: []byte{0xff}}).FirstErr())

	reg, err := registry.New(cfg, nil)
	require.NoError(t, err)
	run := registry.Start(ctx, reg, nil)
	require.NoError(t, run.CaughtUp(ctx))

	d := func(project string, created int64, hashes ...string) *pb.Delivery {
		return &pb.Delivery{ProjectId: project, CreatedAtMs: created, RespondentHashes: hashes}
	}
	id, ok := reg.Erased(d("p1", 999, "h-other", "h-ada"))
	require.True(t, ok)
	require.Equal(t, "er_1", id)
	_, ok = reg.Erased(d("p1", 1000, "h-ada"))
	require.True(t, ok, "created in the same millisecond as the erasure")
	_, ok = reg.Erased(d("p1", 1001, "h-ada"))
	require.False(t, ok, "the person answered again after the erasure")
	_, ok = reg.Erased(d("p2", 999, "h-ada"))
	require.False(t, ok, "another project")
	_, ok = reg.Erased(d("p1", 999, "h-bob"))
	require.False(t, ok, "another respondent")
	_, ok = reg.Erased(d("p1", 999))
	require.False(t, ok, "a delivery without hashes (Send Test, or fan-out without a key)")
}
