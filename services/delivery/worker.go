package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	"github.com/surveyhooks/surveyhooks/pkg/sender"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Stats counts what the worker did since start.
type Stats struct {
	Attempts  atomic.Int64
	Delivered atomic.Int64
	Retried   atomic.Int64
	Dead      atomic.Int64
	Poison    atomic.Int64
	InFlight  atomic.Int64
}

// Worker consumes `deliveries` and makes attempts.
type Worker struct {
	cfg    Config
	reg    *registry.Registry
	box    *secrets.Box
	snd    *sender.Sender
	log    *slog.Logger
	cl     *kgo.Client
	tr     *tracker
	eps    *endpoints
	tokens chan struct{} // one per delivery held, up to MaxInFlight
	name   string
	deps   service.Deps
	Stats  Stats

	secretsMu sync.Mutex
	secrets   map[string]*openSecrets

	stopping      atomic.Bool // no more fetching: draining
	abandonQueued atomic.Bool // the drain timed out: deliveries not yet started are left to the next owner
	wg            sync.WaitGroup

	// Per partition: a generation that moves when the partition is revoked (a task of an older
	// generation never starts) and how many started tasks are not yet recorded in Kafka (a
	// revocation waits for them, so the next owner does not redo finished work).
	partMu  sync.Mutex
	partGen map[int32]uint64
	started map[int32]int
}

type openSecrets struct {
	revision int64
	plain    []string
	expires  []int64
}

type task struct {
	d         *pb.Delivery
	partition int32
	offset    int64
	ctx       context.Context // carries the "deliver" span: the request and the records it makes join the event's trace
	span      trace.Span
	gen       uint64 // the partition's generation when the task was fetched
	began     bool   // counted in started
}

// NewWorker connects the worker's Kafka client; Run starts it.
func NewWorker(cfg Config, reg *registry.Registry, box *secrets.Box, snd *sender.Sender, log *slog.Logger, opts ...service.Option) (*Worker, error) {
	w := &Worker{cfg: cfg, reg: reg, box: box, snd: snd, log: log, tr: newTracker(),
		eps:    newEndpoints(cfg.PerEndpointConcurrency, cfg.BreakerThreshold, cfg.BreakerCooldown),
		tokens: make(chan struct{}, cfg.MaxInFlight), name: "delivery-" + kafka.InstanceID(),
		secrets: map[string]*openSecrets{}, deps: service.Apply(opts),
		partGen: map[int32]uint64{}, started: map[int32]int{}}
	topic := cfg.Kafka.Topics.Deliveries
	joined := w.deps.Ready.Wait("group " + cfg.Group + " joined")
	hooks := w.deps.Telemetry.KafkaHooks()
	cl, err := kafka.NewClient(cfg.Kafka, append(hooks,
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { joined() }),
		kgo.ConsumerGroup(cfg.Group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		// fan-out writes `deliveries` in transactions: never act on an aborted one.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			// Let what this worker fetched from them finish and be recorded (up to DrainTimeout),
			// so the next owner repeats nothing. When stopping, Run's drain has already waited.
			limit := w.cfg.DrainTimeout
			if w.stopping.Load() {
				limit = 0
			}
			w.quiesce(m[topic], limit)
			w.commit(ctx, cl)
			w.tr.drop(m[topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { w.tr.drop(m[topic]) }),
	)...)
	if err != nil {
		return nil, err
	}
	w.cl = cl
	return w, nil
}

// Run consumes until ctx is done, then drains: in-flight requests get up to DrainTimeout to
// finish and be recorded, finished offsets are committed, and the group is left.
func (w *Worker) Run(ctx context.Context) error {
	// Requests and produces outlive ctx: a stopping worker finishes what it started.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		t := time.NewTicker(w.cfg.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-work.Done():
				return
			case <-t.C:
				w.commit(work, w.cl)
			}
		}
	}()
	w.log.Info("delivery worker running", "group", w.cfg.Group, "max_in_flight", w.cfg.MaxInFlight, "worker", w.name)
	for ctx.Err() == nil {
		// Back-pressure: fetch only as many deliveries as there are free slots.
		select {
		case w.tokens <- struct{}{}:
			<-w.tokens
		case <-ctx.Done():
			continue
		}
		free := cap(w.tokens) - len(w.tokens)
		fs := w.cl.PollRecords(ctx, free)
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(t string, p int32, err error) { w.log.Warn("fetch error", "topic", t, "partition", p, "err", err) })
		fs.EachRecord(func(r *kgo.Record) { w.dispatch(work, r) })
	}
	w.stopping.Store(true)
	drained := make(chan struct{})
	go func() { w.wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(w.cfg.DrainTimeout):
		w.abandonQueued.Store(true)
		w.log.Warn("drain timeout: unfinished deliveries will be redone by the next worker", "pending", w.tr.pending())
	}
	// The last attempts' records are still being produced: wait for Kafka's acknowledgements
	// (each marks its delivery finished) before committing.
	fctx, cancel := context.WithTimeout(work, 10*time.Second)
	if err := w.cl.Flush(fctx); err != nil {
		w.log.Warn("flushing attempt records at shutdown", "err", err)
	}
	cancel()
	// The last commit decides what the next owner repeats: try it a few times.
	for i := 0; i < 5 && !w.commit(work, w.cl); i++ {
		time.Sleep(200 * time.Millisecond)
	}
	stopWork()
	<-commitDone
	w.cl.Close() // leaves the group
	return nil
}

