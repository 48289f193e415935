// Package surveyhooks is the all-in-one command for development: an embedded Kafka broker (kfake,
// persisted under the data folder), a local ClickHouse when none is configured, and every service
// in one process. Production runs each service as its own process instead; nothing here is needed
// there. It must never weaken a guarantee for convenience except the documented dev defaults
// (admin token, encryption key, loopback allow-list), which it announces at start.
package surveyhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/sync/errgroup"

	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/services/api"
	"github.com/surveyhooks/surveyhooks/services/delivery"
	"github.com/surveyhooks/surveyhooks/services/fanout"
	"github.com/surveyhooks/surveyhooks/services/ingest"
	"github.com/surveyhooks/surveyhooks/services/sink"
)

// Config is the all-in-one command's own configuration; each service reads its own from the
// environment as it would when run alone, with the development defaults of Run on top (never
// written to the process environment).
type Config struct {
	// DataDir holds the embedded Kafka's log, the local ClickHouse and the dev encryption key.
	DataDir string `env:"SURVEYHOOKS_DATA_DIR" envDefault:".data"`
	// KafkaListen is where the embedded broker listens (loopback only).
	KafkaListen string `env:"SURVEYHOOKS_KAFKA_LISTEN" envDefault:"127.0.0.1:9092"`
	// Services selects what runs: kafka, ingest, fanout, delivery, sink, api.
	Services []string `env:"SURVEYHOOKS_SERVICES" envSeparator:"," envDefault:"kafka,ingest,fanout,delivery,sink,api"`
}

// AllServices lists what Services may name.
var AllServices = []string{"kafka", "ingest", "fanout", "delivery", "sink", "api"}

// DevAdminToken is the admin token used when SURVEYHOOKS_ADMIN_TOKEN is unset (printed at start).
const DevAdminToken = "dev-admin-token-change-me"

// Validate reports the first configuration error, naming the variable.
func (c Config) Validate() error {
	for _, s := range c.Services {
		if !slices.Contains(AllServices, s) {
			return fmt.Errorf("SURVEYHOOKS_SERVICES: unknown service %q (have %s)", s, strings.Join(AllServices, ","))
		}
	}
	host, port, err := net.SplitHostPort(c.KafkaListen)
	if err != nil || (host != "127.0.0.1" && host != "localhost") {
		return fmt.Errorf("SURVEYHOOKS_KAFKA_LISTEN: want 127.0.0.1:<port>, got %q", c.KafkaListen)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("SURVEYHOOKS_KAFKA_LISTEN: bad port in %q", c.KafkaListen)
	}
	return nil
}

