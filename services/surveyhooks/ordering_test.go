package surveyhooks_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
)

// orderReceiver records, per respondent, the order in which events were first accepted (2xx).
// flaky makes it fail that share of requests at random — a 503, or a 429 with Retry-After — but
// never the same event more than maxFails times, so no event runs out of attempts.
type orderReceiver struct {
	flaky    float64
	maxFails int

	mu       sync.Mutex
	rng      *rand.Rand
	fails    map[string]int
	first    map[string]time.Time // event id → first 2xx
	order    map[string][]int     // respondent → event numbers in order of first 2xx
	requests int
	failed   int
	dups     int
}

// newOrderReceiver serves o on a hooktest endpoint that answers every path; url is its address.
func newOrderReceiver(t *testing.T, flaky float64, maxFails int) (o *orderReceiver, url string) {
	o = &orderReceiver{flaky: flaky, maxFails: maxFails, rng: rand.New(rand.NewPCG(1, 2)), fails: map[string]int{},
		first: map[string]time.Time{}, order: map[string][]int{}}
	hook := hooktest.NewEndpoint("every path", hooktest.Fast)
	hook.AnswerWith(o.answer)
	return o, hooktest.StartT(t, hooktest.Options{Default: hook}).URL()
}

// answer decides one request: a failure on purpose, or a 2xx recorded in arrival order.
func (o *orderReceiver) answer(r *hooktest.Request) hooktest.Answer {
	if len(r.EventID) < 3 {
		return hooktest.Answer{Status: http.StatusBadRequest}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests++
	if o.fails[r.EventID] < o.maxFails && o.rng.Float64() < o.flaky {
		o.fails[r.EventID]++
		o.failed++
		if o.rng.IntN(3) == 0 {
			return hooktest.Answer{Status: http.StatusTooManyRequests,
				Header: http.Header{"Retry-After": {strconv.Itoa(1 + o.rng.IntN(2))}}}
		}
		return hooktest.Answer{Status: http.StatusServiceUnavailable}
	}
	if _, ok := o.first[r.EventID]; ok {
		o.dups++
	} else {
		o.first[r.EventID] = time.Now()
		// Event ids are "<respondent>-<n>".
		resp, n := r.EventID[:len(r.EventID)-2], int(r.EventID[len(r.EventID)-1]-'0')
		o.order[resp] = append(o.order[resp], n)
	}
	return hooktest.Answer{Status: http.StatusOK}
}

func (o *orderReceiver) delivered() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.first)
}

