package ingest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWindowForgetsIdsOlderThanItsSpan(t *testing.T) {
	var evicted atomic.Int64
	w := newWindow(time.Hour, 1000, &evicted)
	k := keyOf([]byte("p1/e1"))
	hour := time.Hour.Milliseconds()
	w.add(k, 0)
	require.True(t, w.contains(k, hour-1), "a repeat within the span")
	require.True(t, w.contains(k, -hour+1), "clocks of two processes may disagree either way")
	require.False(t, w.contains(k, hour), "a repeat after the span is new")
	require.False(t, w.contains(keyOf([]byte("p2/e1")), 1), "the project is part of the id")

	w.add(keyOf([]byte("p1/other")), 2*hour) // time moves on: e1 is evicted
	require.NotContains(t, w.at, k)
	require.Len(t, w.at, 1)
	require.Zero(t, evicted.Load(), "expiry is not early eviction")
}

func TestWindowMemoryIsBoundedByMaxIDs(t *testing.T) {
	var evicted atomic.Int64
	w := newWindow(24*time.Hour, 1000, &evicted)
	for i := range 10_000 {
		w.add(keyOf(fmt.Appendf(nil, "p/%d", i)), int64(i))
	}
	require.Len(t, w.at, 1000)
	require.LessOrEqual(t, len(w.order)-w.head, 1000)
	require.Less(t, cap(w.order), 4000, "the eviction queue is compacted")
	require.Equal(t, int64(9000), evicted.Load())
	require.True(t, w.contains(keyOf([]byte("p/9999")), 10_000), "the newest ids are kept")
	require.False(t, w.contains(keyOf([]byte("p/0")), 10_000), "the oldest were forgotten early")
}

func TestWindowReacceptedIdIsNotEvictedByItsOldEntry(t *testing.T) {
	var evicted atomic.Int64
	w := newWindow(time.Hour, 1000, &evicted)
	hour := time.Hour.Milliseconds()
	k := keyOf([]byte("p/e"))
	w.add(k, 0)
	w.add(k, hour+1) // accepted again once the first expired
	w.add(keyOf([]byte("p/x")), hour+2)
	require.True(t, w.contains(k, hour+10), "the old queue entry must not remove the new acceptance")
}

func BenchmarkDecodeSmallEvent(b *testing.B) {
	body := []byte(`{"project_id":"prj_1","event_id":"bench-1","event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":9},"properties":{"sent_at_ns":1700000000000000000,"source":"surveyhooks-loadgen"}}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, herr := decodeEvents(body, 1, 1); herr != nil {
			b.Fatal(herr)
		}
	}
}

func BenchmarkDecodeFullEvent(b *testing.B) {
	body := []byte(`{"event_id":"64c7ea3b","event_type":"survey.completed","time":"2021-07-29T13:45:09.325344042Z",
	"channel":{"id":"411ee7c3","type":"android"},
	"survey":{"id":"9b913c69","name":"Measure NPS","scenario_id":"cc4a3710","scenario_version":9,"scenario_time_ms":1627517311069},
	"user":{"anonymous_id":"2eb83fb4","id":"samuel@screeb.app","name":"Samuel Berthe","email":"samuel@screeb.app","groups":["Screeb","10-100-companies"],"traits":{"plan":"enterprise","seats":25}},
	"response":{"id":"5854a797","locale":"en-US","time_to_complete_s":34,"completion":"fully_completed",
	  "hidden_fields":{"firstname":"Samuel","lastname":"Berthe","timezone":-120},
	  "items":[{"question":{"id":"q1","type":"nps","title":"How likely?"},"answer":{"fields":[{"id":"f","type":"number","number":9}]}},
	           {"question":{"id":"q2","type":"input","title":"Why?"},"answer":{"fields":[{"id":"g","type":"string","value":"The new dashboard is buggy."}],"replied_at":"2021-07-29T13:45:09.286Z"}}]},
	"context":{"hostname":"app.example.com","pathname":"/dashboard","user_agent":"Mozilla/5.0"}}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, herr := decodeEvents(body, 1, 1); herr != nil {
			b.Fatal(herr)
		}
	}
}
