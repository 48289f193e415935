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

// pipeline is a fan-out process on kfake with a client to write webhooks and events and a reader
// of the deliveries it produces.
type pipeline struct {
	t   *testing.T
	ctx context.Context
	cfg kafka.Config
	cl  *kgo.Client
	rd  *kgo.Client
	f   *fanout.FanOut
}

// testEncryptionKey is the pipeline's SURVEYHOOKS_ENCRYPTION_KEY (32 bytes, base64).
const testEncryptionKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func startPipeline(t *testing.T, opts ...func(*fanout.Config)) *pipeline {
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	cl := kafkatest.Client(t, ctx, cfg)
	rd, err := kafka.NewClient(cfg, kgo.ConsumeTopics(cfg.Topics.Deliveries), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	require.NoError(t, err)
	t.Cleanup(rd.Close)

	fcfg := fanout.Config{Kafka: cfg, Group: "fanout-test", EncryptionKey: testEncryptionKey}
	for _, o := range opts {
		o(&fcfg)
	}
	f := fanout.New(fcfg, nil)
	fctx, fcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(fctx) }()
	t.Cleanup(func() { fcancel(); require.NoError(t, <-done) })
	return &pipeline{t: t, ctx: ctx, cfg: cfg, cl: cl, rd: rd, f: f}
}

func (p *pipeline) webhooks(whs ...*pb.Webhook) {
	for _, wh := range whs {
		v, _ := proto.Marshal(wh)
		require.NoError(p.t, p.cl.ProduceSync(p.ctx, &kgo.Record{Topic: p.cfg.Topics.Webhooks, Key: []byte(wh.Id), Value: v}).FirstErr())
	}
}

func (p *pipeline) events(evs ...*pb.Event) { p.eventsAt(time.Time{}, evs...) }

// eventsAt writes events stamped with a receive time (zero: now), the clock of de-duplication.
func (p *pipeline) eventsAt(at time.Time, evs ...*pb.Event) {
	for _, ev := range evs {
		v, _ := proto.Marshal(ev)
		require.NoError(p.t, p.cl.ProduceSync(p.ctx, &kgo.Record{Topic: p.cfg.Topics.Events, Key: []byte(ev.ProjectId), Value: v, Timestamp: at}).FirstErr())
	}
}

// deliveries reads deliveries until it has n of them, then for a grace period more, and returns
// them all: a test that expects n sees any extra one.
func (p *pipeline) deliveries(n int) []*pb.Delivery {
	var out []*pb.Delivery
	var graceEnds time.Time
	for {
		ctx, cancel := p.ctx, context.CancelFunc(func() {})
		if len(out) >= n {
			if graceEnds.IsZero() {
				graceEnds = time.Now().Add(700 * time.Millisecond)
			}
			if time.Now().After(graceEnds) {
				return out
			}
			ctx, cancel = context.WithTimeout(p.ctx, 100*time.Millisecond)
		}
		fs := p.rd.PollFetches(ctx)
		cancel()
		require.NoError(p.t, p.ctx.Err(), "deliveries so far: %d of %d", len(out), n)
		fs.EachRecord(func(r *kgo.Record) {
			d := &pb.Delivery{}
			require.NoError(p.t, proto.Unmarshal(r.Value, d))
			out = append(out, d)
		})
	}
}

func nps(id string, score int32) *pb.Event {
	return &pb.Event{EventId: id, ProjectId: "p1", EventType: "nps.scored", TimeMs: 1700000000000,
		Survey: &pb.Survey{Id: "s_1"}, User: &pb.User{Id: "u_" + id, Email: id + "@example.com"},
		Nps: &pb.Nps{Score: &score}}
}

func byEvent(ds []*pb.Delivery, webhookID string) map[string]*pb.Delivery {
	out := map[string]*pb.Delivery{}
	for _, d := range ds {
		if d.WebhookId == webhookID {
			out[d.EventId] = d
		}
	}
	return out
}

func eventIDs(m map[string]*pb.Delivery) []string {
	ids := []string{}
	for id := range m {
		ids = append(ids, id)
	}
	return ids
}

