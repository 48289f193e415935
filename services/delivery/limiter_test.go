package delivery

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// kneeLatency is an endpoint that answers in base up to knee open requests and slows down
// faster than linearly beyond: its throughput peaks at knee.
func kneeLatency(base time.Duration, knee int) func(open int) time.Duration {
	return func(open int) time.Duration {
		if open <= knee {
			return base
		}
		over := float64(open-knee) / float64(knee)
		return time.Duration(float64(base) * float64(open) / float64(knee) * (1 + over*over))
	}
}

// simulate runs l against an endpoint kept saturated (every slot the limit allows is busy) for
// rounds round trips, and returns the limits it chose, one per round.
func simulate(l *adaptiveLimit, now *time.Time, rounds int, latency func(open int) time.Duration) []int {
	var seen []int
	for range rounds {
		open := l.current()
		took := latency(open)
		start := *now
		*now = now.Add(took)
		for i := range open {
			l.started(i + 1)
			l.observe(start, took, false, *now)
		}
		seen = append(seen, l.current())
	}
	return seen
}

func TestAdaptiveLimitSettlesAtTheKneeOfTheLatencyCurve(t *testing.T) {
	for _, knee := range []int{5, 20, 60} {
		now := time.Unix(0, 0)
		l := newLimiter(200, now)
		seen := simulate(l, &now, 300, kneeLatency(40*time.Millisecond, knee))
		lo, hi := knee, knee
		for _, v := range seen[100:] {
			lo, hi = min(lo, v), max(hi, v)
		}
		t.Logf("knee %d: limit settled between %d and %d (first rounds %v)", knee, lo, hi, seen[:12])
		require.GreaterOrEqual(t, lo, knee*3/4, "knee %d: never far below the knee", knee)
		require.LessOrEqual(t, hi, knee*3/2+3, "knee %d: never far above the knee", knee)
	}
}

func TestAdaptiveLimitGrowsToTheCapWhileLatencyStaysFlat(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(400, now)
	require.Equal(t, initialLimit, l.current(), "starts low")
	seen := simulate(l, &now, 20, func(int) time.Duration { return time.Second })
	require.Equal(t, 400, seen[len(seen)-1], "a flat latency lets it reach the cap: %v", seen)
	require.Less(t, indexOf(seen, 400), 8, "doubling until the first congestion: %v", seen)
}

func indexOf(s []int, v int) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return len(s)
}

func TestAdaptiveLimitHalvesOnDropsOncePerRoundTripAndRecovers(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(64, now)
	simulate(l, &now, 10, func(int) time.Duration { return 20 * time.Millisecond })
	require.Equal(t, 64, l.current())

	// 64 requests in flight all come back 429: one halving, not 64.
	start := now
	now = now.Add(20 * time.Millisecond)
	for range 64 {
		l.observe(start, 20*time.Millisecond, true, now)
	}
	require.Equal(t, 32, l.current(), "requests sent before the decrease do not decrease it again")
	for round := range 6 { // every round trip of 429s halves it, down to 1
		now = now.Add(time.Millisecond) // the next requests start after the decrease
		start = now
		now = now.Add(20 * time.Millisecond)
		for range l.current() {
			l.observe(start, 20*time.Millisecond, true, now)
		}
		require.Equal(t, max(1, 32>>(round+1)), l.current(), "round %d", round)
	}
	require.True(t, l.learning(now), "an endpoint that shed load is remembered while idle")

	// The endpoint answers again: additive growth by an eighth per window, no slow start.
	seen := simulate(l, &now, 60, func(int) time.Duration { return 20 * time.Millisecond })
	require.Equal(t, 64, seen[len(seen)-1], "it recovers to the cap: %v", seen)
	require.Greater(t, indexOf(seen, 64), 10, "growth after a drop is gradual: %v", seen)
}

func TestAdaptiveLimitHoldsWhenTheLoadIsLow(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(100, now)
	for range 200 {
		l.started(2) // at most 2 open: the load, not the endpoint, is the limit
		now = now.Add(10 * time.Millisecond)
		l.observe(now.Add(-10*time.Millisecond), 10*time.Millisecond, false, now)
	}
	require.Equal(t, initialLimit, l.current())
}

func TestAdaptiveLimitForgetsAnOldNoQueueLatency(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(100, now)
	simulate(l, &now, 50, func(int) time.Duration { return 10 * time.Millisecond })
	require.Equal(t, 100, l.current())
	// The endpoint moved far away: every request takes 10× as long, whatever the load. At first
	// that reads as a queue; after two rttPeriods the new latency is the baseline again.
	slow := func(int) time.Duration { return 100 * time.Millisecond }
	simulate(l, &now, 10, slow)
	require.Less(t, l.current(), 100)
	for end := now.Add(2*rttPeriod + time.Second); now.Before(end); {
		simulate(l, &now, 1, slow)
	}
	seen := simulate(l, &now, 100, slow)
	require.Equal(t, 100, seen[len(seen)-1], "%v", seen)
}

func TestOverloadSignalsAreTimeouts429And503(t *testing.T) {
	for _, c := range []struct {
		name string
		sent bool
		out  *pb.Outcome
		want bool
	}{
		{"timeout", true, &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, StatusCode: 0}, true},
		{"429", true, &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, StatusCode: 429}, true},
		{"503", true, &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, StatusCode: 503}, true},
		{"500 is a failure, not overload", true, &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, StatusCode: 500}, false},
		{"connection refused", true, &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR, StatusCode: 0}, false},
		{"not sent (circuit open)", false, &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, StatusCode: 0}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var sent *sender.Result
			if c.sent {
				sent = &sender.Result{}
			}
			require.Equal(t, c.want, overloaded(sent, c.out))
		})
	}
}
