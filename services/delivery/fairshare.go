package delivery

import (
	"sync"
	"time"
)

// fairQueue holds fetched deliveries per project until a sending slot (DELIVERY_MAX_SENDING) is
// free, and hands them out by deficit round robin (Shreedhar and Varghese, "Efficient fair
// queueing using deficit round robin", 1995) with every delivery costing one: each round, a
// project with deliveries waiting may start as many as its weight. When offered load exceeds what
// the worker can send, every project gets its weighted share of the sending slots, whatever order
// its deliveries had in the partitions: a project whose survey went viral waits behind itself,
// not in front of everyone else.
//
// Memory is bounded twice: the process's slots (DELIVERY_MAX_IN_FLIGHT) bound everything fetched,
// and each project's buffer holds at most perProject deliveries; push refuses the next one, which
// the worker moves aside to a retry tier like an endpoint's overflow (attempt unchanged, nothing
// recorded), so fetching goes on for the other projects.
//
// With fair share off, every delivery waits in one first-come-first-served queue with no bound
// of its own.
type fairQueue struct {
	mu         sync.Mutex
	projects   map[string]*projectQueue
	ring       []*projectQueue // projects with deliveries waiting, in round order
	pos        int             // whose turn it is
	perProject int
	fair       bool
	weight     func(projectID string) int // at least 1
	n          int
}

// projectQueue is one project's waiting deliveries.
type projectQueue struct {
	id      string
	items   []queued
	deficit int // deliveries it may still start this round

	// its recent dispatch rate, to say how long a delivery moved aside should stay away
	served      int
	servedSince time.Time
	rate        float64 // deliveries started per second, over the last full second
}

// queued is a fetched delivery waiting for a sending slot.
type queued struct {
	t        *task
	returned bool // moved aside by an endpoint before, and back
}

func newFairQueue(fair bool, perProject int, weight func(string) int) *fairQueue {
	return &fairQueue{projects: map[string]*projectQueue{}, fair: fair, perProject: perProject, weight: weight}
}

// push queues t behind its project's waiting deliveries. When the project's buffer is full it
// refuses, and wait says how long the project needs to work through what it holds.
func (q *fairQueue) push(t *task, returned bool) (ok bool, wait time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	id := ""
	if q.fair {
		id = t.d.ProjectId
	}
	p := q.projects[id]
	if p == nil {
		p = &projectQueue{id: id, servedSince: time.Now()}
		q.projects[id] = p
	}
	if q.fair && len(p.items) >= q.perProject && !t.d.Test { // a Send Test's caller is waiting
		if p.rate == 0 {
			return false, 0 // not known yet: the nearest tier
		}
		return false, time.Duration(float64(len(p.items)) / p.rate * float64(time.Second))
	}
	if len(p.items) == 0 {
		q.ring = append(q.ring, p)
	}
	p.items = append(p.items, queued{t: t, returned: returned})
	q.n++
	return true, 0
}

// pop takes the next delivery to start; ok is false when none waits.
func (q *fairQueue) pop() (next queued, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ring) == 0 {
		return queued{}, false
	}
	if q.pos >= len(q.ring) {
		q.pos = 0
	}
	p := q.ring[q.pos]
	if p.deficit <= 0 {
		p.deficit += q.weight(p.id)
	}
	next = p.items[0]
	p.items[0] = queued{}
	p.items = p.items[1:]
	p.deficit--
	q.n--
	p.served++
	if now := time.Now(); now.Sub(p.servedSince) >= time.Second {
		p.rate = float64(p.served) / now.Sub(p.servedSince).Seconds()
		p.served, p.servedSince = 0, now
	}
	switch {
	case len(p.items) == 0: // leaves the round; an idle project keeps no credit
		p.items, p.deficit = nil, 0
		q.ring = append(q.ring[:q.pos], q.ring[q.pos+1:]...)
		delete(q.projects, p.id)
	case p.deficit <= 0: // its turn is over
		q.pos++
	}
	return next, true
}

// len counts the deliveries waiting.
func (q *fairQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// maxDeliveryWeight bounds a project's delivery_weight (the API refuses more).
const maxDeliveryWeight = 100
