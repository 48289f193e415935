package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/signature"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api"
	"github.com/surveyhooks/surveyhooks/services/delivery"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

// opsReceiver is the platform's operational endpoint: it refuses requests whose Standard Webhooks
// signature does not verify with its secret, and keeps the operational events it accepted.
type opsReceiver struct {
	*httptest.Server
	secret atomic.Value // string
	mu     sync.Mutex
	events []opsEvent
	bad    atomic.Int32
}

type opsEvent struct {
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	Payload   struct {
		ProjectID           string `json:"project_id"`
		WebhookID           string `json:"webhook_id"`
		WebhookName         string `json:"webhook_name"`
		Reason              string `json:"reason"`
		ConsecutiveFailures int    `json:"consecutive_failures"`
		FailingSinceMs      int64  `json:"failing_since_ms"`
		DeliveryID          string `json:"delivery_id"`
		EventID             string `json:"event_id"`
		LastStatusCode      int    `json:"last_status_code"`
	} `json:"payload"`
}

func newOpsReceiver(t *testing.T) *opsReceiver {
	rc := &opsReceiver{}
	rc.secret.Store("")
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := r.Header
		if err := signature.VerifyStandard(rc.secret.Load().(string), h.Get(signature.HeaderID), h.Get(signature.HeaderTimestamp),
			h.Get(signature.HeaderSignature), body, time.Minute); err != nil {
			rc.bad.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev opsEvent
		if json.Unmarshal(body, &ev) != nil {
			rc.bad.Add(1)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.events = append(rc.events, ev)
		rc.mu.Unlock()
	}))
	t.Cleanup(rc.Close)
	return rc
}

// seen is the operational events received about webhook id, in arrival order, without repeats.
func (rc *opsReceiver) seen(id string) (types []string, byType map[string]opsEvent) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	byType, ids := map[string]opsEvent{}, map[string]bool{}
	for _, ev := range rc.events {
		if ev.Payload.WebhookID != id || ids[ev.EventID] {
			continue
		}
		ids[ev.EventID] = true
		types = append(types, ev.EventType)
		byType[ev.EventType] = ev
	}
	return types, byType
}

