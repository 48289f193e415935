// Package delivery is the delivery worker: it consumes `deliveries`, POSTs each to its webhook
// through its sender package, records an Attempt for every try (sent or skipped), and routes
// failures to the next retry tier or to `deliveries-dead`. What happens to a delivery is decided in
// one pure function (decide.go, with the retry policy presets in policy.go); the worker loop
// (worker.go) fetches, admits, sends and applies the decision; one task type (task.go) owns each
// delivery from fetch to commit. The same process runs the tier releaser (releaser.go).
//
// Many deliveries are in flight at once and complete out of order; a partition's offset is
// committed only up to its oldest unfinished delivery (tracker.go), and a delivery counts as
// finished only once its attempt and its retry or dead-letter record are acknowledged by Kafka —
// so a crash repeats at most what was in flight (with the same webhook-id) and never loses a task.
// Per-endpoint state (concurrency cap, rate limit, circuit breaker) lives here without
// coordination because `deliveries` is keyed by webhook id (endpoint.go).
//
// Why not transactions here: franz-go commits offsets transactionally only through
// GroupTransactSession, which commits everything polled; out-of-order completion needs to commit
// less than that. Idempotent produce, then commit after acknowledgement, gives at-least-once with
// duplicates only after a crash — which receivers de-duplicate by webhook-id.
package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// Config is the delivery service's configuration.
type Config struct {
	Kafka kafka.Config
	// EncryptionKey opens the webhooks' sealed secrets (32 bytes, standard base64).
	EncryptionKey string `env:"SURVEYHOOKS_ENCRYPTION_KEY"`
	// AllowDestinations lists CIDRs the SSRF guard lets through (e.g. 127.0.0.0/8 for development).
	AllowDestinations string `env:"SURVEYHOOKS_ALLOW_DESTINATIONS"`
	// ProxyURL sends every outbound request through an egress proxy (a static egress IP):
	// "http://[user:pass@]host:port" (HTTP CONNECT) or "socks5://[user:pass@]host:port". The SSRF
	// guard still judges each destination (resolved before the proxy is asked for it); the
	// proxy's own address must be public or in SURVEYHOOKS_ALLOW_DESTINATIONS.
	ProxyURL string `env:"DELIVERY_PROXY_URL"`
	// RootCAsFile, when set, is a PEM file of the CAs receivers' certificates are checked against
	// instead of the system roots (a private CA; the mTLS tests' own CA).
	RootCAsFile string `env:"DELIVERY_ROOT_CAS_FILE"`
	// MaxInFlight bounds deliveries held by this process (running or queued behind their endpoint).
	MaxInFlight int `env:"DELIVERY_MAX_IN_FLIGHT" envDefault:"10000"`
	// MaxSending bounds the deliveries admitted to their endpoints (running, or queued behind
	// their endpoint's running requests): what the worker sends at once. Fetched deliveries beyond
	// it wait by project and are admitted in weighted fair share order (FairShare). 0: half of
	// MaxInFlight.
	MaxSending int `env:"DELIVERY_MAX_SENDING" envDefault:"0"`
	// FairShare admits waiting deliveries by deficit round robin over projects, weighted by each
	// project's delivery_weight, instead of first come first served.
	FairShare bool `env:"DELIVERY_FAIR_SHARE" envDefault:"true"`
	// ProjectBuffer bounds one project's deliveries waiting for a sending slot; what does not fit
	// is moved to a retry tier, attempt unchanged, so fetching goes on for the other projects.
	// 0: a quarter of MaxInFlight.
	ProjectBuffer int `env:"DELIVERY_PROJECT_BUFFER" envDefault:"0"`
	// PerEndpointConcurrency bounds concurrent requests to one webhook: the fixed cap, or the upper
	// bound of its adaptive limit.
	PerEndpointConcurrency int `env:"DELIVERY_PER_ENDPOINT_CONCURRENCY" envDefault:"50"`
	// AdaptiveConcurrency lets each webhook's concurrency limit follow what its endpoint can take
	// (limiter.go): it grows while latency stays flat and shrinks on rising latency, timeouts,
	// 429 and 503. Off: every webhook may have PerEndpointConcurrency requests open.
	AdaptiveConcurrency bool `env:"DELIVERY_ADAPTIVE_CONCURRENCY" envDefault:"true"`
	// PerEndpointQueue bounds the deliveries waiting behind one webhook's running requests; what
	// does not fit (or would wait longer than Timeout) is moved to a retry tier, attempt unchanged
	// (docs/architecture.md, "Delivery worker"). A slow endpoint's queue is bounded by Timeout
	// first; this bound is for a fast one's burst, which it should absorb rather than send a
	// minute later: half the default slots.
	PerEndpointQueue int `env:"DELIVERY_PER_ENDPOINT_QUEUE" envDefault:"5000"`
	// Timeout is how long an endpoint has to answer (a 2xx within it is success).
	Timeout time.Duration `env:"DELIVERY_TIMEOUT" envDefault:"30s"`
	// MaxResponseBytes of each response body are kept in the attempt log.
	MaxResponseBytes int64 `env:"DELIVERY_MAX_RESPONSE_BYTES" envDefault:"65536"`
	// MaxResponseHeaderBytes of response headers are accepted; a larger header block fails the
	// attempt (a connection error, retried).
	MaxResponseHeaderBytes int64 `env:"DELIVERY_MAX_RESPONSE_HEADER_BYTES" envDefault:"65536"`
	// MaxAttemptBytes bounds one attempt record, below the attempts topic's maximum message size
	// (Kafka's default is 1 MiB): bodies and headers are cut, and marked, to fit. Should the topic
	// still refuse one (a smaller max.message.bytes), it is halved until it fits.
	MaxAttemptBytes int `env:"DELIVERY_MAX_ATTEMPT_BYTES" envDefault:"524288"`
	// BreakerThreshold consecutive failures open an endpoint's circuit for BreakerCooldown.
	BreakerThreshold int           `env:"DELIVERY_BREAKER_THRESHOLD" envDefault:"20"`
	BreakerCooldown  time.Duration `env:"DELIVERY_BREAKER_COOLDOWN" envDefault:"30s"`
	// Group and ReleaserGroup are the consumer groups of workers and tier releasers.
	Group         string `env:"DELIVERY_GROUP" envDefault:"surveyhooks-delivery"`
	ReleaserGroup string `env:"DELIVERY_RELEASER_GROUP" envDefault:"surveyhooks-releaser"`
	// CommitInterval is how often finished offsets are committed. A kill -9 makes the next owner
	// repeat what was in flight plus what finished since the last commit: a commit is one small
	// request, so commit often.
	CommitInterval time.Duration `env:"DELIVERY_COMMIT_INTERVAL" envDefault:"200ms"`
	// DrainTimeout bounds how long a stopping worker waits for its in-flight deliveries.
	DrainTimeout time.Duration `env:"DELIVERY_DRAIN_TIMEOUT" envDefault:"35s"`
	// FailingNotifyAfter consecutive failed attempts make a webhook "failing": the operational
	// webhooks get webhook.failing once per streak (health.go).
	FailingNotifyAfter int `env:"DELIVERY_FAILING_NOTIFY_AFTER" envDefault:"10"`
	// DisableAfter: a webhook whose attempts have all failed for this long is disabled with reason
	// "failing" (Svix: 5 days); 0 never disables by time.
	DisableAfter time.Duration `env:"DELIVERY_DISABLE_AFTER" envDefault:"120h"`
	// DisableAfterFailures consecutive failed attempts disable a webhook with reason "failing"
	// (Outpost: 100); 0 never disables by count.
	DisableAfterFailures int `env:"DELIVERY_DISABLE_AFTER_FAILURES" envDefault:"100"`
}

