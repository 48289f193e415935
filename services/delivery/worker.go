package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/ids"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// Worker consumes `deliveries`: it fetches, admits each delivery to its endpoint, sends, applies
// the decision (decide.go) and commits finished offsets.
type Worker struct {
	cfg     Config
	reg     *registry.Registry
	secrets *secretCache
	snd     *sender.Sender
	log     *slog.Logger
	cl      *kgo.Client
	clSet   chan struct{} // closed once cl is set: the group's first assignment can come before
	life    *lifecycle
	eps     *endpoints
	fair    *fairQueue    // fetched deliveries waiting for a sending slot, by project (fairshare.go)
	sending chan struct{} // one per delivery admitted to its endpoint, up to MaxSending
	name    string
	deps    service.Deps
	met     *Metrics
	health  *health   // failing streaks, auto-disable, operational events (health.go)
	ord     *ordering // per-respondent ordering (ordering.go)

	stopping      atomic.Bool // no more fetching: draining
	abandonQueued atomic.Bool // the drain timed out: deliveries not yet started are left to the next owner
	wg            sync.WaitGroup
}

// NewWorker connects the worker's Kafka client; Run starts it.
func NewWorker(cfg Config, reg *registry.Registry, box *secrets.Box, snd *sender.Sender, log *slog.Logger, opts ...service.Option) (*Worker, error) {
	w := &Worker{cfg: cfg, reg: reg, secrets: newSecretCache(box), snd: snd, log: log, eps: newEndpoints(cfg),
		name: "delivery-" + kafka.InstanceID(), deps: service.Apply(opts)}
	met, err := NewMetrics(w.deps.Telemetry)
	if err != nil {
		return nil, err
	}
	w.met = met
	if cfg.FailingNotifyAfter > 0 { // a Config built in code may leave the health settings out
		w.health = newHealth(cfg.healthPolicy(), cfg.Kafka.Topics.Deliveries, cfg.Kafka.Topics.Webhooks, reg)
	}
	w.clSet = make(chan struct{})
	w.ord = newOrdering(w)
	w.fair = newFairQueue(cfg.FairShare, cfg.projectBuffer(), w.projectWeight)
	w.sending = make(chan struct{}, cfg.sendingSlots())
	w.life = &lifecycle{slots: make(chan struct{}, cfg.MaxInFlight), tr: newTracker(), parts: newPartitions(), inFlight: met.Held}
	topic := cfg.Kafka.Topics.Deliveries
	joined := w.deps.Ready.Wait("group " + cfg.Group + " joined")
	hooks := w.deps.Telemetry.KafkaHooks()
	cl, err := kafka.NewClient(cfg.Kafka, append(hooks,
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { w.ord.assigned(m[topic]); joined() }),
		kafka.SamePartition(cfg.Kafka.Topics.Held), // held state of `deliveries` partition p lives on partition p
		kgo.ConsumerGroup(cfg.Group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ProducerBatchMaxBytes(maxBatchBytes), kgo.ProducerLinger(producerLinger),
		// The slots already bound what is buffered (a held delivery has at most three records
		// unacknowledged): Produce must never block the fetch loop, or moving a flooded endpoint's
		// deliveries aside would stall every endpoint until Kafka acknowledged them.
		kgo.MaxBufferedRecords(3*cfg.MaxInFlight+1000),
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
			w.ord.drop(m[topic])
			w.life.tr.drop(m[topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			w.ord.drop(m[topic])
			w.life.tr.drop(m[topic])
		}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("connecting the delivery worker: %w", err)
	}
	w.cl = cl
	close(w.clSet)
	return w, nil
}

// Run consumes until ctx is done, then drains: in-flight requests get up to DrainTimeout to
// finish and be recorded, finished offsets are committed, and the group is left.
func (w *Worker) Run(ctx context.Context) error {
	// Requests and produces outlive ctx: a stopping worker finishes what it started.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	defer w.ord.cancel()
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
	slots := w.life.slots
	for ctx.Err() == nil {
		// Back-pressure: fetch only as many deliveries as there are free slots.
		select {
		case slots <- struct{}{}:
			<-slots
		case <-ctx.Done():
			continue
		}
		fs := w.cl.PollRecords(ctx, cap(slots)-len(slots))
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(t string, p int32, err error) { w.log.Warn("fetch error", "topic", t, "partition", p, "err", err) })
		fs.EachRecord(func(r *kgo.Record) { w.admit(work, r) })
	}
	w.stopping.Store(true)
	drained := make(chan struct{})
	go func() { w.wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(w.cfg.DrainTimeout):
		w.abandonQueued.Store(true)
		w.log.Warn("drain timeout: unfinished deliveries will be redone by the next worker", "pending", w.life.tr.pending())
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
	tr := w.life.tr
	offs := tr.commitable(w.cfg.Kafka.Topics.Deliveries)
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
		tr.committed(offs[w.cfg.Kafka.Topics.Deliveries])
		ok = true
	})
	return ok
}

