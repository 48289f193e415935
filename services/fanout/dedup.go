package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/surveyhooks/surveyhooks/pkg/dedup"
)

// deduper decides, per `events` partition, whether a record is the first occurrence of its
// (project, event_id) within the window: first in partition order wins. Its decisions are a pure
// function of the partition's content (ids and record timestamps), so the process that next owns
// the partition rebuilds the same state by re-reading it (rebuild).
//
// Decisions of a batch are applied to the windows only once the batch's transaction committed: an
// aborted batch is polled again and decided again against the same state.
type deduper struct {
	cfg   Config
	log   *slog.Logger
	stats *Stats
	adm   *kadm.Client

	mu      sync.Mutex
	windows map[int32]*dedup.Window // committed state of the partitions this process owns
	gen     atomic.Uint64           // bumped on every revocation: a rebuild that raced one is discarded

	// The current batch. A key maps to one partition, so one map serves every partition's lookups.
	pending   map[int32][]pendingID
	pendingAt map[dedup.Key]int64
	repeats   int64
}

type pendingID struct {
	k  dedup.Key
	ms int64
}

func newDeduper(cfg Config, log *slog.Logger, stats *Stats, adm *kadm.Client) *deduper {
	return &deduper{cfg: cfg, log: log, stats: stats, adm: adm, windows: map[int32]*dedup.Window{},
		pending: map[int32][]pendingID{}, pendingAt: map[dedup.Key]int64{}}
}

// drop forgets the partitions this process lost: whoever owns them next rebuilds their state.
func (d *deduper) drop(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	ps := lost[d.cfg.Kafka.Topics.Events]
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

var errRevokedMidBatch = errors.New("partitions were revoked during the batch")

// prepare makes sure every partition of recs has its window, rebuilding the missing ones before
// anything of the batch is produced (a long rebuild must not keep a transaction open).
func (d *deduper) prepare(ctx context.Context, recs []*kgo.Record) (map[int32]*dedup.Window, error) {
	d.reset()
	gen := d.gen.Load()
	ws := map[int32]*dedup.Window{}
	for _, r := range recs {
		if _, ok := ws[r.Partition]; ok {
			continue
		}
		w, err := d.window(ctx, r, gen)
		if err != nil {
			return nil, err
		}
		ws[r.Partition] = w
	}
	return ws, nil
}

// first reports whether r is the first occurrence of its id (and notes it as pending), or a repeat
// (counted). A record whose id cannot be read is passed on: fan-out counts it as unreadable.
func (d *deduper) first(w *dedup.Window, r *kgo.Record) bool {
	k, ok := eventKey(r.Value)
	if !ok {
		return true
	}
	ms := r.Timestamp.UnixMilli()
	if t, seen := d.pendingAt[k]; w.Contains(k, ms) || (seen && dedup.Within(ms, t, w.Span())) {
		d.repeats++
		return false
	}
	d.pending[r.Partition] = append(d.pending[r.Partition], pendingID{k, ms})
	d.pendingAt[k] = ms
	return true
}

func (d *deduper) reset() {
	for p, adds := range d.pending {
		d.pending[p] = adds[:0]
	}
	clear(d.pendingAt)
	d.repeats = 0
}

// ended applies a committed batch's decisions.
func (d *deduper) ended(committed bool) {
	if committed {
		d.mu.Lock()
		for p, adds := range d.pending {
			if w := d.windows[p]; w != nil {
				for _, s := range adds {
					w.Add(s.k, s.ms)
				}
			}
		}
		d.mu.Unlock()
		d.stats.Duplicates.Add(d.repeats)
	}
	d.reset()
}

// window returns the committed window of r's partition, rebuilding it when this process has none
// (it just gained the partition). r is the first record of the partition this process fetched
// since, so it sits at the group's committed offset: everything before it was decided already.
func (d *deduper) window(ctx context.Context, r *kgo.Record, gen uint64) (*dedup.Window, error) {
	d.mu.Lock()
	w := d.windows[r.Partition]
	d.mu.Unlock()
	if w != nil {
		return w, nil
	}
	if d.gen.Load() != gen {
		return nil, errRevokedMidBatch // the batch is aborted and polled again
	}
	start := time.Now()
	since := max(0, min(r.Timestamp.UnixMilli(), start.UnixMilli())-d.cfg.DedupWindow.Milliseconds())
	w, n, err := d.rebuild(ctx, r.Partition, since, r.Offset)
	if err != nil {
		return nil, fmt.Errorf("rebuilding the de-duplication window of %s/%d: %w", d.cfg.Kafka.Topics.Events, r.Partition, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen.Load() != gen {
		return nil, errRevokedMidBatch
	}
	d.windows[r.Partition] = w
	d.log.Info("de-duplication window rebuilt", "partition", r.Partition, "records", n, "ids", w.Len(),
		"took", time.Since(start).Round(time.Millisecond))
	return w, nil
}

// rebuildTimeout bounds one rebuild; past it the batch is aborted and the rebuild starts again.
const rebuildTimeout = 5 * time.Minute

// rebuild replays the decisions for `events` partition p from the first record written at or after
// since up to (not including) offset end. It never waits for a particular offset to appear: it
// stops at end, or when the fetch says nothing more is readable (the last stable offset), so an
// aborted transaction without its marker cannot hold it (issue 11, point 2).
func (d *deduper) rebuild(ctx context.Context, p int32, since, end int64) (*dedup.Window, int, error) {
	topic := d.cfg.Kafka.Topics.Events
	ctx, cancel := context.WithTimeout(ctx, rebuildTimeout)
	defer cancel()
	w := dedup.NewWindow(d.cfg.DedupWindow, d.cfg.DedupMaxIDs, &d.stats.EvictedEarly)
	offs, err := d.adm.ListOffsetsAfterMilli(ctx, since, topic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("listing offsets of %s after %d: %w", topic, since, err)
	}
	o, ok := offs.Lookup(topic, p)
	if !ok {
		return nil, 0, fmt.Errorf("%s has no partition %d", topic, p)
	}
	begin := o.Offset
	if begin < 0 || begin >= end {
		return w, 0, nil
	}
	n, err := readCommitted(ctx, d.cfg.Kafka, topic, p, begin, end, func(r *kgo.Record) {
		if k, ok := eventKey(r.Value); ok && !w.Contains(k, r.Timestamp.UnixMilli()) {
			w.Add(k, r.Timestamp.UnixMilli())
		}
	})
	if err != nil {
		return nil, 0, err
	}
	return w, n, nil
}

// eventKey reads the (project, event_id) of an encoded Event without decoding the rest: the
// rebuild reads up to a window's worth of events, and fields 1 and 2 are all it needs.
func eventKey(b []byte) (dedup.Key, bool) {
	var id, project []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return dedup.Key{}, false
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 1 || num == 2) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return dedup.Key{}, false
			}
			if num == 1 {
				id = v
			} else {
				project = v
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return dedup.Key{}, false
		}
		b = b[m:]
	}
	if len(id) == 0 {
		return dedup.Key{}, false
	}
	k := make([]byte, 0, len(project)+1+len(id))
	k = append(append(append(k, project...), '/'), id...)
	return dedup.KeyOf(k), true
}