// commit commits every partition's finished prefix that moved; it reports whether nothing is left
// to commit (all committed, or nothing had moved).
func (w *Worker) commit(ctx context.Context, cl *kgo.Client) bool {
	offs := w.tr.commitable(w.cfg.Kafka.Topics.Deliveries)
	if offs == nil {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ok := false
	cl.CommitOffsetsSync(cctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err = kerr.ErrorForCode(p.ErrorCode); err != nil {
						break
					}
				}
			}
		}
		if err != nil {
			w.log.Warn("committing delivery offsets; will retry", "err", err)
			return
		}
		w.tr.committed(offs[w.cfg.Kafka.Topics.Deliveries])
		ok = true
	})
	return ok
}

func (w *Worker) dispatch(ctx context.Context, r *kgo.Record) {
	w.tokens <- struct{}{}
	w.Stats.InFlight.Add(1)
	w.deps.Telemetry.Metrics().InFlight(ctx, 1)
	w.tr.add(r.Partition, r.Offset)
	d := &pb.Delivery{}
	if err := proto.Unmarshal(r.Value, d); err != nil || d.DeliveryId == "" || d.WebhookId == "" {
		w.Stats.Poison.Add(1)
		w.log.Error("unreadable delivery skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
		w.finished(r.Partition, r.Offset)
		return
	}
	w.partMu.Lock()
	gen := w.partGen[r.Partition]
	w.partMu.Unlock()
	t := &task{d: d, partition: r.Partition, offset: r.Offset, gen: gen}
	t.ctx, t.span = w.deps.Telemetry.StartRecordSpan(ctx, r, "deliver")
	if w.eps.admit(t) {
		w.wg.Add(1)
		go w.runEndpoint(ctx, t)
	}
}

// runEndpoint runs t, then whatever queued behind it for the same endpoint.
func (w *Worker) runEndpoint(ctx context.Context, t *task) {
	defer w.wg.Done()
	for t != nil {
		if w.abandonQueued.Load() || !w.begin(t) {
			// Not started (the drain timed out, or its partition was revoked): leave it
			// unfinished for the next owner, and release the rest. A draining worker still runs
			// the deliveries queued behind a slow endpoint: the committed offset cannot pass one
			// it leaves, so everything finished after it on the partition would be sent again.
			w.abandon(t)
		} else {
			w.attempt(ctx, t)
		}
		t = w.eps.finish(t.d.WebhookId)
	}
}

// begin counts t as started unless its partition was revoked since it was fetched.
func (w *Worker) begin(t *task) bool {
	w.partMu.Lock()
	defer w.partMu.Unlock()
	if w.partGen[t.partition] != t.gen {
		return false
	}
	w.started[t.partition]++
	t.began = true
	return true
}

// end uncounts a started task once it is recorded (or given up).
func (w *Worker) end(t *task) {
	if !t.began {
		return
	}
	w.partMu.Lock()
	defer w.partMu.Unlock()
	w.started[t.partition]--
}

// quiesce lets the deliveries of revoked partitions that this worker already fetched finish and
// be recorded, up to limit, so that their next owner repeats nothing: the ones queued behind a
// slow endpoint too, since the committed offset cannot pass a delivery left behind. At the limit,
// those not yet started are left to the next owner and quiesce returns.
func (w *Worker) quiesce(partitions []int32, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for w.tr.pendingIn(partitions) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	w.partMu.Lock()
	for _, p := range partitions {
		w.partGen[p]++ // from now on, tasks of these partitions do not start
	}
	w.partMu.Unlock()
	for {
		w.partMu.Lock()
		started := 0
		for _, p := range partitions {
			started += w.started[p]
		}
		w.partMu.Unlock()
		if started == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.log.Warn("revoked partitions still have deliveries in flight; the next owner may repeat them",
				"partitions", partitions, "in_flight", started, "unfinished", w.tr.pendingIn(partitions))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *Worker) abandon(t *task) {
	w.end(t)
	t.span.End()
	<-w.tokens
	w.Stats.InFlight.Add(-1)
	w.deps.Telemetry.Metrics().InFlight(context.Background(), -1)
}

func (w *Worker) finished(partition int32, offset int64) {
	w.tr.done(partition, offset)
	<-w.tokens
	w.Stats.InFlight.Add(-1)
	w.deps.Telemetry.Metrics().InFlight(context.Background(), -1)
}

func newAttemptID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "att_" + hex.EncodeToString(b)
}

// attempt makes one try of t and records it; the task finishes when Kafka has the records.
func (w *Worker) attempt(ctx context.Context, t *task) {
	d := t.d
	if wait := time.Until(time.UnixMilli(d.NotBeforeMs)); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			w.abandon(t)
			return
		}
	}
	start := time.Now()
	a := &pb.Attempt{AttemptId: newAttemptID(), DeliveryId: d.DeliveryId, EventId: d.EventId, WebhookId: d.WebhookId,
		ProjectId: d.ProjectId, EventType: d.EventType, Attempt: d.Attempt, Tier: d.Tier, StartedAtMs: start.UnixMilli(),
		Worker: w.name, Test: d.Test, RequestBody: d.Body}
	if sc := t.span.SpanContext(); sc.HasTraceID() {
		a.TraceId = sc.TraceID().String() // the attempt log links to the event's trace
	}
	wh := w.reg.Webhook(d.WebhookId)
	var out *pb.Outcome
	switch {
	case wh == nil:
		out = &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, Disposition: pb.Disposition_DISPOSITION_DROPPED,
			Error: "webhook was deleted", AtMs: start.UnixMilli()}
	case !wh.Enabled && !d.Test:
		reason := "webhook is disabled"
		if wh.DisabledReason != "" {
			reason += " (" + wh.DisabledReason + ")"
		}
		out = &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, Disposition: pb.Disposition_DISPOSITION_DEAD,
			Error: reason, AtMs: start.UnixMilli()}
	default:
		a.RequestUrl = wh.Url
		verdict := breakerClosed
		if !d.Test {
			verdict = w.eps.verdict(d.WebhookId, start)
		}
		if verdict == breakerOpen {
			out = &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_CIRCUIT_OPEN, Disposition: pb.Disposition_DISPOSITION_RETRY,
				Error: fmt.Sprintf("not sent: circuit open after %d consecutive failures", w.cfg.BreakerThreshold), AtMs: start.UnixMilli()}
			break
		}
		if lim := w.eps.limiter(d.WebhookId, wh.RateLimitPerS); lim != nil && !d.Test {
			if err := lim.Wait(ctx); err != nil {
				w.abandon(t)
				return
			}
			start = time.Now()
			a.StartedAtMs = start.UnixMilli()
		}
		keys, err := w.openSecrets(wh, start)
		if err != nil {
			out = &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_INVALID_REQUEST, Disposition: pb.Disposition_DISPOSITION_RETRY,
				Error: err.Error(), AtMs: start.UnixMilli()}
			break
		}
		res := w.snd.Send(t.ctx, sender.Request{MessageID: d.DeliveryId, URL: wh.Url, Body: d.Body, Secrets: keys,
			Headers: wh.Headers, Timestamp: start})
		if ctx.Err() != nil {
			w.abandon(t) // drain timed out mid-request: the next owner redoes it
			return
		}
		out = sender.Classify(res, time.Now())
		if wh.RetryClientErrors && out.Class == pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT && !d.Test {
			out.Disposition = pb.Disposition_DISPOSITION_RETRY // the webhook asked for 4xx to be retried
		}
		a.LatencyUs = res.Latency.Microseconds()
		a.RequestHeaders = redact(res.RequestHeaders)
		a.ResponseHeaders = redact(res.ResponseHeaders)
		a.ResponseBody = res.ResponseBody
		a.ResponseTruncated = res.ResponseTruncated
		if !d.Test {
			w.eps.record(d.WebhookId, out.Disposition != pb.Disposition_DISPOSITION_RETRY, time.Now())
		}
	}
	w.route(t, wh, a, out)
}

