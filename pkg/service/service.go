// Package service is the shared shape of every surveyhooks binary's main: load and validate the
// typed configuration from the environment, build the JSON logger, run until SIGINT/SIGTERM, and
// exit non-zero with the error when Run fails. It holds no service logic.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/logging"
)

// Main runs a service: cfg is filled from the environment and validated before run is called.
func Main[C any](name string, run func(ctx context.Context, cfg C, log *slog.Logger) error) {
	log := logging.New(name)
	var cfg C
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	pprofFromEnv(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}