// healthPolicy is the auto-disable part of the configuration.
func (c Config) healthPolicy() healthPolicy {
	return healthPolicy{NotifyAfter: c.FailingNotifyAfter, DisableAfter: c.DisableAfter, DisableAfterFailures: c.DisableAfterFailures}
}

// Validate reports the first configuration error, naming the variable.
func (c Config) Validate() error {
	if _, err := secrets.NewBox(c.EncryptionKey); err != nil {
		return fmt.Errorf("SURVEYHOOKS_ENCRYPTION_KEY: %w", err)
	}
	if _, err := sender.ParseAllowList(c.AllowDestinations); err != nil {
		return fmt.Errorf("SURVEYHOOKS_ALLOW_DESTINATIONS: %w", err)
	}
	if _, err := sender.ParseProxyURL(c.ProxyURL); err != nil {
		return fmt.Errorf("DELIVERY_PROXY_URL: %w", err)
	}
	if _, err := rootCAs(c.RootCAsFile); err != nil {
		return fmt.Errorf("DELIVERY_ROOT_CAS_FILE: %w", err)
	}
	switch {
	case c.MaxInFlight < 1:
		return errors.New("DELIVERY_MAX_IN_FLIGHT: must be at least 1")
	case c.MaxSending < 0 || c.MaxSending > c.MaxInFlight:
		return errors.New("DELIVERY_MAX_SENDING: must be between 0 (half of DELIVERY_MAX_IN_FLIGHT) and DELIVERY_MAX_IN_FLIGHT")
	case c.ProjectBuffer < 0:
		return errors.New("DELIVERY_PROJECT_BUFFER: must not be negative")
	case c.PerEndpointConcurrency < 1:
		return errors.New("DELIVERY_PER_ENDPOINT_CONCURRENCY: must be at least 1")
	case c.PerEndpointQueue < 0:
		return errors.New("DELIVERY_PER_ENDPOINT_QUEUE: must not be negative")
	case c.MaxResponseHeaderBytes < 1024:
		return errors.New("DELIVERY_MAX_RESPONSE_HEADER_BYTES: must be at least 1024")
	case c.MaxAttemptBytes < 16<<10 || c.MaxAttemptBytes > maxBatchBytes-1024:
		return fmt.Errorf("DELIVERY_MAX_ATTEMPT_BYTES: must be between 16384 and %d", maxBatchBytes-1024)
	case c.Timeout <= 0:
		return errors.New("DELIVERY_TIMEOUT: must be positive")
	case c.MaxResponseBytes < 0:
		return errors.New("DELIVERY_MAX_RESPONSE_BYTES: must not be negative")
	case c.BreakerThreshold < 1:
		return errors.New("DELIVERY_BREAKER_THRESHOLD: must be at least 1")
	case c.CommitInterval <= 0:
		return errors.New("DELIVERY_COMMIT_INTERVAL: must be positive")
	case c.FailingNotifyAfter < 1:
		return fmt.Errorf("DELIVERY_FAILING_NOTIFY_AFTER: must be at least 1, got %d", c.FailingNotifyAfter)
	case c.DisableAfter < 0:
		return fmt.Errorf("DELIVERY_DISABLE_AFTER: must not be negative (0: never by time), got %v", c.DisableAfter)
	case c.DisableAfterFailures < 0:
		return fmt.Errorf("DELIVERY_DISABLE_AFTER_FAILURES: must not be negative (0: never by count), got %d", c.DisableAfterFailures)
	case c.DisableAfterFailures > 0 && c.DisableAfterFailures < c.FailingNotifyAfter:
		return fmt.Errorf("DELIVERY_DISABLE_AFTER_FAILURES (%d) must not be below DELIVERY_FAILING_NOTIFY_AFTER (%d): a webhook is reported failing before it is disabled",
			c.DisableAfterFailures, c.FailingNotifyAfter)
	}
	return c.Kafka.Validate()
}