// TestAFailingWebhookIsAutoDisabledAndItsEventsAreKeptAsSkipped is issue 16's "done when": an
// endpoint that stops answering is reported failing, recovers, fails again until it is disabled
// (reason "failing"); the operational endpoint, verifying every signature, hears
// webhook.failing, webhook.recovered, webhook.failing, webhook.disabled; events that keep
// arriving are not sent but logged in ClickHouse as skipped attempts with the body they would
// have had. A second operational endpoint that always fails produces no operational event about
// itself and does not hold up the rest.
func TestAFailingWebhookIsAutoDisabledAndItsEventsAreKeptAsSkipped(t *testing.T) {
	s := startStack(t, withSink(), withFanout(), withDeliveryConfig(func(c *delivery.Config) {
		c.FailingNotifyAfter, c.DisableAfterFailures, c.DisableAfter = 3, 6, time.Hour
	}))
	began := time.Now()
	ops := newOpsReceiver(t)
	created := s.must(http.StatusCreated, "POST", "/v1/operational-webhooks", adminToken,
		map[string]any{"name": "platform on-call", "url": ops.URL + "/ops", "events": []string{"*"}})
	ops.secret.Store(created.str("secret"))
	require.NotEmpty(t, created.str("secret"))
	require.Empty(t, s.must(http.StatusOK, "GET", "/v1/operational-webhooks/"+created.str("id"), adminToken, nil).str("secret"),
		"the secret is shown once")
	broken := newReceiver(t, http.StatusInternalServerError)
	brokenOps := s.must(http.StatusCreated, "POST", "/v1/operational-webhooks", adminToken,
		map[string]any{"url": broken.URL + "/ops", "events": []string{"*"}}).str("id")

	rc := newReceiver(t, http.StatusServiceUnavailable)
	project, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"name": "CRM sync", "url": rc.URL + "/hook", "events": []string{"nps.scored"}}).str("id")

	send := npsSender(t, s, project)
	// waitFor waits for the webhook's lifecycle events (failing, recovered, disabled) to be want,
	// in order, and for at least deadLetters delivery.dead_lettered events: those are sent beside
	// the lifecycle event of the same attempt, so they may arrive before or after it.
	waitFor := func(deadLetters int, want ...string) map[string]opsEvent {
		var lifecycle []string
		var by map[string]opsEvent
		dead := 0
		require.Eventually(t, func() bool {
			var all []string
			all, by = ops.seen(wh)
			lifecycle, dead = nil, 0
			for _, typ := range all {
				if typ == "delivery.dead_lettered" {
					dead++
				} else {
					lifecycle = append(lifecycle, typ)
				}
			}
			return len(lifecycle) >= len(want) && dead >= deadLetters
		}, 30*time.Second, 50*time.Millisecond, "operational events so far: %v and %d dead letters; want %v and %d", lifecycle, dead, want, deadLetters)
		require.Equal(t, want, lifecycle)
		return by
	}

	// One event, three failed attempts (the stack's schedule is 200ms, 400ms): failing.
	first := send()
	by := waitFor(1, "webhook.failing")
	failing := by["webhook.failing"]
	require.Equal(t, project, failing.Payload.ProjectID)
	require.Equal(t, "CRM sync", failing.Payload.WebhookName)
	require.Equal(t, 3, failing.Payload.ConsecutiveFailures)
	require.Equal(t, 503, failing.Payload.LastStatusCode)
	require.NotZero(t, failing.Payload.FailingSinceMs)
	// Its retries exhausted, the delivery was dead-lettered, and that was said too.
	require.Equal(t, first, by["delivery.dead_lettered"].Payload.EventID)

	// The endpoint answers again: recovered, on the first success.
	rc.status.Store(http.StatusOK)
	send()
	waitFor(1, "webhook.failing", "webhook.recovered")

	// It fails again, long enough to be disabled: failing (a new streak), then disabled.
	rc.status.Store(http.StatusServiceUnavailable)
	send()
	send()
	by = waitFor(3, "webhook.failing", "webhook.recovered", "webhook.failing", "webhook.disabled")
	disabled := by["webhook.disabled"]
	require.Equal(t, "failing", disabled.Payload.Reason)
	require.Equal(t, project, disabled.Payload.ProjectID)
	require.Equal(t, 6, disabled.Payload.ConsecutiveFailures)
	require.Equal(t, by["webhook.failing"].Payload.FailingSinceMs, disabled.Payload.FailingSinceMs)
	require.Greater(t, disabled.Payload.FailingSinceMs, failing.Payload.FailingSinceMs, "a new streak")
	var view reply
	require.Eventually(t, func() bool {
		view = s.must(http.StatusOK, "GET", "/v1/webhooks/"+wh, key, nil)
		return view.body["enabled"] == false
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, "failing", view.str("disabled_reason"))
	require.EqualValues(t, 6, view.body["consecutive_failures"])
	require.Equal(t, time.UnixMilli(disabled.Payload.FailingSinceMs).UTC().Format(time.RFC3339Nano), view.str("failing_since"))

	// Events keep arriving: not sent, not dropped — skipped attempts in ClickHouse, with their body.
	requestsBefore := len(rc.requests())
	later := []string{send(), send()}
	for _, id := range later {
		var list []map[string]any
		require.Eventually(t, func() bool {
			r := s.do("GET", "/v1/events/"+id+"/attempts", key, nil)
			if r.status != http.StatusOK {
				return false
			}
			list = r.list()
			return len(list) == 1
		}, 20*time.Second, 100*time.Millisecond, "the skipped attempt of %s did not reach ClickHouse", id)
		a := list[0]
		require.Equal(t, "skipped", a["disposition"])
		require.Equal(t, "webhook_disabled", a["outcome"])
		require.Equal(t, wh, a["webhook_id"])
		require.Equal(t, "nps.scored", a["event_type"])
		detail := s.must(http.StatusOK, "GET", "/v1/attempts/"+a["id"].(string), key, nil)
		var body struct {
			EventID   string `json:"event_id"`
			EventType string `json:"event_type"`
		}
		require.NoError(t, json.Unmarshal([]byte(detail.str("request_body")), &body), "the rendered body: %s", detail)
		require.Equal(t, id, body.EventID)
		require.Equal(t, "nps.scored", body.EventType)
		require.NotEmpty(t, detail.str("delivery_id"))
	}
	require.Equal(t, requestsBefore, len(rc.requests()), "a disabled webhook gets no request")

	// The subscriber fixes the endpoint and re-enables the webhook: the streak is gone, and the
	// next event is delivered (the skipped ones wait for a replay of the span).
	rc.status.Store(http.StatusOK)
	view = s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+wh, key, map[string]any{"enabled": true})
	require.Empty(t, view.str("disabled_reason"))
	require.Nil(t, view.body["failing_since"])
	require.Nil(t, view.body["consecutive_failures"])
	again := send()
	require.Eventually(t, func() bool { return len(rc.withID(fanout.DeliveryID(again, wh))) == 1 }, 20*time.Second, 50*time.Millisecond)

	// …and recovers the span it was disabled for: every skipped event arrives once, with the
	// webhook-id it would have had, marked as a replay; nothing else of the span is sent again.
	job := s.must(http.StatusAccepted, "POST", "/v1/webhooks/"+wh+"/replays", key, map[string]any{
		"since": began.Add(-time.Minute).UTC().Format(time.RFC3339), "outcome": "skipped"}).str("id")
	done := s.waitReplay(key, job)
	require.EqualValues(t, len(later), done.body["matched"], "%s", done)
	require.EqualValues(t, len(later), done.body["replayed"], "%s", done)
	for _, id := range later {
		require.Eventually(t, func() bool { return len(rc.withID(fanout.DeliveryID(id, wh))) == 1 }, 20*time.Second, 50*time.Millisecond,
			"the skipped %s should arrive after the recovery", id)
	}
	time.Sleep(500 * time.Millisecond) // a second copy, if any, would be close behind
	for _, id := range later {
		got := rc.withID(fanout.DeliveryID(id, wh))
		require.Len(t, got, 1, "%s arrives once", id)
		require.Equal(t, job, got[0].header.Get(api.ReplayHeader))
	}
	require.Len(t, rc.withID(fanout.DeliveryID(first, wh)), 3, "the dead-lettered first event is not part of a skipped recovery")

	// The failing operational endpoint was tried (and retried) but nothing was said about it, and
	// every request to the good one verified.
	require.NotEmpty(t, broken.requests())
	types, _ := ops.seen(brokenOps)
	require.Empty(t, types, "no operational event about an operational endpoint")
	require.Zero(t, ops.bad.Load(), "every operational request carried a valid signature")
}

