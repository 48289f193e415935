// Package hooktest is the one subscriber every test and the bench use: one HTTP listener on
// 127.0.0.1 serving many endpoints, each at its own path with its own behaviour (fast, slow,
// failing, hanging, or an answer chosen per request), recording when every event arrived and, when
// the event carries its send time, how long it took end to end.
//
// What costs is opt-in, so the bench measures the pipeline and not its instrument: an endpoint
// verifies signatures only after Verify, and keeps a record of every request (path, webhook-id,
// event, start, end, answer, whether the client hung up) only after Record. It never listens beyond
// loopback and never hangs longer than its bound.
package hooktest

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
	"testing"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/signature"
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

// StartT starts a server on a free loopback port for the test and closes it when the test ends.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
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

	answer atomic.Pointer[func(*Request) Answer] // chooses the answer per request; nil: by mode
	secret atomic.Pointer[string]                // verify signatures with it; nil: no check

	mu      sync.Mutex
	samples []Sample
	record  bool
	keep    bool       // keep headers and bodies in the records
	seq     int        // requests numbered in arrival order
	open    []*Request // being served now (recorded endpoints only)
	done    []Request  // answered or abandoned, in the order they ended
	bad     []string   // why requests were refused (signatures)
}

// Request is one request an endpoint saw, as Records and Open report it.
type Request struct {
	Seq       int    // arrival order, from 1
	Path      string // the URL path, e.g. "/hook/wh_…"
	WebhookID string // the `webhook-id` header: one delivery of one event to one webhook
	EventID   string
	EventType string
	Header    http.Header // kept only with Record(true)
	Body      []byte      // kept only with Record(true)
	Start     time.Time
	End       time.Time // zero while open
	Status    int       // the answer; 0 when the client went away first
}

// Delivered reports whether the request was answered 2xx.
func (r Request) Delivered() bool { return r.Status >= 200 && r.Status < 300 }

// Answer is what an endpoint answers one request: Status (200 when zero) after Delay (a client
// that hangs up meanwhile gets nothing), with Header and Body.
type Answer struct {
	Status int
	Delay  time.Duration
	Header http.Header
	Body   []byte
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

// AnswerWith makes fn choose the answer to every later request (its Header, Body and Start are
// set); nil goes back to the mode. fn runs on the request's goroutine and may be called at once
// by several.
func (e *Endpoint) AnswerWith(fn func(*Request) Answer) {
	if fn == nil {
		e.answer.Store(nil)
		return
	}
	e.answer.Store(&fn)
}

// Verify makes the endpoint check every later request's Standard Webhooks signature with secret
// (and Ask Users' `X-Webhook-Signature` when sent), as a subscriber following either guide would:
// a request that fails is answered 400 and its reason kept (Refused).
func (e *Endpoint) Verify(secret string) { e.secret.Store(&secret) }

// Record makes the endpoint keep every later request (Records, Open); keep also keeps their
// headers and bodies.
func (e *Endpoint) Record(keep bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.record, e.keep = true, keep
}

// Records returns the recorded requests that ended, in the order they ended.
func (e *Endpoint) Records() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Request(nil), e.done...)
}

// RecordsSince returns the recorded requests that ended after the first i, in the order they
// ended: a caller that keeps i reads each record once.
func (e *Endpoint) RecordsSince(i int) []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i >= len(e.done) {
		return nil
	}
	return append([]Request(nil), e.done[max(i, 0):]...)
}

// Open returns the recorded requests being served now.
func (e *Endpoint) Open() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Request, len(e.open))
	for i, r := range e.open {
		out[i] = *r
	}
	return out
}

// Refused lists why requests were refused (bad signatures), in order.
func (e *Endpoint) Refused() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.bad...)
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
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	Payload   struct {
		Properties struct {
			SentAtNs int64 `json:"sent_at_ns"`
		} `json:"properties"`
	} `json:"payload"`
}

func (e *Endpoint) serve(w http.ResponseWriter, r *http.Request, s *Server) {
	start := time.Now()
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
	req := e.begin(r, body, start)
	status := e.serveRequest(w, r, s, req, body)
	e.end(req, status)
}

