package delivery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/ids"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Per-respondent ordering (docs/ordering.md). A delivery with an ordering key (fan-out sets one
// for webhooks with ordering "respondent") is sent only when no earlier delivery of the same
// (webhook, key) is unsettled:
//
//   - while one runs (or waits in its endpoint's queue), later ones of the key wait behind it in
//     memory, holding their offsets like any queued delivery (one request's time);
//   - when it goes to a retry tier (a retryable failure, an open circuit, moved aside), the key
//     becomes held: an OrderingHold record naming it as head is written to the compacted
//     `deliveries-held` topic with its retry, and every later delivery of the key is parked there
//     (a HeldDelivery record, in sequence) instead of waiting in memory, so its offset is committed
//     and a hold of hours pins nothing;
//   - when the head comes back and is delivered or dead-lettered, the parked ones are sent one at
//     a time, in order, each tombstoned when settled; a dead head's event id is carried to the
//     next one as the `surveyhooks-skipped-event-id` header;
//   - partition p of `deliveries-held` belongs with partition p of `deliveries`: the worker that
//     is assigned p reads it back before it admits an ordered delivery of p, and resumes any
//     drain a killed or revoked owner left half done.
//
// Other keys of the webhook, and other webhooks, never wait for a held key.
type ordering struct {
	w      *Worker
	ctx    context.Context // parked deliveries run, and partitions are read back, in it
	cancel context.CancelFunc

	mu    sync.Mutex
	parts map[int32]*heldPartition
}

// heldPartition is the ordering state of one assigned `deliveries` partition.
type heldPartition struct {
	p       int32
	gen     uint64        // the partition's generation when it was assigned
	ready   chan struct{} // closed once `deliveries-held` partition p was read back
	dropped bool          // revoked or lost: its state belongs to the next owner
	keys    map[orderKey]*keyState
	// waitingBy counts, per webhook, the deliveries waiting in memory; past maxWaiting a key's
	// waiting and later deliveries are parked instead, so an ordered webhook's burst holds no more
	// of the process's slots than an endpoint's queue (DELIVERY_PER_ENDPOINT_QUEUE).
	waitingBy  map[string]int
	maxWaiting int
}

type orderKey struct{ webhook, key string }

// keyState is one (webhook, ordering key) with something unsettled.
type keyState struct {
	running bool             // one of its deliveries is at its endpoint (running or queued)
	curSeq  int64            // the running one's parked sequence number; -1: it came from `deliveries`
	cur     *pb.Delivery     // the running one
	waiting []waiter         // fetched after the running one, not held: in memory, in offset order
	hold    *pb.OrderingHold // nil: not held
	parked  []*pb.HeldDelivery
}

type waiter struct {
	t        *task
	returned bool // it carried the overflow header
}

// skippedHeader names, on the next delivery of a key, the event of a dead-lettered one before it.
const skippedHeader = "Surveyhooks-Skipped-Event-Id"

// newOrdering is the worker's gate; its context ends when the worker's Run returns (after the
// drain), like the worker's own work context.
func newOrdering(w *Worker) *ordering {
	ctx, cancel := context.WithCancel(context.Background())
	return &ordering{w: w, ctx: ctx, cancel: cancel, parts: map[int32]*heldPartition{}}
}

func holdKey(k orderKey) string { return "h\x00" + k.webhook + "\x00" + k.key }

func parkedKey(k orderKey, seq int64) string {
	return fmt.Sprintf("p\x00%s\x00%s\x00%016x", k.webhook, k.key, seq)
}

// assigned starts reading back the held state of newly assigned partitions. State left from an
// earlier assignment of the same partition is stale: the next owner may have changed it.
func (o *ordering) assigned(ps []int32) {
	o.drop(ps)
	for _, p := range ps {
		o.partition(p)
	}
}

// state counts what ordering holds back on this worker, for the metrics.
func (o *ordering) state() OrderingState {
	o.mu.Lock()
	defer o.mu.Unlock()
	var st OrderingState
	for _, hp := range o.parts {
		for _, ks := range hp.keys {
			if ks.hold != nil {
				st.HeldKeys++
			}
			st.Waiting += len(ks.waiting)
			st.Parked += len(ks.parked)
		}
	}
	return st
}