// sendingSlots is MaxSending, or its default.
func (c Config) sendingSlots() int {
	if c.MaxSending > 0 {
		return c.MaxSending
	}
	return max(1, c.MaxInFlight/2)
}

// projectBuffer is ProjectBuffer, or its default.
func (c Config) projectBuffer() int {
	if c.ProjectBuffer > 0 {
		return c.ProjectBuffer
	}
	return max(1, c.MaxInFlight/4)
}

// Run runs a delivery worker and a tier releaser until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger, opts ...service.Option) error {
	if log == nil {
		log = slog.Default()
	}
	deps := service.Apply(opts)
	caughtUp := deps.Ready.Wait("webhooks caught up")
	started := deps.Ready.Wait("delivery starting") // until the worker and releaser added theirs
	if err := kafka.EnsureTopics(ctx, cfg.Kafka); err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	box, err := secrets.NewBox(cfg.EncryptionKey)
	if err != nil {
		return fmt.Errorf("SURVEYHOOKS_ENCRYPTION_KEY: %w", err)
	}
	allow, err := sender.ParseAllowList(cfg.AllowDestinations)
	if err != nil {
		return fmt.Errorf("SURVEYHOOKS_ALLOW_DESTINATIONS: %w", err)
	}
	if len(allow) > 0 {
		log.Warn("outbound guard allows internal destinations", "allowed", prefixes(allow))
	}
	reg, err := registry.New(cfg.Kafka, log)
	if err != nil {
		return err
	}
	rctx, stopRegistry := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRegistry()
	regRun := registry.Start(rctx, reg, caughtUp)
	if err := regRun.CaughtUp(ctx); err != nil {
		return fmt.Errorf("loading webhooks: %w", err)
	}
	proxy, err := sender.ParseProxyURL(cfg.ProxyURL)
	if err != nil {
		return fmt.Errorf("DELIVERY_PROXY_URL: %w", err)
	}
	if proxy != nil {
		log.Info("outbound requests go through a proxy", "proxy", proxy.Redacted())
	}
	roots, err := rootCAs(cfg.RootCAsFile)
	if err != nil {
		return fmt.Errorf("DELIVERY_ROOT_CAS_FILE: %w", err)
	}
	snd := sender.New(sender.Options{Timeout: cfg.Timeout, MaxResponseBytes: cfg.MaxResponseBytes,
		MaxResponseHeaderBytes: cfg.MaxResponseHeaderBytes, Allow: allow, StartSpan: telemetry.StartClientSpan,
		Proxy: proxy, RootCAs: roots, MaxIdleConnsPerHost: max(512, cfg.sendingSlots())})
	w, err := NewWorker(cfg, reg, box, snd, log, opts...)
	if err != nil {
		return err
	}
	rel, err := NewReleaser(cfg, log, opts...)
	if err != nil {
		return err
	}
	started()
	defer deps.Telemetry.ObserveConsumerLag(w.cl, cfg.Group, cfg.ReleaserGroup)()
	met, err := NewMetrics(deps.Telemetry)
	if err != nil {
		return err
	}
	unregister, err := met.ObserveTiers(rel.tierStates)
	if err != nil {
		return err
	}
	defer func() { _ = unregister() }()
	unregisterLimits, err := met.ObserveLimits(w.eps.limits)
	if err != nil {
		return err
	}
	defer func() { _ = unregisterLimits() }()
	unregisterOrdering, err := met.ObserveOrdering(w.ord.state)
	if err != nil {
		return err
	}
	defer func() { _ = unregisterOrdering() }()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error { return rel.Run(gctx) })
	err = g.Wait()
	stopRegistry() // the worker needed webhooks until its last in-flight delivery finished
	_ = regRun.Wait()
	return err
}

// rootCAs reads a PEM file of CA certificates; "" means the system roots (nil).
func rootCAs(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

func prefixes(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
