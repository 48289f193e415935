package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

// TestPortalRecoversWhatASurveyhooksDisabledWebhookSkipped: an endpoint fails until surveyhooks
// disables its webhook (reason "failing"); events that arrive meanwhile are skipped. The
// webhook's page says so plainly, with the failing-since time, and "Recover what was skipped"
// enables the webhook again and sends exactly those events, marked as a recovery.
func TestPortalRecoversWhatASurveyhooksDisabledWebhookSkipped(t *testing.T) {
	s := startStack(t, withSink(), withFanout(), withDeliveryConfig(func(c *delivery.Config) {
		c.FailingNotifyAfter, c.DisableAfterFailures, c.DisableAfter = 3, 6, time.Hour
	}))
	rc := newReceiver(t, http.StatusServiceUnavailable)
	project, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"name": "CRM sync", "url": rc.URL + "/hook", "events": []string{"nps.scored"}}).str("id")
	send := npsSender(t, s, project)
	// Two events, three failed attempts each: six in a row disable the webhook.
	send()
	send()
	var view reply
	require.Eventually(t, func() bool {
		view = s.must(http.StatusOK, "GET", "/v1/webhooks/"+wh, key, nil)
		return view.body["enabled"] == false
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, "failing", view.str("disabled_reason"))
	failingSince, err := time.Parse(time.RFC3339Nano, view.str("failing_since"))
	require.NoError(t, err)
	skipped := []string{send(), send()}
	for _, id := range skipped {
		require.Eventually(t, func() bool {
			r := s.do("GET", "/v1/events/"+id+"/attempts", key, nil)
			return r.status == http.StatusOK && len(r.list()) == 1 && r.list()[0]["disposition"] == "skipped"
		}, 20*time.Second, 100*time.Millisecond, "the skipped attempt of %s did not reach ClickHouse", id)
	}
	rc.status.Store(http.StatusOK)
	before := len(rc.requests())

	b := startBrowser(t)
	require.Equal(t, http.StatusOK, b.open(s.portalLink(project, map[string]any{})))
	b.open(s.base + "/portal/webhooks/" + wh)
	b.checkPage()
	require.Contains(t, b.text("#stopped"), "kept failing")
	require.Equal(t, failingSince.UTC().Format("2006-01-02 15:04:05 UTC"), b.text("#failing-since"))
	require.Equal(t, "Re-enable", b.text("#re-enable"))
	b.screenshot("portal-disabled.png")

	b.submit("#recover-skipped", "#job")
	b.waitText("#job-status", "done", false)
	require.Equal(t, "were skipped (webhook disabled)", b.text("#job dl div:nth-child(3) dd"))
	require.Equal(t, "2", b.text("#job-matched"))
	require.Equal(t, "2", b.text("#job-replayed"))
	require.Equal(t, true, s.must(http.StatusOK, "GET", "/v1/webhooks/"+wh, key, nil).body["enabled"], "enabled again")
	for _, id := range skipped {
		require.Eventually(t, func() bool { return len(rc.withID(fanout.DeliveryID(id, wh))) == 1 }, 20*time.Second, 50*time.Millisecond,
			"%s arrives once, with the webhook-id it would have had", id)
		require.True(t, strings.HasPrefix(rc.withID(fanout.DeliveryID(id, wh))[0].header.Get("surveyhooks-replay"), "rp_"))
	}
	require.Len(t, rc.requests(), before+2, "nothing but the skipped events is sent")

	// The page no longer says it is disabled.
	b.open(s.base + "/portal/webhooks/" + wh)
	require.Equal(t, "Enabled", b.text("#state"))
	require.Equal(t, 0, eval[int](b, `document.querySelectorAll("#stopped").length`))
}

// npsSender returns a function that produces an nps.scored event of project straight to the
// events topic (as ingest would), with ids evt-1, evt-2, …, and returns its id.
func npsSender(t *testing.T, s *stack, project string) func() string {
	n := 0
	return func() string {
		n++
		score := int32(n % 11)
		id := fmt.Sprintf("evt-%d", n)
		v, _ := proto.Marshal(&pb.Event{EventId: id, ProjectId: project, EventType: "nps.scored", TimeMs: time.Now().UnixMilli(),
			ReceivedAtMs: time.Now().UnixMilli(), User: &pb.User{Id: "u1"}, Nps: &pb.Nps{Score: &score}})
		require.NoError(t, s.kcl.ProduceSync(s.ctx, &kgo.Record{Topic: s.cfg.Kafka.Topics.Events, Key: []byte(project), Value: v}).FirstErr())
		return id
	}
}
