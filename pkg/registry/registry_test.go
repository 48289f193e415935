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

// A project's keys are records of their own; the registry answers only for keys that are valid
// now, and a later record of a key (its revocation, its tombstone) applies at once.
func TestOnlyValidKeysFindTheirProject(t *testing.T) {
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, kafka.EnsureTopics(ctx, cfg))
	reg, err := registry.New(cfg, nil)
	require.NoError(t, err)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go reg.Run(rctx)
	cl, err := kafka.NewClient(cfg)
	require.NoError(t, err)
	defer cl.Close()

	first, reader, old, gone := secrets.NewAPIKey(), secrets.NewAPIKey(), secrets.NewAPIKey(), secrets.NewAPIKey()
	now := time.Now()
	put := func(key string, m proto.Message) {
		rec := &kgo.Record{Topic: cfg.Topics.Projects, Key: []byte(key)}
		if m != nil {
			rec.Value, _ = proto.Marshal(m)
		}
		r, err := cl.ProduceSync(ctx, rec).First()
		require.NoError(t, err)
		require.NoError(t, reg.WaitFor(ctx, r.Topic, r.Partition, r.Offset))
	}
	put("p1", &pb.Project{Id: "p1", ApiKeyHash: secrets.HashAPIKey(first)})
	put(registry.KeyRecord("p1", "k1"), &pb.ApiKey{Hash: secrets.HashAPIKey(reader), Scopes: []string{registry.ScopeRead}, CreatedAtMs: 1})
	put(registry.KeyRecord("p1", "k2"), &pb.ApiKey{Hash: secrets.HashAPIKey(old), Scopes: registry.AllScopes, CreatedAtMs: 2,
		ExpiresAtMs: now.Add(-time.Second).UnixMilli()})
	put(registry.KeyRecord("p1", "k3"), &pb.ApiKey{Hash: secrets.HashAPIKey(gone), Scopes: registry.AllScopes, CreatedAtMs: 3})
	require.NotNil(t, reg.ProjectForScope(first, registry.ScopeManage), "the first key has every scope")
	require.NotNil(t, reg.ProjectForScope(reader, registry.ScopeRead))
	require.Nil(t, reg.ProjectForScope(reader, registry.ScopeIngest))
	require.Nil(t, reg.ProjectByAPIKey(old), "expired")
	require.Equal(t, "p1", reg.ProjectByAPIKey(gone).GetId())
	var ids []string
	for _, k := range reg.Keys("p1") {
		ids = append(ids, k.Id)
	}
	require.Equal(t, []string{registry.PrimaryKeyID, "k1", "k2", "k3"}, ids)
	require.Empty(t, reg.Projects()[0].GetName(), "key records are not projects")
	require.Len(t, reg.Projects(), 1)

	put(registry.KeyRecord("p1", registry.PrimaryKeyID), &pb.ApiKey{RevokedAtMs: now.UnixMilli()})
	put(registry.KeyRecord("p1", "k3"), nil)
	require.Nil(t, reg.ProjectByAPIKey(first), "revoked")
	require.Nil(t, reg.ProjectByAPIKey(gone), "deleted")
	require.NotNil(t, reg.ProjectByAPIKey(reader))
	require.NotZero(t, reg.Keys("p1")[0].RevokedAtMs)
}
