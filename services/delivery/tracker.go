package delivery

import (
	"sort"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// tracker knows, per partition, which fetched offsets are finished, so that the committed offset
// never passes an unfinished delivery however out of order they complete.
type tracker struct {
	mu    sync.Mutex
	parts map[int32]*partTrack
}

type entry struct {
	offset int64
	done   bool
}

type partTrack struct {
	entries []entry // in offset order; the finished prefix is popped
	next    int64   // offset to commit: everything below it is finished
	dirty   bool    // next moved since the last commit
}

func newTracker() *tracker { return &tracker{parts: map[int32]*partTrack{}} }

// add registers a fetched record as in flight.
func (t *tracker) add(partition int32, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[partition]
	if p == nil {
		p = &partTrack{next: offset}
		t.parts[partition] = p
	}
	p.entries = append(p.entries, entry{offset: offset})
}

// done marks a record finished; it reports false when the partition is no longer tracked (it
// was revoked: its next owner will redo the record).
func (t *tracker) done(partition int32, offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[partition]
	if p == nil {
		return false
	}
	i := sort.Search(len(p.entries), func(i int) bool { return p.entries[i].offset >= offset })
	if i == len(p.entries) || p.entries[i].offset != offset {
		return false
	}
	p.entries[i].done = true
	n := 0
	for n < len(p.entries) && p.entries[n].done {
		n++
	}
	if n > 0 {
		p.next = p.entries[n-1].offset + 1
		p.dirty = true
		p.entries = p.entries[n:]
		if len(p.entries) == 0 {
			p.entries = nil // let the backing array go
		}
	}
	return true
}

// commitable returns the offsets to commit for partitions that moved. They stay dirty until
// committed reports success, so a failed commit is tried again.
func (t *tracker) commitable(topic string) map[string]map[int32]kgo.EpochOffset {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out map[int32]kgo.EpochOffset
	for part, p := range t.parts {
		if !p.dirty {
			continue
		}
		if out == nil {
			out = map[int32]kgo.EpochOffset{}
		}
		out[part] = kgo.EpochOffset{Epoch: -1, Offset: p.next}
	}
	if out == nil {
		return nil
	}
	return map[string]map[int32]kgo.EpochOffset{topic: out}
}

// committed marks partitions clean whose offset has not moved past what was committed.
func (t *tracker) committed(offs map[int32]kgo.EpochOffset) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for part, o := range offs {
		if p := t.parts[part]; p != nil && p.next == o.Offset {
			p.dirty = false
		}
	}
}

// pending counts unfinished records.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.parts {
		for _, e := range p.entries {
			if !e.done {
				n++
			}
		}
	}
	return n
}

// pendingIn counts unfinished records of the given partitions.
func (t *tracker) pendingIn(partitions []int32) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, part := range partitions {
		if p := t.parts[part]; p != nil {
			for _, e := range p.entries {
				if !e.done {
					n++
				}
			}
		}
	}
	return n
}

// drop forgets partitions (revoked or lost).
func (t *tracker) drop(partitions []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range partitions {
		delete(t.parts, p)
	}
}
