// Package api is surveyhooks' management and query API: projects and their keys, webhooks
// (written as records to the compacted `webhooks` topic, with read-your-writes), Send Test,
// delivery logs and statistics read from ClickHouse, and dead-letter replay.
//
// It never sends a webhook itself (Send Test and replays go through `deliveries` to the delivery
// service, like every other delivery), never lets one project see or change another's data, and
// never returns or logs a secret — except a webhook secret it has just generated or been given,
// once, in the answer to that call.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api/portal"
)

// Config is the API service's configuration.
type Config struct {
	Kafka kafka.Config
	// Addr is the HTTP listen address.
	Addr string `env:"API_ADDR" envDefault:"127.0.0.1:8081"`
	// AdminToken authorises the project endpoints (Authorization: Bearer …); at least 16 characters.
	AdminToken string `env:"SURVEYHOOKS_ADMIN_TOKEN"`
	// EncryptionKey seals webhook secrets (32 bytes, standard base64).
	EncryptionKey string `env:"SURVEYHOOKS_ENCRYPTION_KEY"`
	// ClickHouseAddr and ClickHouseDatabase locate the delivery log the sink writes.
	ClickHouseAddr     string `env:"CLICKHOUSE_ADDR" envDefault:"127.0.0.1:9000"`
	ClickHouseDatabase string `env:"API_CLICKHOUSE_DATABASE" envDefault:"surveyhooks"`
	// TestTimeout bounds how long Send Test waits for the delivery service's attempt; the endpoint
	// itself has 30 s to answer, so the default leaves room for queueing.
	TestTimeout time.Duration `env:"API_TEST_TIMEOUT" envDefault:"35s"`
	// MaxReplay bounds how many dead letters one bulk replay sends.
	MaxReplay int `env:"API_MAX_REPLAY" envDefault:"1000"`
	// ErasureSecondPass is how long an erasure job waits before erasing ClickHouse a second time:
	// attempts that were in flight when it started (a request takes up to 30 s) and attempts and
	// dead letters still on their way through `delivery-attempts` and the sink reach ClickHouse
	// meanwhile. 0: one pass.
	ErasureSecondPass time.Duration `env:"API_ERASURE_SECOND_PASS" envDefault:"45s"`
	// PortalFrameAncestors are origins (https://app.example.com) whose pages may embed the portal
	// in an iframe; the session cookie is SameSite=Strict, so they must be the same site.
	PortalFrameAncestors []string `env:"API_PORTAL_FRAME_ANCESTORS" envSeparator:","`
	// The delivery log's retention, read from the sink's variables (one setting for both): how far
	// back a replay job may reach.
	RetentionDays    int            `env:"SINK_RETENTION_DAYS" envDefault:"30"`
	MaxRetentionDays int            `env:"SINK_MAX_RETENTION_DAYS" envDefault:"90"`
	ProjectRetention map[string]int `env:"SINK_PROJECT_RETENTION" envSeparator:"," envKeyValSeparator:"="`
}

// Validate reports the first configuration error, naming the variable.
func (c Config) Validate() error {
	if len(c.AdminToken) < 16 {
		return errors.New("SURVEYHOOKS_ADMIN_TOKEN: required, at least 16 characters")
	}
	if _, err := secrets.NewBox(c.EncryptionKey); err != nil {
		return fmt.Errorf("SURVEYHOOKS_ENCRYPTION_KEY: %w", err)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("API_ADDR: %w", err)
	}
	if c.ClickHouseDatabase == "" {
		return errors.New("API_CLICKHOUSE_DATABASE: must not be empty")
	}
	if c.TestTimeout <= 0 {
		return errors.New("API_TEST_TIMEOUT: must be positive")
	}
	if c.MaxReplay < 1 {
		return errors.New("API_MAX_REPLAY: must be at least 1")
	}
	if c.ErasureSecondPass < 0 || c.ErasureSecondPass > 10*time.Minute {
		return fmt.Errorf("API_ERASURE_SECOND_PASS: must be between 0 and 10m, got %v", c.ErasureSecondPass)
	}
	if err := portal.ValidOrigins(c.PortalFrameAncestors); err != nil {
		return fmt.Errorf("API_PORTAL_FRAME_ANCESTORS: %w", err)
	}
	if err := c.validateRetention(); err != nil {
		return err
	}
	return c.Kafka.Validate()
}

// Server is one API process.
type Server struct {
	cfg   Config
	log   *slog.Logger
	reg   *registry.Registry
	kcl   *kgo.Client // producer: projects, webhooks, deliveries
	box   *secrets.Box
	tests *testWaiters
	logs  *logStore
	locks stripedLocks
	idem  *idempotency
	// replays runs this process's replay jobs (replays.go).
	replays *replayRunner
	// portal serves /portal/ and /console/; inproc is the router its calls go through.
	portal *portal.Portal
	inproc http.Handler
	// jobCtx ends when the API stops; jobs counts the erasure jobs running (erasures.go).
	jobCtx context.Context
	jobs   sync.WaitGroup
}