// serveRequest answers one request and returns the status written (0: none).
func (e *Endpoint) serveRequest(w http.ResponseWriter, r *http.Request, s *Server, req *Request, body []byte) int {
	if secret := e.secret.Load(); secret != nil {
		if err := verify(*secret, r.Header, body); err != nil {
			e.mu.Lock()
			e.bad = append(e.bad, fmt.Sprintf("%s %s: %v", req.Path, req.WebhookID, err))
			e.mu.Unlock()
			http.Error(w, `{"error":"bad signature"}`, http.StatusBadRequest)
			return http.StatusBadRequest
		}
	}
	if fn := e.answer.Load(); fn != nil {
		a := (*fn)(req)
		if a.Delay > 0 && !wait(r.Context(), s.stop, a.Delay) {
			return 0
		}
		for k, v := range a.Header {
			w.Header()[k] = v
		}
		if a.Status == 0 {
			a.Status = http.StatusOK
		}
		if a.Status >= 200 && a.Status < 300 {
			e.accept(body, time.Now())
		}
		w.WriteHeader(a.Status)
		_, _ = w.Write(a.Body)
		return a.Status
	}
	switch e.Mode() {
	case Failing:
		http.Error(w, `{"error":"failing on purpose"}`, http.StatusInternalServerError)
		return http.StatusInternalServerError
	case Hanging:
		t := time.NewTimer(s.opts.HangMax)
		defer t.Stop()
		select {
		case <-*e.release.Load():
			// Released: answer late, as an endpoint that recovered would.
		case <-r.Context().Done():
			return 0
		case <-s.stop:
			panic(http.ErrAbortHandler) // drop the connection: a failure, never a 200
		case <-t.C:
			panic(http.ErrAbortHandler)
		}
	case Slow:
		if !wait(r.Context(), nil, s.opts.SlowDelay) {
			return 0
		}
	}
	e.accept(body, time.Now())
	w.WriteHeader(http.StatusOK)
	return http.StatusOK
}

// wait sleeps for d unless the client goes away or the server stops first (false).
func wait(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// verify checks a request's signatures as a subscriber following the Standard Webhooks guide (and
// Ask Users', when its header is present) would.
func verify(secret string, h http.Header, body []byte) error {
	if err := signature.VerifyStandard(secret, h.Get("webhook-id"), h.Get("webhook-timestamp"),
		h.Get("webhook-signature"), body, 5*time.Minute); err != nil {
		return err
	}
	if sig := h.Get("X-Webhook-Signature"); sig != "" {
		return signature.VerifyAskUsers(secret, body, sig)
	}
	return nil
}

// begin describes a request that arrived and, on a recorded endpoint, adds it to the open ones.
// Without an answer function or a record, it costs nothing: the bench's endpoints stay cheap.
func (e *Endpoint) begin(r *http.Request, body []byte, start time.Time) *Request {
	e.mu.Lock()
	record, keep := e.record, e.keep
	e.mu.Unlock()
	if !record && e.answer.Load() == nil {
		return nil
	}
	var env envelope
	_ = json.Unmarshal(body, &env)
	req := &Request{Path: r.URL.Path, WebhookID: r.Header.Get("webhook-id"), EventID: env.EventID,
		EventType: env.EventType, Start: start, Header: r.Header.Clone(), Body: body}
	if !keep {
		req.Header, req.Body = nil, nil
	}
	if e.answer.Load() != nil && !keep { // the answer function may look at them
		req.Header, req.Body = r.Header, body
	}
	e.mu.Lock()
	e.seq++
	req.Seq = e.seq
	if e.record {
		e.open = append(e.open, req)
	}
	e.mu.Unlock()
	return req
}

// end records how a recorded request ended.
func (e *Endpoint) end(req *Request, status int) {
	if req == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.record {
		return
	}
	for i, o := range e.open {
		if o == req {
			e.open = append(e.open[:i], e.open[i+1:]...)
			break
		}
	}
	done := *req
	done.End, done.Status = time.Now(), status
	if !e.keep {
		done.Header, done.Body = nil, nil
	}
	e.done = append(e.done, done)
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
