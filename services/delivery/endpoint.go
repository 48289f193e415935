package delivery

import (
	"errors"
	"math"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// endpoint is one webhook's local state: how many requests run and how many may (its adaptive
// concurrency limit, limiter.go), the bounded queue behind them, how long its requests take, its
// rate limiter and its circuit breaker. Keying `deliveries` by
// webhook id puts all of an endpoint's traffic on one partition, hence one worker: no
// coordination needed.
type endpoint struct {
	active int
	queue  []*task
	aside  int // deliveries this worker moved aside that have not come back yet
	// deliveries that came back and were moved aside again, less what the endpoint has taken
	// since (at its limit per latency): those ahead of the next one that comes back too early
	again   float64
	againAt time.Time
	latency time.Duration // moving average of its requests' latency: how fast its queue drains
	since   time.Time     // busy since: before any request finished, the latency is at least that old
	// requests finished per second while busy, over the last full second: how fast its queue
	// really drains. Latency and limit alone mislead on a busy machine, where a request's time
	// includes waiting for a CPU and fewer than limit are open at once.
	rate      float64
	done      int
	doneSince time.Time
	limiter   *rate.Limiter
	limit     float64
	breaker   *gobreaker.TwoStepCircuitBreaker[struct{}]
	conc      *adaptiveLimit // nil when DELIVERY_ADAPTIVE_CONCURRENCY is off: the fixed cap applies
}

// sample is what one finished delivery teaches its endpoint's limiter.
type sample struct {
	start   time.Time
	took    time.Duration // 0: no request was made
	dropped bool          // timed out, or answered 429 or 503: the endpoint is overloaded
}

// admission says what happens to a fetched delivery.
type admission int

const (
	admitStart    admission = iota // a request slot of its endpoint is free: start it
	admitQueue                     // wait in the endpoint's queue
	admitOverflow                  // its endpoint has more than its share: move it aside
)

// Breaker feedback the gobreaker callback understands: nil is a success.
var (
	errEndpointFailed = errors.New("endpoint failed")
	errNotJudged      = errors.New("not judged") // excluded: the request was abandoned or told nothing
)

type endpoints struct {
	mu          sync.Mutex
	m           map[string]*endpoint
	concurrency int           // requests at once per endpoint: the fixed cap, and the adaptive limit's upper bound
	adaptive    bool          // each endpoint's limit adapts below concurrency (limiter.go)
	queueCap    int           // deliveries queued per endpoint
	maxWait     time.Duration // a delivery is queued only if it should start within this
	maxQueued   int           // deliveries queued over all endpoints: half the sending slots, so queues never take them all
	soon        time.Duration // a queue that drains within this is never over the shared bound (see admit)
	queued      int
	threshold   int
	cooldown    time.Duration
}

func newEndpoints(cfg Config) *endpoints {
	return &endpoints{m: map[string]*endpoint{}, concurrency: cfg.PerEndpointConcurrency, adaptive: cfg.AdaptiveConcurrency, queueCap: cfg.PerEndpointQueue,
		maxWait: cfg.Timeout, maxQueued: max(1, cfg.sendingSlots()/2), soon: drainsSoon(cfg.Kafka.RetrySchedule),
		threshold: cfg.BreakerThreshold, cooldown: cfg.BreakerCooldown}
}

// drainsSoon is how short an endpoint's queue must be, in time, to take deliveries past the shared
// bound: below the nearest retry tier's delay (moving one aside could only make it later) and
// at most a second (the slots it holds are back within that; sending slots are shared by fair share
// order as they free up, so the other projects' deliveries wait for the next free slot, not for
// this queue).
func drainsSoon(schedule []time.Duration) time.Duration {
	soon := time.Second
	if len(schedule) > 0 {
		soon = min(soon, schedule[0])
	}
	return soon
}

func (e *endpoints) get(webhookID string) *endpoint {
	ep := e.m[webhookID]
	if ep == nil {
		ep = &endpoint{}
		if e.adaptive {
			ep.conc = newLimiter(e.concurrency, time.Now())
		}
		e.m[webhookID] = ep
	}
	return ep
}

// limitOf is how many requests ep may have open now.
func (e *endpoints) limitOf(ep *endpoint) int {
	if ep.conc == nil {
		return e.concurrency
	}
	return ep.conc.current()
}

// currentLimit is the webhook's concurrency limit now; the cap for an endpoint not yet seen.
func (e *endpoints) currentLimit(webhookID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ep := e.m[webhookID]; ep != nil {
		return e.limitOf(ep)
	}
	if e.adaptive {
		return min(e.concurrency, initialLimit)
	}
	return e.concurrency
}

// limits lists the concurrency limits of the endpoints this worker holds, for the gauge.
func (e *endpoints) limits() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]int, 0, len(e.m))
	for _, ep := range e.m {
		out = append(out, e.limitOf(ep))
	}
	return out
}

