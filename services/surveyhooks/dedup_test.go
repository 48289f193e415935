package surveyhooks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
)

// TestARepeatWithinTheWindowIsDeliveredOnceAcrossIngestProcessesAndKills: a producer sends the same
// events through two ingest processes, again after fan-out and ingest were killed with -9 and
// restarted, and once more through Kafka. Whatever ingest answers (its "duplicate" flag is best
// effort), each event reaches the subscriber once.
func TestARepeatWithinTheWindowIsDeliveredOnceAcrossIngestProcessesAndKills(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs every binary")
	}
	l := newLifecycle(t)
	s := l.stack
	s.start("kafka")
	second := "http://" + proctest.Addr(t)
	for _, name := range []string{"ingest", "fanout", "delivery", "api"} {
		s.start(name)
	}
	s.startAs("ingest-2", "ingest", "INGEST_ADDR="+second[len("http://"):])
	for _, u := range []string{l.ingest, second, l.api} {
		proctest.WaitHTTPOK(t, u+"/healthz", 60*time.Second)
	}
	srv := hooktest.StartT(t, hooktest.Options{})
	hook := srv.Endpoint("hook", hooktest.Fast)
	hook.Record(true)
	project := call(t, "POST", l.api+"/v1/projects", l.admin, map[string]any{"name": "Acme"}, 201)
	apiKey, projectID := project["api_key"].(string), project["id"].(string)
	wh := call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{"name": "crm", "url": srv.URL() + "/hook", "events": []string{"nps.scored"}}, 201)
	hook.Verify(wh["secret"].(string))

	ids := make([]string, 40)
	events := make([]map[string]any, len(ids))
	for i := range ids {
		ids[i] = fmt.Sprintf("repeat-%02d", i)
		events[i] = map[string]any{"event_id": ids[i], "event_type": "nps.scored", "user": map[string]any{"id": fmt.Sprintf("u%d", i%7)},
			"nps": map[string]any{"score": i % 11}}
	}
	postAll := func(base string) int {
		req := map[string]any{"events": events}
		b, _ := json.Marshal(req)
		var out map[string]any
		require.Eventually(t, func() bool {
			resp, err := postRaw(base+"/v1/events", apiKey, b)
			if err != nil || (resp.status != 200 && resp.status != 202) {
				return false
			}
			out = resp.body
			return true
		}, 60*time.Second, 200*time.Millisecond, "%s should accept the batch", base)
		d, _ := out["duplicates"].(float64)
		return int(d)
	}
	require.Zero(t, postAll(l.ingest))
	require.Equal(t, len(ids), postAll(l.ingest), "the process that wrote them recognises the repeats at once")
	postAll(second) // another process: answered 202 (it does not know them), still not delivered twice
	require.Eventually(t, func() bool { return accepted(hook, ids...) == len(ids) }, 60*time.Second, 50*time.Millisecond)

	s.kill9("fanout")
	s.kill9("ingest")
	s.restart("fanout")
	s.restart("ingest")
	proctest.WaitHTTPOK(t, l.ingest+"/healthz", 60*time.Second)
	postAll(l.ingest)

	// And through the project's own Kafka producer.
	w := &kafkago.Writer{Addr: kafkago.TCP(l.kafkaAddr), Topic: "survey-events", RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var msgs []kafkago.Message
	for _, ev := range events[:10] {
		ev := withField(ev, "project_id", projectID)
		v, _ := json.Marshal(ev)
		msgs = append(msgs, kafkago.Message{Value: v})
	}
	v, _ := json.Marshal(map[string]any{"project_id": projectID, "event_id": "marker", "event_type": "nps.scored",
		"user": map[string]any{"id": "u0"}, "nps": map[string]any{"score": 1}})
	msgs = append(msgs, kafkago.Message{Value: v})
	require.NoError(t, w.WriteMessages(ctx, msgs...))
	require.Eventually(t, func() bool { return accepted(hook, "marker") == 1 }, 90*time.Second, 50*time.Millisecond)
	time.Sleep(time.Second) // a repeat, if any, would be close behind
	requireSignedByBoth(t, hook)
	got := acceptedTimes(hook)
	for _, id := range ids {
		require.Equal(t, 1, got[id], "%s must be delivered once", id)
	}
}

func withField(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}

type rawAnswer struct {
	status int
	body   map[string]any
}

// postRaw posts body as JSON and returns the status and decoded answer, failing only on transport
// errors (the caller retries).
func postRaw(url, token string, body []byte) (rawAnswer, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return rawAnswer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return rawAnswer{}, err
	}
	defer resp.Body.Close()
	a := rawAnswer{status: resp.StatusCode, body: map[string]any{}}
	_ = json.NewDecoder(resp.Body).Decode(&a.body)
	return a, nil
}
