package delivery

import (
	"math"
	"net/http"
	"time"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// adaptiveLimit is one endpoint's adaptive concurrency limit: how many requests it may have open at
// once. It follows what the endpoint can take, between 1 and the fixed cap
// (DELIVERY_PER_ENDPOINT_CONCURRENCY), in the manner of TCP Vegas as Netflix's concurrency-limits
// applies it to request concurrency (VegasLimit, with WindowedLimit's sampling):
//
//   - Latency: per window of samples (at least minWindowSamples and one limit's worth), the
//     requests queued at the endpoint are estimated as limit × (1 − minRTT/avgRTT), minRTT being
//     the lowest window average of the last two rttPeriods (the latency without a queue). Fewer
//     than alpha queued: the limit grows, doubling until the first sign of congestion (slow
//     start, with windows of half a limit's worth: one round trip), then by alpha/2 (at least 1). More than beta in two windows in a row (in slow
//     start, one): it shrinks towards limit × minRTT/avgRTT, by at most a quarter per window. In
//     between it holds. alpha and beta (2 × alpha) grow with log10(limit), as in VegasLimit,
//     and are at least 5 % and 10 % of the limit.
//   - Drops: a timeout, a 429 or a 503 halves the limit at once (AIMD's multiplicative
//     decrease), at most once per round trip: only a request started after the last decrease
//     can cause the next one. Once the endpoint answers again, the limit doubles per window back
//     to half what it was before the drops (TCP's slow start to ssthresh), then grows as above.
//   - Probe: when slow start ends and every rttPeriod, one window runs at half the limit, so
//     that minRTT is measured below the knee even when the limit started above it (BBR's
//     ProbeRTT).
//   - Only requests started under the current limit are sampled: a window judges the limit it
//     measures, not the one before (the round-trip lag that makes a delay-based controller
//     overshoot).
//   - A window in which fewer than half of the limit's requests were ever open says nothing about
//     the endpoint (the load was low): the limit holds.
//
// It is not safe for concurrent use: endpoints holds it under its lock. Its memory is a few
// words, so every endpoint can have one.
type adaptiveLimit struct {
	limit     float64
	max       float64
	slowStart bool

	// the window being sampled
	samples  int
	sum      time.Duration
	peakOpen int

	minRTT      time.Duration // min(prevMin, curMin), 0 until the first window
	curMin      time.Duration
	prevMin     time.Duration
	periodStart time.Time
	decreased   time.Time // when a drop last decreased the limit
	changed     time.Time // when the limit last changed
	recoverTo   float64   // after drops, the limit doubles back up to this (half the limit before them)
	probing     bool      // this window runs at half the limit, restore, to measure minRTT
	restore     float64
	queueing    bool // the last window saw a queue: the next one decides
}

const (
	minWindowSamples = 8
	rttPeriod        = 30 * time.Second // the no-queue latency is forgotten after one to two of these
	initialLimit     = 10
	// latencyTolerance is how much of a latency rise is not taken for a queue at a fast endpoint:
	// the tolerance is latencyTolerance minus the no-queue latency (none from 20 ms up). A fast
	// endpoint's latency (a millisecond on a LAN) rises by several milliseconds whenever the
	// sending worker's own CPU is busy, which says nothing about the endpoint: without a tolerance
	// Vegas read that as a queue and held a fast endpoint to a few requests at once (the bench's
	// throughput fell from 6,300 to 2,900 deliveries/s); with 5 ms, on a saturated 2-core machine
	// (latencies of 5–20 ms), the limit still sat at 11–35 (4,800/s against 6,600/s at the fixed
	// cap, p99 90 against 56 ms at half load); with 20 ms, 6,685/s. A slower endpoint's rise is its
	// own, and its knee is found as before; a fast endpoint that does queue is still bounded by the
	// cap, and timeouts, 429 and 503 still halve its limit.
	latencyTolerance = 20 * time.Millisecond
)

func newLimiter(maxLimit int, now time.Time) *adaptiveLimit {
	return &adaptiveLimit{limit: float64(min(maxLimit, initialLimit)), max: float64(maxLimit), slowStart: true, periodStart: now}
}

// current is the number of requests the endpoint may have open.
func (l *adaptiveLimit) current() int { return max(1, int(l.limit)) }

// target is the limit the endpoint is heading for, by which a backlog's wait is judged: the cap
// in slow start (the limit doubles until the endpoint shows congestion), the limit a probe
// restores, else the limit.
func (l *adaptiveLimit) target() int {
	switch {
	case l.slowStart:
		return int(l.max)
	case l.probing:
		return max(1, int(l.restore))
	}
	return l.current()
}

// started notes that a request started with open requests now open (itself included).
func (l *adaptiveLimit) started(open int) { l.peakOpen = max(l.peakOpen, open) }

// observe learns from one finished request that started at start and took took; dropped says
// the endpoint timed out or answered 429 or 503.
func (l *adaptiveLimit) observe(start time.Time, took time.Duration, dropped bool, now time.Time) {
	before := l.limit
	defer func() {
		if l.limit != before {
			l.changed = now
		}
	}()
	if dropped {
		if start.After(l.decreased) {
			if l.probing {
				l.limit, l.probing = l.restore, false
			}
			l.recoverTo = max(l.recoverTo, math.Floor(l.limit/2))
			l.limit = max(1, math.Floor(l.limit/2))
			l.slowStart = false
			l.decreased = now
			l.resetWindow()
		}
		return
	}
	if took <= 0 || start.Before(l.changed) {
		return // it ran under an older limit: it would judge the new one by the old one's latency
	}
	l.samples++
	l.sum += took
	window := l.current()
	if l.slowStart {
		// Half the limit's worth: the requests its doubling opened at once finish within one
		// round trip, so the limit doubles every round trip rather than every other one.
		window = (window + 1) / 2
	}
	if l.samples < max(minWindowSamples, window) {
		return
	}
	avg := l.sum / time.Duration(l.samples)
	appLimited := 2*l.peakOpen < l.current()
	l.resetWindow()
	rotate := now.Sub(l.periodStart) >= rttPeriod && !l.probing
	if rotate {
		l.prevMin, l.curMin, l.periodStart = l.curMin, 0, now
	}
	if l.curMin == 0 || avg < l.curMin {
		l.curMin = avg
	}
	l.minRTT = l.curMin
	if l.prevMin > 0 && l.prevMin < l.minRTT {
		l.minRTT = l.prevMin
	}
	switch {
	case l.probing: // the probe measured the latency at half the limit: back to work
		l.limit, l.probing = l.restore, false
		return
	case appLimited:
		return
	case rotate:
		l.probe()
		return
	}
	avg = max(l.minRTT, avg-max(0, latencyTolerance-l.minRTT))
	queued := l.limit * (1 - float64(l.minRTT)/float64(avg))
	// At high limits a few queued requests are a latency change of a few percent: noise on a
	// busy machine. alpha is at least 5 % of the limit, so it shrinks on a rise of 10 % or more.
	alpha := max(1, 2*math.Log10(l.limit), l.limit/20)
	wasQueueing := l.queueing
	l.queueing = false
	switch {
	case queued < alpha && l.slowStart:
		l.limit *= 2
	case queued < alpha && l.limit < l.recoverTo:
		l.limit = min(2*l.limit, l.recoverTo)
	case queued < alpha:
		l.recoverTo = 0
		l.limit += max(1, alpha/2)
	case queued > 2*alpha && !wasQueueing && !l.slowStart:
		l.queueing = true // one window is noise on a busy machine; two in a row are a queue
		return
	case queued > 2*alpha:
		l.recoverTo = 0
		l.limit = max(l.limit*float64(l.minRTT)/float64(avg)+alpha, l.limit*3/4)
		if l.slowStart {
			l.slowStart = false
			l.limit = min(max(l.limit, 1), l.max)
			l.probe() // slow start began at initialLimit, perhaps already past the knee
			return
		}
	}
	l.limit = min(max(l.limit, 1), l.max)
}

// probe halves the limit for one window, so that the latency with fewer requests open is
// measured (BBR's ProbeRTT): a limit that only ever ran with a queue at the endpoint never saw the
// latency without one, and would hold wherever it happened to be.
func (l *adaptiveLimit) probe() {
	if l.limit < 2 {
		return
	}
	l.restore, l.probing = l.limit, true
	l.limit = math.Floor(l.limit / 2)
}

func (l *adaptiveLimit) resetWindow() { l.samples, l.sum, l.peakOpen = 0, 0, 0 }

// learning says a drop decreased the limit within the last rttPeriod.
func (l *adaptiveLimit) learning(now time.Time) bool {
	return !l.decreased.IsZero() && now.Sub(l.decreased) < rttPeriod
}

// forgettable says an idle endpoint's limit teaches nothing a fresh one would not find at once:
// it is still at its starting value and no drop lowered it lately. An endpoint that grew its limit
// keeps it while idle, so a burst that comes back from a retry tier does not start slow start
// again; what that keeps is a few words per webhook of the worker's partitions.
func (l *adaptiveLimit) forgettable(now time.Time) bool {
	return !l.learning(now) && l.limit <= initialLimit
}

// overloaded says an attempt's outcome is an endpoint's sign of overload: a timeout, 429 Too
// Many Requests or 503 Service Unavailable. A refused or reset connection is not: it says
// nothing about how many requests the endpoint can take.
func overloaded(sent *sender.Result, out *pb.Outcome) bool {
	if sent == nil {
		return false
	}
	return out.Class == pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT ||
		out.StatusCode == http.StatusTooManyRequests || out.StatusCode == http.StatusServiceUnavailable
}