// admit turns a fetched record into a task and gives it to its endpoint: started now, queued
// behind the endpoint's running requests, or — past the endpoint's share — moved aside.
func (w *Worker) admit(ctx context.Context, r *kgo.Record) {
	t := w.life.take(ctx, r.Partition, r.Offset)
	d := &pb.Delivery{}
	if err := proto.Unmarshal(r.Value, d); err != nil || d.DeliveryId == "" || d.WebhookId == "" {
		w.log.Error("unreadable delivery skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
		t.finish()
		return
	}
	t.d = d
	t.ctx, t.span = w.deps.Telemetry.StartRecordSpan(ctx, r, "deliver")
	// Only a delivery its endpoint moved aside is counted back by the endpoint; one moved aside
	// because its project's buffer was full is marked too, with another value.
	returned := slices.ContainsFunc(r.Headers, func(h kgo.RecordHeader) bool {
		return h.Key == overflowHeader && string(h.Value) == overflowByEndpoint
	})
	if d.OrderingKey != "" && !d.Test && w.ord.admit(t, returned) {
		return // behind an earlier delivery of its ordering key
	}
	w.start(ctx, t, returned)
}

// start queues t for its project's share of the sending slots (fairshare.go) and admits what the
// free slots allow; a project whose buffer is full has t moved aside.
func (w *Worker) start(ctx context.Context, t *task, returned bool) {
	w.wg.Add(1) // a drain waits for the deliveries waiting in the fair queue too
	if ok, wait := w.fair.push(t, returned); !ok {
		w.wg.Done()
		w.overflow(t, wait, overflowByProject)
		return
	}
	w.dispatch(ctx)
}

// dispatch admits waiting deliveries to their endpoints, in fair-share order, while sending
// slots are free.
func (w *Worker) dispatch(ctx context.Context) {
	for {
		select {
		case w.sending <- struct{}{}:
		default:
			return
		}
		q, ok := w.fair.pop()
		if !ok {
			<-w.sending
			if w.fair.len() == 0 { // else one was pushed while this held the slot it needed
				return
			}
			continue
		}
		switch a, wait := w.eps.admit(q.t, q.returned); a {
		case admitStart:
			w.wg.Add(1)
			go w.runEndpoint(ctx, q.t)
		case admitOverflow:
			w.overflow(q.t, wait, overflowByEndpoint)
			<-w.sending
		}
		w.wg.Done()
	}
}

// projectWeight is a project's share of the sending slots relative to others (Project's
// delivery_weight, 1 when unset).
func (w *Worker) projectWeight(projectID string) int {
	if w.reg == nil {
		return 1
	}
	return min(max(1, int(w.reg.Project(projectID).GetDeliveryWeight())), maxDeliveryWeight)
}

// runEndpoint runs t, then whatever queued behind it for the same endpoint.
func (w *Worker) runEndpoint(ctx context.Context, t *task) {
	defer w.wg.Done()
	for t != nil {
		var s sample
		if w.abandonQueued.Load() || !t.begin() {
			// Not started (the drain timed out, or its partition was revoked): leave it
			// unfinished for the next owner, and release the rest. A draining worker still runs
			// the deliveries queued behind a slow endpoint: the committed offset cannot pass one
			// it leaves, so everything finished after it on the partition would be sent again.
			t.giveBack()
		} else {
			s = w.deliver(ctx, t)
		}
		<-w.sending // the tasks next returns hold slots of their own
		next := w.eps.next(t.d.WebhookId, s)
		w.dispatch(ctx)
		t = nil
		if len(next) > 0 {
			t = next[0]
			for _, more := range next[1:] { // the endpoint's limit rose: more slots are open
				w.wg.Add(1)
				go w.runEndpoint(ctx, more)
			}
		}
	}
}

// quiesce lets the deliveries of revoked partitions that this worker already fetched finish and
// be recorded, up to limit, so that their next owner repeats nothing: the ones queued behind a
// slow endpoint too, since the committed offset cannot pass a delivery left behind. At the limit,
// those not yet started are left to the next owner and quiesce returns.
func (w *Worker) quiesce(partitions []int32, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for w.life.tr.pendingIn(partitions) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	w.life.parts.revoke(partitions)
	for {
		started := w.life.parts.startedIn(partitions)
		if started == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.log.Warn("revoked partitions still have deliveries in flight; the next owner may repeat them",
				"partitions", partitions, "in_flight", started, "unfinished", w.life.tr.pendingIn(partitions))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deliver makes one attempt of t: it asks the decision whether to send, sends, asks it what the
// result means, and applies that. It returns what the attempt teaches the endpoint's concurrency
// limit (took 0: no request was made).
func (w *Worker) deliver(ctx context.Context, t *task) sample {
	d := t.d
	if wait := time.Until(time.UnixMilli(d.NotBeforeMs)); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			t.giveBack()
			return sample{}
		}
	}
	wh := w.reg.Webhook(d.WebhookId)
	if d.WebhookRevision > 0 && (wh == nil || wh.Revision < d.WebhookRevision) {
		// Made from a newer revision than this process has seen (a Send Test right after a secret
		// rotation, a fan-out ahead of this worker): wait briefly for the registry, so the request
		// goes where, and is signed as, that revision says.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = w.reg.WaitFresh(wctx)
		cancel()
		wh = w.reg.Webhook(d.WebhookId)
	}
	in := input{Delivery: d, Webhook: wh, BreakerThreshold: w.cfg.BreakerThreshold, Schedule: w.cfg.Kafka.RetrySchedule, Now: time.Now()}
	in.ErasedBy, _ = w.reg.Erased(d) // erased.go
	start := in.Now
	dec := decide(in)
	var res sender.Result
	if dec.Send {
		if lim := w.eps.limiter(d.WebhookId, wh.RateLimitPerS); lim != nil && !d.Test {
			if err := lim.Wait(ctx); err != nil {
				t.giveBack()
				return sample{}
			}
		}
		start = time.Now()
		var judge func(error) // the breaker's callback, when it let the request through
		keys, cert, err := w.secrets.open(wh, start)
		switch {
		case err != nil:
			res.Err = fmt.Errorf("%w: %w", errSecret, err)
		case d.Test: // a Send Test neither asks the breaker nor teaches it
		default:
			var ok bool
			judge, ok = w.eps.allow(d.WebhookId)
			in.BreakerOpen = !ok
		}
		if err == nil && !in.BreakerOpen {
			res = w.snd.Send(t.ctx, sender.Request{MessageID: d.DeliveryId, URL: wh.Url, Body: d.Body, Secrets: keys,
				Headers: withSkipped(replayHeaders(wh.Headers, d), d), Timestamp: start, ClientCert: cert})
		}
		if ctx.Err() != nil {
			if judge != nil {
				judge(errNotJudged)
			}
			t.giveBack() // drain timed out mid-request: the next owner redoes it
			return sample{}
		}
		if !in.BreakerOpen {
			in.Sent = &res
		}
		in.Now = time.Now()
		dec = decide(in)
		if judge != nil {
			judge(dec.Breaker.verdict())
		}
	}
	a := attemptRecord(in, dec, w.name, start)
	erasedAttempt(a)
	a.ConcurrencyLimit = int32(w.eps.currentLimit(d.WebhookId))
	if sc := t.span.SpanContext(); sc.HasTraceID() {
		a.TraceId = sc.TraceID().String() // the attempt log links to the event's trace
	}
	w.apply(t, a, dec, w.health.observe(d, wh, in.Sent, dec, in.Now)...)
	return sample{start: start, took: res.Latency, dropped: overloaded(in.Sent, dec.Outcome)}
}

// attemptRecord is the attempt log's record of one decided attempt that started at start.
func attemptRecord(in input, dec decision, worker string, start time.Time) *pb.Attempt {
	d, wh := in.Delivery, in.Webhook
	a := &pb.Attempt{AttemptId: ids.New("att_"), DeliveryId: d.DeliveryId, EventId: d.EventId, WebhookId: d.WebhookId,
		ProjectId: d.ProjectId, EventType: d.EventType, Attempt: d.Attempt, Tier: d.Tier, StartedAtMs: start.UnixMilli(),
		Worker: worker, Test: d.Test, RequestBody: d.Body, Outcome: dec.Outcome}
	if wh != nil && dec.Outcome.Class != pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED {
		a.RequestUrl = wh.Url
	}
	if res := in.Sent; res != nil {
		a.LatencyUs = res.Latency.Microseconds()
		a.RequestHeaders = recordHeaders(res.RequestHeaders)
		a.ResponseHeaders = recordHeaders(res.ResponseHeaders)
		a.ResponseBody = res.ResponseBody
		a.ResponseTruncated = res.ResponseTruncated
	}
	return a
}

// apply produces what the decision emits — the attempt, and the retry, dead letter or disabled
// webhook — and the health records (health.go), and finishes t once Kafka has all of it.
func (w *Worker) apply(t *task, a *pb.Attempt, dec decision, extra ...*kgo.Record) {
	d, out := t.d, dec.Outcome
	topics := w.cfg.Kafka.Topics
	var recs []*kgo.Record
	add := func(topic, key string, m proto.Message) {
		v, _ := proto.Marshal(m)
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: v})
	}
	if dec.Retry != nil {
		a.NextAttemptAtMs = dec.Retry.NotBeforeMs
		add(topics.Retry(dec.RetryDelay), d.WebhookId, dec.Retry)
	}
	if dec.Dead != nil {
		add(topics.Dead, d.WebhookId, dec.Dead)
	}
	if dec.Disable != nil {
		add(topics.Webhooks, dec.Disable.Id, dec.Disable)
	}
	recs = append(recs, extra...)
	recs = append(recs, &kgo.Record{Topic: topics.Attempts, Key: []byte(d.WebhookId), Value: marshalAttempt(a, w.cfg.MaxAttemptBytes)})
	if d.Test {
		last := recs[len(recs)-1]
		last.Headers = []kgo.RecordHeader{{Key: "surveyhooks-test", Value: []byte("1")}} // Send Test waits for it
	}
	w.met.Done(t.ctx, outcomeName(out.Class), time.Duration(a.LatencyUs)*time.Microsecond)
	if t.span.IsRecording() {
		t.span.SetAttributes(attribute.String("surveyhooks.outcome", outcomeName(out.Class)),
			attribute.String("surveyhooks.delivery_id", d.DeliveryId), attribute.Int("surveyhooks.attempt", int(d.Attempt)))
	}
	if w.log.Enabled(t.ctx, slog.LevelDebug) {
		w.log.DebugContext(t.ctx, "attempt", "delivery_id", d.DeliveryId, "webhook_id", d.WebhookId, "attempt", d.Attempt,
			"outcome", outcomeName(out.Class), "status", out.StatusCode, "disposition", out.Disposition.String())
	}
	var then func()
	if d.OrderingKey != "" && !d.Test {
		var more []*kgo.Record
		more, then = w.ord.settle(t, dec.Retry != nil, dec.Dead != nil)
		recs = append(recs, more...)
	}
	w.produce(t, recs)
	if then != nil {
		then()
	}
}

