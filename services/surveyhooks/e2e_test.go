package surveyhooks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/apitest"
	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
)

// binaries builds every service's command once per test binary run (the end-to-end tests share
// them); TestMain removes them.
func binaries(t *testing.T) string {
	t.Helper()
	dir, err := buildOnce()
	require.NoError(t, err)
	return dir
}

var binDir string

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "surveyhooks-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	return dir, proctest.Build(context.Background(), ".", dir,
		"github.com/surveyhooks/surveyhooks/services/surveyhooks/cmd/surveyhooks",
		"github.com/surveyhooks/surveyhooks/services/ingest/cmd/ingest",
		"github.com/surveyhooks/surveyhooks/services/fanout/cmd/fanout",
		"github.com/surveyhooks/surveyhooks/services/delivery/cmd/delivery",
		"github.com/surveyhooks/surveyhooks/services/sink/cmd/sink",
		"github.com/surveyhooks/surveyhooks/services/api/cmd/api",
	)
})

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// stack is the pipeline of an end-to-end test: proctest's, failing the test when a process cannot be
// started or killed, and showing the end of every log when the test failed.
type stack struct {
	t *testing.T
	*proctest.Stack
}

// start starts the service binary of the same name (kafka: the all-in-one broker).
func (s *stack) start(name string, extraEnv ...string) {
	s.t.Helper()
	bin := name
	if name == "kafka" {
		bin = "surveyhooks"
	}
	s.startAs(name, bin, extraEnv...)
}

// startAs starts binary bin as process name (several delivery workers), extraEnv on top of the
// stack's environment (os/exec keeps the last of duplicate variables).
func (s *stack) startAs(name, bin string, extraEnv ...string) {
	s.t.Helper()
	_, err := s.StartAs(name, bin, extraEnv...)
	require.NoError(s.t, err)
}

// kill9 kills name without warning and waits until it is gone. One that exited already is left
// to ExitedOnTheirOwn.
func (s *stack) kill9(name string) {
	s.t.Helper()
	if err := s.Kill(name); !errors.Is(err, os.ErrProcessDone) {
		require.NoError(s.t, err)
	}
}

// restart starts a killed process again, as it was started.
func (s *stack) restart(name string) {
	s.t.Helper()
	_, err := s.Restart(name)
	require.NoError(s.t, err)
}

func (s *stack) stopAll() {
	s.StopAll(15*time.Second, "kafka")
	if s.t.Failed() {
		entries, _ := os.ReadDir(s.LogDir)
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(s.LogDir, e.Name()))
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			s.t.Logf("==== %s (tail)\n%s", e.Name(), b)
		}
	}
}

// call sends a JSON request to one of the services and requires the status (apitest.Call).
var call = apitest.Call

// acceptedTimes counts how many times ep accepted (answered 2xx) each event id.
func acceptedTimes(ep *hooktest.Endpoint) map[string]int {
	got := map[string]int{}
	for _, r := range ep.Records() {
		if r.Delivered() {
			got[r.EventID]++
		}
	}
	return got
}

// accepted counts the ids among ids that ep accepted at least once.
func accepted(ep *hooktest.Endpoint, ids ...string) (n int) {
	got := acceptedTimes(ep)
	for _, id := range ids {
		if got[id] > 0 {
			n++
		}
	}
	return n
}

// requireSignedByBoth checks that ep (verifying, recording headers) refused nothing, that every
// request carried Ask Users' signature beside the Standard Webhooks one (checked by ep), and that
// every retry of an event carried the same webhook-id.
func requireSignedByBoth(t *testing.T, ep *hooktest.Endpoint) {
	t.Helper()
	require.Empty(t, ep.Refused(), "every request must carry valid signatures")
	ids := map[string]string{}
	for _, r := range ep.Records() {
		require.NotEmpty(t, r.Header.Get("X-Webhook-Signature"), "request %d without Ask Users' signature", r.Seq)
		if prev, ok := ids[r.EventID]; ok {
			require.Equal(t, prev, r.WebhookID, "event %s arrived with two different webhook-ids", r.EventID)
		}
		ids[r.EventID] = r.WebhookID
	}
}