// partition returns p's state, starting its read-back when it is new.
func (o *ordering) partition(p int32) *heldPartition {
	o.mu.Lock()
	defer o.mu.Unlock()
	hp := o.parts[p]
	if hp == nil {
		hp = &heldPartition{p: p, gen: o.w.life.parts.generation(p), ready: make(chan struct{}), keys: map[orderKey]*keyState{},
			waitingBy: map[string]int{}, maxWaiting: o.w.cfg.PerEndpointQueue}
		o.parts[p] = hp
		go o.load(hp)
	}
	return hp
}

// drop forgets revoked or lost partitions: the deliveries waiting in memory are given back (their
// offsets are not committed, so the next owner redoes them, in order), parked ones stay parked.
func (o *ordering) drop(ps []int32) {
	o.mu.Lock()
	var back []*task
	for _, p := range ps {
		if hp := o.parts[p]; hp != nil {
			hp.dropped = true
			for _, ks := range hp.keys {
				for _, wt := range ks.waiting {
					back = append(back, wt.t)
				}
			}
			delete(o.parts, p)
		}
	}
	o.mu.Unlock()
	for _, t := range back {
		t.giveBack()
	}
}

// admit takes t when it must wait for an earlier delivery of its key (in memory, or parked in
// `deliveries-held`); false: t goes to its endpoint now (as its key's running delivery).
func (o *ordering) admit(t *task, returned bool) bool {
	hp := o.partition(t.partition)
	<-hp.ready
	o.mu.Lock()
	if hp.dropped || hp.gen != t.gen {
		// Fetched before its partition was revoked: the next owner redoes it.
		o.mu.Unlock()
		t.giveBack()
		return true
	}
	v, st := hp.admit(t, returned)
	o.mu.Unlock()
	switch v {
	case admitRun:
		return false
	case admitPark:
		for i, pt := range st.parked {
			recs := []*kgo.Record{o.parkedRecord(hp, st.parkedAs[i])}
			if i == 0 && st.hold != nil {
				recs = append([]*kgo.Record{o.holdRecord(hp, st.hold)}, recs...)
			}
			o.w.produce(pt, recs)
		}
	case admitKnown:
		t.finish()
	}
	return true
}

// settle is called when t, an ordered delivery, is settled at its endpoint: toTier when it goes to
// a retry tier (retried or moved aside), dead when it was dead-lettered. It returns the records to
// produce with t's own (its key's new hold state), and what to do once they are queued: park the
// deliveries that waited behind t, or start the next one of the key.
func (o *ordering) settle(t *task, toTier, dead bool) (recs []*kgo.Record, then func()) {
	o.mu.Lock()
	hp := o.parts[t.partition]
	if hp == nil || hp.dropped {
		o.mu.Unlock()
		return nil, nil
	}
	st := hp.settle(t.d, toTier, dead)
	o.mu.Unlock()
	k := orderKey{t.d.WebhookId, t.d.OrderingKey}
	if st.unpark >= 0 {
		recs = append(recs, o.record(hp, parkedKey(k, st.unpark), nil)) // sent, or now the head
	}
	switch {
	case st.hold != nil:
		recs = append(recs, o.holdRecord(hp, st.hold))
	case st.unhold:
		recs = append(recs, o.record(hp, holdKey(k), nil))
	}
	if len(st.parked) == 0 && st.next == nil && st.drain == nil {
		return recs, nil
	}
	return recs, func() {
		for i, pt := range st.parked {
			o.w.produce(pt, []*kgo.Record{o.parkedRecord(hp, st.parkedAs[i])})
		}
		if st.next != nil {
			o.w.start(o.ctx, st.next.t, st.next.returned)
		}
		if st.drain != nil {
			o.send(hp, st.drain)
		}
	}
}

func (o *ordering) record(hp *heldPartition, key string, value []byte) *kgo.Record {
	return &kgo.Record{Topic: o.w.cfg.Kafka.Topics.Held, Partition: hp.p, Key: []byte(key), Value: value}
}

func (o *ordering) holdRecord(hp *heldPartition, h *pb.OrderingHold) *kgo.Record {
	h.UpdatedAtMs = time.Now().UnixMilli()
	v, _ := proto.Marshal(h)
	return o.record(hp, holdKey(orderKey{h.WebhookId, h.OrderingKey}), v)
}

