package fanout_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

func TestMatches(t *testing.T) {
	on := &pb.Webhook{Enabled: true, EventTypes: []string{"nps.scored", "survey.completed"}}
	for _, c := range []struct {
		name string
		wh   *pb.Webhook
		typ  string
		want bool
	}{
		{"subscribed", on, "nps.scored", true},
		{"not subscribed", on, "form.submitted", false},
		{"disabled", &pb.Webhook{EventTypes: []string{"nps.scored"}}, "nps.scored", false},
		{"toggled off", &pb.Webhook{Enabled: true, EventTypes: []string{"nps.scored"}, EventToggles: map[string]bool{"nps.scored": false}}, "nps.scored", false},
		{"toggled on", &pb.Webhook{Enabled: true, EventTypes: []string{"nps.scored"}, EventToggles: map[string]bool{"nps.scored": true}}, "nps.scored", true},
		{"wildcard", &pb.Webhook{Enabled: true, EventTypes: []string{"*"}}, "flow.seen", true},
		{"test events only through Send Test", &pb.Webhook{Enabled: true, EventTypes: []string{"*"}}, "webhook.test", false},
	} {
		t.Run(c.name, func(t *testing.T) { require.Equal(t, c.want, fanout.Matches(c.wh, c.typ)) })
	}
}

func TestEachEventBecomesOneDeliveryPerMatchingWebhook(t *testing.T) {
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := kafkatest.Client(t, ctx, cfg)

	f := fanout.New(fanout.Config{Kafka: cfg, Group: "fanout-test"}, nil)
	fctx, fcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(fctx) }()
	t.Cleanup(func() { fcancel(); <-done })

	put := func(rs ...*kgo.Record) { require.NoError(t, cl.ProduceSync(ctx, rs...).FirstErr()) }
	webhook := func(wh *pb.Webhook) *kgo.Record {
		v, _ := proto.Marshal(wh)
		return &kgo.Record{Topic: cfg.Topics.Webhooks, Key: []byte(wh.Id), Value: v}
	}
	event := func(ev *pb.Event) *kgo.Record {
		v, _ := proto.Marshal(ev)
		return &kgo.Record{Topic: cfg.Topics.Events, Key: []byte(ev.ProjectId), Value: v}
	}
	// The webhooks are written immediately before the events: read-your-writes must hold.
	put(webhook(&pb.Webhook{Id: "wh_a", ProjectId: "p1", Enabled: true, EventTypes: []string{"nps.scored"}, Revision: 3}),
		webhook(&pb.Webhook{Id: "wh_b", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, UserProperties: []string{"plan"}}),
		webhook(&pb.Webhook{Id: "wh_off", ProjectId: "p1", EventTypes: []string{"*"}}),
		webhook(&pb.Webhook{Id: "wh_other", ProjectId: "p2", Enabled: true, EventTypes: []string{"*"}}))
	score := int32(3)
	put(event(&pb.Event{EventId: "e1", ProjectId: "p1", EventType: "nps.scored", Nps: &pb.Nps{Score: &score},
		User: &pb.User{Id: "u1", Traits: []byte(`{"plan":"pro","secret_trait":"x"}`)}}),
		event(&pb.Event{EventId: "e2", ProjectId: "p1", EventType: "form.submitted"}),
		event(&pb.Event{EventId: "e3", ProjectId: "p1", EventType: "nps.scored", Preview: true}),
		[]*kgo.Record{{Topic: cfg.Topics.Events, Value: []byte("not protobuf")}}[0])

	rd, err := kafka.NewClient(cfg, kgo.ConsumeTopics(cfg.Topics.Deliveries), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	require.NoError(t, err)
	defer rd.Close()
	got := map[string]*pb.Delivery{}
	for len(got) < 3 {
		fs := rd.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "deliveries so far: %v", keys(got))
		fs.EachRecord(func(r *kgo.Record) {
			d := &pb.Delivery{}
			require.NoError(t, proto.Unmarshal(r.Value, d))
			require.Equal(t, d.WebhookId, string(r.Key), "deliveries are keyed by webhook id")
			got[d.EventId+"→"+d.WebhookId] = d
		})
	}
	require.ElementsMatch(t, []string{"e1→wh_a", "e1→wh_b", "e2→wh_b"}, keys(got))
	d := got["e1→wh_b"]
	require.Equal(t, fanout.DeliveryID("e1", "wh_b"), d.DeliveryId)
	require.EqualValues(t, 1, d.Attempt)
	require.EqualValues(t, 3, got["e1→wh_a"].WebhookRevision)
	var body struct {
		EventID, EventType, Version string `json:"-"`
		Payload                     struct {
			User struct{ Traits map[string]string }
		}
	}
	require.NoError(t, json.Unmarshal(d.Body, &body))
	require.Equal(t, map[string]string{"plan": "pro"}, body.Payload.User.Traits, "only the chosen property is sent")

	require.Eventually(t, func() bool { return f.Stats.Previews.Load() == 1 && f.Stats.Unreadable.Load() == 1 }, 5*time.Second, 20*time.Millisecond)
}

func keys(m map[string]*pb.Delivery) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	return out
}
