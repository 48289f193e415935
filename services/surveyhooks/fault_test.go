package surveyhooks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// faultPlan is one run of the fault test: how many events, and what is killed when.
type faultPlan struct {
	events int           // in all, half over HTTP and half to survey-events
	load   time.Duration // how long events keep coming
	steps  []faultStep
}

// faultStep kills target at offset after the load began; "clickhouse" stops the test's ClickHouse
// for 30 s, "kafka" is the broker, everything else a service process (restarted after down).
type faultStep struct {
	at     time.Duration
	target string
	down   time.Duration
}

func defaultFaultPlan() faultPlan {
	s := func(at int, target string) faultStep {
		return faultStep{at: time.Duration(at) * time.Second, target: target, down: 1500 * time.Millisecond}
	}
	broker := s(60, "kafka")
	broker.down = 2 * time.Second
	return faultPlan{events: 1200, load: 92 * time.Second, steps: []faultStep{
		s(8, "ingest"), s(16, "delivery-1"), s(24, "fanout"), s(32, "sink"),
		{at: 38 * time.Second, target: "clickhouse", down: 30 * time.Second},
		s(44, "delivery-2"), s(52, "api"), broker, s(72, "delivery-1"), s(80, "fanout"), s(88, "ingest"),
	}}
}

// longFaultPlan is the scenario at full size: 20,000 events over about seven minutes, a
// kill every 5–10 s, ClickHouse down once for 30 s, the broker killed twice.
func longFaultPlan() faultPlan {
	targets := []string{"ingest", "delivery-1", "fanout", "sink", "delivery-2", "api", "kafka"}
	p := faultPlan{events: 20_000, load: 420 * time.Second}
	at := 8 * time.Second
	for i := 0; at < p.load-10*time.Second; i++ {
		st := faultStep{at: at, target: targets[i%len(targets)], down: time.Duration(1000+(i*700)%2000) * time.Millisecond}
		if st.target == "kafka" {
			st.down = 2 * time.Second
		}
		p.steps = append(p.steps, st)
		if i == 3 {
			p.steps = append(p.steps, faultStep{at: at + 2*time.Second, target: "clickhouse", down: 30 * time.Second})
		}
		at += time.Duration(5000+(i*1300)%5000) * time.Millisecond
	}
	return p
}

var faultTypes = []string{"survey.completed", "nps.scored", "survey.displayed"}

