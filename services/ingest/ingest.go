// Package ingest accepts survey events — over HTTP (`POST /v1/events`, authenticated with the
// project's API key) and from the `survey-events` topic — validates them against the event
// catalogue (EventTypes), assigns event ids, drops previews (counted, never forwarded),
// de-duplicates on (project, event_id) within a window, and writes the canonical Event to
// `events`. It must never lose an event it answered 202 for, never drop input silently (a bad
// Kafka record goes to `survey-events-rejected` with its reason), and never log API keys.
//
// # De-duplication
//
// The same (project, event_id) must reach `events` once within INGEST_DEDUP_WINDOW (24 h), however
// many ingest processes run and however often they restart, with bounded memory. Ingest does it
// with two internal topics and the consumer group's partition ownership:
//
//  1. Every accepted, non-preview event is first written to `ingest-accepted`, keyed
//     "project/event_id", so all copies of one id land on one partition, in arrival order. HTTP
//     batches are written in one Kafka transaction (a batch is all or nothing, also when Kafka
//     fails); `survey-events` records are written inside the consumer's transaction.
//  2. A transactional consumer group (INGEST_GROUP + "-dedup") reads `ingest-accepted`. The process
//     that owns partition p keeps the ids accepted on p within the window (bounded by
//     INGEST_DEDUP_MAX_IDS per partition, oldest evicted first). For each record it decides:
//     first in the window → produce the Event to `events`; repeat → produce nothing. Either way it
//     writes a verdict to the same partition p of `event-ids` — in the same transaction as the
//     `events` output and the offset commit, so decisions and state can never disagree.
//  3. `event-ids` is the state: when a process gains partition p (start, restart, rebalance) it
//     rebuilds p's window by re-reading the window's span of `event-ids` p up to its last stable
//     offset (after any open transaction of the previous owner has ended). Changes of a batch are
//     applied to memory only once its transaction committed (kafka.TxnLoop.Ended).
//  4. The HTTP answer waits for the verdicts of its events: every process tails `event-ids` and
//     wakes the request whose claim header (instance/request/index) a verdict carries. All
//     repeats → 200 with "duplicate": true; otherwise 202, naming any duplicates. If no verdict
//     arrives within INGEST_VERDICT_WAIT (the dedup group is rebalancing, Kafka is slow), the
//     answer is 202: the events are durably in `ingest-accepted` and de-duplication still happens
//     downstream; only the synchronous duplicate flag is lost.
//
// So a repeat is answered `duplicate: true` whichever process receives it, across restarts, and
// nothing is ever duplicated in `events` by ingest. Previews are never written to
// `ingest-accepted`, so they are neither de-duplicated nor forwarded.
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

	"github.com/twmb/franz-go/pkg/kadm"
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
	// Group is the consumer group reading `survey-events`; Group+"-dedup" reads `ingest-accepted`.
	Group string `env:"INGEST_GROUP" envDefault:"surveyhooks-ingest"`
	// MaxBodyBytes bounds one HTTP request body.
	MaxBodyBytes int64 `env:"INGEST_MAX_BODY_BYTES" envDefault:"1048576"`
	// MaxBatch bounds the events of one `{"events":[…]}` request.
	MaxBatch int `env:"INGEST_MAX_BATCH" envDefault:"500"`
	// DedupWindow is how long an event id is remembered per project.
	DedupWindow time.Duration `env:"INGEST_DEDUP_WINDOW" envDefault:"24h"`
	// DedupMaxIDs bounds the ids remembered per `ingest-accepted` partition; past it the oldest
	// are forgotten early (counted in /v1/stats as dedup_evicted_early).
	DedupMaxIDs int `env:"INGEST_DEDUP_MAX_IDS" envDefault:"2000000"`
	// VerdictWait bounds how long an HTTP request waits for its de-duplication verdicts.
	VerdictWait time.Duration `env:"INGEST_VERDICT_WAIT" envDefault:"10s"`
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
		return fmt.Errorf("INGEST_DEDUP_WINDOW: must be between 1s and 168h (the event-ids topic keeps 7 days), got %v", c.DedupWindow)
	case c.DedupMaxIDs < 1000:
		return errors.New("INGEST_DEDUP_MAX_IDS: must be at least 1000")
	case c.VerdictWait <= 0:
		return errors.New("INGEST_VERDICT_WAIT: must be positive")
	}
	return c.Kafka.Validate()
}

