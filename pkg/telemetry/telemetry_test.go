package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry/telemetrytest"
)

// setup runs telemetry.Setup with an in-memory span exporter and no OTLP export, whatever the
// surrounding environment says.
func setup(t *testing.T) (*telemetry.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, "")
	}
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), "test", telemetry.WithSpanExporter(exp))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, exp
}

// receiver is an httptest server that records the traceparent header of every request.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	parent []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.parent = append(r.parent, req.Header.Get("traceparent"))
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) traceparents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.parent...)
}

// remote parses a traceparent header into the span context it carries.
func remote(t *testing.T, traceparent string) trace.SpanContext {
	t.Helper()
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	sc := trace.SpanContextFromContext(ctx)
	require.True(t, sc.IsValid(), "traceparent %q", traceparent)
	return sc
}

func findSpan(t *testing.T, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStub {
	t.Helper()
	var found tracetest.SpanStub
	require.Eventually(t, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == name {
				found = s
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "span %q never ended", name)
	return found
}

func TestOutgoingWebhookCarriesTraceparentOfItsClientSpan(t *testing.T) {
	tel, exp := setup(t)
	recv := newReceiver(t)
	client := &http.Client{Transport: telemetry.HTTPClientTransport(nil), Timeout: 5 * time.Second}

	ctx, deliver := tel.Tracer().Start(context.Background(), "deliver")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, recv.URL+"/hooks/T0001/secret-path?token=secret-query", strings.NewReader("{}"))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	deliver.End()

	require.Empty(t, req.Header.Get("traceparent"), "the caller's request must not be modified")
	got := recv.traceparents()
	require.Len(t, got, 1)
	sent := remote(t, got[0])
	require.Equal(t, deliver.SpanContext().TraceID(), sent.TraceID(), "the webhook joins the delivery's trace")

	post := findSpan(t, exp, "POST")
	require.Equal(t, trace.SpanKindClient, post.SpanKind)
	require.Equal(t, post.SpanContext.SpanID(), sent.SpanID(), "traceparent names the client span")
	require.Equal(t, deliver.SpanContext().SpanID(), post.Parent.SpanID())
	for _, a := range post.Attributes {
		require.NotContains(t, a.Value.Emit(), "secret", "attribute %s leaks the webhook URL", a.Key)
	}
}

func TestFailedWebhookRequestMarksSpanAsError(t *testing.T) {
	_, exp := setup(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: telemetry.HTTPClientTransport(nil), Timeout: 5 * time.Second}
	resp, err := client.Post(srv.URL, "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())

	post := findSpan(t, exp, "POST")
	require.Equal(t, "Error", post.Status.Code.String())
	attrs := map[string]string{}
	for _, a := range post.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	require.Equal(t, "503", attrs["http.response.status_code"])
	require.Equal(t, "503", attrs["error.type"])
}

func TestIncomingRequestStartsItsOwnTraceLinkedToTheCaller(t *testing.T) {
	_, exp := setup(t)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		require.True(t, trace.SpanContextFromContext(r.Context()).IsValid(), "handler runs inside the server span")
		w.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(telemetry.HTTPHandler(mux, "ingest"))
	t.Cleanup(srv.Close)

	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", strings.NewReader("{}"))
	require.NoError(t, err)
	req.Header.Set("traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())

	span := findSpan(t, exp, "ingest POST /v1/events")
	require.Equal(t, trace.SpanKindServer, span.SpanKind)
	require.NotEqual(t, callerTrace, span.SpanContext.TraceID().String(), "a public endpoint does not adopt the caller's trace")
	require.Len(t, span.Links, 1)
	require.Equal(t, callerTrace, span.Links[0].SpanContext.TraceID().String())
}

func TestOpsServerAnswersHealthReadinessAndMetrics(t *testing.T) {
	tel, _ := setup(t)
	var (
		mu       sync.Mutex
		notReady = errors.New("registry not caught up")
	)
	readyErr := notReady
	srv := telemetry.OpsServer("127.0.0.1:0", tel, func() error { mu.Lock(); defer mu.Unlock(); return readyErr })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()

	code, body := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)

	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "registry not caught up")
	mu.Lock()
	readyErr = nil
	mu.Unlock()
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)

	// A service's own instrument, created on the meter provider as services/*/metrics.go do.
	events, err := tel.MeterProvider().Meter("test").Int64Counter("surveyhooks.test.events")
	require.NoError(t, err)
	events.Add(context.Background(), 5, metric.WithAttributes(attribute.String("result", "accepted")))

	code, body = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	fams := telemetrytest.Parse(t, body)
	require.Equal(t, 5.0, telemetrytest.Value(t, fams, "surveyhooks_test_events_total", map[string]string{"result": "accepted"}))
	require.Contains(t, fams, "go_goroutines", "runtime metrics are served too")
}

func TestNilTelemetryIsUsableByComponentsBuiltWithoutIt(t *testing.T) {
	var tel *telemetry.Telemetry
	require.Nil(t, tel.KafkaHooks())
	_, span := tel.StartRecordSpan(context.Background(), &kgo.Record{Topic: "deliveries"}, "deliver")
	span.End()
	tel.ObserveConsumerLag(nil, "g")()
	require.NoError(t, tel.Shutdown(context.Background()))
	w := httptest.NewRecorder()
	telemetry.OpsServer("", tel, nil).Handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	require.Equal(t, http.StatusOK, w.Code)
}

func TestSpansAreExportedByOTLPWhenTheEndpointIsSet(t *testing.T) {
	var (
		mu    sync.Mutex
		posts []string
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+string(body))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

	tel, err := telemetry.Setup(context.Background(), "ingest", telemetry.WithoutGlobals())
	require.NoError(t, err)
	require.True(t, tel.Exporting())
	_, span := tel.Tracer().Start(context.Background(), "accept-event")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, tel.Shutdown(ctx), "shutdown flushes the batch")

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, posts)
	require.True(t, strings.HasPrefix(posts[0], "POST /v1/traces application/x-protobuf"), posts[0])
	require.Contains(t, posts[0], "accept-event")
	require.Contains(t, posts[0], "ingest", "the service name is in the resource")
}

func TestSpansStayInProcessWithoutOTLPConfiguration(t *testing.T) {
	tel, _ := setup(t)
	require.False(t, tel.Exporting())
	_, span := tel.Tracer().Start(context.Background(), "x")
	require.True(t, span.SpanContext().IsValid(), "spans still get ids so traceparent propagates")
	span.End()
}

func TestSetupRefusesAnOTLPProtocolItCannotSpeak(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_SDK_DISABLED", "")
	_, err := telemetry.Setup(context.Background(), "x", telemetry.WithoutGlobals())
	require.ErrorContains(t, err, "OTEL_EXPORTER_OTLP_PROTOCOL")
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// otlpGRPC is a minimal OTLP/gRPC trace collector that records the span names it receives.
type otlpGRPC struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (c *otlpGRPC) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.names = append(c.names, s.GetName())
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func TestSpansAreExportedByOTLPOverGRPCWhenAsked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	collector := &otlpGRPC{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, collector)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")

	tel, err := telemetry.Setup(context.Background(), "delivery", telemetry.WithoutGlobals())
	require.NoError(t, err)
	_, span := tel.Tracer().Start(context.Background(), "deliver")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, tel.Shutdown(ctx))
	collector.mu.Lock()
	defer collector.mu.Unlock()
	require.Equal(t, []string{"deliver"}, collector.names)
}