// TestFaultsUnderLoad runs every service as its own process (the broker too) under load and kills
// each of them with kill -9 in turn, the broker as well, and stops ClickHouse for 30 s. Then every
// accepted event must have reached every matching webhook within 30 s of the last restart, the
// duplicates must stay within what was in flight or finished-but-uncommitted at the kills, every
// attempt the receiver answered must be in ClickHouse once (less those in flight at a worker's
// kill), and no service may have exited on its own. SURVEYHOOKS_FAULT_LONG=1 runs the full-size
// scenario (about ten minutes: run it with -timeout 30m).
func TestFaultsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs every binary and a ClickHouse server of its own")
	}
	plan := defaultFaultPlan()
	if os.Getenv("SURVEYHOOKS_FAULT_LONG") != "" {
		plan = longFaultPlan()
	}
	ch := startClickHouse(t)
	l := newLifecycle(t, "CLICKHOUSE_ADDR="+ch.addr, "KAFKA_PARTITIONS=6", "SURVEYHOOKS_RETRY_SCHEDULE=1s,2s,3s",
		"SINK_FLUSH_INTERVAL=200ms", "DELIVERY_DRAIN_TIMEOUT=10s")
	l.run("kafka", "surveyhooks")
	services := map[string]string{"ingest": "ingest", "fanout": "fanout", "sink": "sink", "api": "api",
		"delivery-1": "delivery", "delivery-2": "delivery"}
	for name, bin := range services {
		// Static membership: each restarted process takes its partitions back at once. One worker
		// keeps the default, dynamic membership: its partitions move after the session timeout.
		var env []string
		if name != "delivery-2" {
			env = append(env, "KAFKA_GROUP_INSTANCE_ID="+name)
		}
		l.run(name, bin, env...)
	}
	for name := range services {
		require.Eventually(t, func() bool { code, _ := opsGet(l.opsURL(name, "/readyz")); return code == 200 },
			120*time.Second, 100*time.Millisecond, "%s never became ready", name)
	}

	rc := newFaultReceiver(t)
	project := call(t, "POST", l.api+"/v1/projects", l.admin, map[string]any{"name": "Faults"}, 201)
	apiKey, projectID := project["api_key"].(string), project["id"].(string)
	const webhooks = 20
	matching := map[string][]string{} // event type → webhook names ("wNN")
	idOf := map[string]string{}       // webhook id → its name
	for i := range webhooks {
		name := fmt.Sprintf("w%02d", i)
		types := []string{faultTypes[i%3], faultTypes[(i+1)%3]}
		// The URL names the webhook, whose id is known only once created.
		wh := call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{
			"name": name, "url": rc.URL() + "/hook/" + name, "events": types}, 201)
		idOf[wh["id"].(string)] = name
		for _, ty := range types {
			matching[ty] = append(matching[ty], name)
		}
	}

	load := newFaultLoad(t, l, rc, apiKey, projectID, matching)
	// Fan-out knows every webhook once one event of each type reached all of its webhooks.
	warm := load.http(t, []string{"warm-0", "warm-1", "warm-2"})
	require.Eventually(t, func() bool { return load.missing(warm) == 0 }, 90*time.Second, 100*time.Millisecond,
		"the warm-up events never reached every matching webhook")

	// Load and faults.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); load.run(ctx, plan) }()

	var (
		fmu         sync.Mutex
		dupBound    int // in flight or finished-but-uncommitted at worker and broker kills
		recordBound int // attempts a killed worker may not have recorded
		lastRestart time.Time
		kills       []string
		killTimes   []time.Time
		// brokerWindows: from a broker kill to 10 s after its restart.
		brokerWindows [][2]time.Time
	)
	var chDone sync.WaitGroup
	for _, st := range plan.steps {
		time.Sleep(time.Until(began.Add(st.at)))
		switch st.target {
		case "clickhouse":
			ch.down()
			kills = append(kills, fmt.Sprintf("%5.1fs clickhouse down %v", time.Since(began).Seconds(), st.down))
			chDone.Add(1)
			go func() {
				defer chDone.Done()
				time.Sleep(st.down)
				ch.up()
				fmu.Lock()
				lastRestart = time.Now()
				fmu.Unlock()
			}()
			continue
		}
		killedAt := time.Now()
		inFlight, finished := rc.around(killedAt, time.Second)
		l.kill9(st.target)
		time.Sleep(st.down)
		l.restart(st.target)
		restarted := time.Now()
		fmu.Lock()
		lastRestart = restarted
		var note string
		switch {
		case strings.HasPrefix(st.target, "delivery"):
			dupBound += inFlight + finished
			recordBound += inFlight + finished
			note = fmt.Sprintf("in flight %d, finished in the last second %d", inFlight, finished)
		case st.target == "kafka":
			// While the broker is away nothing is committed: what finishes until the groups are
			// back (counted once that time has passed) may be repeated.
			dupBound += inFlight + finished
			brokerWindows = append(brokerWindows, [2]time.Time{killedAt, restarted.Add(10 * time.Second)})
			note = fmt.Sprintf("in flight %d, finished in the last second %d (+ what finished until 10 s after the restart)", inFlight, finished)
		}
		kills = append(kills, fmt.Sprintf("%5.1fs kill -9 %s, down %v %s", killedAt.Sub(began).Seconds(), st.target, st.down, note))
		killTimes = append(killTimes, killedAt)
		fmu.Unlock()
	}
	chDone.Wait()
	<-loadDone
	fmu.Lock()
	last := lastRestart
	fmu.Unlock()

	// Every accepted event at every matching webhook within 30 s of the last restart (or of the
	// last event, when events kept coming after it).
	accepted := load.accepted()
	if loadEnd := load.lastAccepted(); loadEnd.After(last) {
		last = loadEnd
	}
	deadline := last.Add(30 * time.Second)
	var missing int
	for {
		missing = load.missing(accepted)
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	allAt := time.Since(last)
	for _, w := range brokerWindows {
		time.Sleep(time.Until(w[1]))
		after := rc.finishedBetween(w[0], w[1])
		dupBound += after
		kills = append(kills, fmt.Sprintf("        broker kill at %.1fs: finished until 10 s after its restart %d", w[0].Sub(began).Seconds(), after))
	}
	requests, duplicates, tries := rc.figures()
	for i, at := range killTimes {
		next := time.Now()
		if i+1 < len(killTimes) {
			next = killTimes[i+1]
		}
		kills = append(kills, fmt.Sprintf("        duplicates answered between the kill at %.1fs and the next: %d", at.Sub(began).Seconds(), rc.duplicatesBetween(at, next)))
	}
	retried := load.retriedPairs()
	dupBound += retried
	exits := l.ExitedOnTheirOwn()

	// Every attempt the receiver answered is in ClickHouse exactly once.
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.addr}, Auth: clickhouse.Auth{Database: l.db}})
	require.NoError(t, err)
	defer conn.Close()
	var stored map[string]int
	var rows, ids uint64
	var unrecorded, extra int
	qctx, qcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer qcancel()
	// The sink stores what it reads within a second or so: wait until nothing is missing or
	// nothing more arrives for 10 s.
	prev, since := -1, time.Now()
	for wait := time.Now().Add(90 * time.Second); ; {
		stored, rows, ids, err = storedAttempts(qctx, conn, idOf)
		if err == nil {
			unrecorded, extra = 0, 0
			for pair, n := range tries {
				switch c := stored[pair]; {
				case c < n:
					unrecorded += n - c
				case c > n:
					extra += c - n
				}
			}
			if unrecorded != prev {
				prev, since = unrecorded, time.Now()
			}
			if unrecorded == 0 || time.Since(since) > 10*time.Second || time.Now().After(wait) {
				break
			}
		} else if time.Now().After(wait) {
			require.NoError(t, err)
		}
		time.Sleep(time.Second)
	}

	pairs := 0
	for _, e := range accepted {
		pairs += len(matching[e.typ])
	}
	t.Logf("fault test figures (%s):", map[bool]string{true: "long", false: "default"}[plan.events > 5000])
	for _, k := range kills {
		t.Logf("  %s", k)
	}
	t.Logf("  events accepted %d (HTTP %d, Kafka %d), (event, webhook) pairs %d, requests %d",
		len(accepted), load.countBy("http"), load.countBy("kafka"), pairs, requests)
	t.Logf("  undelivered pairs %d; all delivered %.1fs after the last restart (or the last event, if later)", missing, allAt.Seconds())
	t.Logf("  duplicate deliveries %d; bound %d (in flight or finished-but-uncommitted at worker/broker kills, plus %d pairs of producer-retried events)",
		duplicates, dupBound, retried)
	t.Logf("  ClickHouse: %d rows, %d distinct attempt ids; receiver requests without a row %d (bound %d: in flight at worker kills); rows beyond the receiver's requests %d",
		rows, ids, unrecorded, recordBound, extra)
	if unrecorded > 0 {
		short := map[string]bool{}
		for pair, n := range tries {
			if stored[pair] < n && len(short) < 20 {
				short[pair] = true
			}
		}
		var at []string
		for _, e := range rc.answeredAt(short) {
			at = append(at, fmt.Sprintf("%.1fs", e.Sub(began).Seconds()))
		}
		sort.Strings(at)
		t.Logf("  requests of (up to 20) pairs missing a row were answered at %s", strings.Join(at, " "))
	}
	t.Logf("  services that exited on their own: %d", len(exits))

	require.Empty(t, exits, "no service may exit on its own")
	require.Zero(t, missing, "every accepted event must reach every matching webhook within 30 s of the last restart (%s)", load.missingSample(accepted))
	require.LessOrEqual(t, duplicates, dupBound, "duplicates beyond what was in flight or unfinished at the kills")
	require.Equal(t, rows, ids, "an attempt_id stored twice")
	require.Zero(t, extra, "ClickHouse holds more attempts of a pair than the receiver saw")
	require.LessOrEqual(t, unrecorded, recordBound, "attempts the receiver answered are missing from ClickHouse")
}