// TestOperationalWebhookInputIsCheckedNamingTheField: an operational webhook takes only the
// operational event types, a valid URL, and the admin token; each refusal names what is wrong.
func TestOperationalWebhookInputIsCheckedNamingTheField(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"events": []string{"*"}}, "url"},
		{map[string]any{"url": "ftp://ops.example.com", "events": []string{"*"}}, "url"},
		{map[string]any{"url": "https://ops.example.com"}, "events"},
		{map[string]any{"url": "https://ops.example.com", "events": []string{"webhook.disabled", "nps.scored"}}, "events[1]"},
		{map[string]any{"url": "https://ops.example.com", "events": []string{"*"}, "enabled": false}, "enabled"},
	} {
		r := s.must(http.StatusBadRequest, "POST", "/v1/operational-webhooks", adminToken, c.body)
		require.Equal(t, c.field, r.errField(), "%v: %s", c.body, r)
	}
	s.must(http.StatusUnauthorized, "POST", "/v1/operational-webhooks", key, map[string]any{"url": "https://ops.example.com", "events": []string{"*"}})

	created := s.must(http.StatusCreated, "POST", "/v1/operational-webhooks", adminToken,
		map[string]any{"url": "https://ops.example.com/hook", "events": []string{"webhook.failing", "webhook.disabled"}})
	require.Equal(t, "/v1/operational-webhooks/"+created.str("id"), created.header.Get("Location"))
	require.Equal(t, []any{"webhook.disabled", "webhook.failing"}, created.body["events"])
	require.Contains(t, created.str("secret"), "whsec_")
	got := s.must(http.StatusOK, "GET", "/v1/operational-webhooks/"+created.str("id"), adminToken, nil)
	require.Empty(t, got.str("secret"))
	require.NotContains(t, string(got.raw), created.str("secret"))
	s.must(http.StatusNoContent, "DELETE", "/v1/operational-webhooks/"+created.str("id"), adminToken, nil)
	require.Eventually(t, func() bool {
		return s.do("GET", "/v1/operational-webhooks/"+created.str("id"), adminToken, nil).status == http.StatusNotFound
	}, 5*time.Second, 20*time.Millisecond)
	require.Empty(t, s.must(http.StatusOK, "GET", "/v1/operational-webhooks", adminToken, nil).list())
}

