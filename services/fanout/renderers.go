package fanout

import (
	"sync"
	"sync/atomic"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/masking"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// renderers caches each webhook's compiled Renderer (filter and transform) and masking rules, so
// that expressions and rules are compiled once per webhook revision, never per event. It holds at
// most one entry per webhook that has a filter, transform or masking rule: an entry is dropped when its webhook changes or is deleted.
type renderers struct {
	mu  sync.Mutex
	m   map[string]*compiled // by webhook id
	gen uint64               // counts webhook changes
}

// compiled is one webhook configuration's Renderer, or why it could not be built.
type compiled struct {
	src    *pb.Webhook // the exact configuration compiled: the registry replaces it on every change
	r      *envelope.Renderer
	mask   *masking.Masker // nil: no rule
	err    error
	warned atomic.Bool
}

// warnOnce reports true the first time it is called: problems are logged once per revision, not
// once per event.
func (c *compiled) warnOnce() bool { return c.warned.CompareAndSwap(false, true) }

func newRenderers() *renderers { return &renderers{m: map[string]*compiled{}} }

// generation returns the number of webhook changes seen so far. Callers take it before reading
// webhooks from the registry and pass it to get.
func (c *renderers) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// get returns wh's compiled renderer, compiling it if the cache has none for this exact
// configuration. The result is cached only if no webhook changed since gen: otherwise wh may
// already be stale (changed or deleted after the caller read it), and caching it could keep a
// deleted webhook's entry forever.
func (c *renderers) get(wh *pb.Webhook, gen uint64) *compiled {
	c.mu.Lock()
	e := c.m[wh.Id]
	c.mu.Unlock()
	if e != nil && e.src == wh && e.src.Revision == wh.Revision {
		return e
	}
	r, err := envelope.NewRenderer(wh)
	var m *masking.Masker
	if err == nil {
		m, err = masking.Compile("masking", wh.Masking)
	}
	e = &compiled{src: wh, r: r, mask: m, err: err}
	c.mu.Lock()
	if c.gen == gen {
		c.m[wh.Id] = e
	}
	c.mu.Unlock()
	return e
}

// forget drops the entries of a changed webhook; registered with registry.OnWebhookChange.
func (c *renderers) forget(old, cur *pb.Webhook) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if old != nil {
		delete(c.m, old.Id)
	}
	if cur != nil {
		delete(c.m, cur.Id)
	}
}

// len is the number of cached renderers.
func (c *renderers) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
