package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// idKey is the 128-bit digest of "project/event_id": a fixed-size key keeps the window's memory
// per id small and independent of how long producers make their ids.
type idKey [16]byte

func keyOf(b []byte) idKey {
	s := sha256.Sum256(b)
	return idKey(s[:16])
}

// window is the set of ids accepted on one partition within the span, oldest first.
type window struct {
	span, max int64
	at        map[idKey]int64 // accept time (ms) of each id
	order     []seen          // insertion order, for eviction
	head      int
	newest    int64
	evicted   *atomic.Int64 // evicted before their time, because of max
}

type seen struct {
	k  idKey
	ms int64
}

func newWindow(span time.Duration, max int, evicted *atomic.Int64) *window {
	return &window{span: span.Milliseconds(), max: int64(max), at: map[idKey]int64{}, evicted: evicted}
}

// contains reports whether k was accepted within the span of ms (either side: the clocks of
// several ingest processes need not agree).
func (w *window) contains(k idKey, ms int64) bool {
	t, ok := w.at[k]
	if !ok {
		return false
	}
	d := ms - t
	return d < w.span && -d < w.span
}

func (w *window) add(k idKey, ms int64) {
	w.at[k] = ms
	w.order = append(w.order, seen{k, ms})
	w.newest = max(w.newest, ms)
	for w.head < len(w.order) {
		e := w.order[w.head]
		full := int64(len(w.at)) > w.max
		if !full && e.ms > w.newest-w.span {
			break
		}
		if w.at[e.k] == e.ms { // not re-accepted since
			delete(w.at, e.k)
			if full && e.ms > w.newest-w.span {
				w.evicted.Add(1)
			}
		}
		w.head++
	}
	if w.head > 1024 && w.head > len(w.order)/2 {
		w.order = append(w.order[:0:0], w.order[w.head:]...)
		w.head = 0
	}
}

// dedup is the transactional consumer of `ingest-accepted` (see the package comment).
type dedup struct {
	cfg     Config
	log     *slog.Logger
	stats   *Stats
	metrics *telemetry.Metrics
	loop    *kafka.TxnLoop
	adm     *kadm.Client
	admCl   *kgo.Client

	mu      sync.Mutex
	windows map[int32]*window // committed state of the partitions this process owns
	gen     atomic.Uint64     // bumped on every revocation: a rebuild that raced one is discarded

	// The current batch, applied to windows only once its transaction committed. A key maps to
	// one partition, so one map serves every partition's lookups.
	pending             map[int32][]seen
	pendingAt           map[idKey]int64
	forwarded, repeated int64
}

