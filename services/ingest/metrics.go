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
	// sets holds the attribute sets of the labels every request uses, built once: a set is
	// sorted and allocated each time it is built.
	sets map[[2]string]metric.AddOption
}

// commonLabels are the (result, reason) pairs of accepted requests.
var commonLabels = [][2]string{{"accepted", ""}, {"preview", ""}, {"duplicate", "duplicate_event_id"}}

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
	m := &Metrics{events: events, sets: make(map[[2]string]metric.AddOption, len(commonLabels))}
	for _, l := range commonLabels {
		m.sets[l] = labels(l[0], l[1])
	}
	return m, nil
}

// Events counts n events received with their result (accepted, rejected, duplicate, preview)
// and, for anything not accepted, a short fixed reason code (never input text: labels must stay
// a small set).
func (m *Metrics) Events(ctx context.Context, n int, result, reason string) {
	if m == nil || n <= 0 {
		return
	}
	set, ok := m.sets[[2]string{result, reason}]
	if !ok {
		set = labels(result, reason)
	}
	m.events.Add(ctx, int64(n), set)
}

func labels(result, reason string) metric.AddOption {
	return metric.WithAttributeSet(attribute.NewSet(
		attribute.String(attrResult, result), attribute.String(attrReason, reason)))
}