// Run starts what cfg selects and runs until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger, opts ...service.Option) error {
	want := func(s string) bool { return slices.Contains(cfg.Services, s) }
	environ := config.Environ()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating SURVEYHOOKS_DATA_DIR %s: %w", cfg.DataDir, err)
	}
	if want("kafka") {
		_, port, _ := net.SplitHostPort(cfg.KafkaListen)
		p, _ := strconv.Atoi(port)
		cluster, err := kfake.NewCluster(kfake.Ports(p), kfake.DataDir(filepath.Join(cfg.DataDir, "kafka")),
			kfake.DefaultNumPartitions(12))
		if err != nil {
			return fmt.Errorf("starting embedded Kafka on %s: %w", cfg.KafkaListen, err)
		}
		defer cluster.Close()
		environ.SetDefault("KAFKA_BROKERS", cfg.KafkaListen)
		log.Info("embedded Kafka (kfake) listening", "addr", cfg.KafkaListen, "data", filepath.Join(cfg.DataDir, "kafka"))
	}
	if err := devDefaults(cfg, environ, log); err != nil {
		return err
	}
	if (want("sink") || want("api")) && environ.Get("CLICKHOUSE_ADDR") == "" {
		stop, err := startClickHouse(filepath.Join(cfg.DataDir, "clickhouse"), environ, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	g, ctx := errgroup.WithContext(ctx)
	start := func(name string, run func(context.Context) error) {
		if want(name) {
			g.Go(func() error {
				if err := run(ctx); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				return nil
			})
		}
	}
	var (
		icfg ingest.Config
		fcfg fanout.Config
		dcfg delivery.Config
		scfg sink.Config
		acfg api.Config
	)
	for name, c := range map[string]any{"ingest": &icfg, "fanout": &fcfg, "delivery": &dcfg, "sink": &scfg, "api": &acfg} {
		if want(name) {
			if err := config.LoadEnv(c, environ); err != nil {
				return fmt.Errorf("%s %w", name, err)
			}
		}
	}
	if want("kafka") {
		g.Go(func() error { <-ctx.Done(); return nil }) // the broker runs until stopped
		if len(cfg.Services) == 1 {
			service.Apply(opts).Ready.Wait("embedded Kafka")() // the broker alone: ready once listening
		}
	}
	start("ingest", func(ctx context.Context) error { return ingest.Run(ctx, icfg, log.With("service", "ingest"), opts...) })
	start("fanout", func(ctx context.Context) error { return fanout.Run(ctx, fcfg, log.With("service", "fanout"), opts...) })
	start("delivery", func(ctx context.Context) error {
		return delivery.Run(ctx, dcfg, log.With("service", "delivery"), opts...)
	})
	start("sink", func(ctx context.Context) error { return sink.Run(ctx, scfg, log.With("service", "sink"), opts...) })
	start("api", func(ctx context.Context) error { return api.Run(ctx, acfg, log.With("service", "api"), opts...) })
	banner(cfg, environ, log)
	return g.Wait()
}

// devDefaults fills in e what production must configure explicitly, and says so.
func devDefaults(cfg Config, e config.Env, log *slog.Logger) error {
	if e.SetDefault("SURVEYHOOKS_ADMIN_TOKEN", DevAdminToken) {
		log.Warn("SURVEYHOOKS_ADMIN_TOKEN is unset: using the development token", "admin_token", DevAdminToken)
	}
	if e.Get("SURVEYHOOKS_ENCRYPTION_KEY") == "" {
		path := filepath.Join(cfg.DataDir, "encryption.key")
		key, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			key = []byte(base64.StdEncoding.EncodeToString(b))
			err = os.WriteFile(path, key, 0o600)
		}
		if err != nil {
			return fmt.Errorf("development encryption key %s: %w", path, err)
		}
		e.SetDefault("SURVEYHOOKS_ENCRYPTION_KEY", strings.TrimSpace(string(key)))
		log.Warn("SURVEYHOOKS_ENCRYPTION_KEY is unset: webhook secrets are sealed with a development key", "file", path)
	}
	if e.SetDefault("SURVEYHOOKS_ALLOW_DESTINATIONS", "127.0.0.0/8,::1/128") {
		log.Warn("development mode: webhooks may target this machine", "allowed", "127.0.0.0/8,::1/128")
	}
	return nil
}

// startClickHouse starts a private clickhouse-server (installing Debian's package when missing)
// through deploy/clickhouse/local.sh, sets the variables it prints in e, and returns how to stop it.
func startClickHouse(dir string, e config.Env, log *slog.Logger) (func(), error) {
	script, err := findScript("deploy/clickhouse/local.sh")
	if err != nil {
		return nil, fmt.Errorf("CLICKHOUSE_ADDR is unset and %w; set CLICKHOUSE_ADDR to a running server", err)
	}
	log.Info("CLICKHOUSE_ADDR is unset: starting a local ClickHouse (installs Debian's clickhouse-server if missing)", "dir", dir)
	cmd := exec.Command(script, "start", dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("starting local ClickHouse: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
			e[k] = v
		}
	}
	log.Info("local ClickHouse running", "addr", e.Get("CLICKHOUSE_ADDR"))
	return func() {
		stop := exec.Command(script, "stop", dir)
		stop.Stderr = os.Stderr
		if err := stop.Run(); err != nil {
			log.Warn("stopping local ClickHouse", "err", err)
		}
	}, nil
}

// findScript looks for rel in the working directory and its parents (the repository root).
func findScript(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s was not found above the working directory", rel)
		}
		dir = parent
	}
}

func banner(cfg Config, e config.Env, log *slog.Logger) {
	log.Info("surveyhooks is running",
		"services", strings.Join(cfg.Services, ","),
		"ingest", "http://"+envOr(e, "INGEST_ADDR", "127.0.0.1:8080"),
		"api", "http://"+envOr(e, "API_ADDR", "127.0.0.1:8081"),
		"kafka", e.Get("KAFKA_BROKERS"),
		"clickhouse", e.Get("CLICKHOUSE_ADDR"))
}

func envOr(e config.Env, k, def string) string {
	if v := e.Get(k); v != "" {
		return v
	}
	return def
}
