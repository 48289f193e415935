package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/surveyhooks/surveyhooks/pkg/logging"
)

func TestLinesLoggedWithASpanCarryItsTraceAndSpanIDs(t *testing.T) {
	var buf bytes.Buffer
	log := logging.NewTo(&buf, "delivery", "debug").With("worker", "w1")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))

	log.InfoContext(ctx, "delivered", "delivery_id", "msg_1")
	log.Debug("no span here")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 2)
	var first, second map[string]any
	require.NoError(t, json.Unmarshal(lines[0], &first))
	require.NoError(t, json.Unmarshal(lines[1], &second))
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", first["trace_id"])
	require.Equal(t, "00f067aa0ba902b7", first["span_id"])
	require.Equal(t, "delivery", first["service"])
	require.Equal(t, "w1", first["worker"])
	require.NotContains(t, second, "trace_id")
}

func TestAnUnknownLevelIsReportedAndInfoIsUsed(t *testing.T) {
	var buf bytes.Buffer
	log := logging.NewTo(&buf, "api", "verbose")
	log.Debug("hidden")
	require.Contains(t, buf.String(), "SURVEYHOOKS_LOG_LEVEL")
	require.Contains(t, buf.String(), "verbose")
	require.NotContains(t, buf.String(), "hidden")
}
