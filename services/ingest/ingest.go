// Package ingest accepts survey events — over HTTP (`POST /v1/events`, authenticated with the
// project's API key) and from the `survey-events` topic — validates them against the event
// catalogue (envelope.Catalogue), assigns event ids, drops previews (counted, never forwarded),
// and writes the canonical Event to `events`, where fan-out de-duplicates it. It must never lose an
// event it answered 202 for, never drop input silently (a bad
// Kafka record goes to `survey-events-rejected` with its reason), and never log API keys.
//
// # De-duplication
//
// Ingest writes each accepted, non-preview event straight to `events` — keyed project/user, with
// an idempotent producer and acks=all — and answers 202 once Kafka acknowledged it: one record
// per event, no transaction. De-duplication of (project, event_id) within
// SURVEYHOOKS_DEDUP_WINDOW happens downstream, in fan-out, per `events` partition (see
// docs/architecture.md), so a retried or half-written request and a `survey-events` record
// processed twice after a crash are harmless: the copy carries the same event id.
//
// The synchronous answer to a repeat — 200 with "duplicate": true — is best effort: this process
// remembers the ids it wrote lately (INGEST_RECENT_IDS) and answers a repeat it knows without
// writing it again. A repeat sent to another process, or after a restart, is answered 202 and
// still delivered once. Previews are never written to `events`.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// Config is the ingest service's configuration.
type Config struct {
	Kafka kafka.Config
	// Addr is the HTTP listen address.
	Addr string `env:"INGEST_ADDR" envDefault:"127.0.0.1:8080"`
	// Group is the consumer group reading `survey-events`.
	Group string `env:"INGEST_GROUP" envDefault:"surveyhooks-ingest"`
	// MaxBodyBytes bounds one HTTP request body.
	MaxBodyBytes int64 `env:"INGEST_MAX_BODY_BYTES" envDefault:"1048576"`
	// MaxBatch bounds the events of one `{"events":[…]}` request.
	MaxBatch int `env:"INGEST_MAX_BATCH" envDefault:"500"`
	// DedupWindow is how long an event id is remembered per project (fan-out reads the same
	// variable: it is the window of the de-duplication that counts).
	DedupWindow time.Duration `env:"SURVEYHOOKS_DEDUP_WINDOW" envDefault:"24h"`
	// RecentIDs bounds the event ids this process remembers to answer a repeat with
	// "duplicate": true at once (about 80 bytes each); 0 turns the answer off.
	RecentIDs int `env:"INGEST_RECENT_IDS" envDefault:"100000"`
	// AdminToken, when set, may post events for any project, each naming its `project_id`.
	AdminToken string `env:"SURVEYHOOKS_ADMIN_TOKEN"`
}

// Validate reports the first configuration error, naming the variable.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("INGEST_ADDR: %w", err)
	}
	switch {
	case c.Group == "":
		return errors.New("INGEST_GROUP: must not be empty")
	case c.MaxBodyBytes < 1024:
		return errors.New("INGEST_MAX_BODY_BYTES: must be at least 1024")
	case c.MaxBatch < 1:
		return errors.New("INGEST_MAX_BATCH: must be at least 1")
	case c.DedupWindow < time.Second || c.DedupWindow > 7*24*time.Hour:
		return fmt.Errorf("SURVEYHOOKS_DEDUP_WINDOW: must be between 1s and 168h (the events topic keeps 7 days), got %v", c.DedupWindow)
	case c.RecentIDs < 0:
		return errors.New("INGEST_RECENT_IDS: must not be negative")
	case c.AdminToken != "" && len(c.AdminToken) < 16:
		return errors.New("SURVEYHOOKS_ADMIN_TOKEN: at least 16 characters")
	}
	return c.Kafka.Validate()
}

// Stats counts what this process did since it started. Counters of the `survey-events` consumer
// move once its offsets are committed.
type Stats struct {
	HTTPRequests atomic.Int64 // POST /v1/events requests answered
	HTTPEvents   atomic.Int64 // events accepted over HTTP (previews included)
	KafkaRecords atomic.Int64 // `survey-events` records accepted (previews included)
	Previews     atomic.Int64 // preview events validated, counted and not forwarded
	Rejected     atomic.Int64 // HTTP requests answered 4xx, and records sent to survey-events-rejected
	Forwarded    atomic.Int64 // events written to `events` (repeats fan-out drops included)
	Duplicates   atomic.Int64 // HTTP repeats this process recognised and did not write again
}