// overflowHeader marks a delivery moved aside (the releaser keeps headers), so that its endpoint
// counts it back when it returns.
const overflowHeader = "surveyhooks-overflow"

// The overflow header's values: who moved the delivery aside.
const (
	overflowByEndpoint = "1"       // its endpoint held its share of the worker
	overflowByProject  = "project" // its project's buffer of waiting deliveries was full
)

// overflow moves t aside, because its endpoint holds more than its share or its project's buffer
// is full (by says which), to the retry tier nearest wait, the time the endpoint or the project
// needs to work through what it holds: same attempt, same tier number, nothing recorded as an
// attempt. Its offset counts as done once Kafka has it.
func (w *Worker) overflow(t *task, wait time.Duration, by string) {
	schedule := w.cfg.Kafka.RetrySchedule
	delay := schedule[max(1, tierFor(schedule, wait.Milliseconds()))-1]
	next := proto.Clone(t.d).(*pb.Delivery)
	next.NotBeforeMs = time.Now().Add(delay).UnixMilli()
	v, _ := proto.Marshal(next)
	t.span.SetAttributes(attribute.String("surveyhooks.outcome", "moved_aside"))
	w.met.MovedAside(t.ctx, by == overflowByProject)
	recs := []*kgo.Record{{Topic: w.cfg.Kafka.Topics.Retry(delay), Key: []byte(t.d.WebhookId), Value: v,
		Headers: []kgo.RecordHeader{{Key: overflowHeader, Value: []byte(by)}}}}
	var then func()
	if t.d.OrderingKey != "" && !t.d.Test {
		var more []*kgo.Record
		more, then = w.ord.settle(t, true, false) // its key waits for it on the tier
		recs = append(recs, more...)
	}
	w.produce(t, recs)
	if then != nil {
		then()
	}
}

