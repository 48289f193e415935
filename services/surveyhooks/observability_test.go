package surveyhooks_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/surveyhooks/surveyhooks/pkg/chtest"
	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	"github.com/surveyhooks/surveyhooks/pkg/logging"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	"github.com/surveyhooks/surveyhooks/services/api"
	"github.com/surveyhooks/surveyhooks/services/delivery"
	"github.com/surveyhooks/surveyhooks/services/fanout"
	"github.com/surveyhooks/surveyhooks/services/ingest"
	"github.com/surveyhooks/surveyhooks/services/sink"
)

// inProcess is every service in this test process on one kfake broker, sharing one Telemetry and
// one logger, as the all-in-one command runs them.
type inProcess struct {
	kcfg              kafka.Config
	ingest, api       string // base URLs
	admin, encryption string
}

// syncBuffer collects log lines from every goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startInProcess(t *testing.T, tel *telemetry.Telemetry, logs io.Writer, withSink bool) *inProcess {
	t.Helper()
	kcfg := kafkatest.Start(t)
	kcfg.RetrySchedule = []time.Duration{time.Second}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	p := &inProcess{kcfg: kcfg, admin: "obs-admin-token-" + base64.RawURLEncoding.EncodeToString(key[:9]),
		encryption: base64.StdEncoding.EncodeToString(key)}
	log := logging.NewTo(logs, "surveyhooks", "debug")
	opts := []service.Option{service.WithTelemetry(tel), service.WithReadiness(service.NewReadiness())}

	var (
		icfg ingest.Config
		fcfg fanout.Config
		dcfg delivery.Config
		scfg sink.Config
		acfg api.Config
	)
	for _, c := range []any{&icfg, &fcfg, &dcfg, &scfg, &acfg} {
		require.NoError(t, config.Defaults(c))
	}
	icfg.Kafka, fcfg.Kafka, dcfg.Kafka, scfg.Kafka, acfg.Kafka = kcfg, kcfg, kcfg, kcfg, kcfg
	icfg.Addr, acfg.Addr = proctest.Addr(t), proctest.Addr(t)
	acfg.AdminToken, acfg.EncryptionKey, dcfg.EncryptionKey = p.admin, p.encryption, p.encryption
	dcfg.AllowDestinations, dcfg.Timeout, dcfg.CommitInterval = "127.0.0.0/8", 3*time.Second, 50*time.Millisecond
	acfg.ClickHouseAddr = proctest.Addr(t) // management works without ClickHouse
	if withSink {
		acfg.ClickHouseAddr, acfg.ClickHouseDatabase = chtest.Addr(t), chtest.Database(t)
		scfg.ClickHouseAddr, scfg.Database, scfg.FlushInterval = acfg.ClickHouseAddr, acfg.ClickHouseDatabase, 100*time.Millisecond
	}
	p.ingest, p.api = "http://"+icfg.Addr, "http://"+acfg.Addr

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	run("api", func(ctx context.Context) error { return api.Run(ctx, acfg, log.With("service", "api"), opts...) })
	run("ingest", func(ctx context.Context) error { return ingest.Run(ctx, icfg, log.With("service", "ingest"), opts...) })
	run("fanout", func(ctx context.Context) error { return fanout.Run(ctx, fcfg, log.With("service", "fanout"), opts...) })
	run("delivery", func(ctx context.Context) error {
		return delivery.Run(ctx, dcfg, log.With("service", "delivery"), opts...)
	})
	if withSink {
		run("sink", func(ctx context.Context) error { return sink.Run(ctx, scfg, log.With("service", "sink"), opts...) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	proctest.WaitHTTPOK(t, p.ingest+"/healthz", 60*time.Second)
	proctest.WaitHTTPOK(t, p.api+"/healthz", 60*time.Second)
	return p
}

// setupTelemetry is what service.Serve sets up, with opts (an in-memory exporter) added.
func setupTelemetry(t *testing.T, opts ...telemetry.Option) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), "surveyhooks", opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// startWithReceiver starts everything in process and a subscriber endpoint that keeps each
// request (headers and body); the webhook's URL is the returned base + "/hook".
func startWithReceiver(t *testing.T, tel *telemetry.Telemetry) (*inProcess, *hooktest.Endpoint, string) {
	t.Helper()
	p := startInProcess(t, tel, io.Discard, false)
	srv := hooktest.StartT(t, hooktest.Options{})
	hook := srv.Endpoint("hook", hooktest.Fast)
	hook.Record(true)
	return p, hook, srv.URL()
}

func TestOneTraceFollowsAnEventFromIngestThroughKafkaToTheSubscriber(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p, rc, url := startWithReceiver(t, setupTelemetry(t, telemetry.WithSpanExporter(exp)))
	project := call(t, "POST", p.api+"/v1/projects", p.admin, map[string]any{"name": "Acme"}, 201)
	apiKey := project["api_key"].(string)
	call(t, "POST", p.api+"/v1/webhooks", apiKey, map[string]any{"name": "crm", "url": url + "/hook",
		"events": []string{"nps.scored"}}, 201)
	call(t, "POST", p.ingest+"/v1/events", apiKey, map[string]any{"event_id": "traced-1", "event_type": "nps.scored",
		"user": map[string]any{"id": "u1"}, "nps": map[string]any{"score": 4}}, 202)
	require.Eventually(t, func() bool { return len(rc.Records()) == 1 }, 60*time.Second, 20*time.Millisecond, "the event should be delivered")

	tp := rc.Records()[0].Header.Get("traceparent")
	parts := strings.Split(tp, "-")
	require.Len(t, parts, 4, "the webhook carries a W3C traceparent, got %q", tp)
	traceID, parentID := parts[1], parts[2]

	// The spans end asynchronously (the attempt's publish span ends when Kafka acknowledges it).
	var spans tracetest.SpanStubs
	byID := map[string]tracetest.SpanStub{}
	require.Eventually(t, func() bool {
		spans = exp.GetSpans()
		byID = map[string]tracetest.SpanStub{}
		for _, s := range spans {
			if s.SpanContext.TraceID().String() == traceID {
				byID[s.SpanContext.SpanID().String()] = s
			}
		}
		// Every span from the request's up to the root: the delivery's span ends only once its
		// attempt record is acknowledged, after the subscriber already answered.
		for id := parentID; ; {
			s, ok := byID[id]
			if !ok {
				return false
			}
			if !s.Parent.IsValid() {
				return true
			}
			id = s.Parent.SpanID().String()
		}
	}, 10*time.Second, 20*time.Millisecond, "the spans from the subscriber's traceparent up to the root should be exported")

	// Walk from the webhook request's span up to the root: the whole path is one trace.
	var chain []string
	for id := parentID; id != ""; {
		s, ok := byID[id]
		require.True(t, ok, "span %s (parent of %v) is missing from trace %s", id, chain, traceID)
		chain = append([]string{s.Name}, chain...)
		if !s.Parent.IsValid() {
			break
		}
		id = s.Parent.SpanID().String()
	}
	t.Logf("trace %s: %s", traceID, strings.Join(chain, " → "))
	want := []string{
		"ingest POST /v1/events", // the ingest HTTP request (otelhttp)
		"events publish",         // the accepted event
		"events receive",         // read by fan-out, which de-duplicates
		"deliveries publish",     // one delivery per matching webhook
		"deliveries receive",     // read by a delivery worker
		"deliver",                // the worker's attempt
		"POST",                   // the request to the subscriber, whose span the traceparent names
	}
	require.Equal(t, want, chain)
	require.Equal(t, trace.SpanKindServer, byID[findSpan(t, byID, "ingest POST /v1/events")].SpanKind)
	client := byID[parentID]
	require.Equal(t, trace.SpanKindClient, client.SpanKind)
	for _, a := range client.Attributes {
		require.NotContains(t, a.Value.Emit(), "/hook", "the client span must not carry the webhook URL's path (%s)", a.Key)
	}

	// The attempt record continues the trace too: its publish span is a child of "deliver".
	require.Eventually(t, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == "delivery-attempts publish" && s.SpanContext.TraceID().String() == traceID {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "the attempt's publish span should join the event's trace")
}

func findSpan(t *testing.T, byID map[string]tracetest.SpanStub, name string) string {
	t.Helper()
	for id, s := range byID {
		if s.Name == name {
			return id
		}
	}
	t.Fatalf("no span named %q", name)
	return ""
}

func TestNoSecretOrAPIKeyReachesTheLogsOrTheAttemptLog(t *testing.T) {
	var logs syncBuffer
	exp := tracetest.NewInMemoryExporter()
	p := startInProcess(t, setupTelemetry(t, telemetry.WithSpanExporter(exp)), &logs, true)

	srv := hooktest.StartT(t, hooktest.Options{})
	rc := srv.Endpoint("hook", hooktest.Fast)
	rc.Record(true)
	// An endpoint that echoes what it got, headers included, into the response body that the
	// attempt log keeps.
	srv.Endpoint("down", hooktest.Fast).AnswerWith(func(r *hooktest.Request) hooktest.Answer {
		var b strings.Builder
		_ = r.Header.Write(&b)
		return hooktest.Answer{Status: http.StatusInternalServerError, Body: []byte(b.String())}
	})

	project := call(t, "POST", p.api+"/v1/projects", p.admin, map[string]any{"name": "Acme"}, 201)
	apiKey := project["api_key"].(string)
	const secret = "whsec_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFrMTIz"
	wh := call(t, "POST", p.api+"/v1/webhooks", apiKey, map[string]any{"name": "crm", "url": srv.URL() + "/hook",
		"events": []string{"*"}, "secret": secret, "headers": map[string]string{"X-Api-Token": "customer-token-4c6f"}}, 201)
	call(t, "POST", p.api+"/v1/webhooks", apiKey, map[string]any{"name": "down", "url": srv.URL() + "/down",
		"events": []string{"*"}}, 201)
	rotated := call(t, "POST", p.api+"/v1/webhooks/"+wh["id"].(string)+"/secrets/rotate", apiKey, nil, 200)
	newSecret, _ := rotated["secret"].(string)
	require.True(t, strings.HasPrefix(newSecret, "whsec_"), "rotation shows the new secret once: %v", rotated)

	// Traffic of every kind: accepted events, bad requests, wrong keys, a Send Test.
	for i := range 5 {
		call(t, "POST", p.ingest+"/v1/events", apiKey, map[string]any{"event_type": "nps.scored",
			"user": map[string]any{"id": fmt.Sprint("u", i), "email": "ada@example.com"}, "nps": map[string]any{"score": i}}, 202)
	}
	call(t, "POST", p.ingest+"/v1/events", apiKey, map[string]any{"event_type": "nps.scored"}, 400)
	call(t, "POST", p.ingest+"/v1/events", apiKey+"x", map[string]any{"event_type": "nps.scored"}, 401)
	call(t, "POST", p.api+"/v1/projects", p.admin+"x", map[string]any{"name": "x"}, 401)
	call(t, "POST", p.api+"/v1/webhooks/"+wh["id"].(string)+"/test", apiKey, nil, 200)
	require.Eventually(t, func() bool { return len(rc.Records()) >= 6 }, 60*time.Second, 20*time.Millisecond)

	// Wait for the attempts (the failing endpoint's included) to be queryable, then read them all.
	var attempts map[string]any
	require.Eventually(t, func() bool {
		attempts = call(t, "GET", p.api+"/v1/attempts?limit=100", apiKey, nil, 200)
		data, _ := attempts["data"].([]any)
		return len(data) >= 11
	}, 60*time.Second, 200*time.Millisecond, "every attempt should be in the attempt log")
	var detail strings.Builder
	for _, a := range attempts["data"].([]any) {
		id := a.(map[string]any)["id"].(string)
		b, _ := json.Marshal(call(t, "GET", p.api+"/v1/attempts/"+id, apiKey, nil, 200))
		detail.Write(append(b, '\n'))
	}
	// The attempts topic itself, raw.
	var raw bytes.Buffer
	cl, err := kafka.NewClient(p.kcfg, kgo.ConsumeTopics(p.kcfg.Topics.Attempts, p.kcfg.Topics.Dead, p.kcfg.Topics.Deliveries),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			raw.Write(r.Value)
			for _, h := range r.Headers {
				raw.Write(h.Value)
			}
		})
	}
	cancel()

	var spanText strings.Builder
	for _, s := range exp.GetSpans() {
		fmt.Fprintln(&spanText, s.Name, s.Attributes, s.Events)
	}
	secrets := map[string]string{
		"the admin token": p.admin, "the encryption key": p.encryption, "the project API key": apiKey,
		"the webhook secret": secret, "the rotated secret": newSecret,
		"the webhook secret's key part": strings.TrimPrefix(secret, "whsec_"),
		"the rotated secret's key part": strings.TrimPrefix(newSecret, "whsec_"),
	}
	for what, s := range secrets {
		require.NotContains(t, logs.String(), s, "%s appears in the logs", what)
		require.NotContains(t, detail.String(), s, "%s appears in the attempt log", what)
		require.NotContains(t, raw.String(), s, "%s appears in a Kafka record", what)
		require.NotContains(t, spanText.String(), s, "%s appears in a span", what)
	}
	require.NotContains(t, detail.String(), "customer-token-4c6f", "custom header values are redacted in the attempt log")
	require.NotContains(t, logs.String(), "customer-token-4c6f", "custom header values never reach the logs")
	require.NotEmpty(t, logs.String(), "the services logged (at debug level) while this ran")
	require.Contains(t, detail.String(), "request_headers", "the attempt details were read")
	require.Regexp(t, `"trace_id":"[0-9a-f]{32}"`, detail.String(), "each attempt links to its trace")
	require.True(t, strings.Contains(detail.String(), `"Traceparent":"00-`), "the attempt log shows the traceparent the subscriber got")
}

