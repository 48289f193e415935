// Package service is the shared shape of every surveyhooks binary's main: load and validate the
// typed configuration from the environment, build the JSON logger, set up telemetry and the
// operations server (/metrics, /healthz, /readyz), run until SIGINT/SIGTERM, and exit non-zero
// with the error when Run fails. It holds no service logic.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/logging"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// RunFunc is a service's entry point: it runs until ctx is done, then drains and returns nil.
type RunFunc[C any] func(ctx context.Context, cfg C, log *slog.Logger, opts ...Option) error

// Main runs a service: cfg is filled from the environment and validated before run is called.
// Configuration errors exit 2 naming the variable; a failed run exits 1; a clean stop exits 0.
func Main[C any](name string, run RunFunc[C]) {
	var cfg C
	environ := config.Environ()
	flags(name, &cfg, os.Args[1:], environ)
	log := logging.NewTo(os.Stderr, name, environ.Get(logging.LevelEnv))
	if err := config.LoadEnv(&cfg, environ); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	if err := Serve(name, log, environ, func(ctx context.Context, opts ...Option) error {
		return run(ctx, cfg, log, opts...)
	}); err != nil {
		var cerr configError
		if errors.As(err, &cerr) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(2)
		}
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}

// configError is a start-up error caused by the environment (exit 2, like a bad Config).
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// Serve is Main after the configuration is loaded: telemetry, the operations server and the
// signal handling around run, configured by e (SURVEYHOOKS_OPS_ADDR, SURVEYHOOKS_PPROF_ADDR).
func Serve(name string, log *slog.Logger, e config.Env, run func(ctx context.Context, opts ...Option) error) error {
	pprofFromEnv(log, e)
	addr, err := opsAddr(e)
	if err != nil {
		return configError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	tel, err := telemetry.Setup(ctx, name)
	if err != nil {
		return configError{fmt.Errorf("telemetry: %w", err)}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("flushing telemetry", "err", err)
		}
	}()
	if tel.Exporting() {
		log.Info("exporting traces by OTLP (OTEL_* variables)")
	}

	ready := NewReadiness()
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return configError{fmt.Errorf("%s: %w", OpsAddrEnv, err)}
		}
		srv := telemetry.OpsServer(addr, tel, ready.Check)
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		log.Info("ops server listening", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	}
	finished := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			ready.Drain()
			log.Info("stopping: draining in-flight work")
		case <-finished:
		}
	}()
	err = run(ctx, WithTelemetry(tel), WithReadiness(ready))
	close(finished)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// flags applies command-line flags to e, answers --help with every variable, and exits 2 on an
// unknown flag.
func flags(name string, cfg any, args []string, e config.Env) {
	vars, err := config.Vars(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	common := []string{OpsAddrEnv, logging.LevelEnv, PprofAddrEnv}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fmt.Printf("usage: %s [--flag=value ...]\n\nEach flag sets the environment variable of the same name "+
				"(--kafka-brokers ≙ KAFKA_BROKERS); flags win.\n\n", name)
			for _, v := range vars {
				fmt.Printf("  %-36s %-32s default %q\n", v.Flag, v.Name, v.Default)
			}
			fmt.Printf("  %-36s %-32s default %q (\"off\" disables)\n", config.FlagName(OpsAddrEnv), OpsAddrEnv, DefaultOpsAddr)
			fmt.Printf("  %-36s %-32s default \"info\"\n", config.FlagName(logging.LevelEnv), logging.LevelEnv)
			fmt.Printf("  %-36s %-32s default off (loopback only)\n\nTracing: the standard OTEL_* variables "+
				"(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, …).\n", config.FlagName(PprofAddrEnv), PprofAddrEnv)
			os.Exit(0)
		}
	}
	if err := config.ApplyFlags(e, args, vars, common...); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
}
