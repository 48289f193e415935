package ingest

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// The ingest instrument, as an OTel name; the Prometheus exporter turns dots into underscores
// and adds _total (surveyhooks.ingest.events → surveyhooks_ingest_events_total). Labels stay a
// small closed set: never input text, a project or an event id.
const (
	MetricEvents = "surveyhooks.ingest.events"

	attrResult = "result" // accepted, rejected, duplicate, preview
	attrReason = "reason" // why rejected or not forwarded ("" when accepted)
)

// Metrics counts the events ingest receives. A nil *Metrics records nothing, so ingest runs in
// tests without telemetry.
type Metrics struct {
	events metric.Int64Counter
}

// NewMetrics creates the ingest instrument on tel's meter; nil without telemetry.
func NewMetrics(tel *telemetry.Telemetry) (*Metrics, error) {
	if tel == nil {
		return nil, nil
	}
	meter := tel.MeterProvider().Meter("github.com/surveyhooks/surveyhooks/services/ingest")
	events, err := meter.Int64Counter(MetricEvents, metric.WithUnit("{event}"),
		metric.WithDescription("Events received by ingest, by result and reason."))
	if err != nil {
		return nil, fmt.Errorf("creating instrument %s: %w", MetricEvents, err)
	}
	return &Metrics{events: events}, nil
}

// Events counts n events received with their result (accepted, rejected, duplicate, preview)
// and, for anything not accepted, a short fixed reason code (never input text: labels must stay
// a small set).
func (m *Metrics) Events(ctx context.Context, n int, result, reason string) {
	if m == nil || n <= 0 {
		return
	}
	m.events.Add(ctx, int64(n), metric.WithAttributeSet(attribute.NewSet(
		attribute.String(attrResult, result), attribute.String(attrReason, reason))))
}
