package delivery

import (
	"errors"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// endpoint is one webhook's local state: how many requests run, the bounded queue behind them,
// how long its requests take, its rate limiter and its circuit breaker. Keying `deliveries` by
// webhook id puts all of an endpoint's traffic on one partition, hence one worker: no
// coordination needed.
type endpoint struct {
	active  int
	queue   []*task
	aside   int           // deliveries this worker moved aside that have not come back yet
	latency time.Duration // moving average of its requests' latency: how fast its queue drains
	since   time.Time     // busy since: before any request finished, the latency is at least that old
	limiter *rate.Limiter
	limit   float64
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
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
	concurrency int           // requests at once per endpoint
	queueCap    int           // deliveries queued per endpoint
	maxWait     time.Duration // a delivery is queued only if it should start within this
	maxQueued   int           // deliveries queued over all endpoints
	queued      int
	threshold   int
	cooldown    time.Duration
}

func newEndpoints(cfg Config) *endpoints {
	return &endpoints{m: map[string]*endpoint{}, concurrency: cfg.PerEndpointConcurrency, queueCap: cfg.PerEndpointQueue,
		maxWait: cfg.Timeout, maxQueued: max(1, cfg.MaxInFlight/2), threshold: cfg.BreakerThreshold, cooldown: cfg.BreakerCooldown}
}

func (e *endpoints) get(webhookID string) *endpoint {
	ep := e.m[webhookID]
	if ep == nil {
		ep = &endpoint{}
		e.m[webhookID] = ep
	}
	return ep
}

// admit decides whether t starts now, queues behind its endpoint, or is moved aside; returned says
// t was moved aside before and is back. A queue is
// bounded three ways: by its length, by how long its last delivery would wait (from the
// endpoint's recent latency: a slow endpoint's queue is short, so the committed offset of its
// partition is held back no longer than one request may take), and by a share of all queued
// deliveries (half the process's slots), so no endpoint's backlog stops fetching for the others.
// A Send Test always queues: its caller is waiting for it. For an overflow, wait estimates how
// long the endpoint needs to work through what it holds and what was moved aside before: the
// delivery comes back about when the endpoint can take it, instead of cycling through Kafka.
func (e *endpoints) admit(t *task, returned bool) (a admission, wait time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.get(t.d.WebhookId)
	if returned && ep.aside > 0 {
		ep.aside--
	}
	if ep.active < e.concurrency {
		if ep.active == 0 {
			ep.since = time.Now()
		}
		ep.active++
		return admitStart, 0
	}
	lat := ep.latency
	if lat == 0 {
		lat = time.Since(ep.since) // a hanging endpoint has no finished request to learn from
	}
	wait = time.Duration((len(ep.queue)+1+e.concurrency-1)/e.concurrency) * lat
	if t.d.Test || (len(ep.queue) < e.queueCap && wait < e.maxWait && e.queued < e.maxQueued) {
		ep.queue = append(ep.queue, t)
		e.queued++
		return admitQueue, wait
	}
	ep.aside++
	return admitOverflow, time.Duration((len(ep.queue)+ep.aside+e.concurrency-1)/e.concurrency) * lat
}

// next releases a request slot of the endpoint after a request that took took (0: none was
// made) and returns the next task to start in it, if any.
func (e *endpoints) next(webhookID string, took time.Duration) *task {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.m[webhookID]
	if ep == nil {
		return nil
	}
	if took > 0 {
		if ep.latency == 0 {
			ep.latency = took
		} else {
			ep.latency += (took - ep.latency) / 8
		}
	}
	if len(ep.queue) > 0 {
		next := ep.queue[0]
		ep.queue[0] = nil
		ep.queue = ep.queue[1:]
		e.queued--
		return next // the slot passes on
	}
	ep.active--
	if ep.active == 0 && ep.limiter == nil && (ep.breaker == nil ||
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
