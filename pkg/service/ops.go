package service

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// OpsAddrEnv names the variable with the address of the operations server (/metrics, /healthz,
// /readyz). Unset: DefaultOpsAddr. "off" turns it off; ":0" or "127.0.0.1:0" picks a free port
// (logged at start), for several services on one machine.
const OpsAddrEnv = "SURVEYHOOKS_OPS_ADDR"

// DefaultOpsAddr is the operations server's address when SURVEYHOOKS_OPS_ADDR is unset: loopback,
// so a laptop exposes nothing. Containers set ":9464" so probes and Prometheus reach it.
const DefaultOpsAddr = "127.0.0.1:9464"

// opsAddr returns the operations address e configures, "" when off.
func opsAddr(e config.Env) (string, error) {
	v, ok := e.Lookup(OpsAddrEnv)
	if !ok {
		return DefaultOpsAddr, nil
	}
	v = strings.TrimSpace(v)
	if v == "" || strings.EqualFold(v, "off") {
		return "", nil
	}
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return "", fmt.Errorf("%s: want host:port (\":9464\", \"127.0.0.1:0\") or \"off\", got %q", OpsAddrEnv, v)
	}
	return v, nil
}

// Deps are what Main hands a service besides its configuration and logger. Both are optional: a
// service built in a test without them records no metrics and reports no readiness.
type Deps struct {
	// Telemetry traces and measures the service; nil records nothing (spans still propagate
	// through the global provider when one is set).
	Telemetry *telemetry.Telemetry
	// Ready collects the conditions the service waits for before it is ready.
	Ready *Readiness
}

// Option sets one of Deps.
type Option func(*Deps)

// WithTelemetry gives the service its telemetry.
func WithTelemetry(t *telemetry.Telemetry) Option { return func(d *Deps) { d.Telemetry = t } }

// WithReadiness gives the service the readiness its /readyz reports.
func WithReadiness(r *Readiness) Option { return func(d *Deps) { d.Ready = r } }

// Apply collects opts into Deps.
func Apply(opts []Option) Deps {
	var d Deps
	for _, o := range opts {
		o(&d)
	}
	return d
}

// Readiness is the set of conditions a service waits for before /readyz answers 200: consumers
// assigned, the registry caught up on `webhooks`, a listener open. A nil *Readiness accepts
// conditions and ignores them.
type Readiness struct {
	mu         sync.Mutex
	waiting    []string
	registered bool // a service registers its conditions first thing: none yet means still starting
	draining   bool
}

// NewReadiness returns a readiness that is not ready until a condition has been added and met.
// Services add all their conditions before any slow start-up work.
func NewReadiness() *Readiness { return &Readiness{} }

// Wait adds a condition named name and returns the function that marks it met (safe to call more
// than once and from any goroutine).
func (r *Readiness) Wait(name string) (met func()) {
	if r == nil {
		return func() {}
	}
	r.mu.Lock()
	r.waiting = append(r.waiting, name)
	r.registered = true
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if i := slices.Index(r.waiting, name); i >= 0 {
				r.waiting = slices.Delete(r.waiting, i, i+1)
			}
		})
	}
}

// Drain marks the service as shutting down: not ready from now on, so traffic goes elsewhere
// while in-flight work finishes.
func (r *Readiness) Drain() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
}

// Check returns nil when the service is ready, else what it is waiting for.
func (r *Readiness) Check() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return errors.New("shutting down")
	}
	if !r.registered {
		return errors.New("starting")
	}
	if len(r.waiting) > 0 {
		return fmt.Errorf("waiting for: %s", strings.Join(r.waiting, ", "))
	}
	return nil
}
