package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/ids"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/masking"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
)

// testWaiters follows `delivery-attempts` and hands each test attempt to the Send Test call
// waiting for its delivery id. Send Test goes through the real pipeline — the same worker,
// signatures, guard and attempt log as any delivery — rather than a side channel. No consumer
// group: every API process reads every partition, so whichever process took the call sees the
// answer. It fetches only while a call waits: reading the whole attempt firehose to find the rare
// test attempt cost the API a constant share of a core under load.
type testWaiters struct {
	cl    *kgo.Client
	adm   *kadm.Client
	topic string
	log   *slog.Logger

	active sync.Mutex // serialises pausing and resuming
	mu     sync.Mutex
	w      map[string]chan *pb.Attempt
}

// newTestWaiters builds the reader, paused until a Send Test waits.
func newTestWaiters(_ context.Context, cfg kafka.Config, log *slog.Logger) (*testWaiters, error) {
	topic := cfg.Topics.Attempts
	cl, err := kafka.NewClient(cfg, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, err
	}
	cl.PauseFetchTopics(topic)
	return &testWaiters{cl: cl, adm: kadm.NewClient(cl), topic: topic, log: log, w: map[string]chan *pb.Attempt{}}, nil
}

func (t *testWaiters) run(ctx context.Context) error {
	defer t.cl.Close()
	for {
		fs := t.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.log.Warn("reading attempts for Send Test", "topic", topic, "partition", p, "err", err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			// The delivery service marks test attempts, so the firehose is not decoded here.
			if string(kafka.Header(r, "surveyhooks-test")) != "1" {
				return
			}
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

// expect registers interest in the attempt of delivery id; call the returned func when done. The
// first waiter moves the reader to the topic's end offsets as listed now and resumes it: the test
// delivery is produced after expect returns, so its attempt lands beyond them.
func (t *testWaiters) expect(ctx context.Context, id string) (<-chan *pb.Attempt, func(), error) {
	ch := make(chan *pb.Attempt, 1)
	t.active.Lock()
	defer t.active.Unlock()
	t.mu.Lock()
	idle := len(t.w) == 0
	t.mu.Unlock()
	if idle {
		ends, err := t.adm.ListEndOffsets(ctx, t.topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("listing end offsets of %s: %w", t.topic, err)
		}
		offs := map[int32]kgo.EpochOffset{}
		ends.Each(func(o kadm.ListedOffset) { offs[o.Partition] = kgo.EpochOffset{Epoch: -1, Offset: o.Offset} })
		t.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{t.topic: offs})
		t.cl.ResumeFetchTopics(t.topic)
	}
	t.mu.Lock()
	t.w[id] = ch
	t.mu.Unlock()
	return ch, func() {
		t.active.Lock()
		defer t.active.Unlock()
		t.mu.Lock()
		delete(t.w, id)
		idle := len(t.w) == 0
		t.mu.Unlock()
		if idle {
			t.cl.PauseFetchTopics(t.topic)
		}
	}, nil
}

// sendTest delivers a webhook.test event to the webhook — enabled or not, so it can be tried before
// going live — and answers with the attempt's outcome once the delivery service has made it.
func (s *Server) sendTest(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	wh, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	if err := onlyParams(r); err != nil {
		return err
	}
	now := time.Now()
	ev := envelope.TestEvent(p.Id, now)
	ev.EventId = ids.UUID()
	body, err := envelope.Render(ev, wh, envelope.WithProject(p))
	if err != nil {
		return fmt.Errorf("rendering test event: %w", err)
	}
	// The webhook's masking rules apply to a test as fan-out applies them to events.
	if m, err := masking.Compile("masking", wh.Masking); err == nil && m != nil {
		if body, err = m.Apply(body, s.maskingKey(p.Id)); err != nil {
			return fmt.Errorf("masking test event: %w", err)
		}
	}
	d := &pb.Delivery{DeliveryId: ids.New("msg_"), EventId: ev.EventId, WebhookId: wh.Id, ProjectId: p.Id,
		EventType: envelope.TestEventType, Body: body, Attempt: 1, CreatedAtMs: now.UnixMilli(),
		EventTimeMs: ev.TimeMs, Test: true, WebhookRevision: wh.Revision}
	v, err := proto.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding test delivery: %w", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.TestTimeout)
	defer cancel()
	ch, done, err := s.tests.expect(ctx, d.DeliveryId)
	if err != nil {
		return err
	}
	defer done()
	if err := s.kcl.ProduceSync(ctx, &kgo.Record{Topic: s.cfg.Kafka.Topics.Deliveries, Key: []byte(wh.Id), Value: v}).FirstErr(); err != nil {
		return fmt.Errorf("queueing test delivery: %w", err)
	}
	select {
	case a := <-ch:
		o := a.GetOutcome()
		httpapi.WriteJSON(w, http.StatusOK, apiv1.TestResult{DeliveryID: d.DeliveryId, EventID: d.EventId, AttemptID: a.AttemptId,
			Outcome: attemptlog.OutcomeName(o.GetClass()), Success: o.GetClass() == pb.OutcomeClass_OUTCOME_CLASS_SUCCESS,
			StatusCode: o.GetStatusCode(), LatencyMs: float64(a.LatencyUs) / 1000, Error: o.GetError(),
			RequestBody: string(a.RequestBody), ResponseHeaders: nonNilMap(a.ResponseHeaders), ResponseBody: string(a.ResponseBody)})
		return nil
	case <-ctx.Done():
		if r.Context().Err() != nil {
			return nil // the caller left: nobody to answer
		}
		return httpapi.Errorf(http.StatusGatewayTimeout, "test_timeout", "",
			"no attempt for test delivery %s within %s; is the delivery service running?", d.DeliveryId, s.cfg.TestTimeout)
	}
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
