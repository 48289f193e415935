package telemetry

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HTTPClientTransport wraps rt (nil: http.DefaultTransport) so that every request gets a client
// span, a child of the span in the request's context, and carries that span's W3C `traceparent`
// (and `tracestate`) header — outgoing webhooks let subscribers join the trace.
//
// It is deliberately not otelhttp's transport: that records the full URL (url.full), and webhook
// URLs routinely embed credentials in their path or query (Slack, Zapier, signed URLs). Spans
// carry only method, scheme, host, port and status. Baggage is not sent to subscribers. It uses
// the global tracer provider at request time, so it may be built before Setup runs.
func HTTPClientTransport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &clientTransport{next: rt}
}

type clientTransport struct{ next http.RoundTripper }

var traceContext = propagation.TraceContext{}

func (t *clientTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context()) // a RoundTripper must not modify the caller's request
	end := StartClientSpan(out)
	resp, err := t.next.RoundTrip(out)
	end(resp, err)
	return resp, err
}

// StartClientSpan starts the client span of an outgoing request, a child of the span in the
// request's context, and writes that span's `traceparent` (and `tracestate`) into req's headers:
// for callers that build the request themselves (the webhook sender), which saves
// HTTPClientTransport's copy of every request and lets the attempt log show the header. Call the
// returned function with the outcome. Like HTTPClientTransport, it records no URL path or query.
//
// The attributes are built only for a span that records; the samplers surveyhooks configures
// never look at them at start.
func StartClientSpan(req *http.Request) (end func(*http.Response, error)) {
	ctx, span := clientTracer().Start(req.Context(), req.Method, trace.WithSpanKind(trace.SpanKindClient))
	traceContext.Inject(ctx, propagation.HeaderCarrier(req.Header))
	if !span.IsRecording() {
		return func(*http.Response, error) { span.End() }
	}
	span.SetAttributes(clientSpanAttributes(req)...)
	return func(resp *http.Response, err error) {
		defer span.End()
		if err != nil {
			span.SetAttributes(attribute.String("error.type", errorType(err)))
			span.SetStatus(codes.Error, err.Error())
			return
		}
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= 400 {
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(resp.StatusCode)))
			span.SetStatus(codes.Error, "")
		}
	}
}

// cachedTracer is the client spans' tracer with the global provider it came from: looking it up
// per request took the provider's lock and a map look-up on every webhook.
type cachedTracer struct {
	tp trace.TracerProvider
	tr trace.Tracer
}

var clientTracerCache atomic.Pointer[cachedTracer]

// clientTracer is the global provider's tracer for client spans, looked up again when Setup (or
// a test) installs another provider.
func clientTracer() trace.Tracer {
	tp := otel.GetTracerProvider()
	if c := clientTracerCache.Load(); c != nil && c.tp == tp {
		return c.tr
	}
	c := &cachedTracer{tp: tp, tr: tp.Tracer("github.com/surveyhooks/surveyhooks/pkg/telemetry")}
	clientTracerCache.Store(c)
	return c.tr
}

// clientSpanAttributes are a client span's method, scheme, host and port: never path or query.
func clientSpanAttributes(req *http.Request) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", req.Method),
		attribute.String("url.scheme", req.URL.Scheme),
	}
	if host, port, err := net.SplitHostPort(req.URL.Host); err == nil {
		attrs = append(attrs, attribute.String("server.address", host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, attribute.Int("server.port", p))
		}
	} else {
		attrs = append(attrs, attribute.String("server.address", req.URL.Host))
	}
	return attrs
}

// errorType names a transport error's kind without its text (which may repeat the URL).
func errorType(err error) string {
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return "timeout"
	}
	return "transport"
}

// HTTPHandler wraps a service's HTTP handler (ingest, api) with an otelhttp server span named
// "<name> <route>" ("ingest POST /v1/events" when the ServeMux pattern is known, else
// "<name> <method>"). The endpoints are public, so a caller's traceparent is linked, not adopted
// as parent: each request starts its own trace, which then follows the event through Kafka.
func HTTPHandler(h http.Handler, name string) http.Handler {
	return otelhttp.NewHandler(h, name,
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }),
		otelhttp.WithSpanNameFormatter(func(op string, r *http.Request) string {
			if r.Pattern != "" {
				return op + " " + r.Pattern
			}
			return op + " " + r.Method
		}))
}

// OpsServer builds the operations server every service runs on SURVEYHOOKS_OPS_ADDR:
//   - /metrics: the Prometheus metrics of t (absent when t is nil);
//   - /healthz: 200 while the process runs (liveness);
//   - /readyz: 200 when ready returns nil, else 503 with the error text (readiness; nil ready
//     means always ready).
//
// The caller runs ListenAndServe and Shutdown.
func OpsServer(addr string, t *Telemetry, ready func() error) *http.Server {
	mux := http.NewServeMux()
	if t != nil {
		mux.Handle("GET /metrics", t.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil {
			if err := ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(err.Error() + "\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return &http.Server{
		Addr:              addr,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
	}
}