func (o *ordering) parkedRecord(hp *heldPartition, hd *pb.HeldDelivery) *kgo.Record {
	v, _ := proto.Marshal(hd)
	return o.record(hp, parkedKey(orderKey{hd.Delivery.WebhookId, hd.Delivery.OrderingKey}, hd.Seq), v)
}

// send runs a parked delivery: it has no offset of its own (its `deliveries` offset finished
// when it was parked), so finishing it commits nothing; its record is tombstoned when it settles.
func (o *ordering) send(hp *heldPartition, d *pb.Delivery) {
	go func() {
		if o.w.stopping.Load() {
			return // stays parked: the next owner sends it
		}
		l := o.w.life
		l.slots <- struct{}{}
		l.inFlight(1)
		t := &task{d: d, partition: hp.p, offset: -1, owner: l, gen: hp.gen}
		t.ctx, t.span = o.w.deps.Telemetry.Tracer().Start(o.ctx, "deliver")
		o.w.start(o.ctx, t, false)
	}()
}

// What the gate says about a fetched ordered delivery.
type admitVerdict int

const (
	admitRun   admitVerdict = iota // nothing of its key is unsettled: to its endpoint
	admitWait                      // behind its key's running delivery, in memory
	admitPark                      // its key is held: park it (and those before it, as the step says)
	admitKnown                     // a copy of the head or of a parked delivery: nothing to do
)

// admit is the gate's decision for t, and its bookkeeping; no I/O. Called with o.mu held. For
// admitPark the step lists the deliveries to park, t last, and the hold to write first if the key
// was not held yet.
func (hp *heldPartition) admit(t *task, returned bool) (admitVerdict, step) {
	k := orderKey{t.d.WebhookId, t.d.OrderingKey}
	ks := hp.key(k)
	st := step{unpark: -1}
	switch {
	case ks.hold == nil && !ks.running:
		ks.running, ks.curSeq, ks.cur = true, -1, t.d
		return admitRun, st
	case ks.hold == nil && hp.waitingBy[k.webhook] < hp.maxWaiting:
		ks.waiting = append(ks.waiting, waiter{t, returned})
		hp.waitingBy[k.webhook]++
		return admitWait, st
	case ks.hold == nil:
		// The webhook already has its share waiting in memory: hold the key by its running
		// delivery and park what waits behind it, then t.
		ks.hold = &pb.OrderingHold{WebhookId: k.webhook, OrderingKey: k.key, HeadDeliveryId: ks.cur.GetDeliveryId(), HeadEventId: ks.cur.GetEventId()}
		hp.parkWaiting(k, ks, &st)
		st.hold = proto.Clone(ks.hold).(*pb.OrderingHold)
	case ks.hold.HeadDeliveryId == t.d.DeliveryId && !ks.running:
		ks.running, ks.curSeq, ks.cur = true, -1, t.d // the head is back from its retry tier
		return admitRun, st
	case ks.hold.HeadDeliveryId == t.d.DeliveryId || parkedIndex(ks.parked, t.d.DeliveryId) >= 0:
		return admitKnown, st // redone after a crash: its first copy is in hand
	}
	st.parked = append(st.parked, t)
	st.parkedAs = append(st.parkedAs, ks.park(t.d))
	return admitPark, st
}

// parkWaiting moves the key's in-memory waiting deliveries to its parked ones, in order.
func (hp *heldPartition) parkWaiting(k orderKey, ks *keyState, st *step) {
	for _, wt := range ks.waiting {
		st.parked = append(st.parked, wt.t)
		st.parkedAs = append(st.parkedAs, ks.park(wt.t.d))
	}
	hp.waitingBy[k.webhook] -= len(ks.waiting)
	ks.waiting = nil
}

func parkedIndex(parked []*pb.HeldDelivery, deliveryID string) int {
	for i, h := range parked {
		if h.Delivery.GetDeliveryId() == deliveryID {
			return i
		}
	}
	return -1
}

// park appends d to the held key's parked deliveries.
func (ks *keyState) park(d *pb.Delivery) *pb.HeldDelivery {
	hd := &pb.HeldDelivery{Seq: ks.hold.NextSeq, Delivery: d}
	ks.hold.NextSeq++
	ks.parked = append(ks.parked, hd)
	return hd
}

