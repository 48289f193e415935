package delivery

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// task is one fetched delivery from fetch to commit. It alone holds the delivery's process slot,
// its offset's entry in the tracker, its partition's generation and its span. It leaves in
// exactly one of two ways: finish (its records are in Kafka: the offset may be committed) or
// giveBack (left unfinished: the next owner of the partition redoes it).
type task struct {
	d         *pb.Delivery // nil until the record is read (an unreadable record finishes at once)
	partition int32
	offset    int64
	ctx       context.Context // carries the "deliver" span: the request and the records it makes join the event's trace
	span      trace.Span

	owner *lifecycle
	gen   uint64 // the partition's generation when the task was fetched
	began bool   // counted as started in its partition
	over  atomic.Bool
}

// lifecycle is what tasks share: the slots, the tracker, the partitions' generations.
type lifecycle struct {
	slots    chan struct{} // one per delivery held, up to MaxInFlight
	tr       *tracker
	parts    *partitions
	inFlight func(delta int64) // the in-flight gauge
}

// take registers a fetched record: it waits for a free slot, tracks its offset and notes its
// partition's generation.
func (l *lifecycle) take(ctx context.Context, partition int32, offset int64) *task {
	l.slots <- struct{}{}
	l.inFlight(1)
	l.tr.add(partition, offset)
	return &task{partition: partition, offset: offset, ctx: ctx, owner: l, gen: l.parts.generation(partition)}
}

// begin counts t as started unless its partition was revoked since it was fetched; a started
// task holds up the revocation of its partition until it is recorded.
func (t *task) begin() bool {
	t.began = t.owner.parts.begin(t.partition, t.gen)
	return t.began
}

// finish marks t done once its records are acknowledged: its offset may be committed.
func (t *task) finish() {
	if !t.over.CompareAndSwap(false, true) {
		return
	}
	t.owner.tr.done(t.partition, t.offset)
	t.release() // after done: a waiting revocation then commits this offset
}

// giveBack leaves t unfinished: its offset is never committed by this worker, so the next owner
// of the partition redoes it.
func (t *task) giveBack() {
	if !t.over.CompareAndSwap(false, true) {
		return
	}
	t.release()
}

func (t *task) release() {
	if t.began {
		t.owner.parts.end(t.partition)
	}
	if t.span != nil {
		t.span.End()
	}
	<-t.owner.slots
	t.owner.inFlight(-1)
}

// partitions keeps, per partition, a generation that moves when the partition is revoked (a task
// of an older generation never starts) and how many started tasks are not yet recorded in Kafka
// (a revocation waits for them, so the next owner does not redo finished work).
type partitions struct {
	mu      sync.Mutex
	gen     map[int32]uint64
	started map[int32]int
}

func newPartitions() *partitions {
	return &partitions{gen: map[int32]uint64{}, started: map[int32]int{}}
}

func (p *partitions) generation(partition int32) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen[partition]
}

func (p *partitions) begin(partition int32, gen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen[partition] != gen {
		return false
	}
	p.started[partition]++
	return true
}

func (p *partitions) end(partition int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started[partition]--
}

// revoke stops every task of these partitions not yet started from starting.
func (p *partitions) revoke(ps []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range ps {
		p.gen[part]++
	}
}

// startedIn counts started, unrecorded tasks of these partitions.
func (p *partitions) startedIn(ps []int32) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, part := range ps {
		n += p.started[part]
	}
	return n
}
