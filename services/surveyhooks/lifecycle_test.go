package surveyhooks_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/chtest"
	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
)

// lifecycle is the end-to-end stack of e2e_test.go in which every service process gets an
// operations address of its own (/healthz, /readyz, /metrics) and may run under a name other than
// its binary's (several delivery workers).
type lifecycle struct {
	*stack
	kafkaAddr   string
	chAddr, db  string // ClickHouse and the test's database
	ingest, api string // base URLs
	admin       string
	opsMu       sync.Mutex
	ops         map[string]string // process name → operations address
}

// newLifecycle prepares the stack's environment (extraEnv wins over the defaults) without starting
// anything; stopAll runs at cleanup and shows every log on failure.
func newLifecycle(t *testing.T, extraEnv ...string) *lifecycle {
	t.Helper()
	chAddr, db := chtest.Addr(t), chtest.Database(t)
	bin := binaries(t)
	kafkaAddr, ingestAddr, apiAddr := proctest.Addr(t), proctest.Addr(t), proctest.Addr(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	const admin = "lifecycle-test-admin-token-42"
	env := []string{
		"KAFKA_BROKERS=" + kafkaAddr, "KAFKA_PARTITIONS=3",
		"SURVEYHOOKS_RETRY_SCHEDULE=1s,2s,3s",
		"SURVEYHOOKS_KAFKA_LISTEN=" + kafkaAddr, "SURVEYHOOKS_SERVICES=kafka", "SURVEYHOOKS_DATA_DIR=" + t.TempDir(),
		"INGEST_ADDR=" + ingestAddr, "API_ADDR=" + apiAddr,
		"SURVEYHOOKS_ADMIN_TOKEN=" + admin, "SURVEYHOOKS_ENCRYPTION_KEY=" + base64.StdEncoding.EncodeToString(key),
		"SURVEYHOOKS_ALLOW_DESTINATIONS=127.0.0.0/8,::1/128",
		"CLICKHOUSE_ADDR=" + chAddr, "SINK_CLICKHOUSE_DATABASE=" + db, "API_CLICKHOUSE_DATABASE=" + db,
		"SINK_FLUSH_INTERVAL=200ms", "SURVEYHOOKS_OPS_ADDR=off",
	}
	s := &stack{t: t, Stack: proctest.NewStack(bin, t.TempDir(), append(env, extraEnv...))}
	t.Cleanup(s.stopAll)
	return &lifecycle{stack: s, kafkaAddr: kafkaAddr, chAddr: chAddr, db: db, ingest: "http://" + ingestAddr, api: "http://" + apiAddr,
		admin: admin, ops: map[string]string{}}
}

// run starts binary bin as process name with an operations address of its own, returned.
// (os/exec keeps the last of duplicate variables: extraEnv wins over the stack's.)
func (l *lifecycle) run(name, bin string, extraEnv ...string) string {
	l.t.Helper()
	addr := proctest.Addr(l.t)
	l.startAs(name, bin, append([]string{"SURVEYHOOKS_OPS_ADDR=" + addr}, extraEnv...)...)
	l.opsMu.Lock()
	l.ops[name] = addr
	l.opsMu.Unlock()
	return addr
}

func (l *lifecycle) opsURL(name, path string) string {
	l.opsMu.Lock()
	defer l.opsMu.Unlock()
	return "http://" + l.ops[name] + path
}

// stopped is what SIGTERM did to a process.
type stopped struct {
	code    int           // exit code (-1: killed by a signal)
	took    time.Duration // from SIGTERM to exit
	readyz  []string      // distinct /readyz answers seen while it stopped ("503 shutting down", …)
	log     string        // its whole log
	logTail string        // the end of it, to show
}

// sigterm sends SIGTERM to name, watches its /readyz while it drains, and waits up to within for it
// to exit (then kills it and fails the test).
func (l *lifecycle) sigterm(name string, within time.Duration) stopped {
	l.t.Helper()
	p := l.Take(name) // stopAll must not stop it again
	require.NotNil(l.t, p, "no process %s", name)
	readyzURL := l.opsURL(name, "/readyz")
	start := time.Now()
	require.NoError(l.t, p.Signal(syscall.SIGTERM))

	var st stopped
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	deadline := time.After(within)
wait:
	for {
		select {
		case <-p.Done():
			break wait
		case <-poll.C:
			if code, body := opsGet(readyzURL); code != 0 {
				if a := fmt.Sprintf("%d %s", code, strings.TrimSpace(body)); !slices.Contains(st.readyz, a) {
					st.readyz = append(st.readyz, a)
				}
			}
		case <-deadline:
			_ = p.Kill()
			l.t.Fatalf("%s did not exit within %s of SIGTERM", name, within)
		}
	}
	st.took = time.Since(start)
	st.code = p.ExitCode()
	var ee *exec.ExitError
	if waitErr := p.Wait(); waitErr != nil && !errors.As(waitErr, &ee) {
		l.t.Fatalf("waiting for %s: %v", name, waitErr)
	}
	st.log = p.ReadLog()
	st.logTail = p.Tail(4000)
	return st
}

// opsGet GETs url and returns the status (0 when unreachable) and the body.
func opsGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue sums every series of the Prometheus metric name in text (NaN-free counters and
// gauges only); ok is false when the metric is absent.
func metricValue(text, name string) (sum float64, ok bool) {
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, name) || len(line) == len(name) || (line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		var fields []string
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			fields = strings.Fields(line[i+1:])
		} else {
			fields = strings.Fields(line[len(name):])
		}
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		sum, ok = sum+v, true
	}
	return sum, ok
}

