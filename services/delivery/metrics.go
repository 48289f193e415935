package delivery

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// The delivery service's instruments, as OTel names; the Prometheus exporter turns dots into
// underscores and adds the unit and _total suffixes (surveyhooks.deliveries →
// surveyhooks_deliveries_total, surveyhooks.delivery.latency in s →
// surveyhooks_delivery_latency_seconds). Labels stay a small closed set: never a webhook id, URL,
// project or event id.
const (
	MetricDeliveries       = "surveyhooks.deliveries"
	MetricDeliveryLatency  = "surveyhooks.delivery.latency"
	MetricInFlight         = "surveyhooks.deliveries.in_flight"
	MetricOverflow         = "surveyhooks.deliveries.moved_aside"
	MetricTierDepth        = "surveyhooks.retry_tier.depth"
	MetricTierOldestAge    = "surveyhooks.retry_tier.oldest_age"
	MetricConcurrencyLimit = "surveyhooks.endpoint.concurrency_limit"
	MetricHeldKeys         = "surveyhooks.ordering.held_keys"
	MetricOrderedWaiting   = "surveyhooks.ordering.waiting"

	attrOutcome = "outcome" // success, http_retryable, timeout, …
	attrTier    = "tier"    // a retry tier's delay as in topic names: "1m", "5m", …
	attrStat    = "stat"    // min, median or max over the endpoints a worker holds
	attrBy      = "by"      // who moved a delivery aside: endpoint or project
	attrWhere   = "where"   // where an ordered delivery waits for an earlier one of its key: memory or parked
)

// Metrics records what the worker and the releaser do. A nil *Metrics records nothing, so the
// service runs in tests without telemetry.
type Metrics struct {
	meter         metric.Meter
	deliveries    metric.Int64Counter
	latency       metric.Float64Histogram
	inFlight      metric.Int64UpDownCounter
	overflow      metric.Int64Counter
	tierDepth     metric.Int64ObservableGauge
	tierOldestAge metric.Float64ObservableGauge
	concLimit     metric.Int64ObservableGauge
	heldKeys      metric.Int64ObservableGauge
	orderedWait   metric.Int64ObservableGauge
	byEndpoint    metric.MeasurementOption
	byProject     metric.MeasurementOption
	outcomeAttrs  map[string]metric.MeasurementOption // by outcome name; read-only once built
}

// NewMetrics creates the delivery instruments on tel's meter; nil without telemetry.
func NewMetrics(tel *telemetry.Telemetry) (*Metrics, error) {
	if tel == nil {
		return nil, nil
	}
	m := &Metrics{meter: tel.MeterProvider().Meter("github.com/surveyhooks/surveyhooks/services/delivery"),
		outcomeAttrs: map[string]metric.MeasurementOption{}}
	for _, name := range outcomeNames {
		m.outcomeAttrs[name] = outcomeAttrs(name)
	}
	var err error
	wrap := func(name string, err error) error { return fmt.Errorf("creating instrument %s: %w", name, err) }
	if m.deliveries, err = m.meter.Int64Counter(MetricDeliveries, metric.WithUnit("{delivery}"),
		metric.WithDescription("Delivery attempts finished, by outcome.")); err != nil {
		return nil, wrap(MetricDeliveries, err)
	}
	if m.latency, err = m.meter.Float64Histogram(MetricDeliveryLatency, metric.WithUnit("s"),
		metric.WithDescription("Time from sending a webhook request to its outcome, by outcome."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)); err != nil {
		return nil, wrap(MetricDeliveryLatency, err)
	}
	if m.inFlight, err = m.meter.Int64UpDownCounter(MetricInFlight, metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries held by the worker: running, queued behind their endpoint, or being recorded.")); err != nil {
		return nil, wrap(MetricInFlight, err)
	}
	if m.overflow, err = m.meter.Int64Counter(MetricOverflow, metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries moved to a retry tier, attempt unchanged, because their endpoint held its share of the worker.")); err != nil {
		return nil, wrap(MetricOverflow, err)
	}
	if m.tierDepth, err = m.meter.Int64ObservableGauge(MetricTierDepth, metric.WithUnit("{record}"),
		metric.WithDescription("Records waiting in a retry tier.")); err != nil {
		return nil, wrap(MetricTierDepth, err)
	}
	if m.tierOldestAge, err = m.meter.Float64ObservableGauge(MetricTierOldestAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest record waiting in a retry tier.")); err != nil {
		return nil, wrap(MetricTierOldestAge, err)
	}
	if m.concLimit, err = m.meter.Int64ObservableGauge(MetricConcurrencyLimit, metric.WithUnit("{request}"),
		metric.WithDescription("Concurrency limits of the endpoints a worker holds (min, median, max): requests each may have open. "+
			"One endpoint's limit is on its attempts (concurrency_limit) and in the API's webhook stats.")); err != nil {
		return nil, wrap(MetricConcurrencyLimit, err)
	}
	if m.heldKeys, err = m.meter.Int64ObservableGauge(MetricHeldKeys, metric.WithUnit("{key}"),
		metric.WithDescription("Ordering keys (respondents of webhooks with ordering \"respondent\") whose earliest delivery waits for a retry, holding back the later ones.")); err != nil {
		return nil, wrap(MetricHeldKeys, err)
	}
	if m.orderedWait, err = m.meter.Int64ObservableGauge(MetricOrderedWaiting, metric.WithUnit("{delivery}"),
		metric.WithDescription("Ordered deliveries waiting for an earlier one of their key: in memory behind one running, or parked in deliveries-held behind one that waits for a retry.")); err != nil {
		return nil, wrap(MetricOrderedWaiting, err)
	}
	m.byEndpoint = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrBy, "endpoint")))
	m.byProject = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrBy, "project")))
	return m, nil
}