// Run serves the API until ctx is done. It listens only once it has read every project and
// webhook, so its first answers are already complete.
func Run(ctx context.Context, cfg Config, log *slog.Logger, opts ...service.Option) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if log == nil {
		log = slog.Default()
	}
	deps := service.Apply(opts)
	caughtUp := deps.Ready.Wait("webhooks caught up")
	if err := kafka.EnsureTopics(ctx, cfg.Kafka); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ensuring topics: %w", err)
	}
	s, err := newServer(cfg, log, deps.Telemetry.KafkaHooks()...)
	if err != nil {
		return err
	}
	defer s.kcl.Close()
	defer s.logs.close()
	defer s.jobs.Wait() // erasure jobs stop with gctx, before their store and producer close

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	// fail stops what was started; an error caused by ctx ending is a normal stop.
	fail := func(err error) error {
		cancel()
		_ = g.Wait()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	regRun := registry.Start(gctx, s.reg, caughtUp)
	g.Go(regRun.Wait)
	g.Go(func() error { return s.idem.run(gctx) })
	s.replays.ctx = gctx
	g.Go(func() error { return s.keepReplays(gctx) })
	if err := regRun.CaughtUp(gctx); err != nil {
		return fail(fmt.Errorf("loading projects and webhooks: %w", err))
	}
	s.jobCtx = gctx
	g.Go(func() error { s.resumeErasures(gctx); return nil })
	if s.tests, err = newTestWaiters(gctx, cfg.Kafka, log); err != nil {
		return fail(err)
	}
	g.Go(func() error { return s.tests.run(gctx) })

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fail(fmt.Errorf("API_ADDR %s: %w", cfg.Addr, err))
	}
	srv := &http.Server{Handler: telemetry.HTTPHandler(s.handler(), "api"), ReadHeaderTimeout: 10 * time.Second,
		// Send Test waits for a real delivery: the write timeout must outlast it.
		WriteTimeout: cfg.TestTimeout + 15*time.Second, IdleTimeout: 2 * time.Minute}
	g.Go(func() error {
		err := service.ServeHTTP(gctx, srv, ln, 10*time.Second)
		if errors.Is(err, context.DeadlineExceeded) {
			// A Send Test still waiting for its attempt: stopping wins.
			log.Warn("api stopped with requests in flight", "err", err)
			return nil
		}
		return err
	})
	log.Info("api listening", "addr", ln.Addr().String())
	return g.Wait()
}

func newServer(cfg Config, log *slog.Logger, hooks ...kgo.Opt) (*Server, error) {
	box, err := secrets.NewBox(cfg.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("SURVEYHOOKS_ENCRYPTION_KEY: %w", err)
	}
	reg, err := registry.New(cfg.Kafka, log)
	if err != nil {
		return nil, err
	}
	// No linger: every write is awaited by an HTTP caller.
	kcl, err := kafka.NewClient(cfg.Kafka, append(hooks, kgo.ProducerLinger(0))...)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, reg: reg, kcl: kcl, box: box,
		logs:    &logStore{addr: cfg.ClickHouseAddr, database: cfg.ClickHouseDatabase, log: log},
		replays: &replayRunner{owner: "api-" + uuid.NewString(), ctx: context.Background(), mine: map[string]bool{}}}
	if s.idem, err = newIdempotency(cfg.Kafka, box, log); err != nil {
		kcl.Close()
		return nil, err
	}
	if s.portal, err = s.newPortal(); err != nil {
		kcl.Close()
		s.idem.cl.Close()
		return nil, err
	}
	s.inproc = s.handler()
	return s, nil
}

// route is one endpoint. The table is also what the OpenAPI test checks the document against.
type route struct {
	method, pattern string
	handler         http.HandlerFunc
}

