package delivery

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestTrackerCommitsOnlyUpToTheOldestUnfinished(t *testing.T) {
	type step struct {
		op     string // add, done, commit (commitable then committed), drop
		off    int64
		commit int64 // for commit: the offset expected (-1: nothing to commit)
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"nothing finished, nothing to commit", []step{{op: "add", off: 10}, {op: "add", off: 11}, {op: "commit", commit: -1}}},
		{"in order", []step{{op: "add", off: 10}, {op: "done", off: 10}, {op: "commit", commit: 11}}},
		{"a later one finished first holds back", []step{{op: "add", off: 10}, {op: "add", off: 11}, {op: "done", off: 11}, {op: "commit", commit: -1},
			{op: "done", off: 10}, {op: "commit", commit: 12}}},
		{"a gap in the middle", []step{{op: "add", off: 5}, {op: "add", off: 6}, {op: "add", off: 9}, {op: "done", off: 5}, {op: "done", off: 9},
			{op: "commit", commit: 6}, {op: "done", off: 6}, {op: "commit", commit: 10}}},
		{"committed once, not again", []step{{op: "add", off: 1}, {op: "done", off: 1}, {op: "commit", commit: 2}, {op: "commit", commit: -1}}},
		{"a dropped partition forgets its offsets", []step{{op: "add", off: 1}, {op: "drop"}, {op: "done", off: 1}, {op: "commit", commit: -1}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newTracker()
			for i, s := range c.steps {
				switch s.op {
				case "add":
					tr.add(0, s.off)
				case "done":
					tr.done(0, s.off)
				case "drop":
					tr.drop([]int32{0})
				case "commit":
					offs := tr.commitable("deliveries")
					if s.commit < 0 {
						require.Nil(t, offs, "step %d", i)
						continue
					}
					require.Equal(t, s.commit, offs["deliveries"][0].Offset, "step %d", i)
					tr.committed(offs["deliveries"])
				}
			}
		})
	}
}

func TestEndpointAdmitsStartsQueuesOrMovesAside(t *testing.T) {
	task := func(test bool) *task { return &task{d: &pb.Delivery{WebhookId: "wh", Test: test}} }
	for _, c := range []struct {
		name    string
		active  int           // requests already running
		queued  int           // deliveries already queued
		latency time.Duration // the endpoint's recent latency (0: not known yet)
		test    bool
		want    admission
	}{
		{name: "a free request slot: start", active: 1, want: admitStart},
		{name: "all slots busy: queue", active: 2, want: admitQueue},
		{name: "the queue is full: move aside", active: 2, queued: 4, want: admitOverflow},
		{name: "a fast endpoint queues up to the bound", active: 2, queued: 3, latency: time.Millisecond, want: admitQueue},
		{name: "a slow endpoint queues only what starts within the timeout", active: 2, queued: 2, latency: 5 * time.Second, want: admitOverflow},
		{name: "a slow endpoint still queues a little", active: 2, queued: 0, latency: 5 * time.Second, want: admitQueue},
		{name: "a Send Test always queues: its caller waits", active: 2, queued: 4, latency: time.Minute, test: true, want: admitQueue},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEndpoints(Config{PerEndpointConcurrency: 2, PerEndpointQueue: 4, Timeout: 10 * time.Second, MaxInFlight: 1000,
				BreakerThreshold: 3, BreakerCooldown: time.Minute})
			for range c.active {
				a, _ := e.admit(task(false), false)
				require.Equal(t, admitStart, a)
			}
			for range c.queued {
				e.m["wh"].queue = append(e.m["wh"].queue, task(false))
			}
			e.m["wh"].latency = c.latency
			a, _ := e.admit(task(c.test), false)
			require.Equal(t, c.want, a)
		})
	}
}

// The queues of all endpoints share a bound (half the sending slots), so no endpoint's backlog
// holds the slots the others need — but a queue that drains within a second is not moved aside
// for it: the sending slots fill with the one busy endpoint's deliveries whenever it is the only
// one, and a trip round the nearest retry tier would only make them later.
func TestEndpointQueuesPastTheSharedBoundOnlyWhatDrainsWithinASecond(t *testing.T) {
	for _, c := range []struct {
		name    string
		latency time.Duration
		rate    float64 // requests finished per second, measured (0: not yet)
		stale   bool    // measured, but no request finished for three seconds
		want    admission
	}{
		{name: "a fast endpoint's burst queues", latency: time.Millisecond, want: admitQueue},
		{name: "an endpoint slow by its latency but fast by its measured rate queues (a busy machine)", latency: 2 * time.Second, rate: 1000, want: admitQueue},
		{name: "an endpoint with no finished request yet is moved aside (it may hang)", latency: 0, want: admitOverflow},
		{name: "a slow endpoint is moved aside", latency: 2 * time.Second, want: admitOverflow},
		{name: "a rate not renewed for two seconds is not trusted (the endpoint stopped answering)", latency: 2 * time.Second, rate: 1000, stale: true, want: admitOverflow},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEndpoints(Config{PerEndpointConcurrency: 2, PerEndpointQueue: 100, Timeout: time.Minute, MaxInFlight: 1000, MaxSending: 8,
				BreakerThreshold: 3, BreakerCooldown: time.Minute, Kafka: kafka.Config{RetrySchedule: []time.Duration{time.Minute}}})
			other := func() *task { return &task{d: &pb.Delivery{WebhookId: "other"}} }
			for range 2 + 4 { // the other endpoint: two running, four queued — the shared bound
				a, _ := e.admit(other(), false)
				require.NotEqual(t, admitOverflow, a)
			}
			require.Equal(t, 4, e.queued)
			for range 2 {
				a, _ := e.admit(&task{d: &pb.Delivery{WebhookId: "wh"}}, false)
				require.Equal(t, admitStart, a)
			}
			e.m["wh"].latency, e.m["wh"].rate, e.m["wh"].doneSince = c.latency, c.rate, time.Now()
			if c.stale {
				e.m["wh"].doneSince = time.Now().Add(-3 * time.Second)
			}
			e.m["wh"].since = time.Now()
			a, _ := e.admit(&task{d: &pb.Delivery{WebhookId: "wh"}}, false)
			require.Equal(t, c.want, a)
		})
	}
}

