package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry/telemetrytest"
)

func createTopics(t *testing.T, cfg kafka.Config, topics ...string) {
	t.Helper()
	cl, err := kafka.NewClient(cfg)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, 1, 1, nil, topics...)
	require.NoError(t, err)
	require.NoError(t, resp.Error())
}

// consumeOne reads the next record of topic with a traced client.
func consumeOne(t *testing.T, cfg kafka.Config, tel *telemetry.Telemetry, topic string) *kgo.Record {
	t.Helper()
	cl, err := kafka.NewClient(cfg, append(tel.KafkaHooks(),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "no record on %s", topic)
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0]
		}
	}
}

// TestTraceFollowsAnEventAcrossKafkaHopsToTheWebhook is the span chain of DESIGN §4 in miniature:
// a request span produces to `events`; a consumer (fan-out) continues the trace into a record on
// `deliveries`; a second consumer (delivery) POSTs a webhook whose traceparent carries the same
// trace id. Every hop is a parent/child link in one trace.
func TestTraceFollowsAnEventAcrossKafkaHopsToTheWebhook(t *testing.T) {
	tel, exp := setup(t)
	cfg := kafkatest.Start(t)
	createTopics(t, cfg, "events", "deliveries")
	recv := newReceiver(t)

	// ingest: the request span produces the event.
	producer, err := kafka.NewClient(cfg, tel.KafkaHooks()...)
	require.NoError(t, err)
	t.Cleanup(producer.Close)
	ctx, request := tel.Tracer().Start(context.Background(), "POST /v1/events")
	require.NoError(t, producer.ProduceSync(ctx, &kgo.Record{Topic: "events", Key: []byte("p1"), Value: []byte("event")}).FirstErr())
	request.End()
	traceID := request.SpanContext().TraceID()

	// fan-out: consume the event, produce a delivery in the event's trace.
	event := consumeOne(t, cfg, tel, "events")
	require.NotEmpty(t, kafka.Header(event, "traceparent"), "the producer wrote the trace context into the record")
	require.Equal(t, traceID, trace.SpanContextFromContext(event.Context).TraceID())
	out := &kgo.Record{Topic: "deliveries", Key: []byte("wh1"), Value: []byte("delivery")}
	out.Context = telemetry.RecordContext(context.Background(), event)
	require.NoError(t, producer.ProduceSync(context.Background(), out).FirstErr())

	// delivery: consume the delivery and POST the webhook inside a process span.
	delivery := consumeOne(t, cfg, tel, "deliveries")
	dctx, deliver := tel.StartRecordSpan(context.Background(), delivery, "deliver")
	client := &http.Client{Transport: telemetry.HTTPClientTransport(nil), Timeout: 5 * time.Second}
	req, err := http.NewRequestWithContext(dctx, http.MethodPost, recv.URL, strings.NewReader("{}"))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	deliver.End()

	sent := recv.traceparents()
	require.Len(t, sent, 1)
	require.Equal(t, traceID, remote(t, sent[0]).TraceID(), "the subscriber sees the trace that started at ingest")

	// The exported spans form one chain: request → publish → receive → publish → receive → deliver → POST.
	chain := []string{"POST /v1/events", "events publish", "events receive", "deliveries publish", "deliveries receive", "deliver", "POST"}
	spans := make([]tracetestSpan, len(chain))
	for i, name := range chain {
		s := findSpan(t, exp, name)
		spans[i] = tracetestSpan{name: name, id: s.SpanContext.SpanID(), parent: s.Parent.SpanID(), trace: s.SpanContext.TraceID()}
	}
	for i, s := range spans {
		require.Equal(t, traceID, s.trace, "%s is in the event's trace", s.name)
		if i > 0 {
			require.Equal(t, spans[i-1].id, s.parent, "%s is a child of %s", s.name, spans[i-1].name)
		}
	}
	require.Equal(t, spans[len(spans)-1].id, remote(t, sent[0]).SpanID(), "traceparent names the POST span")
}

type tracetestSpan struct {
	name       string
	id, parent trace.SpanID
	trace      trace.TraceID
}

func TestRecordContextReadsTraceparentFromHeadersOfUntracedRecords(t *testing.T) {
	setup(t) // installs the global propagator
	rec := &kgo.Record{Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}}
	sc := trace.SpanContextFromContext(telemetry.RecordContext(context.Background(), rec))
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", sc.TraceID().String())
	require.Equal(t, "00f067aa0ba902b7", sc.SpanID().String())
}

func TestConsumerLagIsServedPerGroupTopicAndPartition(t *testing.T) {
	tel, _ := setup(t)
	cfg := kafkatest.Start(t)
	createTopics(t, cfg, "deliveries")
	cl, err := kafka.NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 5 {
		require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: "deliveries", Value: []byte("x")}).FirstErr())
	}
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "deliveries", Partition: 0, At: 2, LeaderEpoch: -1})
	committed, err := kadm.NewClient(cl).CommitOffsets(ctx, "surveyhooks-delivery", offsets)
	require.NoError(t, err)
	require.NoError(t, committed.Error())

	stop := tel.ObserveConsumerLag(cl, "surveyhooks-delivery")
	srv := telemetry.OpsServer("", tel, nil)
	rec := httptestRecorder(t, srv.Handler, "/metrics")
	fams := telemetrytest.Parse(t, rec)
	require.Equal(t, 3.0, telemetrytest.Value(t, fams, "surveyhooks_consumer_lag",
		map[string]string{"group": "surveyhooks-delivery", "topic": "deliveries", "partition": "0"}))

	stop()
	fams = telemetrytest.Parse(t, httptestRecorder(t, srv.Handler, "/metrics"))
	require.NotContains(t, fams, "surveyhooks_consumer_lag", "a stopped source is no longer read")
}

func httptestRecorder(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	require.Equal(t, http.StatusOK, w.Code)
	return w.Body.String()
}
