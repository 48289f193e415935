package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery"
)

// orderedReceiver answers by a script keyed on webhook-id and records every request.
type orderedReceiver struct {
	mu      sync.Mutex
	script  map[string][]int // per webhook-id, the statuses of its first requests; then 200
	calls   map[string]int
	ok      []string // webhook-ids answered 2xx, in order
	okAt    map[string]time.Time
	skipped map[string]string // webhook-id → surveyhooks-skipped-event-id it carried
}

func newOrderedReceiver(script map[string][]int) *orderedReceiver {
	return &orderedReceiver{script: script, calls: map[string]int{}, okAt: map[string]time.Time{}, skipped: map[string]string{}}
}

func (o *orderedReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("webhook-id")
	o.mu.Lock()
	n := o.calls[id]
	o.calls[id]++
	status := http.StatusOK
	if s := o.script[id]; n < len(s) {
		status = s[n]
	}
	if s := r.Header.Get("surveyhooks-skipped-event-id"); s != "" {
		o.skipped[id] = s
	}
	if status == http.StatusOK {
		o.ok = append(o.ok, id)
		o.okAt[id] = time.Now()
	}
	o.mu.Unlock()
	w.WriteHeader(status)
}

func (o *orderedReceiver) delivered(ids ...string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		if _, ok := o.okAt[id]; !ok {
			return false
		}
	}
	return true
}

// orderOf is the order in which ids of one key were first answered 2xx.
func (o *orderedReceiver) orderOf(prefix string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, id := range o.ok {
		if len(id) > len(prefix) && id[:len(prefix)] == prefix && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// deliverKeyed produces one delivery per id, in order, with the ordering key before the dash.
func (h *harness) deliverKeyed(webhookID string, ids ...string) {
	var recs []*kgo.Record
	for _, id := range ids {
		key := id[:len(id)-2]
		d := &pb.Delivery{DeliveryId: id, EventId: "evt-" + id, WebhookId: webhookID, ProjectId: "p1", EventType: "survey.question_answered",
			Body: []byte(fmt.Sprintf(`{"id":%q}`, id)), Attempt: 1, CreatedAtMs: time.Now().UnixMilli(), OrderingKey: "r:" + key}
		v, _ := proto.Marshal(d)
		recs = append(recs, &kgo.Record{Topic: h.cfg.Kafka.Topics.Deliveries, Key: []byte(webhookID), Value: v})
	}
	require.NoError(h.t, h.cl.ProduceSync(h.ctx, recs...).FirstErr())
}

// TestHeldRetryDelaysOnlyItsOwnKeyAndSurvivesARestart: a respondent whose first event fails and
// waits 2 s on a retry tier gets its later events only after it, in order — also across a worker
// restart while they are parked — while another respondent of the same webhook is not delayed.
func TestHeldRetryDelaysOnlyItsOwnKeyAndSurvivesARestart(t *testing.T) {
	h := newHarness(t, []time.Duration{2 * time.Second}, nil)
	rcv := newOrderedReceiver(map[string][]int{"a-0": {http.StatusServiceUnavailable}})
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	h.webhook("wh_ord", srv.URL, func(wh *pb.Webhook) { wh.Ordering = "respondent" })
	h.start()
	start := time.Now()
	h.deliverKeyed("wh_ord", "a-0", "b-0", "a-1", "b-1", "a-2", "b-2")

	require.Eventually(t, func() bool { return rcv.delivered("b-0", "b-1", "b-2") }, 10*time.Second, 5*time.Millisecond)
	require.Less(t, time.Since(start), 1500*time.Millisecond, "respondent b must not wait for a's retry")
	require.False(t, rcv.delivered("a-1"), "a-1 must wait for a-0, which is on its retry tier")

	// Restart while a-1 and a-2 are parked and a-0 is on its tier: the new worker reads the
	// held state back.
	h.stop()
	h.start()
	require.Eventually(t, func() bool { return rcv.delivered("a-0", "a-1", "a-2") }, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"a-0", "a-1", "a-2"}, rcv.orderOf("a-"))
	require.Equal(t, []string{"b-0", "b-1", "b-2"}, rcv.orderOf("b-"))

	// Once settled the key is no longer held: a new event of a goes straight through.
	h.deliverKeyed("wh_ord", "a-3")
	require.Eventually(t, func() bool { return rcv.delivered("a-3") }, 5*time.Second, 5*time.Millisecond)
}

// TestDeadLetteredHeadLetsTheNextProceedNamingIt is the documented dead-letter choice: when the
// delivery a key waits for is dead-lettered, the next one is sent, with the header
// surveyhooks-skipped-event-id naming the skipped event; the one after it carries nothing.
func TestDeadLetteredHeadLetsTheNextProceedNamingIt(t *testing.T) {
	h := newHarness(t, []time.Duration{300 * time.Millisecond}, nil)
	rcv := newOrderedReceiver(map[string][]int{"c-0": {http.StatusServiceUnavailable, http.StatusBadRequest}})
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	h.webhook("wh_dead", srv.URL, func(wh *pb.Webhook) { wh.Ordering = "respondent" })
	h.start()
	h.deliverKeyed("wh_dead", "c-0", "c-1", "c-2")
	require.Eventually(t, func() bool { return rcv.delivered("c-1", "c-2") }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"c-1", "c-2"}, rcv.orderOf("c-"))
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	require.Equal(t, 2, rcv.calls["c-0"], "c-0: a 503, then a permanent 400")
	require.Equal(t, "evt-c-0", rcv.skipped["c-1"])
	require.Empty(t, rcv.skipped["c-2"])
	dead := collect(h, h.cfg.Kafka.Topics.Dead, func() *pb.Delivery { return &pb.Delivery{} }, func(d []*pb.Delivery) bool { return len(d) == 1 })
	require.Equal(t, "c-0", dead[0].DeliveryId)
}