func TestEndpointPassesItsSlotToTheQueueThenForgetsAnIdleEndpoint(t *testing.T) {
	e := newEndpoints(Config{PerEndpointConcurrency: 1, PerEndpointQueue: 10, Timeout: time.Minute, MaxInFlight: 100, BreakerThreshold: 3, BreakerCooldown: time.Minute})
	first, second := &task{d: &pb.Delivery{WebhookId: "wh"}}, &task{d: &pb.Delivery{WebhookId: "wh"}}
	a, _ := e.admit(first, false)
	require.Equal(t, admitStart, a)
	a, _ = e.admit(second, false)
	require.Equal(t, admitQueue, a)
	require.Equal(t, []*task{second}, e.next("wh", sample{start: time.Now(), took: 10 * time.Millisecond}), "the slot passes to the queued delivery")
	require.Equal(t, 10*time.Millisecond, e.m["wh"].latency)
	require.Nil(t, e.next("wh", sample{}))
	require.NotContains(t, e.m, "wh", "idle and healthy: forgotten")
}

func TestEndpointBreakerOpensAfterThresholdAndProbesAfterCooldown(t *testing.T) {
	e := newEndpoints(Config{PerEndpointConcurrency: 1, PerEndpointQueue: 1, Timeout: time.Minute, MaxInFlight: 10,
		BreakerThreshold: 3, BreakerCooldown: 200 * time.Millisecond})
	fail := func() {
		done, ok := e.allow("wh")
		require.True(t, ok)
		done(errEndpointFailed)
	}
	for _, c := range []struct {
		step string
		do   func()
		open bool
	}{
		{"closed at first", func() {}, false},
		{"two failures: still closed", func() { fail(); fail() }, false},
		{"a request the decision did not judge counts for nothing", func() { done, _ := e.allow("wh"); done(errNotJudged) }, false},
		{"the third consecutive failure opens it", fail, true},
		{"after the cooldown, one probe goes out", func() { time.Sleep(300 * time.Millisecond) }, false},
	} {
		c.do()
		done, ok := e.allow("wh")
		require.Equal(t, c.open, !ok, c.step)
		if ok {
			if c.step == "after the cooldown, one probe goes out" {
				_, second := e.allow("wh")
				require.False(t, second, "half-open: only one probe at a time")
				done(nil)
				done2, ok2 := e.allow("wh")
				require.True(t, ok2, "a successful probe closes it")
				done2(nil)
				continue
			}
			done(errNotJudged)
		}
	}
}

func TestEndpointMovesAsideADeliveryThatCameBackByWhatCameBackWithIt(t *testing.T) {
	e := newEndpoints(Config{PerEndpointConcurrency: 2, PerEndpointQueue: 4, Timeout: time.Minute, MaxInFlight: 1000,
		BreakerThreshold: 3, BreakerCooldown: time.Minute})
	task := func() *task { return &task{d: &pb.Delivery{WebhookId: "wh"}} }
	for range 2 + 4 { // two running, four queued
		a, _ := e.admit(task(), false)
		require.NotEqual(t, admitOverflow, a)
	}
	e.m["wh"].latency = time.Second
	var wait time.Duration
	for range 100 {
		var a admission
		a, wait = e.admit(task(), false)
		require.Equal(t, admitOverflow, a)
	}
	require.Equal(t, 52*time.Second, wait, "a new delivery waits behind the queue and everything moved aside before it")
	_, wait = e.admit(task(), true)
	require.Equal(t, 3*time.Second, wait, "one that came back waits behind the queue, not behind what left after it")
	_, wait = e.admit(task(), true)
	require.Equal(t, 3*time.Second, wait)
	_, wait = e.admit(task(), true)
	require.Equal(t, 4*time.Second, wait, "and behind what came back with it")
}
