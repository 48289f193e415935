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
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestStartMarksCaughtUpOnceWhatWasWrittenBeforeIsVisible(t *testing.T) {
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, kafka.EnsureTopics(ctx, cfg))
	cl, err := kafka.NewClient(cfg)
	require.NoError(t, err)
	defer cl.Close()
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