// route records the attempt and sends the delivery on: nowhere (delivered, dropped, a test), to
// its next retry tier, or to the dead letters.
func (w *Worker) route(t *task, wh *pb.Webhook, a *pb.Attempt, out *pb.Outcome) {
	d := t.d
	topics := w.cfg.Kafka.Topics
	schedule := w.cfg.Kafka.RetrySchedule
	var recs []*kgo.Record
	if d.Test && out.Disposition != pb.Disposition_DISPOSITION_DELIVERED {
		out.Disposition = pb.Disposition_DISPOSITION_DROPPED // a test gets one attempt, shown to the caller
	}
	if out.Disposition == pb.Disposition_DISPOSITION_RETRY {
		tier := int(d.Attempt) // after attempt n comes tier n (1-based)
		if tier > len(schedule) {
			out.Disposition = pb.Disposition_DISPOSITION_DEAD
			out.Error += fmt.Sprintf(" (after %d attempts)", d.Attempt)
		} else {
			tier = max(tier, tierFor(schedule, out.RetryAfterMs))
			due := a.StartedAtMs + schedule[tier-1].Milliseconds()
			next := proto.Clone(d).(*pb.Delivery)
			next.Attempt, next.Tier, next.NotBeforeMs, next.LastOutcome = d.Attempt+1, int32(tier), due, out
			a.NextAttemptAtMs = due
			v, _ := proto.Marshal(next)
			recs = append(recs, &kgo.Record{Topic: topics.Retry(schedule[tier-1]), Key: []byte(d.WebhookId), Value: v})
			w.Stats.Retried.Add(1)
		}
	}
	switch out.Disposition {
	case pb.Disposition_DISPOSITION_DEAD:
		dead := proto.Clone(d).(*pb.Delivery)
		dead.LastOutcome = out
		v, _ := proto.Marshal(dead)
		recs = append(recs, &kgo.Record{Topic: topics.Dead, Key: []byte(d.WebhookId), Value: v})
		w.Stats.Dead.Add(1)
		if out.Class == pb.OutcomeClass_OUTCOME_CLASS_GONE && wh != nil && wh.Enabled {
			off := proto.Clone(wh).(*pb.Webhook)
			off.Enabled, off.DisabledReason, off.Revision, off.UpdatedAtMs = false, "gone", wh.Revision+1, time.Now().UnixMilli()
			v, _ := proto.Marshal(off)
			recs = append(recs, &kgo.Record{Topic: topics.Webhooks, Key: []byte(wh.Id), Value: v})
		}
	case pb.Disposition_DISPOSITION_DELIVERED:
		w.Stats.Delivered.Add(1)
	}
	a.Outcome = out
	w.deps.Telemetry.Metrics().DeliveryDone(t.ctx, outcomeName(out.Class), time.Duration(a.LatencyUs)*time.Microsecond)
	t.span.SetAttributes(attribute.String("surveyhooks.outcome", outcomeName(out.Class)),
		attribute.String("surveyhooks.delivery_id", d.DeliveryId), attribute.Int("surveyhooks.attempt", int(d.Attempt)))
	t.span.End()
	if w.log.Enabled(t.ctx, slog.LevelDebug) {
		w.log.DebugContext(t.ctx, "attempt", "delivery_id", d.DeliveryId, "webhook_id", d.WebhookId, "attempt", d.Attempt,
			"outcome", outcomeName(out.Class), "status", out.StatusCode, "disposition", out.Disposition.String())
	}
	av, _ := proto.Marshal(a)
	ar := &kgo.Record{Topic: topics.Attempts, Key: []byte(d.WebhookId), Value: av}
	if d.Test {
		ar.Headers = []kgo.RecordHeader{{Key: "surveyhooks-test", Value: []byte("1")}} // Send Test waits for it
	}
	recs = append(recs, ar)
	w.Stats.Attempts.Add(1)

	var pending atomic.Int32
	var failed atomic.Bool
	pending.Store(int32(len(recs)))
	var produce func(r *kgo.Record, backoff time.Duration)
	produce = func(r *kgo.Record, backoff time.Duration) {
		r.Context = t.ctx // the attempt, retry or dead letter continues the trace
		w.cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			if err != nil {
				if !w.stopping.Load() && t.ctx.Err() == nil {
					// Keep trying: a delivery left unfinished while the worker runs would hold its
					// partition's committed offset back until the next restart.
					w.log.WarnContext(t.ctx, "recording attempt failed; trying again", "delivery_id", d.DeliveryId,
						"topic", r.Topic, "err", err, "in", backoff)
					time.AfterFunc(backoff, func() { produce(r, min(2*backoff, 5*time.Second)) })
					return
				}
				failed.Store(true)
				w.log.ErrorContext(t.ctx, "recording attempt failed while stopping; the delivery will be redone", "delivery_id", d.DeliveryId, "err", err)
			}
			if pending.Add(-1) == 0 {
				if failed.Load() {
					w.abandon(t) // not marked done: redone after a restart or rebalance
				} else {
					w.finished(t.partition, t.offset)
					w.end(t) // after finished: a waiting revocation then commits this offset
				}
			}
		})
	}
	for _, r := range recs {
		produce(r, 100*time.Millisecond)
	}
}

