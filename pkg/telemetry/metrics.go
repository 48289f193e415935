package telemetry

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument names, as OTel names; the Prometheus exporter turns dots into underscores and adds
// the unit and _total suffixes (surveyhooks.deliveries → surveyhooks_deliveries_total,
// surveyhooks.delivery.latency in s → surveyhooks_delivery_latency_seconds).
const (
	MetricDeliveries      = "surveyhooks.deliveries"
	MetricDeliveryLatency = "surveyhooks.delivery.latency"
	MetricInFlight        = "surveyhooks.deliveries.in_flight"
	MetricTierDepth       = "surveyhooks.retry_tier.depth"
	MetricTierOldestAge   = "surveyhooks.retry_tier.oldest_age"
	MetricConsumerLag     = "surveyhooks.consumer.lag"
	MetricSinkBatchRows   = "surveyhooks.sink.batch.rows"
	MetricSinkBatch       = "surveyhooks.sink.batch"
	MetricIngestEvents    = "surveyhooks.ingest.events"
	MetricFanout          = "surveyhooks.fanout"
)

// Attribute keys of the surveyhooks instruments: a small, closed set, so label cardinality stays
// bounded (never a webhook id, URL, project or event id).
const (
	AttrOutcome   = "outcome"   // deliveries, latency: success, retry, permanent, dead, …
	AttrTier      = "tier"      // retry tier: "1m", "5m", …
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

	deliveries      metric.Int64Counter
	deliveryLatency metric.Float64Histogram
	inFlight        metric.Int64UpDownCounter
	tierDepth       metric.Int64ObservableGauge
	tierOldestAge   metric.Float64ObservableGauge
	consumerLag     metric.Int64ObservableGauge
	sinkBatchRows   metric.Int64Histogram
	sinkBatch       metric.Float64Histogram
	ingestEvents    metric.Int64Counter
	fanout          metric.Int64ObservableCounter
}

// NewMetrics creates the surveyhooks instruments on mp's meter.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{meter: mp.Meter("github.com/surveyhooks/surveyhooks/pkg/telemetry")}
	var err error
	if m.deliveries, err = m.meter.Int64Counter(MetricDeliveries,
		metric.WithUnit("{delivery}"),
		metric.WithDescription("Delivery attempts finished, by outcome.")); err != nil {
		return nil, instrumentErr(MetricDeliveries, err)
	}
	if m.deliveryLatency, err = m.meter.Float64Histogram(MetricDeliveryLatency,
		metric.WithUnit("s"),
		metric.WithDescription("Time from sending a webhook request to its outcome, by outcome."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)); err != nil {
		return nil, instrumentErr(MetricDeliveryLatency, err)
	}
	if m.inFlight, err = m.meter.Int64UpDownCounter(MetricInFlight,
		metric.WithUnit("{delivery}"),
		metric.WithDescription("Webhook requests currently in flight.")); err != nil {
		return nil, instrumentErr(MetricInFlight, err)
	}
	if m.tierDepth, err = m.meter.Int64ObservableGauge(MetricTierDepth,
		metric.WithUnit("{record}"),
		metric.WithDescription("Records waiting in a retry tier.")); err != nil {
		return nil, instrumentErr(MetricTierDepth, err)
	}
	if m.tierOldestAge, err = m.meter.Float64ObservableGauge(MetricTierOldestAge,
		metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest record waiting in a retry tier.")); err != nil {
		return nil, instrumentErr(MetricTierOldestAge, err)
	}
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

// DeliveryDone counts one finished delivery attempt and records how long it took.
func (m *Metrics) DeliveryDone(ctx context.Context, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrOutcome, outcome)))
	m.deliveries.Add(ctx, 1, attrs)
	m.deliveryLatency.Record(ctx, took.Seconds(), attrs)
}

// InFlight moves the in-flight gauge by delta: +1 when a request starts, -1 when it ends.
func (m *Metrics) InFlight(ctx context.Context, delta int64) {
	if m == nil {
		return
	}
	m.inFlight.Add(ctx, delta)
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

// TierState is one retry tier's backlog as the delivery service sees it.
type TierState struct {
	Tier      string        // the tier's delay, spelt as in topic names ("1m")
	Depth     int64         // records waiting
	OldestAge time.Duration // age of the oldest waiting record; 0 when empty
}

// ObserveRetryTiers registers fn to report the retry tiers' depth and oldest age each time
// metrics are collected. fn must be quick and safe to call from another goroutine. The returned
// function unregisters it.
func (m *Metrics) ObserveRetryTiers(fn func() []TierState) (unregister func() error, err error) {
	if m == nil {
		return func() error { return nil }, nil
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range fn() {
			attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrTier, s.Tier)))
			o.ObserveInt64(m.tierDepth, s.Depth, attrs)
			o.ObserveFloat64(m.tierOldestAge, s.OldestAge.Seconds(), attrs)
		}
		return nil
	}, m.tierDepth, m.tierOldestAge)
	if err != nil {
		return nil, fmt.Errorf("registering retry tier callback: %w", err)
	}
	return reg.Unregister, nil
}