// Stats counts what this process did since it started. Counters of the transactional loops move
// only when their transaction committed.
type Stats struct {
	HTTPRequests    atomic.Int64 // POST /v1/events requests answered
	HTTPEvents      atomic.Int64 // events accepted over HTTP (previews included)
	KafkaRecords    atomic.Int64 // `survey-events` records accepted (previews included)
	Previews        atomic.Int64 // preview events validated, counted and not forwarded
	Rejected        atomic.Int64 // HTTP requests answered 4xx, and records sent to survey-events-rejected
	Forwarded       atomic.Int64 // events written to `events`
	Duplicates      atomic.Int64 // repeats of an event id within the window, not forwarded
	VerdictTimeouts atomic.Int64 // HTTP events answered 202 without their de-duplication verdict
	EvictedEarly    atomic.Int64 // ids forgotten before the window ended (INGEST_DEDUP_MAX_IDS)
}

// snapshot is what GET /v1/stats shows.
func (s *Stats) snapshot() map[string]int64 {
	return map[string]int64{
		"http_requests": s.HTTPRequests.Load(), "http_events": s.HTTPEvents.Load(),
		"kafka_records": s.KafkaRecords.Load(), "previews": s.Previews.Load(),
		"rejected": s.Rejected.Load(), "forwarded": s.Forwarded.Load(),
		"duplicates": s.Duplicates.Load(), "verdict_timeouts": s.VerdictTimeouts.Load(),
		"dedup_evicted_early": s.EvictedEarly.Load(),
	}
}

// Ingest is one ingest process.
type Ingest struct {
	cfg      Config
	log      *slog.Logger
	reg      *registry.Registry
	claims   *committer
	verdicts *verdicts
	fresh    singleflight.Group
	stats    Stats
	deps     service.Deps
}

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
	if err := checkPartitions(ctx, cfg.Kafka); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("INGEST_ADDR %s: %w", cfg.Addr, err)
	}
	in, dd, err := build(ctx, cfg, log, deps)
	if err != nil {
		ln.Close()
		return err
	}

	// The HTTP server drains before the parts its requests wait on stop: those run on bg, which
	// ends only after Shutdown returned.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return in.reg.Run(bg) })
	g.Go(func() error { return in.verdicts.run(bg) })
	g.Go(func() error { return in.claims.run(bg) })
	g.Go(func() error { return dd.run(bg) })
	g.Go(func() error {
		if err := in.reg.WaitFresh(gctx); err != nil {
			return nil // cancelled
		}
		caughtUp()
		return in.consume(gctx)
	})
	srv := &http.Server{Handler: telemetry.HTTPHandler(in.Handler(), "ingest"), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP on %s: %w", cfg.Addr, err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err := srv.Shutdown(sctx)
		stopBG()
		return err
	})
	log.Info("ingest listening", "addr", ln.Addr().String(), "topic", cfg.Kafka.Topics.SurveyEvents)
	return g.Wait()
}

// build connects the parts of one process. The verdict reader is positioned before the HTTP
// server can accept a request, so no verdict of this process is missed.
func build(ctx context.Context, cfg Config, log *slog.Logger, deps service.Deps) (*Ingest, *dedup, error) {
	instance := kafka.InstanceID()
	reg, err := registry.New(cfg.Kafka, log)
	if err != nil {
		return nil, nil, err
	}
	vs, err := newVerdicts(ctx, cfg.Kafka, instance)
	if err != nil {
		_ = reg.Run(canceled()) // closes its client
		return nil, nil, err
	}
	in := &Ingest{cfg: cfg, log: log.With("instance", instance), reg: reg, verdicts: vs, deps: deps,
		claims: newCommitter(cfg.Kafka, cfg.Group+"-http-"+instance, log, deps.Telemetry.KafkaHooks()...)}
	dd, err := newDedup(cfg, log, &in.stats, deps)
	if err != nil {
		_ = reg.Run(canceled())
		vs.close()
		return nil, nil, err
	}
	return in, dd, nil
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// checkPartitions refuses to start when `event-ids` cannot mirror `ingest-accepted` partition for
// partition: a verdict is written to the partition number of its claim.
func checkPartitions(ctx context.Context, cfg kafka.Config) error {
	cl, err := kafka.NewClient(cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(ctx, cfg.Topics.IngestAccepted, cfg.Topics.EventIDs)
	if err != nil {
		return fmt.Errorf("describing %s and %s: %w", cfg.Topics.IngestAccepted, cfg.Topics.EventIDs, err)
	}
	a, b := details[cfg.Topics.IngestAccepted], details[cfg.Topics.EventIDs]
	if a.Err != nil || b.Err != nil {
		return fmt.Errorf("describing %s and %s: %w", cfg.Topics.IngestAccepted, cfg.Topics.EventIDs, errors.Join(a.Err, b.Err))
	}
	if len(a.Partitions) != len(b.Partitions) {
		return fmt.Errorf("topic %s has %d partitions but %s has %d: they must have the same count (TOPIC_INGEST_ACCEPTED, TOPIC_EVENT_IDS)",
			cfg.Topics.IngestAccepted, len(a.Partitions), cfg.Topics.EventIDs, len(b.Partitions))
	}
	return nil
}
