package delivery_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery"
)

// TestFailingStreakSurvivesAWorkerRestart: the streak reported at DELIVERY_FAILING_NOTIFY_AFTER
// is on the webhook record, so a restarted worker goes on counting from it (and from the same
// start) and disables the webhook at DELIVERY_DISABLE_AFTER_FAILURES, although it made fewer
// than that many attempts itself. A healthy webhook beside it is never touched.
func TestFailingStreakSurvivesAWorkerRestart(t *testing.T) {
	// One attempt per delivery within the test: the retry tier is an hour away.
	h := newHarness(t, []time.Duration{time.Hour}, func(c *delivery.Config) {
		c.FailingNotifyAfter, c.DisableAfterFailures, c.DisableAfter = 3, 6, time.Hour
	})
	var requests atomic.Int32
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer failing.Close()
	healthy := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer healthy.Close()
	h.webhook("wh_failing", failing.URL)
	h.webhook("wh_healthy", healthy.URL)
	revisions := func(want func([]*pb.Webhook) bool) []*pb.Webhook {
		all := collect(h, h.cfg.Kafka.Topics.Webhooks, func() *pb.Webhook { return &pb.Webhook{} }, func(ws []*pb.Webhook) bool {
			var mine []*pb.Webhook
			for _, w := range ws {
				if w.Id == "wh_failing" && w.Revision > 1 {
					mine = append(mine, w)
				}
			}
			return want(mine)
		})
		var mine []*pb.Webhook
		for _, w := range all {
			if w.Id == "wh_healthy" {
				require.EqualValues(t, 1, w.Revision, "the healthy webhook is never rewritten")
			}
			if w.Id == "wh_failing" && w.Revision > 1 {
				mine = append(mine, w)
			}
		}
		return mine
	}

	h.start()
	h.deliver("wh_healthy", 5, "ok")
	h.deliver("wh_failing", 4, "a")
	require.Eventually(t, func() bool { return requests.Load() == 4 }, 20*time.Second, 10*time.Millisecond)
	noted := revisions(func(ws []*pb.Webhook) bool { return len(ws) >= 1 })
	require.Len(t, noted, 1, "one record per change that matters, not one per attempt")
	require.True(t, noted[0].Enabled)
	require.EqualValues(t, 3, noted[0].ConsecutiveFailures)
	require.NotZero(t, noted[0].FailingSinceMs)
	// Let the fourth attempt be recorded and committed, then restart the worker.
	attempts(h, 9)
	time.Sleep(300 * time.Millisecond)
	h.stop()

	h.start()
	h.deliver("wh_failing", 3, "b")
	off := revisions(func(ws []*pb.Webhook) bool { return len(ws) >= 2 })
	require.Len(t, off, 2)
	d := off[1]
	require.False(t, d.Enabled, "disabled after 3 (recorded) + 3 failures")
	require.Equal(t, "failing", d.DisabledReason)
	require.EqualValues(t, 6, d.ConsecutiveFailures)
	require.Equal(t, noted[0].FailingSinceMs, d.FailingSinceMs, "the streak kept its start across the restart")
	require.Greater(t, d.Revision, noted[0].Revision)
	require.NotZero(t, d.DisabledAtMs)
}

// TestWebhookFailingForTheSpanIsDisabled: with no count rule, a webhook whose every attempt failed
// for DELIVERY_DISABLE_AFTER is disabled at its first failure past the span, and its record says
// since when it had been failing.
func TestWebhookFailingForTheSpanIsDisabled(t *testing.T) {
	span := 700 * time.Millisecond
	h := newHarness(t, []time.Duration{200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond,
		200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}, func(c *delivery.Config) {
		c.FailingNotifyAfter, c.DisableAfterFailures, c.DisableAfter = 100, 0, span
	})
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	h.webhook("wh_failing", failing.URL)
	h.start()
	start := time.Now()
	h.deliver("wh_failing", 1, "span")
	ws := collect(h, h.cfg.Kafka.Topics.Webhooks, func() *pb.Webhook { return &pb.Webhook{} }, func(ws []*pb.Webhook) bool {
		return len(ws) > 0 && ws[len(ws)-1].Revision > 1
	})
	off := ws[len(ws)-1]
	require.False(t, off.Enabled)
	require.Equal(t, "failing", off.DisabledReason)
	require.GreaterOrEqual(t, off.DisabledAtMs-off.FailingSinceMs, span.Milliseconds(), "disabled once the span had passed")
	require.GreaterOrEqual(t, off.FailingSinceMs, start.UnixMilli())
	require.Less(t, off.ConsecutiveFailures, int32(100), "by time, not by count")
}