// TestEveryServiceAnswersHealthAndReadinessOnItsOpsAddress starts every service before Kafka is
// up: each is alive (/healthz) at once but not ready (/readyz 503 naming what it waits for) until
// the broker is there, its consumers are assigned and it caught up; then /metrics shows traffic.
func TestEveryServiceAnswersHealthAndReadinessOnItsOpsAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs every binary")
	}
	l := newLifecycle(t)
	services := []string{"ingest", "fanout", "delivery", "sink", "api"}
	for _, name := range services {
		l.run(name, name)
	}

	// Without Kafka: alive, not ready, and saying why.
	for _, name := range services {
		require.Eventually(t, func() bool { code, _ := opsGet(l.opsURL(name, "/healthz")); return code == 200 },
			20*time.Second, 20*time.Millisecond, "%s /healthz should answer while Kafka is down", name)
		code, body := opsGet(l.opsURL(name, "/healthz"))
		require.Equal(t, 200, code)
		require.Equal(t, "ok", strings.TrimSpace(body), "%s /healthz", name)
		code, body = opsGet(l.opsURL(name, "/readyz"))
		require.Equal(t, http.StatusServiceUnavailable, code, "%s must not be ready without Kafka: %s", name, body)
		require.True(t, strings.HasPrefix(body, "waiting for: ") || strings.HasPrefix(body, "starting"),
			"%s /readyz should say what it waits for, got %q", name, body)
		t.Logf("%s before Kafka: /readyz %d %q", name, code, strings.TrimSpace(body))
	}
	time.Sleep(time.Second)
	for _, name := range services {
		code, body := opsGet(l.opsURL(name, "/readyz"))
		require.Equal(t, http.StatusServiceUnavailable, code, "%s still has no Kafka: %s", name, body)
	}

	// Kafka comes up: each becomes ready, once.
	l.start("kafka")
	for _, name := range services {
		var seen []string
		require.Eventually(t, func() bool {
			code, body := opsGet(l.opsURL(name, "/readyz"))
			if code != 200 {
				if a := fmt.Sprintf("%d %s", code, strings.TrimSpace(body)); !slices.Contains(seen, a) {
					seen = append(seen, a)
				}
			}
			return code == 200 && strings.TrimSpace(body) == "ready"
		}, 30*time.Second, 50*time.Millisecond, "%s /readyz should turn 200 \"ready\" once it is caught up (saw %q)", name, seen)
		t.Logf("%s became ready; on the way: %q", name, seen)
		for _, a := range seen {
			require.True(t, strings.HasPrefix(a, "503 waiting for: ") || strings.HasPrefix(a, "503 starting"),
				"%s /readyz before ready: %q", name, a)
		}
		code, metrics := opsGet(l.opsURL(name, "/metrics"))
		require.Equal(t, 200, code, "%s /metrics", name)
		require.True(t, strings.Contains(metrics, "surveyhooks_") || strings.Contains(metrics, "go_goroutines"),
			"%s /metrics should be Prometheus text with the Go or surveyhooks metrics:\n%.2000s", name, metrics)
	}
	proctest.WaitHTTPOK(t, l.ingest+"/healthz", 60*time.Second)
	proctest.WaitHTTPOK(t, l.api+"/healthz", 60*time.Second)

	// Traffic shows in the metrics.
	srv := hooktest.StartT(t, hooktest.Options{})
	hook := srv.Endpoint("hook", hooktest.Fast)
	hook.Record(true)
	project := call(t, "POST", l.api+"/v1/projects", l.admin, map[string]any{"name": "Acme"}, 201)
	apiKey := project["api_key"].(string)
	wh := call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{"name": "crm", "url": srv.URL() + "/hook",
		"events": []string{"nps.scored"}}, 201)
	hook.Verify(wh["secret"].(string))
	var ids []string
	var batch []map[string]any
	for i := range 5 {
		ids = append(ids, fmt.Sprintf("health-%d", i))
		batch = append(batch, map[string]any{"event_id": ids[i], "event_type": "nps.scored",
			"user": map[string]any{"id": "u"}, "nps": map[string]any{"score": i}})
	}
	call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{"events": batch}, 202)
	require.Eventually(t, func() bool { return accepted(hook, ids...) == len(ids) }, 60*time.Second, 50*time.Millisecond,
		"the events should be delivered")
	requireSignedByBoth(t, hook)

	var last string
	require.Eventually(t, func() bool {
		_, last = opsGet(l.opsURL("delivery", "/metrics"))
		n, ok := metricValue(last, "surveyhooks_deliveries_total")
		return ok && n >= float64(len(ids))
	}, 10*time.Second, 100*time.Millisecond, "delivery /metrics should count the deliveries:\n%.3000s", last)
	_, m := opsGet(l.opsURL("ingest", "/metrics"))
	n, ok := metricValue(m, "surveyhooks_ingest_events_total")
	require.True(t, ok, "ingest /metrics should have surveyhooks_ingest_events_total:\n%.3000s", m)
	require.GreaterOrEqual(t, n, float64(len(ids)))
	for _, name := range services {
		code, body := opsGet(l.opsURL(name, "/readyz"))
		require.Equal(t, 200, code, "%s should still be ready: %s", name, body)
	}
}