// step is what settling a key's running delivery asks for.
type step struct {
	unpark   int64            // the parked record to tombstone; -1: none
	hold     *pb.OrderingHold // the key's hold to write (a copy)
	unhold   bool             // tombstone the key's hold
	parked   []*task          // waited in memory: park them, as parkedAs
	parkedAs []*pb.HeldDelivery
	next     *waiter      // start this one (it waited in memory)
	drain    *pb.Delivery // send this one (it was parked)
}

// settle is the gate's decision when d, its key's running delivery, settled: toTier (retried or
// moved aside: the key is held by it), dead (dead-lettered: the next one names it), or delivered.
// No I/O. Called with o.mu held.
func (hp *heldPartition) settle(d *pb.Delivery, toTier, dead bool) step {
	k := orderKey{d.WebhookId, d.OrderingKey}
	st := step{unpark: -1}
	ks := hp.keys[k]
	if ks == nil || !ks.running {
		return st
	}
	st.unpark = ks.curSeq
	ks.running, ks.curSeq, ks.cur = false, -1, nil
	if toTier {
		if ks.hold == nil {
			ks.hold = &pb.OrderingHold{WebhookId: k.webhook, OrderingKey: k.key}
		}
		ks.hold.HeadDeliveryId, ks.hold.HeadEventId, ks.hold.SkippedEventId = d.DeliveryId, d.EventId, ""
		hp.parkWaiting(k, ks, &st)
		st.hold = proto.Clone(ks.hold).(*pb.OrderingHold)
		return st
	}
	skipped := ""
	if dead {
		skipped = d.EventId
	}
	switch {
	case ks.hold != nil && len(ks.parked) == 0:
		ks.hold, st.unhold = nil, true
	case ks.hold != nil:
		ks.hold.HeadDeliveryId, ks.hold.HeadEventId, ks.hold.SkippedEventId = "", "", skipped
		st.hold = proto.Clone(ks.hold).(*pb.OrderingHold)
		st.drain = ks.drainNext()
	case len(ks.waiting) > 0:
		next := ks.waiting[0]
		ks.waiting = ks.waiting[1:]
		hp.waitingBy[k.webhook]--
		if skipped != "" {
			next.t.d.SkippedEventId = skipped
		}
		ks.running, ks.cur, st.next = true, next.t.d, &next
	}
	if !ks.running && ks.hold == nil && len(ks.waiting) == 0 {
		delete(hp.keys, k)
	}
	return st
}

// drainNext makes the first parked delivery of a draining key its running one and returns it,
// carrying the skipped event id of the hold (nil when nothing is parked).
func (ks *keyState) drainNext() *pb.Delivery {
	if len(ks.parked) == 0 {
		return nil
	}
	hd := ks.parked[0]
	ks.parked = ks.parked[1:]
	d := proto.Clone(hd.Delivery).(*pb.Delivery)
	if ks.hold.SkippedEventId != "" {
		d.SkippedEventId = ks.hold.SkippedEventId
	}
	ks.running, ks.curSeq, ks.cur = true, hd.Seq, d
	return d
}

