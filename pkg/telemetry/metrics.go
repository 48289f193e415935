package telemetry

import (
	"fmt"

	"go.opentelemetry.io/otel/metric"
)

// MetricConsumerLag is the one instrument telemetry declares itself, as an OTel name
// (surveyhooks_consumer_lag in Prometheus); every service reports its groups' lag through it.
// Each service declares its own instruments in its metrics.go on MeterProvider's meter.
const MetricConsumerLag = "surveyhooks.consumer.lag"

// Attribute keys of the consumer lag: a small, closed set, so label cardinality stays bounded.
const (
	AttrGroup     = "group"     // consumer group
	AttrTopic     = "topic"     // topic
	AttrPartition = "partition" // partition number
)

// newConsumerLag creates the consumer lag gauge on mp's meter.
func newConsumerLag(mp metric.MeterProvider) (metric.Meter, metric.Int64ObservableGauge, error) {
	meter := mp.Meter("github.com/surveyhooks/surveyhooks/pkg/telemetry")
	gauge, err := meter.Int64ObservableGauge(MetricConsumerLag,
		metric.WithUnit("{record}"),
		metric.WithDescription("Records not yet committed by a consumer group, per topic partition."))
	if err != nil {
		return nil, nil, fmt.Errorf("creating instrument %s: %w", MetricConsumerLag, err)
	}
	return meter, gauge, nil
}
