package telemetry

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument names, as OTel names; the Prometheus exporter turns dots into underscores and adds
// the unit and _total suffixes (surveyhooks.sink.batch in s → surveyhooks_sink_batch_seconds).
// The delivery service declares its own instruments (services/delivery/metrics.go).
const (
	MetricConsumerLag   = "surveyhooks.consumer.lag"
	MetricSinkBatchRows = "surveyhooks.sink.batch.rows"
	MetricSinkBatch     = "surveyhooks.sink.batch"
	MetricIngestEvents  = "surveyhooks.ingest.events"
	MetricFanout        = "surveyhooks.fanout"
)

// Attribute keys of the surveyhooks instruments: a small, closed set, so label cardinality stays
// bounded (never a webhook id, URL, project or event id).
const (
	AttrGroup     = "group"     // consumer group
	AttrTopic     = "topic"     // topic
	AttrPartition = "partition" // partition number
	AttrResult    = "result"    // ingest: accepted, rejected, duplicate, preview
	AttrReason    = "reason"    // ingest: why rejected/dropped ("" when accepted)
)

// Metrics are the named instruments the services record. A nil *Metrics records nothing, so
// components can be built in tests without telemetry.
type Metrics struct {
	meter metric.Meter

	consumerLag   metric.Int64ObservableGauge
	sinkBatchRows metric.Int64Histogram
	sinkBatch     metric.Float64Histogram
	ingestEvents  metric.Int64Counter
	fanout        metric.Int64ObservableCounter
}

// NewMetrics creates the surveyhooks instruments on mp's meter.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{meter: mp.Meter("github.com/surveyhooks/surveyhooks/pkg/telemetry")}
	var err error
	if m.consumerLag, err = m.meter.Int64ObservableGauge(MetricConsumerLag,
		metric.WithUnit("{record}"),
		metric.WithDescription("Records not yet committed by a consumer group, per topic partition.")); err != nil {
		return nil, instrumentErr(MetricConsumerLag, err)
	}
	if m.sinkBatchRows, err = m.meter.Int64Histogram(MetricSinkBatchRows,
		metric.WithUnit("{row}"),
		metric.WithDescription("Rows per ClickHouse batch insert."),
		metric.WithExplicitBucketBoundaries(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000)); err != nil {
		return nil, instrumentErr(MetricSinkBatchRows, err)
	}
	if m.sinkBatch, err = m.meter.Float64Histogram(MetricSinkBatch,
		metric.WithUnit("s"),
		metric.WithDescription("Time to send one ClickHouse batch insert until acknowledged."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, instrumentErr(MetricSinkBatch, err)
	}
	if m.ingestEvents, err = m.meter.Int64Counter(MetricIngestEvents,
		metric.WithUnit("{event}"),
		metric.WithDescription("Events received by ingest, by result and reason.")); err != nil {
		return nil, instrumentErr(MetricIngestEvents, err)
	}
	if m.fanout, err = m.meter.Int64ObservableCounter(MetricFanout,
		metric.WithUnit("{item}"),
		metric.WithDescription("Fan-out's running totals by result: events read, deliveries produced, and (event, webhook) "+
			"pairs or events not sent (unmatched, preview, filtered, filter_error, bad_config, render_error, unreadable).")); err != nil {
		return nil, instrumentErr(MetricFanout, err)
	}
	return m, nil
}

func instrumentErr(name string, err error) error {
	return fmt.Errorf("creating instrument %s: %w", name, err)
}

// SinkBatch records one acknowledged ClickHouse batch: its row count and how long it took.
func (m *Metrics) SinkBatch(ctx context.Context, rows int, took time.Duration) {
	if m == nil {
		return
	}
	m.sinkBatchRows.Record(ctx, int64(rows))
	m.sinkBatch.Record(ctx, took.Seconds())
}

// IngestEvents counts n events received by ingest with their result (accepted, rejected,
// duplicate, preview) and, for anything not accepted, a short fixed reason code (never input
// text: labels must stay a small set).
func (m *Metrics) IngestEvents(ctx context.Context, n int, result, reason string) {
	if m == nil || n <= 0 {
		return
	}
	m.ingestEvents.Add(ctx, int64(n), metric.WithAttributeSet(attribute.NewSet(
		attribute.String(AttrResult, result), attribute.String(AttrReason, reason))))
}

// ObserveFanout registers fn to report fan-out's running totals by result each time metrics are
// collected (the counters cost nothing per event). The returned function unregisters it.
func (m *Metrics) ObserveFanout(fn func() map[string]int64) (unregister func() error, err error) {
	if m == nil {
		return func() error { return nil }, nil
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for result, n := range fn() {
			o.ObserveInt64(m.fanout, n, metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrResult, result))))
		}
		return nil
	}, m.fanout)
	if err != nil {
		return nil, fmt.Errorf("registering fan-out callback: %w", err)
	}
	return reg.Unregister, nil
}
