// Package api is surveyhooks' management API: projects and their keys, webhooks (written as
// records to the compacted `webhooks` topic, with read-your-writes), Send Test, and — through
// ClickHouse — delivery logs and statistics. It never sends webhooks itself and never returns or
// logs a secret except the one it has just generated, once.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Config is the API service's configuration.
type Config struct {
	Kafka kafka.Config
	// Addr is the HTTP listen address.
	Addr string `env:"API_ADDR" envDefault:"127.0.0.1:8081"`
	// AdminToken authorises project creation (Authorization: Bearer …); at least 16 characters.
	AdminToken string `env:"SURVEYHOOKS_ADMIN_TOKEN"`
	// EncryptionKey seals webhook secrets (32 bytes, standard base64).
	EncryptionKey string `env:"SURVEYHOOKS_ENCRYPTION_KEY"`
	// ClickHouseAddr and ClickHouseDatabase locate the delivery log.
	ClickHouseAddr     string `env:"CLICKHOUSE_ADDR" envDefault:"127.0.0.1:9000"`
	ClickHouseDatabase string `env:"API_CLICKHOUSE_DATABASE" envDefault:"surveyhooks"`
	// TestTimeout bounds how long Send Test waits for the attempt.
	TestTimeout time.Duration `env:"API_TEST_TIMEOUT" envDefault:"35s"`
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
	return c.Kafka.Validate()
}

// Server is one API process.
type Server struct {
	cfg     Config
	log     *slog.Logger
	reg     *registry.Registry
	kcl     *kgo.Client
	box     *secrets.Box
	tests   *testWaiters
	logs    *logStore
	handler http.Handler
}

// Run serves the API until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := kafka.EnsureTopics(ctx, cfg.Kafka); err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	defer s.kcl.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.reg.Run(ctx) })
	g.Go(func() error { return s.tests.run(ctx) })
	srv := &http.Server{Addr: cfg.Addr, Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("API_ADDR %s: %w", cfg.Addr, err)
	}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	log.Info("api listening", "addr", cfg.Addr)
	return g.Wait()
}

// New builds the server; Run starts it.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	box, err := secrets.NewBox(cfg.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("SURVEYHOOKS_ENCRYPTION_KEY: %w", err)
	}
	reg, err := registry.New(cfg.Kafka, log)
	if err != nil {
		return nil, err
	}
	kcl, err := kafka.NewClient(cfg.Kafka, kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	tests, err := newTestWaiters(cfg.Kafka, log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, reg: reg, kcl: kcl, box: box, tests: tests,
		logs: &logStore{addr: cfg.ClickHouseAddr, database: cfg.ClickHouseDatabase}}
	s.handler = s.routes()
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /v1/projects", s.admin(s.createProject))
	mux.HandleFunc("GET /v1/projects/{id}", s.admin(s.getProject))
	mux.HandleFunc("POST /v1/webhooks", s.project(s.createWebhook))
	mux.HandleFunc("GET /v1/webhooks", s.project(s.listWebhooks))
	mux.HandleFunc("GET /v1/webhooks/{id}", s.project(s.getWebhook))
	mux.HandleFunc("PATCH /v1/webhooks/{id}", s.project(s.patchWebhook))
	mux.HandleFunc("DELETE /v1/webhooks/{id}", s.project(s.deleteWebhook))
	mux.HandleFunc("POST /v1/webhooks/{id}/secrets/rotate", s.project(s.rotateSecret))
	mux.HandleFunc("POST /v1/webhooks/{id}/test", s.project(s.sendTest))
	mux.HandleFunc("GET /v1/webhooks/{id}/attempts", s.project(s.listWebhookAttempts))
	mux.HandleFunc("GET /v1/events/{event_id}/attempts", s.project(s.listEventAttempts))
	mux.HandleFunc("GET /v1/attempts/{id}", s.project(s.getAttempt))
	mux.HandleFunc("GET /v1/webhooks/{id}/stats", s.project(s.webhookStats))
	mux.HandleFunc("GET /v1/dead-letters", s.project(s.listDeadLetters))
	mux.HandleFunc("POST /v1/dead-letters/{id}/replay", s.project(s.replayDeadLetter))
	mux.HandleFunc("POST /v1/dead-letters/replay", s.project(s.replayDeadLetters))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, httpapi.Errorf(http.StatusNotFound, "not_found", "", "no route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

type projectHandlerFunc func(w http.ResponseWriter, r *http.Request, p *pb.Project) error

// admin authorises with the admin token.
func (s *Server) admin(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := httpapi.BearerToken(r)
		if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) != 1 {
			httpapi.WriteError(w, httpapi.Errorf(http.StatusUnauthorized, "unauthorized", "", "an admin token is required: Authorization: Bearer <SURVEYHOOKS_ADMIN_TOKEN>"))
			return
		}
		s.serve(w, r, h)
	}
}

// project authorises with a project API key and passes the project on.
func (s *Server) project(h projectHandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := httpapi.BearerToken(r)
		p := s.reg.ProjectByAPIKey(tok)
		if tok == "" || p == nil {
			httpapi.WriteError(w, httpapi.Errorf(http.StatusUnauthorized, "unauthorized", "", "a valid project API key is required: Authorization: Bearer <api_key>"))
			return
		}
		s.serve(w, r, func(w http.ResponseWriter, r *http.Request) error { return h(w, r, p) })
	}
}

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

// sealedFingerprint is a short non-reversible tag of a secret, for telling secrets apart.
func fingerprint(b []byte) string {
	if len(b) < 8 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b[len(b)-6:])
}
