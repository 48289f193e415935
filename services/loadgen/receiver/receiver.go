// Package receiver is the load test's subscriber: one HTTP listener on 127.0.0.1 serving many
// endpoints, each at its own path with its own behaviour (fast, slow, failing, hanging), recording
// when every event arrived and, when the event carries its send time, how long it took end to end.
// It is a measuring instrument: it never verifies signatures (that would be the bench's cost, not
// the pipeline's), never listens beyond loopback, and never hangs longer than its bound.
package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how an endpoint answers.
type Mode string

// The modes an endpoint can have.
const (
	Fast    Mode = "fast"    // 200 at once
	Slow    Mode = "slow"    // 200 after Options.SlowDelay
	Failing Mode = "failing" // 500 at once
	Hanging Mode = "hanging" // no answer until the client gives up (or Options.HangMax)
)

// ParseMode reads a mode's name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Fast, Slow, Failing, Hanging:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want fast, slow, failing or hanging)", s)
}

// Options tune a Server.
type Options struct {
	// SlowDelay is how long a slow endpoint takes to answer; 100 ms when zero.
	SlowDelay time.Duration
	// HangMax bounds how long a hanging endpoint holds a request; 5 minutes when zero.
	HangMax time.Duration
	// Default serves paths no endpoint was registered for; nil answers 404.
	Default *Endpoint
}

// Server is one listener serving endpoints by path.
type Server struct {
	opts Options
	ln   net.Listener
	srv  *http.Server
	stop chan struct{} // closed by Close: releases hanging requests

	mu        sync.RWMutex
	endpoints map[string]*Endpoint
}

// Start listens on addr, which must be a loopback address ("127.0.0.1:0" picks a free port).
func Start(addr string, opts Options) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("receiver address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("receiver address %q: only loopback addresses are allowed", addr)
	}
	if opts.SlowDelay <= 0 {
		opts.SlowDelay = 100 * time.Millisecond
	}
	if opts.HangMax <= 0 {
		opts.HangMax = 5 * time.Minute
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	s := &Server{opts: opts, ln: ln, stop: make(chan struct{}), endpoints: map[string]*Endpoint{}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// URL is the server's base URL, without a trailing slash.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Endpoint registers (or returns) the endpoint at /name with mode; its URL is s.URL()+"/"+name.
func (s *Server) Endpoint(name string, mode Mode) *Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.endpoints[name]; ok {
		return e
	}
	e := NewEndpoint(name, mode)
	s.endpoints[name] = e
	return e
}

// Received counts deliveries accepted by every endpoint of the server (not the Default one).
func (s *Server) Received() (n int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.endpoints {
		n += e.Received()
	}
	return n
}

// Close stops listening and releases every hanging request.
func (s *Server) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}

// ServeHTTP routes a request to its endpoint by path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	e := s.endpoints[strings.TrimPrefix(r.URL.Path, "/")]
	s.mu.RUnlock()
	if e == nil {
		e = s.opts.Default
	}
	if e == nil {
		http.NotFound(w, r)
		return
	}
	e.serve(w, r, s)
}

// Endpoint is one subscriber URL and what it recorded.
type Endpoint struct {
	Name string
	mode atomic.Value // Mode

	requests atomic.Int64 // every request seen
	received atomic.Int64 // requests answered 2xx
	inFlight atomic.Int64 // requests being served now
	peak     atomic.Int64 // highest inFlight seen

	lastBody atomic.Value                  // []byte
	release  atomic.Pointer[chan struct{}] // closed by Release: lets go of hanging requests

	mu      sync.Mutex
	samples []Sample
}

// Sample is one delivery the endpoint accepted.
type Sample struct {
	EventID string
	At      time.Time     // when the request body had been read
	Latency time.Duration // At minus the producer's send time; 0 when the event carried none
}

// NewEndpoint returns an endpoint not attached to any server (Server.Endpoint attaches one).
func NewEndpoint(name string, mode Mode) *Endpoint {
	e := &Endpoint{Name: name}
	e.mode.Store(mode)
	ch := make(chan struct{})
	e.release.Store(&ch)
	return e
}