func TestWithoutAnExporterTheProducersTraceStillReachesTheWebhook(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, "")
	}
	p, rc, url := startWithReceiver(t, setupTelemetry(t)) // nothing recorded: no span hooks on Kafka
	project := call(t, "POST", p.api+"/v1/projects", p.admin, map[string]any{"name": "Acme"}, 201)
	apiKey, projectID := project["api_key"].(string), project["id"].(string)
	call(t, "POST", p.api+"/v1/webhooks", apiKey, map[string]any{"name": "crm", "url": url + "/hook",
		"events": []string{"nps.scored"}}, 201)

	// A survey platform that traces its own producer sends the event to Kafka with its traceparent.
	const producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	cl, err := kafka.NewClient(p.kcfg)
	require.NoError(t, err)
	defer cl.Close()
	v, _ := json.Marshal(map[string]any{"project_id": projectID, "event_id": "k-traced-1", "event_type": "nps.scored",
		"user": map[string]any{"id": "u1"}, "nps": map[string]any{"score": 10}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: p.kcfg.Topics.SurveyEvents, Key: []byte(projectID), Value: v,
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-" + producerTrace + "-00f067aa0ba902b7-01")}}}).FirstErr())
	require.Eventually(t, func() bool { return len(rc.Records()) == 1 }, 60*time.Second, 20*time.Millisecond, "the event should be delivered")

	// And one over HTTP: a trace of its own starts at ingest and reaches the webhook.
	call(t, "POST", p.ingest+"/v1/events", apiKey, map[string]any{"event_type": "nps.scored",
		"user": map[string]any{"id": "u2"}, "nps": map[string]any{"score": 1}}, 202)
	require.Eventually(t, func() bool { return len(rc.Records()) == 2 }, 60*time.Second, 20*time.Millisecond, "the event should be delivered")

	byBody := map[string]string{}
	for _, r := range rc.Records() {
		byBody[string(r.Body)] = r.Header.Get("traceparent")
	}
	for body, tp := range byBody {
		parts := strings.Split(tp, "-")
		require.Len(t, parts, 4, "every webhook carries a traceparent, got %q", tp)
		require.Regexp(t, `^[0-9a-f]{32}$`, parts[1])
		require.NotEqual(t, strings.Repeat("0", 32), parts[1])
		if strings.Contains(body, "k-traced-1") {
			require.Equal(t, producerTrace, parts[1], "the producer's trace continues to the subscriber")
		} else {
			require.NotEqual(t, producerTrace, parts[1])
		}
	}
}