// slowSubscriber answers every webhook after delay (the paths in fast after 10 ms), on one
// recording hooktest endpoint that serves every path. It counts deliveries per webhook-id (one
// delivery of one event to one webhook) and per (webhook path, event id), and notices requests
// whose client went away before the answer (a worker that dropped a request it had sent).
type slowSubscriber struct {
	srv  *hooktest.Server
	hook *hooktest.Endpoint
}

func newSlowSubscriber(t *testing.T, delay time.Duration, fast ...string) *slowSubscriber {
	hook := hooktest.NewEndpoint("every path", hooktest.Fast)
	hook.Record(false)
	hook.AnswerWith(func(r *hooktest.Request) hooktest.Answer {
		if slices.Contains(fast, r.Path) {
			return hooktest.Answer{Status: http.StatusOK, Delay: 10 * time.Millisecond}
		}
		return hooktest.Answer{Status: http.StatusOK, Delay: delay}
	})
	return &slowSubscriber{srv: hooktest.StartT(t, hooktest.Options{Default: hook}), hook: hook}
}

// URL is the subscriber's base URL; every path under it is a webhook.
func (rc *slowSubscriber) URL() string { return rc.srv.URL() }

// seen is every request so far: answered, abandoned or open.
func (rc *slowSubscriber) seen() []hooktest.Request {
	return append(rc.hook.Records(), rc.hook.Open()...)
}