// Release answers every request the endpoint holds now with 200, as if it had recovered; later
// requests hang again while the mode is Hanging.
func (e *Endpoint) Release() {
	ch := make(chan struct{})
	close(*e.release.Swap(&ch))
}

// Mode is how the endpoint answers now.
func (e *Endpoint) Mode() Mode { return e.mode.Load().(Mode) }

// SetMode changes how the endpoint answers from the next request on.
func (e *Endpoint) SetMode(m Mode) { e.mode.Store(m) }

// Requests counts every request the endpoint saw, whatever it answered.
func (e *Endpoint) Requests() int64 { return e.requests.Load() }

// Received counts deliveries the endpoint accepted (answered 2xx).
func (e *Endpoint) Received() int64 { return e.received.Load() }

// InFlight is how many requests the endpoint is serving now; PeakInFlight the most at once.
func (e *Endpoint) InFlight() int64     { return e.inFlight.Load() }
func (e *Endpoint) PeakInFlight() int64 { return e.peak.Load() }

// Samples returns the accepted deliveries recorded at or after since, in arrival order.
func (e *Endpoint) Samples(since time.Time) []Sample {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := len(e.samples)
	for i > 0 && !e.samples[i-1].At.Before(since) {
		i--
	}
	return append([]Sample(nil), e.samples[i:]...)
}

// Duplicates counts accepted deliveries whose event id the endpoint had already accepted (among
// the samples it still holds): at-least-once delivery's repeats.
func (e *Endpoint) Duplicates() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := make(map[string]struct{}, len(e.samples))
	var n int64
	for _, s := range e.samples {
		if s.EventID == "" {
			continue
		}
		if _, ok := seen[s.EventID]; ok {
			n++
		}
		seen[s.EventID] = struct{}{}
	}
	return n
}

// Forget drops the samples recorded before t, so a long-running receiver stays bounded.
func (e *Endpoint) Forget(t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := 0
	for i < len(e.samples) && e.samples[i].At.Before(t) {
		i++
	}
	e.samples = append(e.samples[:0], e.samples[i:]...)
}

// SampleBody returns one accepted request body (the latest), for sizing comparable requests.
func (e *Endpoint) SampleBody() []byte {
	b, _ := e.lastBody.Load().([]byte)
	return b
}

// envelope is the part of a delivered body the receiver reads.
type envelope struct {
	EventID string `json:"event_id"`
	Payload struct {
		Properties struct {
			SentAtNs int64 `json:"sent_at_ns"`
		} `json:"properties"`
	} `json:"payload"`
}

func (e *Endpoint) serve(w http.ResponseWriter, r *http.Request, s *Server) {
	e.requests.Add(1)
	n := e.inFlight.Add(1)
	defer e.inFlight.Add(-1)
	for {
		p := e.peak.Load()
		if n <= p || e.peak.CompareAndSwap(p, n) {
			break
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	switch e.Mode() {
	case Failing:
		http.Error(w, `{"error":"failing on purpose"}`, http.StatusInternalServerError)
		return
	case Hanging:
		t := time.NewTimer(s.opts.HangMax)
		defer t.Stop()
		select {
		case <-*e.release.Load():
			// Released: answer late, as an endpoint that recovered would.
		case <-r.Context().Done():
			return
		case <-s.stop:
			panic(http.ErrAbortHandler) // drop the connection: a failure, never a 200
		case <-t.C:
			panic(http.ErrAbortHandler)
		}
	case Slow:
		t := time.NewTimer(s.opts.SlowDelay)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	e.accept(body, time.Now())
	w.WriteHeader(http.StatusOK)
}

// accept records one delivery received at now.
func (e *Endpoint) accept(body []byte, now time.Time) {
	var env envelope
	_ = json.Unmarshal(body, &env) // a body it cannot read still counts as received
	smp := Sample{EventID: env.EventID, At: now}
	if ns := env.Payload.Properties.SentAtNs; ns > 0 {
		smp.Latency = now.Sub(time.Unix(0, ns))
	}
	e.lastBody.Store(body)
	e.mu.Lock()
	e.samples = append(e.samples, smp)
	e.mu.Unlock()
	e.received.Add(1)
}