// TestOrderedWebhookKeepsEachRespondentsOrderAcrossAKilledWorker is issue 19's test: 1,000
// respondents answer four questions and complete (5,000 events over HTTP), to a webhook with
// ordering "respondent" whose endpoint fails 30 % of requests (some 429 with Retry-After), and to
// a webhook without ordering on the same events; the delivery worker is killed with SIGKILL
// mid-run and restarted. Every respondent's events reach the ordered endpoint in order, none is
// lost, and the unordered webhook is not slowed by the other's retries.
func TestOrderedWebhookKeepsEachRespondentsOrderAcrossAKilledWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs every binary")
	}
	const respondents, perRespondent = 1000, 5
	l := newLifecycle(t, "SURVEYHOOKS_RETRY_SCHEDULE=1s,2s,3s")
	s := l.stack
	s.start("kafka")
	for _, name := range []string{"ingest", "fanout", "delivery", "api"} {
		s.start(name)
	}
	proctest.WaitHTTPOK(t, l.ingest+"/healthz", 60*time.Second)
	proctest.WaitHTTPOK(t, l.api+"/healthz", 60*time.Second)

	ordered, orderedURL := newOrderReceiver(t, 0.3, 3)
	plain, plainURL := newOrderReceiver(t, 0, 0)

	project := call(t, "POST", l.api+"/v1/projects", l.admin, map[string]any{"name": "Ordered"}, 201)
	apiKey := project["api_key"].(string)
	events := []string{"survey.question_answered", "survey.completed"}
	bad := call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{"name": "bad", "url": orderedURL, "events": events, "ordering": "fifo"}, 400)
	require.Equal(t, "ordering", bad["error"].(map[string]any)["field"], "the error names the field: %v", bad)
	wh := call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{"name": "ordered", "url": orderedURL, "events": events, "ordering": "respondent"}, 201)
	require.Equal(t, "respondent", wh["ordering"])
	call(t, "POST", l.api+"/v1/webhooks", apiKey, map[string]any{"name": "plain", "url": plainURL, "events": events}, 201)

	// Event n of every respondent, then n+1: each request is accepted before the next is sent,
	// so ingest's accept order is the order of n.
	posted := map[string]time.Time{}
	var killedAt, resumed time.Time
	for n := range perRespondent {
		for from := 0; from < respondents; from += 100 {
			var batch []map[string]any
			for r := from; r < from+100; r++ {
				resp := fmt.Sprintf("r%04d", r)
				ev := map[string]any{"event_id": fmt.Sprintf("%s-%d", resp, n), "event_type": "survey.question_answered",
					"user": map[string]any{"id": "u-" + resp}, "survey": map[string]any{"id": "s1"},
					"response": map[string]any{"id": resp}, "question": map[string]any{"id": fmt.Sprintf("q%d", n), "type": "input"},
					"answer": map[string]any{"fields": []map[string]any{{"type": "string", "value": "yes"}}}}
				if n == perRespondent-1 {
					ev = map[string]any{"event_id": fmt.Sprintf("%s-%d", resp, n), "event_type": "survey.completed",
						"user": map[string]any{"id": "u-" + resp}, "survey": map[string]any{"id": "s1"},
						"response": map[string]any{"id": resp, "completion": "fully_completed"}}
				}
				batch = append(batch, ev)
			}
			call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{"events": batch}, 202)
			now := time.Now()
			for _, ev := range batch {
				posted[ev["event_id"].(string)] = now
			}
		}
		if n == 2 {
			// Mid-run: some respondents wait on a retry tier with later events parked behind them.
			require.Eventually(t, func() bool { return ordered.delivered() >= 1000 }, 60*time.Second, 20*time.Millisecond)
			s.kill9("delivery")
			killedAt = time.Now()
			s.restart("delivery")
			// The rest is sent once the restarted worker is back at work — every event so far,
			// and a probe posted after the restart, reached the unordered webhook (a kill early in
			// the run leaves nothing undelivered, while the group still waits for the dead member's
			// session to end) — so their latencies compare the webhooks, not the kill.
			probe := map[string]any{"event_id": "probe-0", "event_type": "survey.question_answered",
				"user": map[string]any{"id": "u-probe"}, "survey": map[string]any{"id": "s1"},
				"response": map[string]any{"id": "probe"}, "question": map[string]any{"id": "q0", "type": "input"},
				"answer": map[string]any{"fields": []map[string]any{{"type": "string", "value": "yes"}}}}
			posted["probe-0"] = time.Now()
			call(t, "POST", l.ingest+"/v1/events", apiKey, map[string]any{"events": []map[string]any{probe}}, 202)
			require.Eventually(t, func() bool { return plain.delivered() == respondents*(n+1)+1 }, 60*time.Second, 20*time.Millisecond)
			resumed = time.Now()
		}
	}
	lastPost := time.Now()
	total := respondents*perRespondent + 1 // and the probe
	require.Eventually(t, func() bool { return plain.delivered() == total }, 90*time.Second, 50*time.Millisecond,
		"every event must reach the unordered webhook")
	plainDone := time.Now()
	require.Eventually(t, func() bool { return ordered.delivered() == total }, 120*time.Second, 50*time.Millisecond,
		"every event must reach the ordered webhook, none lost")
	orderedDone := time.Now()

	ordered.mu.Lock()
	defer ordered.mu.Unlock()
	plain.mu.Lock()
	defer plain.mu.Unlock()
	want := []int{0, 1, 2, 3, 4}
	outOfOrder := 0
	for r := range respondents {
		resp := fmt.Sprintf("r%04d", r)
		if !slices.Equal(ordered.order[resp], want) {
			if outOfOrder < 5 {
				t.Errorf("respondent %s: events arrived in the order %v", resp, ordered.order[resp])
			}
			outOfOrder++
		}
	}
	require.Zero(t, outOfOrder, "respondents whose events arrived out of order")

	// Latencies of the events sent after the restarted worker was back.
	latency := func(o *orderReceiver) (p50, p99 time.Duration) {
		var ds []time.Duration
		for id, at := range o.first {
			if posted[id].After(resumed) {
				ds = append(ds, at.Sub(posted[id]))
			}
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2], ds[len(ds)*99/100]
	}
	pp50, pp99 := latency(plain)
	op50, op99 := latency(ordered)
	t.Logf("ordered: %d requests, %d failed on purpose, %d duplicates (kill -9 at %s, back %.1fs later), all delivered %.1fs after the last post, latency after the restart p50 %v p99 %v",
		ordered.requests, ordered.failed, ordered.dups, killedAt.Format("15:04:05.000"), resumed.Sub(killedAt).Seconds(),
		orderedDone.Sub(lastPost).Seconds(), op50, op99)
	t.Logf("unordered: %d requests, %d duplicates, all delivered %.1fs after the last post, latency after the restart p50 %v p99 %v",
		plain.requests, plain.dups, plainDone.Sub(lastPost).Seconds(), pp50, pp99)
	require.Greater(t, ordered.failed, total/5, "the ordered endpoint did fail about 30 %% of requests")
	// Not slowed: the unordered webhook's deliveries do not wait for the ordered one's retries
	// (several seconds each); the kill -9 costs both alike.
	require.Less(t, pp50, time.Second, "the unordered webhook's median latency")
	require.Less(t, pp99, 5*time.Second, "the unordered webhook's p99 latency")
	require.Less(t, pp99, op99, "the unordered webhook does not wait for the ordered one's retries")
	require.True(t, plainDone.Before(orderedDone))
}
