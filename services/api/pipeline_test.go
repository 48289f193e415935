package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/pkg/signature"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api"
)

// receiver is a subscriber endpoint (a recording hooktest endpoint serving every path) that
// answers status to every request, with a short body.
type receiver struct {
	URL    string
	status atomic.Int32
	hook   *hooktest.Endpoint
}

// received is one request the receiver got.
type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, status int) *receiver {
	rc := &receiver{hook: hooktest.NewEndpoint("every path", hooktest.Fast)}
	rc.status.Store(int32(status))
	rc.hook.Record(true)
	rc.hook.AnswerWith(func(*hooktest.Request) hooktest.Answer {
		return hooktest.Answer{Status: int(rc.status.Load()), Body: []byte("receiver says hi")}
	})
	rc.URL = hooktest.StartT(t, hooktest.Options{Default: rc.hook}).URL()
	return rc
}

// requests returns the requests answered so far, in order.
func (rc *receiver) requests() []received {
	var out []received
	for _, r := range rc.hook.Records() {
		out = append(out, received{header: r.Header, body: r.Body})
	}
	return out
}

// withID returns the requests carrying webhook-id id.
func (rc *receiver) withID(id string) []received {
	var out []received
	for _, r := range rc.requests() {
		if r.header.Get(signature.HeaderID) == id {
			out = append(out, r)
		}
	}
	return out
}

func TestSendTestDeliversThroughTheDeliveryServiceEvenWhileDisabled(t *testing.T) {
	s := startStack(t, withDelivery(), withSink())
	rc := newReceiver(t, http.StatusOK)
	_, key := s.project("Acme")
	created := s.webhook(key, map[string]any{"url": rc.URL + "/hook", "enabled": false, "headers": map[string]string{"X-Team": "growth"}})
	id, secret := created.str("id"), created.str("secret")

	r := s.must(http.StatusOK, "POST", "/v1/webhooks/"+id+"/test", key, nil)
	require.Equal(t, "success", r.str("outcome"), "%s", r)
	require.Equal(t, true, r.body["success"])
	require.EqualValues(t, 200, r.body["status_code"])
	require.Greater(t, r.body["latency_ms"].(float64), 0.0)
	require.Equal(t, "receiver says hi", r.str("response_body"))
	got := rc.withID(r.str("delivery_id"))
	require.Len(t, got, 1, "the receiver got the test, signed, although the webhook is disabled")
	h := got[0].header
	require.NoError(t, signature.VerifyStandard(secret, h.Get(signature.HeaderID), h.Get(signature.HeaderTimestamp),
		h.Get(signature.HeaderSignature), got[0].body, time.Minute))
	require.Equal(t, "growth", h.Get("X-Team"))
	var env map[string]any
	require.NoError(t, json.Unmarshal(got[0].body, &env))
	require.Equal(t, "webhook.test", env["event_type"])
	require.Equal(t, r.str("event_id"), env["event_id"])
	require.Equal(t, string(got[0].body), r.str("request_body"))

	// A failing endpoint: the outcome is reported, and a test is never retried.
	rc.status.Store(http.StatusServiceUnavailable)
	r = s.must(http.StatusOK, "POST", "/v1/webhooks/"+id+"/test", key, nil)
	require.Equal(t, "http_retryable", r.str("outcome"))
	require.Equal(t, false, r.body["success"])
	require.EqualValues(t, 503, r.body["status_code"])
	time.Sleep(time.Second) // longer than the whole retry schedule (200ms, 400ms)
	require.Len(t, rc.withID(r.str("delivery_id")), 1)

	// Both attempts reach the delivery log, marked as tests.
	var logged reply
	require.Eventually(t, func() bool {
		logged = s.do("GET", "/v1/webhooks/"+id+"/attempts", key, nil)
		return logged.status == http.StatusOK && len(logged.list()) == 2
	}, 20*time.Second, 100*time.Millisecond, "attempts did not reach ClickHouse")
	for _, a := range logged.list() {
		require.Equal(t, true, a["test"])
		require.Equal(t, "webhook.test", a["event_type"])
	}
	detail := s.must(http.StatusOK, "GET", "/v1/attempts/"+r.str("attempt_id"), key, nil)
	require.EqualValues(t, 503, detail.body["status_code"])
	require.Equal(t, rc.URL+"/hook", detail.str("request_url"))

	// After a rotation, requests verify with the new secret and, until it expires, the old one.
	rc.status.Store(http.StatusOK)
	rotated := s.must(http.StatusOK, "POST", "/v1/webhooks/"+id+"/secrets/rotate", key, nil).str("secret")
	r = s.must(http.StatusOK, "POST", "/v1/webhooks/"+id+"/test", key, nil)
	require.Equal(t, "success", r.str("outcome"))
	got = rc.withID(r.str("delivery_id"))
	require.Len(t, got, 1)
	h = got[0].header
	for _, sec := range []string{rotated, secret} {
		require.NoError(t, signature.VerifyStandard(sec, h.Get(signature.HeaderID), h.Get(signature.HeaderTimestamp),
			h.Get(signature.HeaderSignature), got[0].body, time.Minute))
	}
	require.NoError(t, signature.VerifyAskUsers(rotated, got[0].body, h.Get(signature.HeaderAskUsers)), "the newest secret signs X-Webhook-Signature")
}