func newDedup(cfg Config, log *slog.Logger, stats *Stats, deps service.Deps) (*dedup, error) {
	admCl, err := kafka.NewClient(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	d := &dedup{cfg: cfg, log: log, stats: stats, metrics: deps.Telemetry.Metrics(), adm: kadm.NewClient(admCl), admCl: admCl,
		windows: map[int32]*window{}, pending: map[int32][]seen{}, pendingAt: map[idKey]int64{}}
	drop := func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
		ps := lost[cfg.Kafka.Topics.IngestAccepted]
		if len(ps) == 0 {
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		d.gen.Add(1)
		for _, p := range ps {
			delete(d.windows, p)
		}
	}
	d.loop = &kafka.TxnLoop{
		Config: cfg.Kafka, Group: cfg.Group + "-dedup", Topics: []string{cfg.Kafka.Topics.IngestAccepted},
		Logger: log, Handler: d.handle, Ended: d.ended, Telemetry: deps.Telemetry,
		Opts: []kgo.Opt{
			kgo.OnPartitionsRevoked(drop), kgo.OnPartitionsLost(drop),
			kgo.ProducerBatchMaxBytes(producerBatchBytes),
			kgo.RecordPartitioner(verdictPartitioner{topic: cfg.Kafka.Topics.EventIDs, byKey: kgo.StickyKeyPartitioner(nil)}),
		},
	}
	return d, nil
}

func (d *dedup) run(ctx context.Context) error {
	defer d.close()
	return d.loop.Run(ctx)
}

func (d *dedup) close() { d.admCl.Close() }

var errRevokedMidBatch = errors.New("partitions were revoked during the batch")

func (d *dedup) handle(ctx context.Context, recs []*kgo.Record, produce func(*kgo.Record)) error {
	d.resetBatch()
	gen := d.gen.Load()
	var (
		w    *window
		part int32 = -1
	)
	for _, r := range recs {
		if r.Partition != part || w == nil {
			var err error
			if w, err = d.window(ctx, r, gen); err != nil {
				return err
			}
			part = r.Partition
		}
		k, ms := keyOf(r.Key), r.Timestamp.UnixMilli()
		if w.contains(k, ms) || d.pendingContains(k, ms, w.span) {
			d.repeated++
			if kafka.Header(r, hdrClaim) != nil { // someone waits for the answer
				produce(d.verdict(r, verdictDuplicate))
			}
			continue
		}
		d.pending[r.Partition] = append(d.pending[r.Partition], seen{k, ms})
		d.pendingAt[k] = ms
		d.forwarded++
		ev := &kgo.Record{Topic: d.cfg.Kafka.Topics.Events, Key: kafka.Header(r, hdrEventsKey),
			Value: r.Value, Headers: carried(r.Headers)}
		telemetry.Continue(ev, r)
		produce(ev)
		produce(d.verdict(r, verdictAccepted))
	}
	return nil
}

func (d *dedup) pendingContains(k idKey, ms, span int64) bool {
	t, ok := d.pendingAt[k]
	if !ok {
		return false
	}
	diff := ms - t
	return diff < span && -diff < span
}

func (d *dedup) resetBatch() {
	for p, adds := range d.pending {
		d.pending[p] = adds[:0]
	}
	clear(d.pendingAt)
	d.forwarded, d.repeated = 0, 0
}

func (d *dedup) ended(committed bool) {
	if committed {
		d.mu.Lock()
		for p, adds := range d.pending {
			if w := d.windows[p]; w != nil {
				for _, s := range adds {
					w.add(s.k, s.ms)
				}
			}
		}
		d.mu.Unlock()
		d.stats.Forwarded.Add(d.forwarded)
		d.stats.Duplicates.Add(d.repeated)
		d.metrics.IngestEvents(context.Background(), int(d.forwarded), "accepted", "")
		d.metrics.IngestEvents(context.Background(), int(d.repeated), "duplicate", "duplicate_event_id")
	}
	d.resetBatch()
}

// verdict is the `event-ids` record of a claim: on the claim's partition number, keyed like it,
// stamped with its receive time; the value names the event.
func (d *dedup) verdict(r *kgo.Record, v string) *kgo.Record {
	ev := &pb.Event{ReceivedAtMs: r.Timestamp.UnixMilli()}
	if i := bytes.IndexByte(r.Key, '/'); i >= 0 {
		ev.ProjectId, ev.EventId = string(r.Key[:i]), string(r.Key[i+1:])
	}
	value, _ := proto.Marshal(ev) // three scalar fields: cannot fail
	hs := []kgo.RecordHeader{{Key: hdrVerdict, Value: []byte(v)}}
	if c := kafka.Header(r, hdrClaim); c != nil {
		hs = append(hs, kgo.RecordHeader{Key: hdrClaim, Value: c})
	}
	return &kgo.Record{Topic: d.cfg.Kafka.Topics.EventIDs, Partition: r.Partition, Key: r.Key, Value: value,
		Timestamp: r.Timestamp, Headers: hs}
}

// carried keeps the headers meant for `events` (trace context), dropping ingest's own.
func carried(hs []kgo.RecordHeader) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for _, h := range hs {
		if h.Key != hdrClaim && h.Key != hdrEventsKey {
			out = append(out, h)
		}
	}
	return out
}