// snapshot is what GET /v1/stats shows.
func (s *Stats) snapshot() map[string]int64 {
	return map[string]int64{
		"http_requests": s.HTTPRequests.Load(), "http_events": s.HTTPEvents.Load(),
		"kafka_records": s.KafkaRecords.Load(), "previews": s.Previews.Load(),
		"rejected": s.Rejected.Load(), "forwarded": s.Forwarded.Load(),
		"duplicates": s.Duplicates.Load(),
	}
}

// Ingest is one ingest process.
type Ingest struct {
	cfg    Config
	log    *slog.Logger
	reg    *registry.Registry
	events *kgo.Client // the HTTP path's producer
	recent *recent
	fresh  singleflight.Group
	stats  Stats
	deps   service.Deps
	met    *Metrics
}

// httpLinger is how long the HTTP path's producer waits for more records before it sends a
// produce request (Apache Kafka's producer default since 4.0, linger.ms=5). At a steady few
// hundred requests per second, the clients' 2 ms sent nearly one request — a broker round trip,
// its syscalls and wake-ups on both sides — per event; an answer waits at most this much longer.
const httpLinger = 5 * time.Millisecond

// shutdownGrace bounds how long in-flight HTTP requests may finish after ctx is cancelled.
const shutdownGrace = 15 * time.Second

// Run serves HTTP and consumes `survey-events` until ctx is done, then drains in-flight requests.
func Run(ctx context.Context, cfg Config, log *slog.Logger, opts ...service.Option) error {
	if log == nil {
		log = slog.Default()
	}
	deps := service.Apply(opts)
	caughtUp := deps.Ready.Wait("webhooks caught up")
	if err := kafka.EnsureTopics(ctx, cfg.Kafka); err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("INGEST_ADDR %s: %w", cfg.Addr, err)
	}
	in, err := build(cfg, log, deps)
	if err != nil {
		ln.Close()
		return err
	}

	// The HTTP server drains before the parts its requests wait on stop: those run on bg, which
	// ends only after Shutdown returned.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	g, gctx := errgroup.WithContext(ctx)
	regRun := registry.Start(bg, in.reg, caughtUp)
	g.Go(regRun.Wait)
	defer in.events.Close() // after the HTTP server drained: its requests produce with it
	g.Go(func() error {
		if err := regRun.CaughtUp(gctx); err != nil {
			return nil // cancelled
		}
		return in.consume(gctx)
	})
	srv := &http.Server{Handler: telemetry.HTTPHandler(in.Handler(), "ingest"), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	g.Go(func() error {
		err := service.ServeHTTP(gctx, srv, ln, shutdownGrace)
		stopBG()
		return err
	})
	log.Info("ingest listening", "addr", ln.Addr().String(), "topic", cfg.Kafka.Topics.SurveyEvents)
	return g.Wait()
}

// build connects the parts of one process.
func build(cfg Config, log *slog.Logger, deps service.Deps) (*Ingest, error) {
	met, err := NewMetrics(deps.Telemetry)
	if err != nil {
		return nil, err
	}
	reg, err := registry.New(cfg.Kafka, log)
	if err != nil {
		return nil, err
	}
	// Idempotent (franz-go's default) with acks=all: a 202 means every replica has the event, and
	// the client's own retries never write it twice.
	// It lingers httpLinger: concurrent requests share a produce request instead of one each.
	events, err := kafka.NewClient(cfg.Kafka, append([]kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(producerBatchBytes), kgo.ProducerLinger(httpLinger)},
		deps.Telemetry.KafkaHooks()...)...)
	if err != nil {
		_ = reg.Run(canceled()) // closes its client
		return nil, err
	}
	return &Ingest{cfg: cfg, log: log, reg: reg, events: events, deps: deps, met: met,
		recent: newRecent(cfg.DedupWindow, cfg.RecentIDs)}, nil
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