func (rc *slowSubscriber) inFlightIDs() (ids []string) {
	for _, r := range rc.hook.Open() {
		ids = append(ids, r.WebhookID)
	}
	return ids
}

// allAnswered reports whether every one of ids got its answer.
func (rc *slowSubscriber) allAnswered(ids []string) bool {
	answered := map[string]bool{}
	for _, r := range rc.hook.Records() {
		if r.Status != 0 {
			answered[r.WebhookID] = true
		}
	}
	for _, id := range ids {
		if !answered[id] {
			return false
		}
	}
	return true
}

// byEvent counts the requests of each (path, event id), as "path event".
func (rc *slowSubscriber) byEvent() map[string]int {
	out := map[string]int{}
	for _, r := range rc.seen() {
		out[r.Path+" "+r.EventID]++
	}
	return out
}

// delivered counts (path, event) pairs delivered at least once.
func (rc *slowSubscriber) delivered() int { return len(rc.byEvent()) }

// aborted lists the webhook-ids of requests whose client hung up before the answer.
func (rc *slowSubscriber) aborted() (ids []string) {
	for _, r := range rc.hook.Records() {
		if r.Status == 0 {
			ids = append(ids, r.WebhookID)
		}
	}
	return ids
}

// duplicates lists webhook-ids delivered more than once, with their counts, and how many
// deliveries there were (distinct webhook-ids).
func (rc *slowSubscriber) duplicates() (n int, which map[string]int, deliveries int) {
	byMsg := map[string]int{}
	for _, r := range rc.seen() {
		byMsg[r.WebhookID]++
	}
	which = map[string]int{}
	for id, c := range byMsg {
		if c > 1 {
			n += c - 1
			which[id] = c
		}
	}
	return n, which, len(byMsg)
}

