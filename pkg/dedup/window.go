// Package dedup remembers which (project, event_id) pairs were seen within a time span, in
// bounded memory: the state behind fan-out's de-duplication of `events` (one Window per
// partition) and ingest's best-effort recent-id answer. It never decides what to do with a repeat
// and never talks to Kafka; callers own that.
package dedup

import (
	"crypto/sha256"
	"sync/atomic"
	"time"
)

// Key is the 128-bit digest of "project/event_id": a fixed-size key keeps the memory per id small
// and independent of how long producers make their ids.
type Key [16]byte

// KeyOf digests b (normally "project/event_id").
func KeyOf(b []byte) Key {
	s := sha256.Sum256(b)
	return Key(s[:16])
}

// Window is the set of keys seen within the span, oldest first. It is not safe for concurrent use.
type Window struct {
	span, max int64
	at        map[Key]int64 // time (ms) each key was added
	order     []seen        // insertion order, for eviction
	head      int
	newest    int64
	evicted   *atomic.Int64 // evicted before their time, because of max
}

type seen struct {
	k  Key
	ms int64
}

// NewWindow remembers keys for span, at most max of them (the oldest are forgotten first, counted
// in evicted when that happens before their span ended).
func NewWindow(span time.Duration, max int, evicted *atomic.Int64) *Window {
	if evicted == nil {
		evicted = new(atomic.Int64)
	}
	return &Window{span: span.Milliseconds(), max: int64(max), at: map[Key]int64{}, evicted: evicted}
}

// Span is the window's span in milliseconds.
func (w *Window) Span() int64 { return w.span }

// Len is the number of keys remembered.
func (w *Window) Len() int { return len(w.at) }

// Contains reports whether k was added within the span of ms (either side: the clocks of several
// processes need not agree).
func (w *Window) Contains(k Key, ms int64) bool {
	t, ok := w.at[k]
	if !ok {
		return false
	}
	return Within(ms, t, w.span)
}

// Within reports whether two times (ms) are less than span apart.
func Within(a, b, span int64) bool {
	d := a - b
	return d < span && -d < span
}

// Add remembers k as seen at ms, then forgets what fell out of the span or past max.
func (w *Window) Add(k Key, ms int64) {
	w.at[k] = ms
	w.order = append(w.order, seen{k, ms})
	w.newest = max(w.newest, ms)
	for w.head < len(w.order) {
		e := w.order[w.head]
		full := int64(len(w.at)) > w.max
		if !full && e.ms > w.newest-w.span {
			break
		}
		if w.at[e.k] == e.ms { // not re-added since
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
