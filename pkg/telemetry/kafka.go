package telemetry

import (
	"context"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// KafkaHooks are the client options that trace and measure a franz-go client with kotel: every
// produced record gets a "<topic> publish" span whose context is written into the record's
// traceparent header, and every fetched record gets a "<topic> receive" span that is a child of
// the producer's span, stored in the record's Context. Pass them to kafka.NewClient or
// kafka.TxnLoop.Opts.
//
// When spans are not recorded (no exporter), only kotel's client metrics are hooked: a span per
// record per hop was a fifth of ingest's CPU for spans nobody sees. Trace context then travels by
// the services copying the traceparent header from each consumed record to what they produce
// from it (Continue), so webhooks and logs still carry the event's trace id.
//
// To continue a trace into a record produced from a consumed one (fan-out, retry release,
// attempts), call Continue(out, in) before producing it.
func (t *Telemetry) KafkaHooks() []kgo.Opt {
	if t == nil {
		return nil
	}
	opts := []kotel.Opt{kotel.WithMeter(kotel.NewMeter(kotel.MeterProvider(t.mp)))}
	if t.recording {
		opts = append(opts, kotel.WithTracer(kotel.NewTracer(kotel.TracerProvider(t.tp), kotel.TracerPropagator(t.propagator))))
	}
	return []kgo.Opt{kgo.WithHooks(kotel.NewKotel(opts...).Hooks()...)}
}

// Continue makes out, produced from the consumed record in, part of in's trace: with kotel
// tracing, out's publish span becomes a child of in's receive span; without, out carries in's
// trace headers (which the caller copies, as every service does). Cheap when not tracing.
func Continue(out, in *kgo.Record) {
	if in.Context != nil {
		if span := trace.SpanFromContext(in.Context); span.SpanContext().IsValid() {
			out.Context = trace.ContextWithSpan(context.Background(), span)
		}
	}
}

// RecordContext returns ctx (keeping its deadline and cancellation) with the consumed record's
// span as the current span, so that work done for the record — an HTTP request, a produced
// record — joins the record's trace. The span comes from rec.Context when kotel set it, else
// from the record's traceparent header (records read by a client without KafkaHooks).
func RecordContext(ctx context.Context, rec *kgo.Record) context.Context {
	if rec.Context != nil {
		if span := trace.SpanFromContext(rec.Context); span.SpanContext().IsValid() {
			return trace.ContextWithSpan(ctx, span)
		}
	}
	return otel.GetTextMapPropagator().Extract(ctx, kotel.NewRecordCarrier(rec))
}

// StartRecordSpan starts a span for processing a consumed record (e.g. "deliver"), a child of
// the record's span. The caller ends it.
//
// When spans are not recorded (no exporter, no sampler configured), the attributes are added only
// if the span records after all (a sampled parent): the samplers surveyhooks configures never look
// at them, and building them for a span that records nothing was a share of every delivery.
func (t *Telemetry) StartRecordSpan(ctx context.Context, rec *kgo.Record, name string) (context.Context, trace.Span) {
	if t != nil && !t.recording {
		ctx, span := t.tracer.Start(RecordContext(ctx, rec), name, trace.WithSpanKind(trace.SpanKindConsumer))
		if span.IsRecording() {
			span.SetAttributes(recordSpanAttributes(rec)...)
		}
		return ctx, span
	}
	return t.Tracer().Start(RecordContext(ctx, rec), name,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(recordSpanAttributes(rec)...))
}

func recordSpanAttributes(rec *kgo.Record) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation", "process"),
		attribute.String("messaging.source.name", rec.Topic),
		attribute.Int("messaging.kafka.source.partition", int(rec.Partition)),
		attribute.Int64("messaging.kafka.message.offset", rec.Offset),
	}
}

// lagTimeout bounds one lag lookup made while metrics are collected (a scrape).
const lagTimeout = 5 * time.Second

type lagSource struct {
	id     int
	adm    *kadm.Client
	groups []string
}

// ObserveConsumerLag reports, each time metrics are collected, the lag of the given consumer
// groups per topic and partition (surveyhooks_consumer_lag{group,topic,partition}), looked up
// through cl. Lag is the same whichever process reports it, so one process per group is enough;
// dashboards take max over instances. Call the returned function before closing cl.
func (t *Telemetry) ObserveConsumerLag(cl *kgo.Client, groups ...string) (stop func()) {
	if t == nil || len(groups) == 0 {
		return func() {}
	}
	t.lagMu.Lock()
	defer t.lagMu.Unlock()
	id := len(t.lag) + 1
	for _, s := range t.lag {
		id = max(id, s.id+1)
	}
	t.lag = append(t.lag, lagSource{id: id, adm: kadm.NewClient(cl), groups: groups})
	return func() {
		t.lagMu.Lock()
		defer t.lagMu.Unlock()
		for i, s := range t.lag {
			if s.id == id {
				t.lag = append(t.lag[:i], t.lag[i+1:]...)
				return
			}
		}
	}
}

// registerLag installs the one collection callback that reads every registered lag source.
func (t *Telemetry) registerLag() error {
	gauge := t.consumerLag
	_, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		t.lagMu.Lock()
		sources := append([]lagSource(nil), t.lag...)
		t.lagMu.Unlock()
		for _, s := range sources {
			observeLag(ctx, o, gauge, s)
		}
		return nil
	}, gauge)
	return err
}

func observeLag(ctx context.Context, o metric.Observer, gauge metric.Int64ObservableGauge, s lagSource) {
	ctx, cancel := context.WithTimeout(ctx, lagTimeout)
	defer cancel()
	lags, err := s.adm.Lag(ctx, s.groups...)
	if err != nil {
		return // no number is better than a stale one; the scrape shows the gap
	}
	for _, g := range lags {
		if g.Error() != nil {
			continue
		}
		for topic, parts := range g.Lag {
			for p, l := range parts {
				if l.Err != nil || l.Lag < 0 {
					continue
				}
				o.ObserveInt64(gauge, l.Lag, metric.WithAttributeSet(attribute.NewSet(
					attribute.String(AttrGroup, g.Group),
					attribute.String(AttrTopic, topic),
					attribute.String(AttrPartition, strconv.Itoa(int(p))),
				)))
			}
		}
	}
}