// storedAttempts reads the attempts ClickHouse holds that reached the receiver (a status code),
// per "wNN event_id" pair, with the row count and the distinct attempt ids.
func storedAttempts(ctx context.Context, conn clickhouse.Conn, idOf map[string]string) (map[string]int, uint64, uint64, error) {
	out := map[string]int{}
	var rows, ids uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(attempt_id) FROM delivery_attempts").Scan(&rows, &ids); err != nil {
		return nil, 0, 0, fmt.Errorf("counting attempts: %w", err)
	}
	r, err := conn.Query(ctx, "SELECT webhook_id, event_id, count() FROM delivery_attempts WHERE status_code > 0 GROUP BY webhook_id, event_id")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("reading attempts: %w", err)
	}
	defer r.Close()
	for r.Next() {
		var wh, ev string
		var n uint64
		if err := r.Scan(&wh, &ev, &n); err != nil {
			return nil, 0, 0, err
		}
		out[idOf[wh]+" "+ev] = int(n)
	}
	return out, rows, ids, r.Err()
}

// faultEvent is one event the load produced and the producer saw accepted.
type faultEvent struct {
	id, typ, via string
	retried      bool // its request or write failed first and was sent again (it may exist twice)
}

// faultLoad produces events half over HTTP, half to survey-events with segmentio/kafka-go (a
// third-party producer), retrying what fails as a producer would.
type faultLoad struct {
	t         *testing.T
	l         *lifecycle
	rc        *faultReceiver
	apiKey    string
	projectID string
	matching  map[string][]string
	mu        sync.Mutex
	events    []faultEvent
	lastAt    time.Time // when the last event was accepted
}

func newFaultLoad(t *testing.T, l *lifecycle, rc *faultReceiver, apiKey, projectID string, matching map[string][]string) *faultLoad {
	return &faultLoad{t: t, l: l, rc: rc, apiKey: apiKey, projectID: projectID, matching: matching}
}