// OrderingState is what per-respondent ordering holds back on this worker.
type OrderingState struct {
	HeldKeys int // keys whose head waits on a retry tier
	Waiting  int // deliveries in memory behind their key's running one
	Parked   int // deliveries parked in deliveries-held behind their key's held one
}

// ObserveOrdering registers fn to report per-respondent ordering's held keys and waiting
// deliveries each time metrics are collected; fn must be quick and safe from another goroutine.
func (m *Metrics) ObserveOrdering(fn func() OrderingState) (unregister func() error, err error) {
	if m == nil {
		return func() error { return nil }, nil
	}
	memory := metric.WithAttributeSet(attribute.NewSet(attribute.String(attrWhere, "memory")))
	parked := metric.WithAttributeSet(attribute.NewSet(attribute.String(attrWhere, "parked")))
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := fn()
		o.ObserveInt64(m.heldKeys, int64(st.HeldKeys))
		o.ObserveInt64(m.orderedWait, int64(st.Waiting), memory)
		o.ObserveInt64(m.orderedWait, int64(st.Parked), parked)
		return nil
	}, m.heldKeys, m.orderedWait)
	if err != nil {
		return nil, fmt.Errorf("registering ordering callback: %w", err)
	}
	return reg.Unregister, nil
}

// ObserveLimits registers fn, the concurrency limits of the endpoints held, to be reported as
// their min, median and max each time metrics are collected; fn must be quick and safe to call
// from another goroutine. The returned function unregisters it. Per-endpoint values would need a
// webhook id label, which metrics never carry.
func (m *Metrics) ObserveLimits(fn func() []int) (unregister func() error, err error) {
	if m == nil {
		return func() error { return nil }, nil
	}
	stat := func(name string) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String(attrStat, name)))
	}
	minA, medA, maxA := stat("min"), stat("median"), stat("max")
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		ls := fn()
		if len(ls) == 0 {
			return nil
		}
		slices.Sort(ls)
		o.ObserveInt64(m.concLimit, int64(ls[0]), minA)
		o.ObserveInt64(m.concLimit, int64(ls[len(ls)/2]), medA)
		o.ObserveInt64(m.concLimit, int64(ls[len(ls)-1]), maxA)
		return nil
	}, m.concLimit)
	if err != nil {
		return nil, fmt.Errorf("registering concurrency limit callback: %w", err)
	}
	return reg.Unregister, nil
}

// Done counts one finished attempt and records how long its request took.
func (m *Metrics) Done(ctx context.Context, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	attrs, ok := m.outcomeAttrs[outcome]
	if !ok {
		attrs = outcomeAttrs(outcome)
	}
	m.deliveries.Add(ctx, 1, attrs)
	m.latency.Record(ctx, took.Seconds(), attrs)
}

// outcomeAttrs is the label set of an outcome; built once per class (an attribute set costs
// several allocations).
func outcomeAttrs(outcome string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String(attrOutcome, outcome)))
}

// Held moves the in-flight gauge by delta.
func (m *Metrics) Held(delta int64) {
	if m == nil {
		return
	}
	m.inFlight.Add(context.Background(), delta)
}

// MovedAside counts one delivery moved aside; byProject says its project's buffer was full rather
// than its endpoint holding its share.
func (m *Metrics) MovedAside(ctx context.Context, byProject bool) {
	if m == nil {
		return
	}
	by := m.byEndpoint
	if byProject {
		by = m.byProject
	}
	m.overflow.Add(ctx, 1, by)
}

// TierState is one retry tier's backlog.
type TierState struct {
	Tier      string        // the tier's delay, spelt as in topic names ("1m")
	Depth     int64         // records waiting
	OldestAge time.Duration // age of the oldest waiting record; 0 when empty
}

// ObserveTiers registers fn to report the retry tiers each time metrics are collected; fn must
// be quick and safe to call from another goroutine. The returned function unregisters it.
func (m *Metrics) ObserveTiers(fn func() []TierState) (unregister func() error, err error) {
	if m == nil {
		return func() error { return nil }, nil
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range fn() {
			attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String(attrTier, s.Tier)))
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
