// Package logging builds the structured JSON logger every service uses (log/slog), with the trace
// and span ids of the context a record is logged with. Secrets must never be passed to it: callers
// log ids and prefixes, never keys, secrets or request bodies.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/trace"
)

// LevelEnv names the variable that sets the level: debug, info (the default), warn or error.
const LevelEnv = "SURVEYHOOKS_LOG_LEVEL"

// New returns a JSON logger on stderr at the level named by SURVEYHOOKS_LOG_LEVEL, tagged with the
// service name. An unknown level is reported on the logger itself and info is used.
func New(service string) *slog.Logger {
	return NewTo(os.Stderr, service, os.Getenv(LevelEnv))
}

// NewTo is New writing to w at the named level.
func NewTo(w io.Writer, service, level string) *slog.Logger {
	// slog's own parser: "debug", "INFO", "warn+2"…; empty means info.
	var lvl slog.Level
	known := level == "" || lvl.UnmarshalText([]byte(level)) == nil
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})
	log := slog.New(traceHandler{h}).With("service", service)
	if !known {
		log.Warn(LevelEnv+": unknown level, using info (want debug, info, warn or error)", "value", level)
	}
	return log
}

// traceHandler adds trace_id and span_id to records logged with a context that carries a span
// (log.InfoContext(ctx, …)), so a log line can be found from its trace and back.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
