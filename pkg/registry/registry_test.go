package registry_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// cluster starts a broker with the topics and returns its configuration, a context that ends
// with the test (at the latest in 30 s) and a producing client.
func cluster(t *testing.T) (kafka.Config, context.Context, *kgo.Client) {
	t.Helper()
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cl := kafkatest.Client(t, ctx, cfg)
	return cfg, ctx, cl
}

func TestWebhookIsVisibleAsSoonAsItsWriteIsAcknowledged(t *testing.T) {
	cfg, ctx, cl := cluster(t)
	reg, err := registry.New(cfg, nil)
	require.NoError(t, err)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go reg.Run(rctx)

	key := secrets.NewAPIKey()
	pv, _ := proto.Marshal(&pb.Project{Id: "p1", Name: "Acme", ApiKeyHash: secrets.HashAPIKey(key)})
	wv, _ := proto.Marshal(&pb.Webhook{Id: "w1", ProjectId: "p1", Url: "http://127.0.0.1:1/x", Enabled: true})
	require.NoError(t, cl.ProduceSync(ctx,
		&kgo.Record{Topic: cfg.Topics.Projects, Key: []byte("p1"), Value: pv},
		&kgo.Record{Topic: cfg.Topics.Webhooks, Key: []byte("w1"), Value: wv}).FirstErr())

	require.NoError(t, reg.WaitFresh(ctx))
	require.Equal(t, "Acme", reg.ProjectByAPIKey(key).GetName())
	require.Nil(t, reg.ProjectByAPIKey(key+"x"))
	require.Len(t, reg.Webhooks("p1"), 1)

	// A tombstone deletes it.
	r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Topics.Webhooks, Key: []byte("w1")}).First()
	require.NoError(t, err)
	require.NoError(t, reg.WaitFor(ctx, r.Topic, r.Partition, r.Offset))
	require.Nil(t, reg.Webhook("w1"))
	require.Empty(t, reg.Webhooks("p1"))
}

func TestStartMarksCaughtUpOnceWhatWasWrittenBeforeIsVisible(t *testing.T) {
	cfg, ctx, cl := cluster(t)
	wv, _ := proto.Marshal(&pb.Webhook{Id: "w1", ProjectId: "p1", Url: "http://127.0.0.1:1/x", Enabled: true})
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Topics.Webhooks, Key: []byte("w1"), Value: wv}).FirstErr())

	reg, err := registry.New(cfg, nil)
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	var caughtUp atomic.Int32
	run := registry.Start(rctx, reg, func() { caughtUp.Add(1) })
	require.NoError(t, run.CaughtUp(ctx))
	require.Equal(t, int32(1), caughtUp.Load(), "caughtUp is called once, before CaughtUp returns")
	require.NotNil(t, reg.Webhook("w1"), "what was written before the start is visible once caught up")

	stop()
	require.NoError(t, run.Wait(), "a stop is not an error")

	short, cancelShort := context.WithCancel(ctx)
	cancelShort()
	reg2, err := registry.New(cfg, nil)
	require.NoError(t, err)
	require.Error(t, registry.Start(short, reg2, nil).CaughtUp(ctx), "a registry stopped before it caught up never reports caught up")
}
