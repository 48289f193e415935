package delivery_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery"
)

// kneeReceiver answers in base while at most knee requests are open, and slows down faster than
// linearly beyond: its throughput peaks at knee requests open, and a cap far above it makes every
// request time out.
type kneeReceiver struct {
	base time.Duration
	knee int
	open atomic.Int32
	mu   sync.Mutex
	done []time.Time // when each request was answered
}

func (k *kneeReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client giving up (r.Context)
	open := int(k.open.Add(1))
	defer k.open.Add(-1)
	lat := k.base
	if open > k.knee {
		over := float64(open-k.knee) / float64(k.knee)
		lat = time.Duration(float64(k.base) * float64(open) / float64(k.knee) * (1 + over*over))
	}
	select {
	case <-time.After(lat):
		k.mu.Lock()
		k.done = append(k.done, time.Now())
		k.mu.Unlock()
	case <-r.Context().Done(): // the client gave up: a timeout
	}
}

// answeredBetween counts requests answered in [from, to).
func (k *kneeReceiver) answeredBetween(from, to time.Time) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, at := range k.done {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

func (k *kneeReceiver) first() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.done) == 0 {
		return time.Time{}
	}
	return k.done[0]
}

// offer produces deliveries of projectID to webhookID at perSecond, in a batch every 10 ms,
// until the test ends or stop is called; sent, when not nil, gets each delivery id's time of
// produce.
func (h *harness) offer(webhookID, projectID string, perSecond int, sent *sync.Map) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { close(done) }); <-exited } // nothing is produced after stop returns
	h.t.Cleanup(stop)
	go func() {
		defer close(exited)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start, n := time.Now(), 0
		for {
			select {
			case <-done:
				return
			case <-h.ctx.Done():
				return
			case <-tick.C:
			}
			for due := int(time.Since(start).Seconds() * float64(perSecond)); n < due; n++ {
				d := &pb.Delivery{DeliveryId: fmt.Sprintf("%s-%d-%d", webhookID, perSecond, n), EventId: fmt.Sprintf("evt-%s-%d-%d", webhookID, perSecond, n),
					WebhookId: webhookID, ProjectId: projectID, EventType: "nps.scored", Body: []byte(`{}`), Attempt: 1,
					CreatedAtMs: time.Now().UnixMilli()}
				if sent != nil {
					sent.Store(d.DeliveryId, time.Now())
				}
				v, _ := proto.Marshal(d)
				h.cl.Produce(h.ctx, &kgo.Record{Topic: h.cfg.Kafka.Topics.Deliveries, Key: []byte(webhookID), Value: v}, nil)
			}
		}
	}()
	return stop
}

type kneeRun struct {
	rate     float64 // requests answered per second in the steady window
	timeouts int
	limits   []int // the concurrency limit recorded on the steady window's attempts
}

// runKnee offers a kneeReceiver (knee 20, 50 ms: 400 requests/s at best) 500 deliveries a
// second and measures its throughput from 3 s to 7 s after the first answer, the requests timed
// out until then, and the concurrency limits its attempts recorded.
func runKnee(t *testing.T, adaptive bool, concurrency int) kneeRun {
	h := newHarness(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second},
		func(c *delivery.Config) {
			c.AdaptiveConcurrency = adaptive
			c.PerEndpointConcurrency = concurrency
			c.Timeout = 1500 * time.Millisecond
			c.BreakerThreshold = 1_000_000 // the limit, not the breaker, is under test
			c.DrainTimeout = 2 * time.Second
		})
	rcv := &kneeReceiver{base: 50 * time.Millisecond, knee: 20}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	h.webhook("wh_knee", srv.URL)
	h.start()
	defer h.offer("wh_knee", "p1", 500, nil)()
	require.Eventually(t, func() bool { return !rcv.first().IsZero() }, 20*time.Second, 10*time.Millisecond, "the receiver is reached")
	from := rcv.first().Add(3 * time.Second)
	to := from.Add(4 * time.Second)
	time.Sleep(time.Until(to) + 200*time.Millisecond)
	run := kneeRun{rate: float64(rcv.answeredBetween(from, to)) / to.Sub(from).Seconds()}
	// The attempt log up to to: every attempt started by then has finished (or timed out) 2 s later.
	giveUp := to.Add(5 * time.Second)
	as := collect(h, h.cfg.Kafka.Topics.Attempts, func() *pb.Attempt { return &pb.Attempt{} },
		func(as []*pb.Attempt) bool {
			return time.Now().After(giveUp) || len(as) > 0 && as[len(as)-1].StartedAtMs >= to.UnixMilli()+2000
		})
	for _, a := range as {
		started := time.UnixMilli(a.StartedAtMs)
		if started.Before(to) && a.Outcome.GetClass() == pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT {
			run.timeouts++
		}
		if !started.Before(from) && started.Before(to) {
			run.limits = append(run.limits, int(a.ConcurrencyLimit))
		}
	}
	require.NotEmpty(t, run.limits)
	slices.Sort(run.limits)
	h.stop()
	return run
}

