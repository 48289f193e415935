// Package logging builds the structured JSON logger every service uses (log/slog). Secrets must
// never be passed to it: callers log ids and prefixes, never keys, secrets or request bodies.
package logging

import (
	"log/slog"
	"os"
	"strings"
)

// New returns a JSON logger at the level named by SURVEYHOOKS_LOG_LEVEL (debug, info, warn,
// error; default info), tagged with the service name.
func New(service string) *slog.Logger {
	var lvl slog.Level
	switch strings.ToLower(os.Getenv("SURVEYHOOKS_LOG_LEVEL")) {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("service", service)
}