func TestSendTestAnswers504WhenNoDeliveryServiceAnswers(t *testing.T) {
	s := startStack(t, withConfig(func(c *api.Config) { c.TestTimeout = 500 * time.Millisecond }))
	_, key := s.project("Acme")
	id := s.webhook(key, map[string]any{"url": "https://example.com/h"}).str("id")
	r := s.must(http.StatusGatewayTimeout, "POST", "/v1/webhooks/"+id+"/test", key, nil)
	require.Equal(t, "test_timeout", r.errCode())
	// It did queue the delivery, as the delivery service expects it.
	rec := s.lastRecord(s.cfg.Kafka.Topics.Deliveries, id, func(*kgo.Record) bool { return true })
	d := decode(t, rec.Value, &pb.Delivery{})
	require.True(t, d.Test)
	require.Equal(t, "webhook.test", d.EventType)
	require.EqualValues(t, 1, d.Attempt)
}

// deliver puts a delivery on `deliveries` as fan-out would.
func (s *stack) deliver(projectID, webhookID, id string) *pb.Delivery {
	s.t.Helper()
	d := &pb.Delivery{DeliveryId: id, EventId: "evt_" + id, WebhookId: webhookID, ProjectId: projectID,
		EventType: "nps.scored", Body: []byte(`{"event_id":"evt_` + id + `","event_type":"nps.scored"}`), Attempt: 1,
		CreatedAtMs: time.Now().UnixMilli(), WebhookRevision: 1}
	v, err := proto.Marshal(d)
	require.NoError(s.t, err)
	require.NoError(s.t, s.kcl.ProduceSync(s.ctx, &kgo.Record{Topic: s.cfg.Kafka.Topics.Deliveries, Key: []byte(webhookID), Value: v}).FirstErr())
	return d
}

// produceDelivery queues d on `deliveries`, as fan-out would.
func (s *stack) produceDelivery(d *pb.Delivery) {
	s.t.Helper()
	v, err := proto.Marshal(d)
	require.NoError(s.t, err)
	require.NoError(s.t, s.kcl.ProduceSync(s.ctx, &kgo.Record{Topic: s.cfg.Kafka.Topics.Deliveries, Key: []byte(d.WebhookId), Value: v}).FirstErr())
}

// deadLetters waits until the dead-letter list (query q) has n entries.
func (s *stack) deadLetters(key, q string, n int) []map[string]any {
	s.t.Helper()
	var r reply
	require.Eventually(s.t, func() bool {
		r = s.do("GET", "/v1/dead-letters"+q, key, nil)
		return r.status == http.StatusOK && len(r.list()) == n
	}, 20*time.Second, 100*time.Millisecond, "waiting for %d dead letters: %s", n, r)
	return r.list()
}

func TestReplayedDeadLettersAreDeliveredAgainWithTheSameIDs(t *testing.T) {
	s := startStack(t, withDelivery(), withSink())
	rc := newReceiver(t, http.StatusBadRequest) // permanent: dead after one attempt
	pid, key := s.project("Acme")
	id := s.webhook(key, map[string]any{"url": rc.URL}).str("id")

	orig := s.deliver(pid, id, "msg_one")
	dl := s.deadLetters(key, "", 1)[0]
	require.Equal(t, "msg_one", dl["delivery_id"])
	require.Equal(t, "evt_msg_one", dl["event_id"])
	require.Equal(t, "http_permanent", dl["outcome"])
	require.EqualValues(t, 400, dl["status_code"])

	rc.status.Store(http.StatusOK)
	r := s.must(http.StatusAccepted, "POST", "/v1/dead-letters/"+dl["id"].(string)+"/replay", key, nil)
	require.EqualValues(t, 1, r.body["replayed"])
	require.Eventually(t, func() bool { return len(rc.withID("msg_one")) == 2 }, 10*time.Second, 20*time.Millisecond)
	again := rc.withID("msg_one")[1]
	require.Equal(t, orig.Body, again.body, "the same body, byte for byte")
	require.Equal(t, dl["id"], again.header.Get(api.ReplayHeader), "the receiver can tell a replay, and of which dead letter")
	var env map[string]any
	require.NoError(t, json.Unmarshal(again.body, &env))
	require.Equal(t, "evt_msg_one", env["event_id"])
	rec := s.lastRecord(s.cfg.Kafka.Topics.Deliveries, id, func(r *kgo.Record) bool {
		return decode(t, r.Value, &pb.Delivery{}).ReplayOf != ""
	})
	replay := decode(t, rec.Value, &pb.Delivery{})
	require.Equal(t, dl["id"], replay.ReplayOf)
	require.EqualValues(t, 1, replay.Attempt)
	require.Zero(t, replay.Tier)
	require.Zero(t, replay.NotBeforeMs)
	require.Nil(t, replay.LastOutcome)

	// Replayed dead letters leave the default list.
	s.deadLetters(key, "", 0)
	all := s.deadLetters(key, "?include_replayed=true", 1)
	require.Equal(t, true, all[0]["replayed"])

	// Bulk: bounded by limit, and "more" says when to call again.
	rc.status.Store(http.StatusNotFound)
	for _, m := range []string{"msg_b1", "msg_b2", "msg_b3"} {
		s.deliver(pid, id, m)
	}
	s.deadLetters(key, "", 3)
	rc.status.Store(http.StatusOK)
	r = s.must(http.StatusAccepted, "POST", "/v1/dead-letters/replay", key, map[string]any{"webhook_id": id, "limit": 2})
	require.EqualValues(t, 2, r.body["replayed"])
	require.Equal(t, true, r.body["more"])
	r = s.must(http.StatusAccepted, "POST", "/v1/dead-letters/replay", key, map[string]any{})
	require.EqualValues(t, 1, r.body["replayed"])
	require.Equal(t, false, r.body["more"])
	require.Eventually(t, func() bool {
		return len(rc.withID("msg_b1")) == 2 && len(rc.withID("msg_b2")) == 2 && len(rc.withID("msg_b3")) == 2
	}, 10*time.Second, 20*time.Millisecond, "each dead letter is delivered again once")
	s.deadLetters(key, "", 0)
	r = s.must(http.StatusAccepted, "POST", "/v1/dead-letters/replay", key, nil)
	require.EqualValues(t, 0, r.body["replayed"])
}

