package ingest_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry/telemetrytest"
	"github.com/surveyhooks/surveyhooks/services/ingest"
)

func TestMetricsCountEventsByResultAndReason(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), "ingest", telemetry.WithoutGlobals())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	kcfg := kafkatest.Start(t)
	createProject(t, kcfg, "prj_1", key)
	in := start(t, testConfig(t, kcfg), service.WithTelemetry(tel))

	require.Equal(t, 202, postJSON(t, in.addr, key, npsEvent("m-1", "u1", 3)).status)
	require.Equal(t, 200, postJSON(t, in.addr, key, npsEvent("m-1", "u1", 3)).status, "a repeat")
	require.Equal(t, 400, postJSON(t, in.addr, key, map[string]any{"event_type": "nps.scored"}).status)
	w := &kafkago.Writer{Addr: kafkago.TCP(kcfg.Brokers...), Topic: kcfg.Topics.SurveyEvents, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx, kafkago.Message{Value: []byte(`{"project_id":"prj_nope","event_type":"nps.scored","user":{"id":"u"},"nps":{"score":1}}`)}))

	var text string
	require.Eventually(t, func() bool {
		rec := httptest.NewRecorder()
		tel.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		text = string(b)
		return strings.Contains(text, `reason="unknown_project",result="rejected"`) &&
			strings.Contains(text, `reason="duplicate_event_id",result="duplicate"`)
	}, 30*time.Second, 50*time.Millisecond, "ingest's metrics should count the rejected Kafka record by reason and the repeat")
	for _, want := range []string{`surveyhooks_ingest_events_total{`, `reason="",result="accepted"`,
		`reason="missing_field",result="rejected"`} { // the bad HTTP request, by its error code
		require.True(t, strings.Contains(text, want), "metrics lack %s", want)
	}
}

func TestEventsInstrumentIsServedUnderItsPrometheusName(t *testing.T) {
	tel := telemetrytest.Setup(t, "ingest")
	m, err := ingest.NewMetrics(tel)
	require.NoError(t, err)
	ctx := context.Background()
	m.Events(ctx, 3, "rejected", "missing_event_type")
	m.Events(ctx, 5, "accepted", "")
	m.Events(ctx, 0, "preview", "") // nothing to count: no series

	fams := telemetrytest.Scrape(t, tel)
	require.Equal(t, 3.0, telemetrytest.Value(t, fams, "surveyhooks_ingest_events_total", map[string]string{"result": "rejected", "reason": "missing_event_type"}))
	require.Equal(t, 5.0, telemetrytest.Value(t, fams, "surveyhooks_ingest_events_total", map[string]string{"result": "accepted", "reason": ""}))
	require.Len(t, fams["surveyhooks_ingest_events_total"].GetMetric(), 2)

	var none *ingest.Metrics // without telemetry: records nothing, never panics
	none.Events(ctx, 1, "accepted", "")
}