// tierFor is the smallest tier (1-based) whose delay is at least retryAfterMs; 0 without one.
func tierFor(schedule []time.Duration, retryAfterMs int64) int {
	if retryAfterMs <= 0 {
		return 0
	}
	for i, d := range schedule {
		if d.Milliseconds() >= retryAfterMs {
			return i + 1
		}
	}
	return len(schedule)
}

// openSecrets returns the webhook's unexpired secrets, newest first, decrypted once per revision.
func (w *Worker) openSecrets(wh *pb.Webhook, now time.Time) ([]string, error) {
	w.secretsMu.Lock()
	os := w.secrets[wh.Id]
	w.secretsMu.Unlock()
	if os == nil || os.revision != wh.Revision {
		os = &openSecrets{revision: wh.Revision}
		for _, s := range wh.Secrets {
			p, err := w.box.Open(s.Sealed)
			if err != nil {
				return nil, fmt.Errorf("webhook secret: %w", err)
			}
			os.plain = append(os.plain, p)
			os.expires = append(os.expires, s.ExpiresAtMs)
		}
		w.secretsMu.Lock()
		w.secrets[wh.Id] = os
		w.secretsMu.Unlock()
	}
	out := make([]string, 0, len(os.plain))
	for i, p := range os.plain {
		if os.expires[i] == 0 || os.expires[i] > now.UnixMilli() {
			out = append(out, p)
		}
	}
	return out, nil
}

// redact keeps headers for the log, hiding credentials.
func redact(h http.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		lk := strings.ToLower(k)
		switch {
		case lk == "authorization", lk == "proxy-authorization", lk == "cookie", lk == "set-cookie",
			strings.Contains(lk, "token"), strings.Contains(lk, "secret"), strings.Contains(lk, "api-key"), strings.Contains(lk, "apikey"):
			out[k] = "[redacted]"
		default:
			out[k] = strings.Join(v, ", ")
		}
	}
	return out
}

// outcomeName is an outcome class as a short metric label: "success", "http_5xx", "timeout", …
func outcomeName(c pb.OutcomeClass) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "OUTCOME_CLASS_"))
}