// The "done when": a webhook filtered on detractors receives only detractors.
func TestFilteredWebhookReceivesOnlyDetractors(t *testing.T) {
	p := startPipeline(t)
	p.webhooks(
		&pb.Webhook{Id: "wh_detractors", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1,
			Filter: `event.event_type == "nps.scored" && event.nps.score <= 6`},
		&pb.Webhook{Id: "wh_all", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}},
		// Evaluates to an error on every event here (no "plan" trait): counted as no match.
		&pb.Webhook{Id: "wh_odd", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1,
			Filter: `traits.plan == "pro"`},
		// Does not compile (written around the API's validation): skipped and counted.
		&pb.Webhook{Id: "wh_broken", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1,
			Filter: `event.nps.scor <= 6`},
	)
	completed := &pb.Event{EventId: "e_completed", ProjectId: "p1", EventType: "survey.completed", Nps: &pb.Nps{}}
	p.events(nps("e0", 0), nps("e3", 3), nps("e6", 6), nps("e7", 7), nps("e9", 9), nps("e10", 10), completed)

	ds := p.deliveries(3 + 7)
	require.ElementsMatch(t, []string{"e0", "e3", "e6"}, eventIDs(byEvent(ds, "wh_detractors")))
	require.Len(t, byEvent(ds, "wh_all"), 7)
	require.Empty(t, byEvent(ds, "wh_odd"))
	require.Empty(t, byEvent(ds, "wh_broken"))
	require.Len(t, ds, 10)

	require.EqualValues(t, 4+7, p.f.Stats.Filtered.Load(), "4 non-detractors for wh_detractors, 7 errors for wh_odd")
	require.EqualValues(t, 7, p.f.Stats.FilterErrs.Load())
	require.EqualValues(t, 7, p.f.Stats.BadConfig.Load())
	require.Equal(t, 3, p.f.CachedRenderers(), "one compiled renderer per webhook with an expression")
}

func TestChangedFilterAppliesToLaterEvents(t *testing.T) {
	p := startPipeline(t)
	wh := &pb.Webhook{Id: "wh", ProjectId: "p1", Enabled: true, EventTypes: []string{"nps.scored"}, Revision: 1,
		Filter: `event.nps.score <= 6`}
	p.webhooks(wh)
	p.events(nps("a3", 3), nps("a9", 9))
	require.ElementsMatch(t, []string{"a3"}, eventIDs(byEvent(p.deliveries(1), "wh")))

	wh.Filter, wh.Revision = `event.nps.score >= 9`, 2
	p.webhooks(wh)
	p.events(nps("b3", 3), nps("b9", 9))
	require.ElementsMatch(t, []string{"b9"}, eventIDs(byEvent(p.deliveries(1), "wh")))
	require.Equal(t, 1, p.f.CachedRenderers(), "the old revision's renderer was evicted")
}

// Pinned versions never move: gaining a filter changes which events a webhook gets, never the
// bytes of the ones it gets.
func TestV1BodyIsByteIdenticalAfterTheWebhookGainsAFilter(t *testing.T) {
	p := startPipeline(t)
	wh := &pb.Webhook{Id: "wh", ProjectId: "p1", Enabled: true, EventTypes: []string{"nps.scored"}, Revision: 1,
		PayloadVersion: "1", UserProperties: []string{"plan"}}
	ev := nps("same", 3)
	ev.User.Traits = []byte(`{"plan":"pro","secret":"x"}`)
	p.webhooks(wh)
	p.events(ev)
	before := p.deliveries(1)
	require.Len(t, before, 1)

	wh.Filter, wh.Revision = `event.nps.score <= 6 && traits.plan == "pro"`, 2
	p.webhooks(wh)
	p.eventsAt(time.Now().Add(25*time.Hour), ev) // the same event again, past the de-duplication window
	after := p.deliveries(1)
	require.Len(t, after, 1)
	require.Equal(t, string(before[0].Body), string(after[0].Body))
	require.EqualValues(t, 2, after[0].WebhookRevision)
}

func TestFormatAndTransformShapeTheDeliveredBody(t *testing.T) {
	p := startPipeline(t)
	p.webhooks(
		&pb.Webhook{Id: "wh_userpilot", ProjectId: "p1", Enabled: true, EventTypes: []string{"nps.scored"}, Format: "userpilot"},
		&pb.Webhook{Id: "wh_slack", ProjectId: "p1", Enabled: true, EventTypes: []string{"nps.scored"}, Revision: 1,
			Format: "userpilot", Filter: `event.nps.score <= 6`,
			Transform: `{"text": "Detractor (" + string(body.data.score) + "): " + body.data.user.email}`},
		// Fails at evaluation (no such key): counted as a render error, nothing sent.
		&pb.Webhook{Id: "wh_bad_transform", ProjectId: "p1", Enabled: true, EventTypes: []string{"nps.scored"}, Revision: 1,
			Transform: `{"x": body.nope}`},
	)
	p.events(nps("e2", 2))
	ds := p.deliveries(2)
	require.Len(t, ds, 2)

	var up struct {
		Type string `json:"type"`
		Data struct {
			Score int `json:"score"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(byEvent(ds, "wh_userpilot")["e2"].Body, &up))
	require.Equal(t, "nps.score", up.Type)
	require.Equal(t, 2, up.Data.Score)
	require.JSONEq(t, `{"text":"Detractor (2): e2@example.com"}`, string(byEvent(ds, "wh_slack")["e2"].Body))
	require.Empty(t, byEvent(ds, "wh_bad_transform"))
	require.EqualValues(t, 1, p.f.Stats.RenderErrs.Load())
}
