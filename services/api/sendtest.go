package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// testWaiters follows `delivery-attempts` from its end and hands each attempt to the Send Test
// call waiting for its delivery id. Send Test goes through the real pipeline — the same worker,
// signatures and logging as any delivery — rather than a side channel.
type testWaiters struct {
	cl  *kgo.Client
	log *slog.Logger
	mu  sync.Mutex
	w   map[string]chan *pb.Attempt
}

func newTestWaiters(cfg kafka.Config, log *slog.Logger) (*testWaiters, error) {
	cl, err := kafka.NewClient(cfg, kgo.ConsumeTopics(cfg.Topics.Attempts),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, err
	}
	return &testWaiters{cl: cl, log: log, w: map[string]chan *pb.Attempt{}}, nil
}

func (t *testWaiters) run(ctx context.Context) error {
	defer t.cl.Close()
	for {
		fs := t.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachRecord(func(r *kgo.Record) {
			a := &pb.Attempt{}
			if proto.Unmarshal(r.Value, a) != nil || !a.Test {
				return
			}
			t.mu.Lock()
			ch := t.w[a.DeliveryId]
			t.mu.Unlock()
			if ch != nil {
				select {
				case ch <- a:
				default:
				}
			}
		})
	}
}

func (t *testWaiters) expect(id string) (<-chan *pb.Attempt, func()) {
	ch := make(chan *pb.Attempt, 1)
	t.mu.Lock()
	t.w[id] = ch
	t.mu.Unlock()
	return ch, func() {
		t.mu.Lock()
		delete(t.w, id)
		t.mu.Unlock()
	}
}

type testOut struct {
	DeliveryID string  `json:"delivery_id"`
	EventID    string  `json:"event_id"`
	AttemptID  string  `json:"attempt_id"`
	Outcome    string  `json:"outcome"`
	StatusCode int32   `json:"status_code"`
	LatencyMs  float64 `json:"latency_ms"`
	Error      string  `json:"error,omitempty"`
	Response   string  `json:"response_body,omitempty"`
}

// sendTest delivers a webhook.test event to the webhook, enabled or not, and answers with the
// attempt's outcome.
func (s *Server) sendTest(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	wh, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	now := time.Now()
	ev := envelope.TestEvent(p.Id, now)
	ev.EventId = newID("evt_test_")
	body, err := envelope.Render(ev, wh)
	if err != nil {
		return fmt.Errorf("rendering test event: %w", err)
	}
	d := &pb.Delivery{DeliveryId: newID("msg_test_"), EventId: ev.EventId, WebhookId: wh.Id, ProjectId: p.Id,
		EventType: envelope.TestEventType, Body: body, Attempt: 1, CreatedAtMs: now.UnixMilli(),
		EventTimeMs: ev.TimeMs, Test: true, WebhookRevision: wh.Revision}
	ch, done := s.tests.expect(d.DeliveryId)
	defer done()
	v, _ := proto.Marshal(d)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.TestTimeout)
	defer cancel()
	if err := s.kcl.ProduceSync(ctx, &kgo.Record{Topic: s.cfg.Kafka.Topics.Deliveries, Key: []byte(wh.Id), Value: v}).FirstErr(); err != nil {
		return fmt.Errorf("queueing test delivery: %w", err)
	}
	select {
	case a := <-ch:
		httpapi.WriteJSON(w, http.StatusOK, testOut{DeliveryID: d.DeliveryId, EventID: d.EventId, AttemptID: a.AttemptId,
			Outcome: attemptlog.OutcomeName(a.GetOutcome().GetClass()), StatusCode: a.GetOutcome().GetStatusCode(),
			LatencyMs: float64(a.LatencyUs) / 1000, Error: a.GetOutcome().GetError(), Response: string(a.ResponseBody)})
		return nil
	case <-ctx.Done():
		return httpapi.Errorf(http.StatusGatewayTimeout, "test_timeout", "",
			"no attempt for test delivery %s within %s; is the delivery service running?", d.DeliveryId, s.cfg.TestTimeout)
	}
}