// TestSIGTERMDrainsInFlightDeliveriesAndARollingRestartLosesNothing replaces two delivery workers
// one at a time by SIGTERM while a slow subscriber has requests in flight: each stopping worker
// reports not ready, lets its requests finish, commits, leaves the group and exits 0 well within its
// drain time; every event arrives, none twice, no later than the drains explain.
func TestSIGTERMDrainsInFlightDeliveriesAndARollingRestartLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs every binary")
	}
	const (
		partitions = 2 // every worker of the rolling restart owns a partition when it is stopped
		perPart    = 2 // webhooks per `deliveries` partition: they share it, as in production (answering at
		// one pace; a fast and a slow one on a partition are the next test)
		n     = 200
		delay = 1500 * time.Millisecond
		drain = 10 * time.Second
	)
	l := newLifecycle(t, "KAFKA_PARTITIONS="+strconv.Itoa(partitions), "DELIVERY_DRAIN_TIMEOUT="+drain.String(),
		"DELIVERY_TIMEOUT=20s")
	l.start("kafka")
	for _, name := range []string{"ingest", "fanout", "api", "delivery-1", "delivery-2"} {
		l.run(name, strings.TrimSuffix(strings.TrimSuffix(name, "-1"), "-2"))
	}
	readyWithin := func(name string, within time.Duration) {
		t.Helper()
		require.Eventually(t, func() bool { code, _ := opsGet(l.opsURL(name, "/readyz")); return code == 200 },
			within, 50*time.Millisecond, "%s should become ready", name)
	}
	for _, name := range []string{"ingest", "fanout", "api", "delivery-1", "delivery-2"} {
		readyWithin(name, 60*time.Second)
	}

	rc := newSlowSubscriber(t, delay)
	project := call(t, "POST", l.api+"/v1/projects", l.admin, map[string]any{"name": "Acme"}, 201)
	apiKey := project["api_key"].(string)

	// Webhooks until each `deliveries` partition (murmur2 of the webhook id, as the producers
	// partition) has perPart of them; the others are deleted again.
	part := kgo.StickyKeyPartitioner(nil).ForTopic("deliveries")
	perPartition := map[int][]string{}
	var paths []string
	for i := 0; len(paths) < partitions*perPart; i++ {
		require.Less(t, i, 40, "could not spread webhooks over the partitions")
		path := fmt.Sprintf("/hook-%d", i)
		wh := call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{"name": path, "url": rc.URL() + path,
			"events": []string{"nps.scored"}}, 201)
		id := wh["id"].(string)
		p := part.Partition(&kgo.Record{Key: []byte(id)}, partitions)
		if len(perPartition[p]) == perPart {
			call(t, "DELETE", l.api+"/v1/webhooks/"+id, apiKey, nil, 204)
			continue
		}
		perPartition[p] = append(perPartition[p], path)
		paths = append(paths, path)
	}
	t.Logf("webhooks by deliveries partition: %v", perPartition)

	// A first event reaches every webhook: fan-out and both workers know them all.
	call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{"event_id": "warm-up", "event_type": "nps.scored",
		"user": map[string]any{"id": "u"}, "nps": map[string]any{"score": 1}}, 202)
	require.Eventually(t, func() bool { return rc.delivered() == len(paths) }, 60*time.Second, 20*time.Millisecond,
		"the warm-up event should reach every webhook")
	want := len(paths) * (n + 1)

	// n events in batches, paced so that requests are in flight across the whole rolling restart.
	begin := time.Now()
	type postResult struct {
		took time.Duration
		err  error
	}
	posted := make(chan postResult, 1)
	stopPosting := make(chan struct{})
	t.Cleanup(func() { close(stopPosting) })
	go func() { // not through call: no t.FailNow off the test's goroutine
		for i := 0; i < n; i += 10 {
			var batch []map[string]any
			for j := i; j < i+10; j++ {
				batch = append(batch, map[string]any{"event_id": fmt.Sprintf("roll-%03d", j), "event_type": "nps.scored",
					"user": map[string]any{"id": fmt.Sprint("u", j)}, "nps": map[string]any{"score": j % 11}})
			}
			body, _ := json.Marshal(map[string]any{"events": batch})
			req, _ := http.NewRequest("POST", l.ingest+"/v1/events", strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					err = fmt.Errorf("POST /v1/events: %s", resp.Status)
				}
			}
			if err != nil {
				posted <- postResult{err: err}
				return
			}
			select {
			case <-time.After(400 * time.Millisecond):
			case <-stopPosting:
				return
			}
		}
		posted <- postResult{took: time.Since(begin)}
	}()

	inFlightGauge := func(name string) float64 {
		_, m := opsGet(l.opsURL(name, "/metrics"))
		v, _ := metricValue(m, "surveyhooks_deliveries_in_flight")
		return v
	}
	var drains []time.Duration
	replace := func(old, next string) {
		t.Helper()
		// Stop it while it holds deliveries and the subscriber is answering requests.
		require.Eventually(t, func() bool { return inFlightGauge(old) > 0 && len(rc.inFlightIDs()) > 0 },
			20*time.Second, 20*time.Millisecond, "%s should have deliveries in flight before it is stopped", old)
		held, sending := inFlightGauge(old), rc.inFlightIDs()
		st := l.sigterm(old, drain+10*time.Second)
		t.Logf("%s: SIGTERM with %v deliveries held and %d requests at the subscriber: exit %d after %s; /readyz while stopping: %q",
			old, held, len(sending), st.code, st.took.Round(time.Millisecond), st.readyz)
		require.Equal(t, 0, st.code, "%s should exit 0 after SIGTERM; its log:\n%s", old, st.logTail)
		require.Less(t, st.took, drain+3*time.Second, "%s should stop within its drain time", old)
		require.NotContains(t, st.log, "drain timeout", "%s should have finished its requests", old)
		require.NotContains(t, st.log, "will be redone", "%s should have recorded every attempt it made", old)
		require.Contains(t, st.log, "stopping: draining in-flight work")
		for _, a := range st.readyz {
			require.Equal(t, "503 shutting down", a, "%s /readyz while it drains", old)
		}
		// Every request that was in flight when it got SIGTERM got its answer (the other workers'
		// too, maybe a little later): none was dropped half-way.
		require.Eventually(t, func() bool { return rc.allAnswered(sending) }, delay+5*time.Second, 20*time.Millisecond,
			"the requests in flight at SIGTERM should all be answered")
		require.Empty(t, rc.aborted(), "a worker stopped by SIGTERM hung up on requests it had sent")
		drains = append(drains, st.took)
		if next != "" {
			l.run(next, "delivery")
			readyWithin(next, 30*time.Second)
		}
	}
	replace("delivery-1", "delivery-3")
	replace("delivery-2", "delivery-4")
	replace("delivery-3", "")

	// Everything arrives, once, and no later than the drains explain: n events per webhook at
	// the pace they were posted, each webhook's requests running 50 at a time.
	pr := <-posted
	require.NoError(t, pr.err, "posting the events")
	postedIn := pr.took
	var sumDrains time.Duration
	for _, d := range drains {
		sumDrains += d
	}
	bound := postedIn + time.Duration((n+49)/50)*delay + sumDrains + 20*time.Second
	require.Eventually(t, func() bool { return rc.delivered() == want }, max(bound-time.Since(begin), time.Second), 50*time.Millisecond,
		"every event should reach every webhook within %s (posting %s, drains %v)", bound, postedIn, drains)
	took := time.Since(begin)
	time.Sleep(delay + 500*time.Millisecond) // a late duplicate would be in flight by now
	dups, which, deliveries := rc.duplicates()
	t.Logf("%d deliveries (of %d events to %d webhooks) in %s, bound %s; drains %v; at most %d requests in flight; %d duplicates",
		deliveries, n+1, len(paths), took.Round(time.Millisecond), bound.Round(time.Millisecond), drains, rc.hook.PeakInFlight(), dups)
	byEvent := rc.byEvent()
	for key, c := range byEvent {
		require.Equal(t, 1, c, "%s delivered %d times", key, c)
	}
	require.Empty(t, rc.aborted(), "no request was dropped half-way")
	require.Zero(t, dups, "a worker stopped by SIGTERM commits what it finished: nothing is sent twice (webhook-id → requests: %v)", which)
	for _, p := range paths {
		for i := range n {
			key := fmt.Sprintf("%s roll-%03d", p, i)
			c := byEvent[key]
			require.Equal(t, 1, c, "%s should be delivered once", key)
		}
	}
}