// An operational webhook changes as a customer's does: PATCH merges (RFC 7386) what may change and
// names the field that is wrong; its secret rotates with the previous one still listed; a
// project's key can do neither.
func TestOperationalWebhookIsPatchedAndItsSecretRotated(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	created := s.must(http.StatusCreated, "POST", "/v1/operational-webhooks", adminToken,
		map[string]any{"url": "https://ops.example.com/hook", "events": []string{"webhook.failing"}, "headers": map[string]string{"x-team": "ops"}})
	path := "/v1/operational-webhooks/" + created.str("id")

	patched := s.must(http.StatusOK, "PATCH", path, adminToken, map[string]any{"url": "https://ops2.example.com/hook",
		"events": []string{"*"}, "headers": map[string]any{"X-Team": nil, "x-pager": "on"}, "enabled": false})
	require.Equal(t, "https://ops2.example.com/hook", patched.str("url"))
	require.Equal(t, []any{"*"}, patched.body["events"])
	require.Equal(t, map[string]any{"X-Pager": "on"}, patched.body["headers"], "headers merge by name; null removes one")
	require.Equal(t, false, patched.body["enabled"])
	require.Equal(t, created.str("name"), patched.str("name"), "what the patch does not name stays")
	require.EqualValues(t, 2, patched.body["revision"])
	require.Empty(t, patched.str("secret"))
	require.Eventually(t, func() bool {
		return s.do("GET", path, adminToken, nil).str("url") == "https://ops2.example.com/hook"
	}, 5*time.Second, 20*time.Millisecond)

	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"url": "ftp://ops.example.com"}, "url"},
		{map[string]any{"events": []string{}}, "events"},
		{map[string]any{"events": []string{"webhook.disabled", "nps.scored"}}, "events[1]"},
		{map[string]any{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "secret"},
		{map[string]any{"format": "typeform"}, "format"},
	} {
		r := s.must(http.StatusBadRequest, "PATCH", path, adminToken, c.body)
		require.Equal(t, c.field, r.errField(), "%v: %s", c.body, r)
	}
	s.must(http.StatusUnauthorized, "PATCH", path, key, map[string]any{"enabled": true})
	s.must(http.StatusNotFound, "PATCH", "/v1/operational-webhooks/wh_nope", adminToken, map[string]any{"enabled": true})

	rotated := s.must(http.StatusOK, "POST", path+"/secrets/rotate", adminToken, map[string]any{"expire_previous_in_s": 3600})
	require.Contains(t, rotated.str("secret"), "whsec_")
	require.NotEqual(t, created.str("secret"), rotated.str("secret"))
	require.Len(t, rotated.body["secrets"], 2, "the previous secret signs beside the new one until it expires")
	s.must(http.StatusUnauthorized, "POST", path+"/secrets/rotate", key, nil)
}

// TestAGoneWebhookIsAnnouncedAndItsLaterEventsAreSkipped: a 410 disables a webhook at once (reason
// "gone"); the operational endpoint hears webhook.disabled with that reason, and later events are
// kept as skipped attempts, as for a failing webhook.
func TestAGoneWebhookIsAnnouncedAndItsLaterEventsAreSkipped(t *testing.T) {
	s := startStack(t, withSink(), withFanout(), withDeliveryConfig(nil))
	ops := newOpsReceiver(t)
	ops.secret.Store(s.must(http.StatusCreated, "POST", "/v1/operational-webhooks", adminToken,
		map[string]any{"url": ops.URL, "events": []string{"webhook.disabled"}}).str("secret"))
	rc := newReceiver(t, http.StatusGone)
	project, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": rc.URL + "/hook", "events": []string{"nps.scored"}}).str("id")
	send := func(id string) {
		score := int32(7)
		v, _ := proto.Marshal(&pb.Event{EventId: id, ProjectId: project, EventType: "nps.scored", TimeMs: time.Now().UnixMilli(),
			User: &pb.User{Id: "u1"}, Nps: &pb.Nps{Score: &score}})
		require.NoError(t, s.kcl.ProduceSync(s.ctx, &kgo.Record{Topic: s.cfg.Kafka.Topics.Events, Key: []byte(project), Value: v}).FirstErr())
	}
	send("gone-1")
	var by map[string]opsEvent
	require.Eventually(t, func() bool {
		_, by = ops.seen(wh)
		return by["webhook.disabled"].EventID != ""
	}, 20*time.Second, 50*time.Millisecond)
	require.Equal(t, "gone", by["webhook.disabled"].Payload.Reason)
	require.Equal(t, 410, by["webhook.disabled"].Payload.LastStatusCode)
	require.Eventually(t, func() bool {
		return s.must(http.StatusOK, "GET", "/v1/webhooks/"+wh, key, nil).str("disabled_reason") == "gone"
	}, 10*time.Second, 50*time.Millisecond)

	send("gone-2")
	require.Eventually(t, func() bool {
		r := s.do("GET", "/v1/events/gone-2/attempts", key, nil)
		return r.status == http.StatusOK && len(r.list()) == 1 && r.list()[0]["disposition"] == "skipped"
	}, 20*time.Second, 100*time.Millisecond)
	require.Len(t, rc.requests(), 1, "only the first event reached the endpoint")
	types, _ := ops.seen(wh)
	require.Equal(t, []string{"webhook.disabled"}, types, "it subscribed to webhook.disabled only")
}
