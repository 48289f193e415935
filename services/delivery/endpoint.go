package delivery

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// endpoint is one webhook's local state: how many requests run, what waits behind them, its rate
// limiter and its circuit breaker. Keying `deliveries` by webhook id puts all of an endpoint's
// traffic on one partition, hence one worker: no coordination needed.
type endpoint struct {
	active  int
	queue   []*task
	limiter *rate.Limiter
	limit   float64

	failures  int       // consecutive
	openUntil time.Time // breaker open until then
	probing   bool      // half-open: one probe in flight
}

// breakerVerdict says whether a request may go out now.
type breakerVerdict int

const (
	breakerClosed breakerVerdict = iota
	breakerProbe
	breakerOpen
)

type endpoints struct {
	mu        sync.Mutex
	m         map[string]*endpoint
	cap       int
	threshold int
	cooldown  time.Duration
}

func newEndpoints(perEndpoint, threshold int, cooldown time.Duration) *endpoints {
	return &endpoints{m: map[string]*endpoint{}, cap: perEndpoint, threshold: threshold, cooldown: cooldown}
}

// admit queues t behind its endpoint or returns true when it may start now.
func (e *endpoints) admit(t *task) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.m[t.d.WebhookId]
	if ep == nil {
		ep = &endpoint{}
		e.m[t.d.WebhookId] = ep
	}
	if ep.active < e.cap {
		ep.active++
		return true
	}
	ep.queue = append(ep.queue, t)
	return false
}

// finish releases t's slot and returns the next task of the endpoint to start, if any.
func (e *endpoints) finish(webhookID string) *task {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.m[webhookID]
	if ep == nil {
		return nil
	}
	if len(ep.queue) > 0 {
		next := ep.queue[0]
		ep.queue[0] = nil
		ep.queue = ep.queue[1:]
		return next // the slot passes on
	}
	ep.active--
	if ep.active == 0 && ep.failures == 0 && ep.openUntil.IsZero() && ep.limiter == nil {
		delete(e.m, webhookID) // idle and healthy: forget it, memory stays bounded
	}
	return nil
}

// verdict asks the breaker about one request.
func (e *endpoints) verdict(webhookID string, now time.Time) breakerVerdict {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.m[webhookID]
	if ep == nil || ep.openUntil.IsZero() {
		return breakerClosed
	}
	if now.Before(ep.openUntil) || ep.probing {
		return breakerOpen
	}
	ep.probing = true
	return breakerProbe
}

// record feeds an outcome to the breaker; it reports whether the breaker just opened.
func (e *endpoints) record(webhookID string, success bool, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.m[webhookID]
	if ep == nil {
		return false
	}
	ep.probing = false
	if success {
		ep.failures, ep.openUntil = 0, time.Time{}
		return false
	}
	ep.failures++
	if ep.failures >= e.threshold {
		wasOpen := !ep.openUntil.IsZero()
		ep.openUntil = now.Add(e.cooldown)
		return !wasOpen
	}
	return false
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