// TestSIGTERMDoesNotRepeatWhatAFastWebhookFinishedBehindASlowOneOnItsPartition: two webhooks
// share the one `deliveries` partition; the slow one has a queue (its per-endpoint concurrency is
// taken) while the fast one has everything answered. A worker stopped by SIGTERM then must not
// leave the fast webhook's finished deliveries to be sent again by the next owner.
func TestSIGTERMDoesNotRepeatWhatAFastWebhookFinishedBehindASlowOneOnItsPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs every binary")
	}
	const (
		n     = 20
		delay = time.Second
	)
	l := newLifecycle(t, "KAFKA_PARTITIONS=1", "DELIVERY_PER_ENDPOINT_CONCURRENCY=5", "DELIVERY_DRAIN_TIMEOUT=10s")
	l.start("kafka")
	workers := []string{"delivery-1", "delivery-2"} // one owns the partition, the other stands by
	for _, name := range append([]string{"ingest", "fanout", "api"}, workers...) {
		l.run(name, strings.TrimSuffix(strings.TrimSuffix(name, "-1"), "-2"))
	}
	for _, name := range append([]string{"ingest", "fanout", "api"}, workers...) {
		require.Eventually(t, func() bool { code, _ := opsGet(l.opsURL(name, "/readyz")); return code == 200 },
			60*time.Second, 50*time.Millisecond, "%s should become ready", name)
	}
	rc := newSlowSubscriber(t, delay, "/fast")
	project := call(t, "POST", l.api+"/v1/projects", l.admin, map[string]any{"name": "Acme"}, 201)
	apiKey := project["api_key"].(string)
	for _, path := range []string{"/slow", "/fast"} {
		call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{"name": path, "url": rc.URL() + path,
			"events": []string{"nps.scored"}}, 201)
	}
	call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{"event_id": "warm-up", "event_type": "nps.scored",
		"user": map[string]any{"id": "u"}, "nps": map[string]any{"score": 1}}, 202)
	require.Eventually(t, func() bool { return rc.delivered() == 2 }, 60*time.Second, 20*time.Millisecond,
		"the warm-up event should reach both webhooks")

	var batch []map[string]any
	for i := range n {
		batch = append(batch, map[string]any{"event_id": fmt.Sprintf("q-%02d", i), "event_type": "nps.scored",
			"user": map[string]any{"id": "u"}, "nps": map[string]any{"score": i % 11}})
	}
	call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{"events": batch}, 202)
	countPath := func(path string) (n int) {
		for key := range rc.byEvent() {
			if strings.HasPrefix(key, path+" q-") {
				n++
			}
		}
		return n
	}
	// The fast webhook has all its deliveries answered; the slow one is on its first round.
	require.Eventually(t, func() bool { return countPath("/fast") == n && len(rc.inFlightIDs()) > 0 }, 30*time.Second,
		10*time.Millisecond, "the fast webhook should be done while the slow one is busy")
	slowBefore := countPath("/slow")
	owner, standby := workers[0], workers[1]
	if v, _ := metricValue(func() string { _, m := opsGet(l.opsURL(owner, "/metrics")); return m }(),
		"surveyhooks_deliveries_in_flight"); v == 0 {
		owner, standby = standby, owner
	}
	time.Sleep(300 * time.Millisecond) // the fast webhook's attempts are recorded and committable
	st := l.sigterm(owner, 20*time.Second)
	t.Logf("%s (owner): SIGTERM with /fast done (%d) and /slow at %d of %d: exit %d after %s", owner, n, slowBefore, n,
		st.code, st.took.Round(time.Millisecond))
	require.Equal(t, 0, st.code, "%s should exit 0 after SIGTERM; its log:\n%s", owner, st.logTail)

	require.Eventually(t, func() bool { return countPath("/slow") == n }, 60*time.Second, 50*time.Millisecond,
		"%s should deliver the slow webhook's rest", standby)
	time.Sleep(delay)
	dups, which, _ := rc.duplicates()
	repeated := map[string]int{}
	for key, c := range rc.byEvent() {
		if c > 1 {
			repeated[strings.Fields(key)[0]] += c - 1
		}
	}
	t.Logf("%d duplicate deliveries after a SIGTERM (by webhook: %v)", dups, repeated)
	require.Empty(t, rc.aborted(), "no request was dropped half-way")
	require.Zero(t, dups, "the fast webhook's deliveries finished before SIGTERM were sent again by the next owner "+
		"(by webhook: %v; webhook-id → requests: %v)", repeated, which)
}
