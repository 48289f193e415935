package sink

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// The sink's instruments, as OTel names; the Prometheus exporter turns dots into underscores and
// adds the unit suffix (surveyhooks.sink.batch in s → surveyhooks_sink_batch_seconds).
const (
	MetricBatchRows = "surveyhooks.sink.batch.rows"
	MetricBatch     = "surveyhooks.sink.batch"
)

// Metrics records the sink's ClickHouse batches. A nil *Metrics records nothing, so the sink
// runs in tests without telemetry.
type Metrics struct {
	batchRows metric.Int64Histogram
	batch     metric.Float64Histogram
}

// NewMetrics creates the sink instruments on tel's meter; nil without telemetry.
func NewMetrics(tel *telemetry.Telemetry) (*Metrics, error) {
	if tel == nil {
		return nil, nil
	}
	meter := tel.MeterProvider().Meter("github.com/surveyhooks/surveyhooks/services/sink")
	m := &Metrics{}
	var err error
	if m.batchRows, err = meter.Int64Histogram(MetricBatchRows, metric.WithUnit("{row}"),
		metric.WithDescription("Rows per ClickHouse batch insert."),
		metric.WithExplicitBucketBoundaries(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000)); err != nil {
		return nil, fmt.Errorf("creating instrument %s: %w", MetricBatchRows, err)
	}
	if m.batch, err = meter.Float64Histogram(MetricBatch, metric.WithUnit("s"),
		metric.WithDescription("Time to send one ClickHouse batch insert until acknowledged."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, fmt.Errorf("creating instrument %s: %w", MetricBatch, err)
	}
	return m, nil
}

// Batch records one acknowledged ClickHouse batch: its row count and how long it took.
func (m *Metrics) Batch(ctx context.Context, rows int, took time.Duration) {
	if m == nil {
		return
	}
	m.batchRows.Record(ctx, int64(rows))
	m.batch.Record(ctx, took.Seconds())
}
