package dedup

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWindowForgetsIdsOlderThanItsSpan(t *testing.T) {
	var evicted atomic.Int64
	w := NewWindow(time.Hour, 1000, &evicted)
	k := KeyOf([]byte("p1/e1"))
	hour := time.Hour.Milliseconds()
	w.Add(k, 0)
	require.True(t, w.Contains(k, hour-1), "a repeat within the span")
	require.True(t, w.Contains(k, -hour+1), "clocks of two processes may disagree either way")
	require.False(t, w.Contains(k, hour), "a repeat after the span is new")
	require.False(t, w.Contains(KeyOf([]byte("p2/e1")), 1), "the project is part of the id")

	w.Add(KeyOf([]byte("p1/other")), 2*hour) // time moves on: e1 is evicted
	require.NotContains(t, w.at, k)
	require.Equal(t, 1, w.Len())
	require.Zero(t, evicted.Load(), "expiry is not early eviction")
}

func TestWindowMemoryIsBoundedByMaxIDs(t *testing.T) {
	var evicted atomic.Int64
	w := NewWindow(24*time.Hour, 1000, &evicted)
	for i := range 10_000 {
		w.Add(KeyOf(fmt.Appendf(nil, "p/%d", i)), int64(i))
	}
	require.Equal(t, 1000, w.Len())
	require.LessOrEqual(t, len(w.order)-w.head, 1000)
	require.Less(t, cap(w.order), 4000, "the eviction queue is compacted")
	require.Equal(t, int64(9000), evicted.Load())
	require.True(t, w.Contains(KeyOf([]byte("p/9999")), 10_000), "the newest ids are kept")
	require.False(t, w.Contains(KeyOf([]byte("p/0")), 10_000), "the oldest were forgotten early")
}

func TestWindowReaddedIdIsNotEvictedByItsOldEntry(t *testing.T) {
	w := NewWindow(time.Hour, 1000, nil)
	hour := time.Hour.Milliseconds()
	k := KeyOf([]byte("p/e"))
	w.Add(k, 0)
	w.Add(k, hour+1) // seen again once the first expired
	w.Add(KeyOf([]byte("p/x")), hour+2)
	require.True(t, w.Contains(k, hour+10), "the old queue entry must not remove the new one")
}