func (s *Server) routes() []route {
	return []route{
		{"GET", "/healthz", s.healthz},
		{"GET", "/openapi.json", serveOpenAPI},

		{"POST", "/v1/projects", s.admin(s.createProject)},
		{"GET", "/v1/projects/{id}", s.admin(s.getProject)},
		{"PATCH", "/v1/projects/{id}", s.admin(s.patchProject)},
		{"PUT", "/v1/projects/{id}/storage-masking", s.admin(s.setStorageMasking)},
		{"POST", "/v1/projects/{id}/portal-sessions", s.admin(s.createPortalSession)},
		{"POST", "/v1/projects/{id}/erasures", s.admin(s.createErasure)},
		{"GET", "/v1/projects/{id}/erasures/{erasure_id}", s.admin(s.getErasure)},
		{"POST", "/v1/projects/{id}/keys", s.projectAdmin(s.createKey)},
		{"GET", "/v1/projects/{id}/keys", s.projectAdmin(s.listKeys)},
		{"DELETE", "/v1/projects/{id}/keys/{key_id}", s.projectAdmin(s.revokeKey)},

		{"GET", "/v1/event-types", s.anyCredential(s.listEventTypes)},
		{"POST", "/v1/webhooks", s.project(s.createWebhook)},
		{"GET", "/v1/webhooks", s.project(s.listWebhooks)},
		{"GET", "/v1/webhooks/{id}", s.project(s.getWebhook)},
		{"PATCH", "/v1/webhooks/{id}", s.project(s.patchWebhook)},
		{"DELETE", "/v1/webhooks/{id}", s.project(s.deleteWebhook)},
		{"POST", "/v1/webhooks/{id}/secrets/rotate", s.project(s.rotateSecret)},
		{"POST", "/v1/webhooks/{id}/test", s.project(s.sendTest)},

		{"GET", "/v1/attempts", s.project(s.listProjectAttempts)},
		{"GET", "/v1/attempts/{id}", s.project(s.getAttempt)},
		{"GET", "/v1/webhooks/{id}/attempts", s.project(s.listWebhookAttempts)},
		{"GET", "/v1/events/{event_id}/attempts", s.project(s.listEventAttempts)},
		{"GET", "/v1/webhooks/{id}/stats", s.project(s.webhookStats)},

		{"GET", "/v1/dead-letters", s.project(s.listDeadLetters)},
		{"POST", "/v1/dead-letters/{id}/replay", s.project(s.replayDeadLetter)},
		{"POST", "/v1/dead-letters/replay", s.project(s.replayDeadLetters)},

		{"POST", "/v1/operational-webhooks", s.admin(s.createOperationalWebhook)},
		{"GET", "/v1/operational-webhooks", s.admin(s.listOperationalWebhooks)},
		{"GET", "/v1/operational-webhooks/{id}", s.admin(s.getOperationalWebhook)},
		{"PATCH", "/v1/operational-webhooks/{id}", s.admin(s.patchOperationalWebhook)},
		{"DELETE", "/v1/operational-webhooks/{id}", s.admin(s.deleteOperationalWebhook)},
		{"POST", "/v1/operational-webhooks/{id}/secrets/rotate", s.admin(s.rotateOperationalSecret)},
		{"POST", "/v1/webhooks/{id}/replays", s.project(s.createReplay)},
		{"GET", "/v1/replays", s.project(s.listReplays)},
		{"GET", "/v1/replays/{id}", s.project(s.getReplay)},
	}
}

// handler routes requests; what no route matches gets the API's JSON error shape rather than the
// mux's plain-text 404 or 405.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.HandleFunc(rt.method+" "+rt.pattern, rt.handler)
	}
	mux.Handle("/portal/", s.portal)
	mux.Handle("/console/", s.portal)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			httpapi.WriteError(w, httpapi.Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "",
				"%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, rec.header.Get("Allow")))
		case http.StatusNotFound:
			httpapi.WriteError(w, httpapi.Errorf(http.StatusNotFound, "not_found", "", "no route %s %s", r.Method, r.URL.Path))
		default: // a redirect to the cleaned path
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
		}
	})
}

// statusRecorder captures what the mux would answer for an unmatched request.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

type projectHandlerFunc func(w http.ResponseWriter, r *http.Request, p *pb.Project) error

// admin authorises with the admin token, compared in constant time.
func (s *Server) admin(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.isAdmin(httpapi.BearerToken(r)) {
			httpapi.WriteError(w, httpapi.Errorf(http.StatusUnauthorized, "unauthorized", "",
				"an admin token is required: Authorization: Bearer <SURVEYHOOKS_ADMIN_TOKEN>"))
			return
		}
		s.idempotent(w, r, "admin", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, h) })
	}
}

// project authorises with a project API key holding the call's scope, or the admin token naming
// the project in X-Surveyhooks-Project (authProject), and hands the handler that project: every
// handler below reads and writes only what belongs to it. Keys are looked up by their SHA-256, so
// no comparison leaks how much of a key matched.
func (s *Server) project(h projectHandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authProject(r)
		if err != nil {
			s.serve(w, r, func(http.ResponseWriter, *http.Request) error { return err })
			return
		}
		s.idempotent(w, r, p.Id, func(w http.ResponseWriter, r *http.Request) {
			s.serve(w, r, func(w http.ResponseWriter, r *http.Request) error { return h(w, r, p) })
		})
	}
}

// serve runs h and turns its error into the JSON error shape; errors that are not API errors are
// logged (without the request body) and shown to the client as a bare 500.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, h handlerFunc) {
	if err := h(w, r); err != nil {
		var e *httpapi.Error
		if !errors.As(err, &e) {
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		httpapi.WriteError(w, err)
	}
}

func notFound(what, id string) error {
	return httpapi.Errorf(http.StatusNotFound, "not_found", "", "%s %q not found", what, id)
}

func invalid(field, format string, args ...any) error {
	return httpapi.Errorf(http.StatusBadRequest, "invalid_field", field, format, args...)
}

func badParam(name, format string, args ...any) error {
	return httpapi.Errorf(http.StatusBadRequest, "invalid_parameter", name, format, args...)
}