// load reads `deliveries-held` partition p back (a compacted topic: the latest record per key,
// tombstones removing), then resumes the drains a previous owner left unfinished.
func (o *ordering) load(hp *heldPartition) {
	defer close(hp.ready)
	// franz-go joins the group as soon as the client exists: the first assignment may start this
	// before New has stored the client it reads and writes with.
	select {
	case <-o.w.clSet:
	case <-o.ctx.Done():
		return
	}
	var state map[string][]byte
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if state, err = o.read(hp.p); err == nil {
			break
		}
		if errors.Is(err, errNoHeldPartition) {
			// Waiting would stop the fetch loop for every webhook: go on unordered for this
			// partition, loudly.
			o.w.log.Error("per-respondent ordering is off for this partition", "partition", hp.p, "err", err)
			break
		}
		o.w.log.Warn("reading held deliveries back; trying again", "partition", hp.p, "err", err, "in", backoff)
		select {
		case <-o.ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if hp.dropped {
		return
	}
	for key, v := range state {
		switch {
		case strings.HasPrefix(key, "h\x00"):
			h := &pb.OrderingHold{}
			if proto.Unmarshal(v, h) != nil || h.WebhookId == "" {
				continue
			}
			k := orderKey{h.WebhookId, h.OrderingKey}
			ks := hp.key(k)
			ks.hold = h
		case strings.HasPrefix(key, "p\x00"):
			hd := &pb.HeldDelivery{}
			if proto.Unmarshal(v, hd) != nil || hd.Delivery.GetDeliveryId() == "" {
				continue
			}
			ks := hp.key(orderKey{hd.Delivery.WebhookId, hd.Delivery.OrderingKey})
			ks.parked = append(ks.parked, hd)
		}
	}
	var drains []*pb.Delivery
	for k, ks := range hp.keys {
		if ks.hold == nil { // parked records whose hold was not written: the head's fate is unknown, send them
			ks.hold = &pb.OrderingHold{WebhookId: k.webhook, OrderingKey: k.key}
		}
		sortParked(ks.parked)
		if n := len(ks.parked); n > 0 {
			ks.hold.NextSeq = max(ks.hold.NextSeq, ks.parked[n-1].Seq+1)
		}
		if ks.hold.HeadDeliveryId != "" {
			continue // waits for its head to come back from its tier
		}
		if len(ks.parked) == 0 {
			o.w.cl.Produce(o.ctx, o.record(hp, holdKey(k), nil), nil)
			delete(hp.keys, k)
			continue
		}
		if d := ks.drainNext(); d != nil {
			drains = append(drains, d)
		}
	}
	if len(hp.keys) > 0 {
		o.w.log.Info("held ordering keys read back", "partition", hp.p, "keys", len(hp.keys), "resumed", len(drains))
	}
	for _, d := range drains {
		o.send(hp, d)
	}
}

func (hp *heldPartition) key(k orderKey) *keyState {
	ks := hp.keys[k]
	if ks == nil {
		ks = &keyState{curSeq: -1}
		hp.keys[k] = ks
	}
	return ks
}

func sortParked(ps []*pb.HeldDelivery) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].Seq < ps[j-1].Seq; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

var errNoHeldPartition = errors.New("no held-state partition")

// read returns the latest value of every live key of `deliveries-held` partition p. It first
// writes a fence (a tombstone of a key of its own) and reads up to it: the end of a compacted
// partition may have been compacted away, and reading up to an offset that no longer exists would
// never end.
func (o *ordering) read(p int32) (map[string][]byte, error) {
	topic := o.w.cfg.Kafka.Topics.Held
	ctx, cancel := context.WithTimeout(o.ctx, time.Minute)
	defer cancel()
	starts, err := kadm.NewClient(o.w.cl).ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing the start offsets of %s: %w", topic, err)
	}
	s, ok := starts.Lookup(topic, p)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %s has no partition %d; it needs as many partitions as %s", errNoHeldPartition, topic, p, o.w.cfg.Kafka.Topics.Deliveries)
	case s.Err != nil:
		return nil, fmt.Errorf("listing the start offset of %s partition %d: %w", topic, p, s.Err)
	}
	fence := &kgo.Record{Topic: topic, Partition: p, Key: []byte("f\x00" + ids.New(""))}
	if err := o.w.cl.ProduceSync(ctx, fence).FirstErr(); err != nil {
		return nil, fmt.Errorf("writing a fence to %s partition %d: %w", topic, p, err)
	}
	state := map[string][]byte{}
	cl, err := kafka.NewClient(o.w.cfg.Kafka, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(s.Offset)}}),
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for pos := s.Offset; pos <= fence.Offset; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := fs.Err(); err != nil {
			return nil, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos = max(pos, r.Offset+1)
			switch {
			case r.Offset > fence.Offset:
			case r.Value == nil:
				delete(state, string(r.Key))
			default:
				state[string(r.Key)] = r.Value
			}
		})
	}
	delete(state, string(fence.Key))
	return state, nil
}

// withSkipped adds the skipped-event header to a webhook's headers when d carries one.
func withSkipped(headers map[string]string, d *pb.Delivery) map[string]string {
	if d.SkippedEventId == "" {
		return headers
	}
	h := maps.Clone(headers)
	if h == nil {
		h = map[string]string{}
	}
	h[skippedHeader] = d.SkippedEventId
	return h
}