func TestGoneEndpointIsDisabledVisiblyAndReenablingClearsTheReason(t *testing.T) {
	s := startStack(t, withDelivery(), withSink())
	rc := newReceiver(t, http.StatusGone)
	pid, key := s.project("Acme")
	id := s.webhook(key, map[string]any{"url": rc.URL}).str("id")
	s.deliver(pid, id, "msg_gone")

	var got reply
	require.Eventually(t, func() bool {
		got = s.must(http.StatusOK, "GET", "/v1/webhooks/"+id, key, nil)
		return got.body["enabled"] == false
	}, 10*time.Second, 50*time.Millisecond, "the delivery service did not disable the webhook")
	require.Equal(t, "gone", got.str("disabled_reason"))

	dl := s.deadLetters(key, "", 1)[0]
	require.Equal(t, "gone", dl["outcome"])
	r := s.must(http.StatusConflict, "POST", "/v1/dead-letters/"+dl["id"].(string)+"/replay", key, nil)
	require.Equal(t, "webhook_disabled", r.errCode())
	r = s.must(http.StatusAccepted, "POST", "/v1/dead-letters/replay", key, nil)
	require.EqualValues(t, 0, r.body["replayed"])
	require.EqualValues(t, 1, r.body["skipped"])

	// A change that does not touch enabled keeps the reason; enabling clears it.
	got = s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+id, key, map[string]any{"name": "renamed"})
	require.Equal(t, "gone", got.str("disabled_reason"))
	require.Equal(t, false, got.body["enabled"])
	rc.status.Store(http.StatusOK)
	got = s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+id, key, map[string]any{"enabled": true})
	require.Equal(t, true, got.body["enabled"])
	require.NotContains(t, got.body, "disabled_reason")
	s.must(http.StatusAccepted, "POST", "/v1/dead-letters/"+dl["id"].(string)+"/replay", key, nil)
	require.Eventually(t, func() bool {
		reqs := rc.withID("msg_gone")
		return len(reqs) == 2
	}, 10*time.Second, 20*time.Millisecond)
}

func TestConcurrentSendTestsEachGetTheirOwnAttempt(t *testing.T) {
	s := startStack(t, withDelivery())
	rc := newReceiver(t, http.StatusOK)
	_, key := s.project("Acme")
	var ids []string
	for i := range 3 {
		ids = append(ids, s.webhook(key, map[string]any{"name": fmt.Sprint("wh", i), "url": rc.URL + "/hook"}).str("id"))
	}
	// Rounds of overlapping calls: the attempt reader resumes for the first waiter of a round and
	// pauses after the last, and no call may miss its attempt across those switches.
	for round := range 3 {
		var wg sync.WaitGroup
		results := make([]reply, 6)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = s.do("POST", "/v1/webhooks/"+ids[i%len(ids)]+"/test", key, nil)
			}()
		}
		wg.Wait()
		seen := map[string]bool{}
		for _, r := range results {
			require.Equal(t, http.StatusOK, r.status, "round %d: %s", round, r)
			require.Equal(t, "success", r.str("outcome"), "round %d: %s", round, r)
			require.False(t, seen[r.str("attempt_id")], "each call gets its own attempt")
			seen[r.str("attempt_id")] = true
			require.Len(t, rc.withID(r.str("delivery_id")), 1)
		}
	}
}
