package ingest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
)

// verdicts tails every partition of `event-ids` and hands each verdict that carries this
// process's claim header to the HTTP request waiting for it. It keeps no state beyond the
// requests in flight.
type verdicts struct {
	prefix []byte // instance + "/"
	cl     *kgo.Client

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]*waiter
}

// waiter collects the verdicts of one request's claims.
type waiter struct {
	dup  []bool
	got  []bool
	left int
	done chan struct{}
}

// newVerdicts positions a reader at the current end of `event-ids`, before any claim of this
// process can exist, so that no verdict of ours is missed.
func newVerdicts(ctx context.Context, cfg kafka.Config, instance string) (*verdicts, error) {
	admCl, err := kafka.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, cfg.Topics.EventIDs)
	admCl.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", cfg.Topics.EventIDs, err)
	}
	start := map[string]map[int32]kgo.Offset{cfg.Topics.EventIDs: {}}
	ends.Each(func(o kadm.ListedOffset) { start[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl, err := kafka.NewClient(cfg, kgo.ConsumePartitions(start), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(50e6)) // 50ms: a request is waiting
	if err != nil {
		return nil, err
	}
	return &verdicts{prefix: []byte(instance + "/"), cl: cl, waiting: map[uint64]*waiter{}}, nil
}

func (v *verdicts) close() { v.cl.Close() }

// register announces a request of n claims; its claim headers are claimID(seq, i).
func (v *verdicts) register(n int) (uint64, *waiter) {
	w := &waiter{dup: make([]bool, n), got: make([]bool, n), left: n, done: make(chan struct{})}
	v.mu.Lock()
	v.next++
	seq := v.next
	v.waiting[seq] = w
	v.mu.Unlock()
	return seq, w
}

func (v *verdicts) forget(seq uint64) {
	v.mu.Lock()
	delete(v.waiting, seq)
	v.mu.Unlock()
}

func (v *verdicts) claimID(seq uint64, i int) []byte {
	b := make([]byte, 0, len(v.prefix)+24)
	b = append(b, v.prefix...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '/')
	return strconv.AppendInt(b, int64(i), 10)
}

// results returns which claims were duplicates and how many verdicts have not arrived.
func (v *verdicts) results(w *waiter) (dup []bool, missing int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]bool(nil), w.dup...), w.left
}

func (v *verdicts) run(ctx context.Context) error {
	defer v.cl.Close()
	for {
		fetches := v.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachRecord(v.apply)
	}
}

func (v *verdicts) apply(r *kgo.Record) {
	c := kafka.Header(r, hdrClaim)
	if !bytes.HasPrefix(c, v.prefix) {
		return // another process's request, or a Kafka-sourced claim
	}
	rest := c[len(v.prefix):]
	slash := bytes.IndexByte(rest, '/')
	if slash < 0 {
		return
	}
	seq, err1 := strconv.ParseUint(string(rest[:slash]), 10, 64)
	i, err2 := strconv.Atoi(string(rest[slash+1:]))
	if err1 != nil || err2 != nil {
		return
	}
	dup := string(kafka.Header(r, hdrVerdict)) == verdictDuplicate
	v.mu.Lock()
	defer v.mu.Unlock()
	w := v.waiting[seq]
	if w == nil || i < 0 || i >= len(w.got) || w.got[i] {
		return // the request gave up waiting, or a verdict seen twice
	}
	w.got[i], w.dup[i] = true, dup
	if w.left--; w.left == 0 {
		close(w.done)
	}
}