// produce writes t's records and finishes t when all are acknowledged. A failed produce is tried
// again while the worker runs (a delivery left unfinished would hold its partition's committed
// offset back until the next restart); one that can never succeed (the record is too large) is
// cut down to what fits (an attempt) or given up with an error (anything else). When stopping, t
// is given back instead: its next owner redoes it.
func (w *Worker) produce(t *task, recs []*kgo.Record) {
	var pending atomic.Int32
	var failed atomic.Bool
	pending.Store(int32(len(recs)))
	var send func(r *kgo.Record, backoff time.Duration)
	send = func(r *kgo.Record, backoff time.Duration) {
		r.Context = t.ctx // the attempt, retry or dead letter continues the trace
		w.cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			if err != nil && tooLarge(err) && len(r.Value) > smallRecord {
				// The topic refuses a record this large: retrying it as it is can never succeed,
				// and holding its offset would stall the partition. An attempt is halved until it
				// fits (cut and marked); anything else is given up, loudly.
				if r.Topic == w.cfg.Kafka.Topics.Attempts {
					w.log.WarnContext(t.ctx, "attempt record too large for the topic; storing it truncated", "delivery_id", t.d.DeliveryId, "bytes", len(r.Value))
					a := &pb.Attempt{}
					if proto.Unmarshal(r.Value, a) == nil && boundAttempt(a, len(r.Value)/2) {
						r.Value, _ = proto.Marshal(a)
						send(r, backoff)
						return
					}
				}
				w.log.ErrorContext(t.ctx, "record too large for its topic; not written", "delivery_id", t.d.DeliveryId, "topic", r.Topic, "bytes", len(r.Value))
				err = nil
			}
			if err != nil {
				if !w.stopping.Load() && t.ctx.Err() == nil {
					w.log.WarnContext(t.ctx, "recording attempt failed; trying again", "delivery_id", t.d.DeliveryId,
						"topic", r.Topic, "err", err, "in", backoff)
					time.AfterFunc(backoff, func() { send(r, min(2*backoff, 5*time.Second)) })
					return
				}
				failed.Store(true)
				w.log.ErrorContext(t.ctx, "recording attempt failed while stopping; the delivery will be redone", "delivery_id", t.d.DeliveryId, "err", err)
			}
			if pending.Add(-1) == 0 {
				if failed.Load() {
					t.giveBack() // not marked done: redone after a restart or rebalance
				} else {
					t.finish()
				}
			}
		})
	}
	for _, r := range recs {
		send(r, 100*time.Millisecond)
	}
}