// TestUnorderedWebhookStillRunsConcurrently: without the option, deliveries of one respondent
// run at once (today's behaviour): a slow first one does not hold back the second.
func TestUnorderedWebhookStillRunsConcurrently(t *testing.T) {
	h := newHarness(t, []time.Duration{time.Minute}, nil)
	var mu sync.Mutex
	var order []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("webhook-id") == "d-0" {
			time.Sleep(500 * time.Millisecond)
		}
		mu.Lock()
		order = append(order, r.Header.Get("webhook-id"))
		mu.Unlock()
	}))
	defer srv.Close()
	h.webhook("wh_free", srv.URL)
	h.start()
	var recs []*kgo.Record
	for _, id := range []string{"d-0", "d-1"} {
		d := &pb.Delivery{DeliveryId: id, EventId: "evt-" + id, WebhookId: "wh_free", ProjectId: "p1", EventType: "nps.scored",
			Body: []byte(`{}`), Attempt: 1}
		v, _ := proto.Marshal(d)
		recs = append(recs, &kgo.Record{Topic: h.cfg.Kafka.Topics.Deliveries, Key: []byte("wh_free"), Value: v})
	}
	require.NoError(t, h.cl.ProduceSync(h.ctx, recs...).FirstErr())
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 2 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"d-1", "d-0"}, order)
}

// TestHeldKeysMoveWithTheirPartitionsInARebalance: keys of six webhooks (over three partitions)
// are held while their first deliveries wait on a tier; a second worker joins and the first
// leaves, so every partition changes owner with parked deliveries in it. The new owner reads the
// held state back and every key's deliveries still arrive in order, none lost.
func TestHeldKeysMoveWithTheirPartitionsInARebalance(t *testing.T) {
	h := newHarness(t, []time.Duration{3 * time.Second}, nil)
	script := map[string][]int{}
	for i := range 6 {
		script[fmt.Sprintf("w%da-0", i)] = []int{http.StatusServiceUnavailable}
	}
	rcv := newOrderedReceiver(script)
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	for i := range 6 {
		h.webhook(fmt.Sprintf("wh_%d", i), srv.URL, func(wh *pb.Webhook) { wh.Ordering = "respondent" })
	}
	h.start()
	for i := range 6 {
		p := fmt.Sprintf("w%da-", i)
		h.deliverKeyed(fmt.Sprintf("wh_%d", i), p+"0", p+"1", p+"2")
	}
	require.Eventually(t, func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		n := 0
		for i := range 6 {
			n += rcv.calls[fmt.Sprintf("w%da-0", i)]
		}
		return n == 6
	}, 10*time.Second, 5*time.Millisecond, "every first delivery failed once")
	time.Sleep(300 * time.Millisecond) // the later ones are parked

	// A second worker joins (partitions move to it), then the first leaves (the rest move).
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- delivery.Run(ctx, h.cfg, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(time.Second)
	h.stop()

	var want []string
	for i := range 6 {
		p := fmt.Sprintf("w%da-", i)
		want = append(want, p+"0", p+"1", p+"2")
	}
	require.Eventually(t, func() bool { return rcv.delivered(want...) }, 30*time.Second, 10*time.Millisecond)
	for i := range 6 {
		p := fmt.Sprintf("w%da-", i)
		require.Equal(t, []string{p + "0", p + "1", p + "2"}, rcv.orderOf(p))
	}
}
