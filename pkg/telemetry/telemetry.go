// Package telemetry sets up OpenTelemetry for a surveyhooks service: traces that follow one event
// across HTTP and Kafka hops (W3C tracecontext in HTTP headers and in record headers, through
// franz-go's kotel plugin), exported by OTLP when the standard OTEL_* variables ask for it, and
// metrics served in the Prometheus text format on the service's ops server (/metrics, /healthz,
// /readyz). It holds no service logic and must never put secrets, API keys or webhook URLs
// (which often embed credentials) into span attributes or metric labels.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry is one service's tracer and meter providers, its Prometheus registry and the consumer
// lag gauge; each service creates its own instruments on MeterProvider. One per process: the
// all-in-one command shares one between its services. A nil *Telemetry is accepted by KafkaHooks
// (no hooks), StartRecordSpan and Tracer (global provider), ObserveConsumerLag and Shutdown
// (no-ops) and OpsServer (no /metrics), so components can be built in tests without it.
type Telemetry struct {
	service    string
	tp         *sdktrace.TracerProvider
	mp         *sdkmetric.MeterProvider
	registry   *prometheus.Registry
	propagator propagation.TextMapPropagator
	exporting  bool
	recording  bool         // spans are recorded (exported somewhere or sampled by OTEL_TRACES_SAMPLER)
	tracer     trace.Tracer // the service's own, looked up once: Tracer is on every record's path

	meter       metric.Meter // telemetry's own: the consumer lag
	consumerLag metric.Int64ObservableGauge
	lagMu       sync.Mutex
	lag         []lagSource
}

// Option adjusts Setup; production code passes none.
type Option func(*options)

type options struct {
	exporters []sdktrace.SpanExporter
	noGlobals bool
}

// WithSpanExporter adds an exporter that receives every span synchronously as it ends, on top of
// whatever the environment configures. Tests pass tracetest.NewInMemoryExporter() to assert
// span chains.
func WithSpanExporter(exp sdktrace.SpanExporter) Option {
	return func(o *options) { o.exporters = append(o.exporters, exp) }
}

// WithoutGlobals leaves the global OTel providers and propagator untouched, for processes that
// run several Telemetry instances side by side (tests). Code that relies on the globals
// (HTTPClientTransport, HTTPHandler, RecordContext) then sees whatever was set before.
func WithoutGlobals() Option { return func(o *options) { o.noGlobals = true } }

// Propagator is what surveyhooks carries across hops: W3C tracecontext (traceparent/tracestate)
// and baggage. Outgoing webhooks carry tracecontext only (see HTTPClientTransport).
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Setup configures the global OTel tracer and meter providers and the W3C propagator for a
// service.
//
// Traces are exported by OTLP when OTEL_TRACES_EXPORTER=otlp, or when it is
// unset and OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; endpoint,
// headers, timeout and batching come from the standard OTEL_EXPORTER_OTLP_* and OTEL_BSP_*
// variables, the service name and resource from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES,
// sampling from OTEL_TRACES_SAMPLER. Otherwise spans are still created and tracecontext still
// propagates (so a downstream service that does export sees whole traces), but nothing is sent.
// OTEL_SDK_DISABLED=true turns exporting off. OTEL_EXPORTER_OTLP_PROTOCOL (or its _TRACES_ form)
// picks http/protobuf (the default) or grpc; anything else is an error, never silently ignored.
//
// Metrics are collected by a Prometheus exporter into a registry of this Telemetry's own (with
// Go runtime and process collectors), served by Handler.
func Setup(ctx context.Context, service string, opts ...Option) (*Telemetry, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override
		resource.WithHost(),
		resource.WithTelemetrySDK(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("building telemetry resource: %w", err)
	}

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	exp, err := traceExporterFromEnv(ctx)
	if err != nil {
		return nil, err
	}
	if exp != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	for _, e := range o.exporters {
		tpOpts = append(tpOpts, sdktrace.WithSyncer(e))
	}
	recording := exp != nil || len(o.exporters) > 0 || os.Getenv("OTEL_TRACES_SAMPLER") != ""
	if !recording {
		// Nobody reads the spans: keep their ids (trace context still propagates to Kafka
		// headers, webhooks and logs) but do not record them, which is most of their cost. A
		// sampled parent from upstream is still honoured.
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		_ = tp.Shutdown(ctx)
		return nil, fmt.Errorf("creating prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(promExp))

	t := &Telemetry{
		service:    service,
		tp:         tp,
		mp:         mp,
		registry:   reg,
		propagator: Propagator(),
		exporting:  exp != nil,
		recording:  recording,
		tracer:     tp.Tracer("github.com/surveyhooks/surveyhooks/services/" + service),
	}
	if t.meter, t.consumerLag, err = newConsumerLag(mp); err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	if err := t.registerLag(); err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	if !o.noGlobals {
		otel.SetTracerProvider(tp)
		otel.SetMeterProvider(mp)
		otel.SetTextMapPropagator(t.propagator)
	}
	return t, nil
}

// traceExporterFromEnv returns the OTLP/HTTP exporter the environment asks for, or nil.
func traceExporterFromEnv(ctx context.Context) (sdktrace.SpanExporter, error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, nil
	}
	switch v := strings.TrimSpace(strings.ToLower(os.Getenv("OTEL_TRACES_EXPORTER"))); v {
	case "none":
		return nil, nil
	case "":
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return nil, nil
		}
	case "otlp":
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: only otlp and none are supported, got %q", v)
	}
	protocol, from := "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL"
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := os.Getenv(name); p != "" {
			protocol, from = p, name // the signal-specific variable wins over the general one
			break
		}
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch protocol { // both exporters read OTEL_EXPORTER_OTLP_* themselves
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%s: want http/protobuf or grpc, got %q", from, protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("creating OTLP trace exporter (%s): %w", protocol, err)
	}
	return exp, nil
}

// Service is the name Setup was called with.
func (t *Telemetry) Service() string { return t.service }

// Exporting reports whether spans leave the process (an OTLP exporter is configured).
func (t *Telemetry) Exporting() bool { return t.exporting }

// TracerProvider is this Telemetry's tracer provider (the global one unless WithoutGlobals).
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider is this Telemetry's meter provider (the global one unless WithoutGlobals).
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Tracer is the tracer for the service's own spans (the global provider's on a nil Telemetry).
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil {
		return otel.GetTracerProvider().Tracer("github.com/surveyhooks/surveyhooks/pkg/telemetry")
	}
	return t.tracer
}

// Handler serves the service's metrics in the Prometheus text format (mount it at /metrics).
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Shutdown flushes pending spans and stops the providers. Call it once, on the way out, with a
// context bounding how long the flush may take.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if err := t.tp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shutting down tracer provider: %w", err))
	}
	if err := t.mp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shutting down meter provider: %w", err))
	}
	return errors.Join(errs...)
}