// smallRecord is a size any topic accepts: a record this small refused as too large shared a batch
// with a larger one, and is simply tried again.
const smallRecord = 16 << 10

// maxBatchBytes keeps the worker's produce batches under Kafka's default maximum message size
// (message.max.bytes, 1,048,588 bytes), so a batch is never refused for its neighbours' sake: only
// a record too large on its own is.
const maxBatchBytes = 1_000_000

// producerLinger is how long the worker's attempt, retry and dead-letter records wait for
// company before a produce request goes out. Longer than the clients' 2 ms: at 4,000 attempts/s
// to one partition, a produce to an in-process kfake cost 33 µs of CPU per record (client and
// broker) with 2 ms and 20 µs with 10 ms. Nothing waits on these records but the offset commit
// and a Send Test's caller; the request to the endpoint has already been made.
const producerLinger = 10 * time.Millisecond

// tooLarge reports a produce error that no retry of the same record can fix.
func tooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

// outcomeName is an outcome class as a short metric label: "success", "http_5xx", "timeout", …
func outcomeName(c pb.OutcomeClass) string {
	if n, ok := outcomeNames[c]; ok {
		return n
	}
	return strings.ToLower(strings.TrimPrefix(c.String(), "OUTCOME_CLASS_"))
}

// outcomeNames spells every known class once, instead of once per attempt.
var outcomeNames = func() map[pb.OutcomeClass]string {
	m := make(map[pb.OutcomeClass]string, len(pb.OutcomeClass_name))
	for c, name := range pb.OutcomeClass_name {
		m[pb.OutcomeClass(c)] = strings.ToLower(strings.TrimPrefix(name, "OUTCOME_CLASS_"))
	}
	return m
}()