// window returns the committed window of r's partition, rebuilding it from `event-ids` when this
// process has none (it just gained the partition).
func (d *dedup) window(ctx context.Context, r *kgo.Record, gen uint64) (*window, error) {
	d.mu.Lock()
	w := d.windows[r.Partition]
	d.mu.Unlock()
	if w != nil {
		return w, nil
	}
	if d.gen.Load() != gen {
		// Our own open transaction may already hold verdicts on this partition: waiting for its
		// end would deadlock. The batch is aborted and polled again.
		return nil, errRevokedMidBatch
	}
	start := time.Now()
	since := max(0, min(r.Timestamp.UnixMilli(), start.UnixMilli())-d.cfg.DedupWindow.Milliseconds())
	w, n, err := d.rebuild(ctx, r.Partition, since)
	if err != nil {
		return nil, fmt.Errorf("rebuilding the de-duplication window of %s/%d: %w", d.cfg.Kafka.Topics.IngestAccepted, r.Partition, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen.Load() != gen {
		return nil, errRevokedMidBatch
	}
	d.windows[r.Partition] = w
	d.log.Info("de-duplication window rebuilt", "partition", r.Partition, "ids", n, "took", time.Since(start).Round(time.Millisecond))
	return w, nil
}

// rebuild reads the accepted verdicts of `event-ids` partition p written since the given time.
func (d *dedup) rebuild(ctx context.Context, p int32, since int64) (*window, int, error) {
	topic := d.cfg.Kafka.Topics.EventIDs
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// The previous owner's last transaction may still be open on p: wait until it ended, so that
	// the last stable offset covers every verdict whose offsets were committed.
	var end int64
	for {
		lso, err := d.offset(ctx, p, d.adm.ListCommittedOffsets)
		if err != nil {
			return nil, 0, err
		}
		hwm, err := d.offset(ctx, p, d.adm.ListEndOffsets)
		if err != nil {
			return nil, 0, err
		}
		if lso == hwm {
			end = hwm
			break
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("waiting for an open transaction on %s/%d to end: %w", topic, p, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	begin, err := d.offset(ctx, p, func(ctx context.Context, topics ...string) (kadm.ListedOffsets, error) {
		return d.adm.ListOffsetsAfterMilli(ctx, since, topics...)
	})
	if err != nil {
		return nil, 0, err
	}
	w := newWindow(d.cfg.DedupWindow, d.cfg.DedupMaxIDs, &d.stats.EvictedEarly)
	if begin >= end {
		return w, 0, nil
	}
	cl, err := kafka.NewClient(d.cfg.Kafka,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(begin)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // the last offset before `end` is often a transaction marker
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, 0, err
	}
	defer cl.Close()
	n := 0
	for done := false; !done; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		if err := fetches.Err(); err != nil {
			return nil, 0, err
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end-1 {
				done = true
			}
			if r.Offset >= end || r.Attrs.IsControl() || string(kafka.Header(r, hdrVerdict)) != verdictAccepted {
				return
			}
			w.add(keyOf(r.Key), r.Timestamp.UnixMilli())
			n++
		})
	}
	return w, n, nil
}

func (d *dedup) offset(ctx context.Context, p int32, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (int64, error) {
	topic := d.cfg.Kafka.Topics.EventIDs
	offs, err := list(ctx, topic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	o, ok := offs.Lookup(topic, p)
	if !ok {
		return 0, fmt.Errorf("%s has no partition %d: it must have as many partitions as %s", topic, p, d.cfg.Kafka.Topics.IngestAccepted)
	}
	return o.Offset, nil
}

// verdictPartitioner writes verdicts to the partition number set on the record (the claim's) and
// everything else by key, like the rest of surveyhooks.
type verdictPartitioner struct {
	topic string
	byKey kgo.Partitioner
}

func (p verdictPartitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t == p.topic {
		return kgo.ManualPartitioner().ForTopic(t)
	}
	return p.byKey.ForTopic(t)
}