func TestEventsFromHTTPAndKafkaArriveSignedAndLoggedAcrossAKilledWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs every binary")
	}
	l := newLifecycle(t)
	s := l.stack
	s.start("kafka")
	for _, name := range []string{"ingest", "fanout", "delivery", "sink", "api"} {
		s.start(name)
	}
	proctest.WaitHTTPOK(t, l.ingest+"/healthz", 60*time.Second)
	proctest.WaitHTTPOK(t, l.api+"/healthz", 60*time.Second)

	srv := hooktest.StartT(t, hooktest.Options{})
	hook := srv.Endpoint("hook", hooktest.Fast)
	hook.Record(true)

	project := call(t, "POST", l.api+"/v1/projects", l.admin, map[string]any{"name": "Acme"}, 201)
	apiKey, projectID := project["api_key"].(string), project["id"].(string)
	require.NotEmpty(t, apiKey)
	wh := call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{
		"name": "crm", "url": srv.URL() + "/hook", "events": []string{"survey.completed", "nps.scored"}}, 201)
	secret := wh["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"))
	hook.Verify(secret)

	// One event over HTTP…
	posted := call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{
		"event_type": "survey.completed", "user": map[string]any{"id": "u1"},
		"survey": map[string]any{"id": "s1", "name": "NPS"}, "response": map[string]any{"id": "r1", "completion": "fully_completed"}}, 202)
	httpID := posted["event_ids"].([]any)[0].(string)

	// …and one from a survey platform's own Kafka producer (segmentio/kafka-go).
	w := &kafkago.Writer{Addr: kafkago.TCP(l.kafkaAddr), Topic: "survey-events", RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	score := 3
	v, _ := json.Marshal(map[string]any{"project_id": projectID, "event_id": "kafka-evt-1", "event_type": "nps.scored",
		"user": map[string]any{"id": "u2"}, "nps": map[string]any{"score": score}})
	require.NoError(t, w.WriteMessages(ctx, kafkago.Message{Key: []byte(projectID), Value: v,
		Headers: []kafkago.Header{{Key: "content-type", Value: []byte("application/json")}}}))

	require.Eventually(t, func() bool { return accepted(hook, httpID, "kafka-evt-1") == 2 }, 60*time.Second, 50*time.Millisecond,
		"both events should reach the receiver")
	requireSignedByBoth(t, hook)

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{l.chAddr}, Auth: clickhouse.Auth{Database: l.db}})
	require.NoError(t, err)
	defer conn.Close()
	rowsFor := func(ids ...string) uint64 {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM delivery_attempts WHERE has(?, event_id)", ids).Scan(&n); err != nil {
			t.Logf("querying ClickHouse: %v", err)
		}
		return n
	}
	require.Eventually(t, func() bool { return rowsFor(httpID, "kafka-evt-1") >= 2 }, 60*time.Second, 200*time.Millisecond,
		"both attempts should be rows in ClickHouse")

	// kill -9 the delivery worker while a stream of events flows, restart it: nothing is lost.
	const n = 300
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("burst-%03d", i)
	}
	go func() {
		for i := 0; i < n; i += 50 {
			var batch []map[string]any
			for _, id := range ids[i : i+50] {
				batch = append(batch, map[string]any{"event_id": id, "event_type": "nps.scored",
					"user": map[string]any{"id": "u-" + id}, "nps": map[string]any{"score": 9}})
			}
			call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{"events": batch}, 202)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	require.Eventually(t, func() bool { return accepted(hook, ids...) > 20 }, 60*time.Second, 10*time.Millisecond)
	s.kill9("delivery")
	s.restart("delivery")
	require.Eventually(t, func() bool { return accepted(hook, ids...) == n }, 90*time.Second, 100*time.Millisecond,
		"every event must arrive after the worker was killed and restarted")
	require.Eventually(t, func() bool { return rowsFor(ids...) >= n }, 60*time.Second, 200*time.Millisecond,
		"every attempt must reach ClickHouse")
	requireSignedByBoth(t, hook)
}