// admit decides whether t starts now, queues behind its endpoint, or is moved aside; returned says
// t was moved aside before and is back. A queue is
// bounded three ways: by its length, by how long its last delivery would wait (from the
// endpoint's recent latency: a slow endpoint's queue is short, so the committed offset of its
// partition is held back no longer than one request may take), and by a share of all queued
// deliveries (half the sending slots), so no endpoint's backlog takes the sending slots of the others
// — unless the queue drains within a second: a fast endpoint's burst (the sending slots fill
// with one endpoint's deliveries whenever it is the only one busy) waits here rather than
// going round a retry tier. (Judged only once requests have finished: a hanging endpoint has
// no latency yet, and its queue would look short.)
// A Send Test always queues: its caller is waiting for it. For an overflow, wait estimates how
// long the endpoint needs to work through what it holds and what was moved aside before (for
// one that came back too early, what came back with it): the delivery comes back about when the
// endpoint can take it, instead of cycling through Kafka.
func (e *endpoints) admit(t *task, returned bool) (a admission, wait time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.get(t.d.WebhookId)
	if returned && ep.aside > 0 {
		ep.aside--
	}
	limit := e.limitOf(ep)
	if ep.active < limit {
		if ep.active == 0 {
			ep.since = time.Now()
			if ep.since.Sub(ep.doneSince) > time.Second { // idle time is not drain time
				ep.done, ep.doneSince = 0, ep.since
			}
		}
		ep.active++
		if ep.conc != nil {
			ep.conc.started(ep.active)
		}
		return admitStart, 0
	}
	lat := ep.latency
	if lat == 0 {
		lat = time.Since(ep.since) // a hanging endpoint has no finished request to learn from
	}
	if ep.conc != nil {
		// In slow start its limit doubles every round trip until the endpoint shows congestion,
		// and a probe halves it for one window: judged by today's limit, a burst would be moved
		// aside for minutes that the endpoint will take in seconds.
		limit = ep.conc.target()
	}
	wait = ep.drainTime(len(ep.queue)+1, limit, lat)
	if t.d.Test || (len(ep.queue) < e.queueCap && wait < e.maxWait && (e.queued < e.maxQueued || (ep.latency > 0 && wait < e.soon))) {
		ep.queue = append(ep.queue, t)
		e.queued++
		return admitQueue, wait
	}
	ep.aside++
	ahead := ep.aside
	if returned {
		// What is still aside went after it, or comes back with it and is counted here:
		// counting all of it would send a burst that came back together to the longest tier
		// together, and the endpoint would idle until it came back again, together.
		now := time.Now()
		ep.again = max(0, ep.again-float64(now.Sub(ep.againAt))/float64(max(lat, time.Millisecond))*float64(limit)) + 1
		ep.againAt = now
		ahead = int(math.Ceil(ep.again))
		if ep.conc != nil && ep.conc.slowStart {
			ahead = 0 // its intake doubles every round trip: by the time it is back, the burst is taken
		}
	}
	return admitOverflow, ep.drainTime(len(ep.queue)+ahead, limit, lat)
}

// drainTime is how long the endpoint needs to start n more deliveries: n rounds of limit requests
// of lat each, or — once known and faster — n at its measured rate. A rate whose window has not
// closed for two seconds is stale (the endpoint has stopped answering): not used.
func (ep *endpoint) drainTime(n, limit int, lat time.Duration) time.Duration {
	wait := time.Duration((n+limit-1)/limit) * lat
	if ep.rate > 0 && time.Since(ep.doneSince) < 2*time.Second {
		wait = min(wait, time.Duration(float64(n)/ep.rate*float64(time.Second)))
	}
	return wait
}

// next releases a request slot of the endpoint after a delivery that taught s, and returns the
// tasks to start now: the first in the released slot, the others in slots a raised limit opened.
// A lowered limit keeps the slot closed until fewer requests are open than it allows.
func (e *endpoints) next(webhookID string, s sample) []*task {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.m[webhookID]
	if ep == nil {
		return nil
	}
	if took := s.took; took > 0 {
		if ep.latency == 0 {
			ep.latency = took
		} else {
			ep.latency += (took - ep.latency) / 8
		}
	}
	if ep.conc != nil && (s.took > 0 || s.dropped) {
		ep.conc.observe(s.start, s.took, s.dropped, time.Now())
	}
	ep.active--
	if now := time.Now(); s.took > 0 {
		ep.done++
		if el := now.Sub(ep.doneSince); el >= time.Second {
			ep.rate = float64(ep.done) / el.Seconds()
			ep.done, ep.doneSince = 0, now
		}
	}
	var start []*task
	for limit := e.limitOf(ep); len(ep.queue) > 0 && ep.active < limit; {
		next := ep.queue[0]
		ep.queue[0] = nil
		ep.queue = ep.queue[1:]
		e.queued--
		ep.active++
		if ep.conc != nil {
			ep.conc.started(ep.active)
		}
		start = append(start, next)
	}
	if len(ep.queue) == 0 {
		ep.queue = nil // let the backing array go
	}
	if len(start) > 0 {
		return start
	}
	if ep.active == 0 && ep.limiter == nil && (ep.conc == nil || ep.conc.forgettable(time.Now())) && (ep.breaker == nil ||
		(ep.breaker.State() == gobreaker.StateClosed && ep.breaker.Counts().ConsecutiveFailures == 0)) {
		delete(e.m, webhookID) // idle and healthy: forget it, memory stays bounded
	}
	return nil
}

// allow asks the endpoint's circuit breaker for one request. When it refuses, ok is false;
// otherwise done must be called with the request's verdict: nil (the endpoint worked),
// errEndpointFailed, or errNotJudged.
func (e *endpoints) allow(webhookID string) (done func(error), ok bool) {
	e.mu.Lock()
	ep := e.get(webhookID)
	if ep.breaker == nil {
		threshold := uint32(e.threshold)
		ep.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			MaxRequests: 1,          // half-open: one probe at a time
			Timeout:     e.cooldown, // open this long, then probe
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
			IsExcluded:  func(err error) bool { return errors.Is(err, errNotJudged) },
		})
	}
	cb := ep.breaker
	e.mu.Unlock()
	done, err := cb.Allow()
	return done, err == nil
}

// limiter returns the endpoint's rate limiter for perSecond (nil: unlimited).
func (e *endpoints) limiter(webhookID string, perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.m[webhookID]
	if ep == nil {
		return nil
	}
	if ep.limiter == nil || ep.limit != perSecond {
		ep.limiter = rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond)))
		ep.limit = perSecond
	}
	return ep.limiter
}
