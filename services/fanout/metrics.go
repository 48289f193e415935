package fanout

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// The fan-out instrument, as an OTel name; the Prometheus exporter turns dots into underscores
// and adds _total (surveyhooks.fanout → surveyhooks_fanout_total).
const (
	MetricTotals = "surveyhooks.fanout"

	attrResult = "result" // events, deliveries, unmatched, preview, filtered, …
)

// Metrics reports fan-out's running totals. A nil *Metrics records nothing, so fan-out runs in
// tests without telemetry.
type Metrics struct {
	meter  metric.Meter
	totals metric.Int64ObservableCounter
}

// NewMetrics creates the fan-out instrument on tel's meter; nil without telemetry.
func NewMetrics(tel *telemetry.Telemetry) (*Metrics, error) {
	if tel == nil {
		return nil, nil
	}
	m := &Metrics{meter: tel.MeterProvider().Meter("github.com/surveyhooks/surveyhooks/services/fanout")}
	var err error
	if m.totals, err = m.meter.Int64ObservableCounter(MetricTotals, metric.WithUnit("{item}"),
		metric.WithDescription("Fan-out's running totals by result: events read, deliveries produced, and (event, webhook) "+
			"pairs or events not sent (unmatched, preview, filtered, filter_error, bad_config, render_error, unreadable).")); err != nil {
		return nil, fmt.Errorf("creating instrument %s: %w", MetricTotals, err)
	}
	return m, nil
}

// ObserveTotals registers fn to report the running totals by result each time metrics are
// collected (the counters cost nothing per event); fn must be quick and safe to call from another
// goroutine. The returned function unregisters it.
func (m *Metrics) ObserveTotals(fn func() map[string]int64) (unregister func() error, err error) {
	if m == nil {
		return func() error { return nil }, nil
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for result, n := range fn() {
			o.ObserveInt64(m.totals, n, metric.WithAttributeSet(attribute.NewSet(attribute.String(attrResult, result))))
		}
		return nil
	}, m.totals)
	if err != nil {
		return nil, fmt.Errorf("registering fan-out callback: %w", err)
	}
	return reg.Unregister, nil
}
