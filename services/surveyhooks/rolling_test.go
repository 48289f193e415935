package surveyhooks_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// state reads a slow subscriber with one webhook: events that reached it, duplicate deliveries
// (a webhook-id seen twice), and requests in flight.
func (rc *slowSubscriber) state() (events, duplicates, inFlight int) {
	duplicates, _, _ = rc.duplicates()
	return rc.delivered(), duplicates, len(rc.hook.Open())
}

func TestServicesReportReadinessAndMetricsAndARollingRestartOfWorkersLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every binary")
	}
	l := newLifecycle(t, "KAFKA_PARTITIONS=4", "DELIVERY_DRAIN_TIMEOUT=15s", "DELIVERY_COMMIT_INTERVAL=100ms")
	ops := map[string]string{}
	l.start("kafka")
	for _, name := range []string{"ingest", "fanout", "delivery", "sink", "api"} {
		ops[name] = l.run(name, name)
	}

	// Every service: alive at once, ready once its consumers joined and it caught up.
	for name, addr := range ops {
		require.Eventually(t, func() bool { code, _ := opsGet("http://" + addr + "/healthz"); return code == 200 },
			30*time.Second, 50*time.Millisecond, "%s /healthz", name)
		require.Eventually(t, func() bool { code, _ := opsGet("http://" + addr + "/readyz"); return code == 200 },
			60*time.Second, 100*time.Millisecond, "%s /readyz should turn 200 once it is caught up", name)
	}

	rc := newSlowSubscriber(t, 400*time.Millisecond)
	project := call(t, "POST", l.api+"/v1/projects", l.admin, map[string]any{"name": "Acme"}, 201)
	apiKey := project["api_key"].(string)
	call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{"name": "slow", "url": rc.URL() + "/hook",
		"events": []string{"nps.scored"}}, 201)

	// A second worker joins; events keep arriving while the workers are replaced one by one.
	ops["delivery-b"] = l.run("delivery-b", "delivery")
	require.Eventually(t, func() bool { code, _ := opsGet("http://" + ops["delivery-b"] + "/readyz"); return code == 200 },
		60*time.Second, 100*time.Millisecond, "the second worker should become ready")
	const n = 240
	posted := make(chan struct{})
	go func() {
		defer close(posted)
		for i := 0; i < n; i += 20 {
			var batch []map[string]any
			for j := i; j < i+20; j++ {
				batch = append(batch, map[string]any{"event_id": fmt.Sprintf("roll-%03d", j), "event_type": "nps.scored",
					"user": map[string]any{"id": "u"}, "nps": map[string]any{"score": 7}})
			}
			call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{"events": batch}, 202)
			time.Sleep(150 * time.Millisecond)
		}
	}()

	var drains []time.Duration
	replace := func(old, next string) {
		// Stop it while requests are in flight (unless everything has arrived already).
		require.Eventually(t, func() bool { events, _, inFlight := rc.state(); return inFlight > 0 || events == n },
			30*time.Second, 5*time.Millisecond, "requests should be in flight before %s is stopped", old)
		st := l.sigterm(old, 30*time.Second)
		require.Equal(t, 0, st.code, "%s should exit 0 after SIGTERM:\n%s", old, st.logTail)
		drains = append(drains, st.took)
		ops[next] = l.run(next, "delivery")
	}
	replace("delivery", "delivery-c")
	replace("delivery-b", "delivery-d")
	<-posted
	replace("delivery-c", "delivery-e")

	require.Eventually(t, func() bool { events, _, _ := rc.state(); return events == n }, 90*time.Second, 50*time.Millisecond,
		"every event should be delivered across the rolling restart")
	events, duplicates, _ := rc.state()
	t.Logf("%d events delivered, %d duplicate deliveries, drain times %v", events, duplicates, drains)
	require.Zero(t, duplicates, "a worker stopped by SIGTERM finishes and commits what it started: nothing is sent twice")
	for _, d := range drains {
		require.Less(t, d, 16*time.Second, "a drain never outlasts DELIVERY_DRAIN_TIMEOUT by much")
	}

	// The metrics show the traffic. The workers running now may not have delivered anything yet
	// (their predecessors can finish everything): send a few more events through them.
	for _, name := range []string{"delivery-d", "delivery-e"} {
		require.Eventually(t, func() bool { code, _ := opsGet("http://" + ops[name] + "/readyz"); return code == 200 },
			60*time.Second, 50*time.Millisecond, "%s should become ready", name)
	}
	var more []map[string]any
	for j := range 10 {
		more = append(more, map[string]any{"event_id": fmt.Sprintf("after-%03d", j), "event_type": "nps.scored",
			"user": map[string]any{"id": "u"}, "nps": map[string]any{"score": 7}})
	}
	call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{"events": more}, 202)
	require.Eventually(t, func() bool { events, _, _ := rc.state(); return events == n+len(more) }, 60*time.Second,
		50*time.Millisecond, "the events sent after the restart should be delivered")
	var code int
	var metrics string
	require.Eventually(t, func() bool { code, metrics = opsGet("http://" + ops["delivery-e"] + "/metrics"); return code != 0 },
		30*time.Second, 50*time.Millisecond, "delivery-e's operations server should answer")
	require.Equal(t, 200, code)
	require.Contains(t, metrics, "surveyhooks_retry_tier_depth")
	require.Contains(t, metrics, "go_goroutines")
	var last string
	ok := assert.Eventually(t, func() bool {
		// Whichever of the two running workers owns the webhook's partition counts its deliveries.
		_, d := opsGet("http://" + ops["delivery-d"] + "/metrics")
		_, e := opsGet("http://" + ops["delivery-e"] + "/metrics")
		last = d + e
		return strings.Contains(last, `surveyhooks_deliveries_total{`) && strings.Contains(last, `outcome="success"`) &&
			strings.Contains(last, "surveyhooks_delivery_latency_seconds_bucket") && strings.Contains(last, "surveyhooks_consumer_lag{")
	}, 20*time.Second, 200*time.Millisecond, "the workers' /metrics should count deliveries and report lag")
	if !ok {
		t.Fatalf("the workers' metrics:\n%s", last)
	}
	_, m := opsGet("http://" + ops["ingest"] + "/metrics")
	require.Contains(t, m, `surveyhooks_ingest_events_total{`)
	require.Contains(t, m, `result="accepted"`)
	_, m = opsGet("http://" + ops["fanout"] + "/metrics")
	require.True(t, strings.Contains(m, "surveyhooks_fanout_total{") && strings.Contains(m, `result="deliveries"`),
		"fan-out reports its results")
	require.Eventually(t, func() bool {
		_, m := opsGet("http://" + ops["sink"] + "/metrics")
		return strings.Contains(m, "surveyhooks_sink_batch_rows_count")
	}, 20*time.Second, 200*time.Millisecond, "the sink reports its batches")
}
