package registry_test

import (
	"context"
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

func TestWebhookIsVisibleAsSoonAsItsWriteIsAcknowledged(t *testing.T) {
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

// A project record carries every key; the registry answers only for keys that are valid now, and
// a new record replaces the old keys (a revocation or a dropped key stops working).
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
	put := func(p *pb.Project) {
		v, _ := proto.Marshal(p)
		r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Topics.Projects, Key: []byte(p.Id), Value: v}).First()
		require.NoError(t, err)
		require.NoError(t, reg.WaitFor(ctx, r.Topic, r.Partition, r.Offset))
	}
	p := &pb.Project{Id: "p1", ApiKeyHash: secrets.HashAPIKey(first), Keys: []*pb.ApiKey{
		{Id: "k1", Hash: secrets.HashAPIKey(reader), Scopes: []string{registry.ScopeRead}},
		{Id: "k2", Hash: secrets.HashAPIKey(old), Scopes: registry.AllScopes, ExpiresAtMs: now.Add(-time.Second).UnixMilli()},
		{Id: "k3", Hash: secrets.HashAPIKey(gone), Scopes: registry.AllScopes},
	}}
	put(p)
	require.NotNil(t, reg.ProjectForScope(first, registry.ScopeManage), "the first key has every scope")
	require.NotNil(t, reg.ProjectForScope(reader, registry.ScopeRead))
	require.Nil(t, reg.ProjectForScope(reader, registry.ScopeIngest))
	require.Nil(t, reg.ProjectByAPIKey(old), "expired")
	require.NotNil(t, reg.ProjectByAPIKey(gone))

	p = proto.Clone(p).(*pb.Project)
	p.ApiKeyRevokedAtMs = now.UnixMilli()
	p.Keys = p.Keys[:2]
	put(p)
	require.Nil(t, reg.ProjectByAPIKey(first), "revoked")
	require.Nil(t, reg.ProjectByAPIKey(gone), "dropped from the record")
	require.NotNil(t, reg.ProjectByAPIKey(reader))
}