// TestAdaptiveConcurrencySettlesWhereTheEndpointSlowsDown is issue 19's adaptive test: a receiver
// whose latency grows once more than 20 requests are open. With a cap of 100 the limit settles
// near 20, the throughput is at least 90 % of what a fixed cap of 20 (its capacity) achieves, and
// no more requests time out than with that fixed cap. Without the adaptive limit, 100 requests
// open take the receiver 4 s each: every one times out.
func TestAdaptiveConcurrencySettlesWhereTheEndpointSlowsDown(t *testing.T) {
	fixed := runKnee(t, false, 20)
	adaptive := runKnee(t, true, 100)
	median := adaptive.limits[len(adaptive.limits)/2]
	t.Logf("fixed cap 20: %.0f/s, %d timeouts; adaptive (cap 100): %.0f/s (%.0f %%), %d timeouts, limit min %d median %d max %d",
		fixed.rate, fixed.timeouts, adaptive.rate, 100*adaptive.rate/fixed.rate, adaptive.timeouts,
		adaptive.limits[0], median, adaptive.limits[len(adaptive.limits)-1])
	require.InDelta(t, 20, median, 8, "the limit settles near the receiver's knee (20 open requests)")
	require.GreaterOrEqual(t, adaptive.rate, 0.9*fixed.rate, "at least 90 %% of the receiver's capacity")
	require.LessOrEqual(t, adaptive.timeouts, fixed.timeouts, "no more timeouts than a fixed cap of 20")
}

// TestAdaptiveConcurrencyShedsLoadOn429AndRecovers: a receiver that starts answering 429 sees
// the requests open to it fall within seconds, and back near the cap within seconds after it
// answers 200 again. The circuit breaker is set out of reach, so the shedding is the limit's.
func TestAdaptiveConcurrencyShedsLoadOn429AndRecovers(t *testing.T) {
	const concurrency = 30
	h := newHarness(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second},
		func(c *delivery.Config) {
			c.PerEndpointConcurrency = concurrency
			c.BreakerThreshold = 1_000_000
			c.DrainTimeout = 2 * time.Second
		})
	var open, peak atomic.Int32
	var refusing atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		now := open.Add(1)
		defer open.Add(-1)
		for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
		}
		time.Sleep(100 * time.Millisecond)
		if refusing.Load() {
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	t.Cleanup(srv.Close)
	// peakOver returns the most requests open at once over the next d.
	peakOver := func(d time.Duration) int {
		peak.Store(open.Load())
		time.Sleep(d)
		return int(peak.Load())
	}
	h.webhook("wh_429", srv.URL)
	h.start()
	defer h.offer("wh_429", "p1", 360, nil)() // 1.2 × what the receiver takes at the cap
	require.Eventually(t, func() bool { return open.Load() > 0 }, 20*time.Second, 10*time.Millisecond, "the receiver is reached")
	time.Sleep(2 * time.Second)
	healthy := peakOver(time.Second)

	refusing.Store(true)
	time.Sleep(2 * time.Second)
	shed := peakOver(1500 * time.Millisecond)

	refusing.Store(false)
	recovered, took := 0, time.Duration(0)
	for start := time.Now(); time.Since(start) < 8*time.Second && recovered < concurrency*8/10; took = time.Since(start) {
		recovered = peakOver(250 * time.Millisecond)
	}
	t.Logf("requests open: %d healthy, %d 2 s into the 429s, %d after %s of 200s again", healthy, shed, recovered, took)
	require.GreaterOrEqual(t, healthy, concurrency*8/10, "a healthy receiver gets close to the cap")
	require.LessOrEqual(t, shed, concurrency/5, "the 429s shed the load within 2 s")
	require.GreaterOrEqual(t, recovered, concurrency*8/10, "the limit recovers within 8 s of the 429s ending")
}