func faultBody(id, typ string) map[string]any {
	return map[string]any{"event_id": id, "event_type": typ, "user": map[string]any{"id": "u-" + id},
		"survey": map[string]any{"id": "s1", "name": "NPS"}, "response": map[string]any{"id": "r-" + id, "completion": "fully_completed"},
		"nps": map[string]any{"score": 8}}
}

// http posts the events (ids; types in turn) until accepted and returns them.
func (fl *faultLoad) http(t *testing.T, ids []string) []faultEvent {
	var batch []map[string]any
	var evs []faultEvent
	for i, id := range ids {
		typ := faultTypes[i%len(faultTypes)]
		batch = append(batch, faultBody(id, typ))
		evs = append(evs, faultEvent{id: id, typ: typ, via: "http"})
	}
	body, _ := json.Marshal(map[string]any{"events": batch})
	client := &http.Client{Timeout: 20 * time.Second}
	for try := 0; ; try++ {
		req, _ := http.NewRequest("POST", fl.l.ingest+"/v1/events", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+fl.apiKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				break
			}
			if resp.StatusCode < 500 && resp.StatusCode != 429 {
				t.Errorf("ingest refused a valid batch: %d", resp.StatusCode)
				return nil
			}
		}
		for i := range evs {
			evs[i].retried = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	fl.mu.Lock()
	fl.events = append(fl.events, evs...)
	fl.lastAt = time.Now()
	fl.mu.Unlock()
	return evs
}

func (fl *faultLoad) kafka(ctx context.Context, w *kafkago.Writer, ids []string, offset int) {
	var msgs []kafkago.Message
	var evs []faultEvent
	for i, id := range ids {
		typ := faultTypes[(i+offset)%len(faultTypes)]
		b := faultBody(id, typ)
		b["project_id"] = fl.projectID
		v, _ := json.Marshal(b)
		msgs = append(msgs, kafkago.Message{Key: []byte(fl.projectID), Value: v,
			Headers: []kafkago.Header{{Key: "content-type", Value: []byte("application/json")}}})
		evs = append(evs, faultEvent{id: id, typ: typ, via: "kafka"})
	}
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := w.WriteMessages(wctx, msgs...)
		cancel()
		if err == nil {
			fl.mu.Lock()
			fl.events = append(fl.events, evs...)
			fl.lastAt = time.Now()
			fl.mu.Unlock()
			return
		}
		for i := range evs {
			evs[i].retried = true
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// run produces plan.events events in batches of ten over plan.load.
func (fl *faultLoad) run(ctx context.Context, plan faultPlan) {
	const per = 10
	batches := plan.events / per
	every := plan.load / time.Duration(batches)
	w := &kafkago.Writer{Addr: kafkago.TCP(fl.l.kafkaAddr), Topic: "survey-events", RequiredAcks: kafkago.RequireAll,
		BatchTimeout: 5 * time.Millisecond, MaxAttempts: 3}
	defer w.Close()
	var wg sync.WaitGroup
	tick := time.NewTicker(every)
	defer tick.Stop()
	sem := make(chan struct{}, 8) // a producer with few requests open at once
	for b := range batches {
		ids := make([]string, per)
		for i := range ids {
			ids[i] = fmt.Sprintf("ev-%05d", b*per+i)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if b%2 == 0 {
				fl.http(fl.t, ids)
			} else {
				fl.kafka(ctx, w, ids, b)
			}
		}()
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
	}
	wg.Wait()
}

func (fl *faultLoad) accepted() []faultEvent {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return append([]faultEvent(nil), fl.events...)
}

func (fl *faultLoad) lastAccepted() time.Time {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.lastAt
}

func (fl *faultLoad) countBy(via string) (n int) {
	for _, e := range fl.accepted() {
		if e.via == via {
			n++
		}
	}
	return n
}

// retriedPairs counts the (event, webhook) pairs of events whose producer had to send them again:
// each may have been accepted twice.
func (fl *faultLoad) retriedPairs() (n int) {
	for _, e := range fl.accepted() {
		if e.retried {
			n += len(fl.matching[e.typ])
		}
	}
	return n
}

// missing counts the (event, webhook) pairs of evs not delivered yet.
func (fl *faultLoad) missing(evs []faultEvent) (n int) {
	for _, e := range evs {
		for _, wh := range fl.matching[e.typ] {
			if !fl.rc.delivered(wh + " " + e.id) {
				n++
			}
		}
	}
	return n
}

func (fl *faultLoad) missingSample(evs []faultEvent) string {
	var out []string
	for _, e := range evs {
		for _, wh := range fl.matching[e.typ] {
			if !fl.rc.delivered(wh+" "+e.id) && len(out) < 10 {
				out = append(out, fmt.Sprintf("%s %s (%s)", wh, e.id, e.via))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
