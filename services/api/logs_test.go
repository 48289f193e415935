package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery"
)

// t0 is a fixed hour, so steps and days fall the same way on every run.
var t0 = time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC)

type row struct {
	id, webhook, event, etype string
	class                     pb.OutcomeClass
	status                    int32
	at                        time.Duration // after t0
	latency                   time.Duration
	attempt                   int32
}

// logRows writes attempts straight into the test's ClickHouse database through the sink's writer.
func (s *stack) logRows(projectID string, rows ...row) {
	s.t.Helper()
	var as []*pb.Attempt
	for _, r := range rows {
		disp := pb.Disposition_DISPOSITION_DELIVERED
		if r.class != pb.OutcomeClass_OUTCOME_CLASS_SUCCESS {
			disp = pb.Disposition_DISPOSITION_RETRY
		}
		as = append(as, &pb.Attempt{AttemptId: r.id, DeliveryId: "msg_" + r.event + "_" + r.webhook, EventId: r.event,
			WebhookId: r.webhook, ProjectId: projectID, EventType: r.etype, Attempt: max(r.attempt, 1),
			Outcome:     &pb.Outcome{Class: r.class, Disposition: disp, StatusCode: r.status},
			StartedAtMs: t0.Add(r.at).UnixMilli(), LatencyUs: r.latency.Microseconds(), RequestUrl: "https://example.com/" + r.webhook,
			RequestHeaders: map[string]string{"Webhook-Id": "msg_" + r.event, "Webhook-Signature": "[redacted]"},
			RequestBody:    []byte(`{"event_id":"` + r.event + `"}`), ResponseHeaders: map[string]string{"Content-Type": "text/plain"},
			ResponseBody: []byte("answer of " + r.id), Worker: "w1"})
	}
	s.logAttempts(as...)
}

// logAttempts writes attempts as they are into the test's ClickHouse database.
func (s *stack) logAttempts(as ...*pb.Attempt) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	st, err := attemptlog.Open(ctx, s.cfg.ClickHouseAddr, s.cfg.ClickHouseDatabase)
	require.NoError(s.t, err)
	defer st.Close()
	require.NoError(s.t, st.Migrate(ctx))
	src := make([]attemptlog.Source, len(as))
	for i := range as {
		src[i] = attemptlog.Source{Partition: 0, Offset: int64(i)}
	}
	require.NoError(s.t, st.InsertAttempts(ctx, as, src))
}

// deadRows writes dead letters straight into the test's ClickHouse database.
func (s *stack) deadRows(ds ...*pb.Delivery) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	st, err := attemptlog.Open(ctx, s.cfg.ClickHouseAddr, s.cfg.ClickHouseDatabase)
	require.NoError(s.t, err)
	defer st.Close()
	require.NoError(s.t, st.Migrate(ctx))
	var raw [][]byte
	var src []attemptlog.Source
	for i, d := range ds {
		v, err := proto.Marshal(d)
		require.NoError(s.t, err)
		raw = append(raw, v)
		src = append(src, attemptlog.Source{Partition: 1, Offset: int64(i)})
	}
	require.NoError(s.t, st.InsertDeadLetters(ctx, ds, raw, src))
}

func ids(r reply) []any {
	out := []any{}
	for _, it := range r.list() {
		out = append(out, it["id"])
	}
	return out
}

func TestQueryAPIFiltersPaginatesAndAggregatesTheDeliveryLog(t *testing.T) {
	s := startStack(t, withClickHouse())
	pid, key := s.project("Acme")
	w1 := s.webhook(key, map[string]any{"url": "https://example.com/1"}).str("id")
	w2 := s.webhook(key, map[string]any{"url": "https://example.com/2"}).str("id")
	ok, retry, perm, conn := pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE,
		pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR
	s.logRows(pid,
		row{"att_1", w1, "evt_1", "survey.completed", ok, 200, time.Minute, 10 * time.Millisecond, 1},
		row{"att_2", w1, "evt_2", "nps.scored", retry, 500, 2 * time.Minute, 100 * time.Millisecond, 1},
		row{"att_3", w1, "evt_2", "nps.scored", ok, 200, 62 * time.Minute, 20 * time.Millisecond, 2},
		row{"att_4", w1, "evt_3", "nps.scored", perm, 404, 63 * time.Minute, 30 * time.Millisecond, 1},
		row{"att_5", w1, "evt_4", "survey.completed", conn, 0, 64 * time.Minute, 0, 1},
		row{"att_6", w2, "evt_2", "nps.scored", ok, 200, 3 * time.Minute, 5 * time.Millisecond, 1},
	)
	list := func(path string) []any { return ids(s.must(http.StatusOK, "GET", path, key, nil)) }
	at := func(d time.Duration) string { return url.QueryEscape(t0.Add(d).Format(time.RFC3339)) }
	wpath := "/v1/webhooks/" + w1 + "/attempts"

	require.Equal(t, []any{"att_5", "att_4", "att_3", "att_2", "att_1"}, list(wpath), "newest first")
	require.Equal(t, []any{"att_3", "att_1"}, list(wpath+"?outcome=success"))
	require.Equal(t, []any{"att_2"}, list(wpath+"?status_code=500"))
	require.Equal(t, []any{"att_4", "att_3", "att_2"}, list(wpath+"?event_type=nps.scored"))
	require.Equal(t, []any{"att_3", "att_2"}, list(wpath+"?event_id=evt_2"))
	require.Equal(t, []any{"att_5", "att_4", "att_3"}, list(wpath+"?from="+at(time.Hour)))
	require.Equal(t, []any{"att_2", "att_1"}, list(wpath+"?to="+at(time.Hour)))
	require.Equal(t, []any{"att_3"}, list(wpath+"?outcome=success&from="+at(time.Hour)+"&to="+at(2*time.Hour)))
	require.Equal(t, []any{"att_6"}, list("/v1/attempts?webhook_id="+w2))
	require.Len(t, list("/v1/attempts"), 6)

	// Cursor pagination walks every attempt once.
	var walked []any
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		r := s.must(http.StatusOK, "GET", wpath+"?limit=2&cursor="+url.QueryEscape(cursor), key, nil)
		require.LessOrEqual(t, len(r.list()), 2)
		walked = append(walked, ids(r)...)
		if cursor = r.str("next_cursor"); cursor == "" {
			break
		}
	}
	require.Equal(t, []any{"att_5", "att_4", "att_3", "att_2", "att_1"}, walked)

	// One attempt, with its full request and response.
	a := s.must(http.StatusOK, "GET", "/v1/attempts/att_2", key, nil)
	require.Equal(t, "http_retryable", a.str("outcome"))
	require.EqualValues(t, 500, a.body["status_code"])
	require.Equal(t, "https://example.com/"+w1, a.str("request_url"))
	require.Equal(t, map[string]any{"Webhook-Id": "msg_evt_2", "Webhook-Signature": "[redacted]"}, a.body["request_headers"])
	require.Equal(t, `{"event_id":"evt_2"}`, a.str("request_body"))
	require.Equal(t, map[string]any{"Content-Type": "text/plain"}, a.body["response_headers"])
	require.Equal(t, "answer of att_2", a.str("response_body"))
	require.EqualValues(t, 100, a.body["latency_ms"])
	s.must(http.StatusNotFound, "GET", "/v1/attempts/att_nope", key, nil)

	// Every attempt for one event, across webhooks.
	require.Equal(t, []any{"att_3", "att_6", "att_2"}, list("/v1/events/evt_2/attempts"))
	require.Equal(t, []any{"att_6"}, list("/v1/events/evt_2/attempts?webhook_id="+w2))
	s.must(http.StatusNotFound, "GET", "/v1/events/evt_nope/attempts", key, nil)

	// Statistics per step, every step present.
	st := s.must(http.StatusOK, "GET", "/v1/webhooks/"+w1+"/stats?from="+at(-time.Hour)+"&to="+at(3*time.Hour)+"&step=1h", key, nil)
	require.Equal(t, "1h", st.str("step"))
	buckets := st.list()
	require.Len(t, buckets, 4)
	require.EqualValues(t, 0, buckets[0]["count"])
	b1, b2 := buckets[1], buckets[2]
	require.Equal(t, t0.Format(time.RFC3339), b1["start"])
	require.EqualValues(t, 2, b1["count"])
	require.EqualValues(t, 1, b1["success"])
	require.EqualValues(t, 0.5, b1["success_rate"])
	require.EqualValues(t, 1, b1["status_2xx"])
	require.EqualValues(t, 1, b1["status_5xx"])
	require.InDelta(t, 10, b1["p50_ms"], 100)
	require.GreaterOrEqual(t, b1["p99_ms"].(float64), b1["p50_ms"].(float64))
	require.LessOrEqual(t, b1["p99_ms"].(float64), 100.0)
	require.EqualValues(t, 3, b2["count"])
	require.EqualValues(t, 1, b2["status_2xx"])
	require.EqualValues(t, 1, b2["status_4xx"])
	require.EqualValues(t, 1, b2["errors"])
	require.EqualValues(t, 0, buckets[3]["count"])
	day := s.must(http.StatusOK, "GET", "/v1/webhooks/"+w1+"/stats?from="+at(0)+"&to="+at(2*time.Hour)+"&step=1d", key, nil)
	require.Len(t, day.list(), 1)
	require.EqualValues(t, 5, day.list()[0]["count"], "a day-long step holds both hours")
	require.Equal(t, t0.Truncate(24*time.Hour).Format(time.RFC3339), day.str("from"), "from is rounded down to a step")
}

// TestWebhookStatsShowTheEndpointsConcurrencyLimit: the limit of the range's latest attempt that
// was sent, and the range's lowest (ranges of up to 7 days); an attempt the circuit breaker held
// back carries the limit of its moment but was not sent, so it counts for nothing.
func TestWebhookStatsShowTheEndpointsConcurrencyLimit(t *testing.T) {
	s := startStack(t, withClickHouse())
	pid, key := s.project("Acme")
	w1 := s.webhook(key, map[string]any{"url": "https://example.com/1"}).str("id")
	w2 := s.webhook(key, map[string]any{"url": "https://example.com/2"}).str("id")
	attempt := func(id string, at time.Duration, class pb.OutcomeClass, status int32, limit int32) *pb.Attempt {
		return &pb.Attempt{AttemptId: id, DeliveryId: "msg_" + id, EventId: "evt_" + id, WebhookId: w1, ProjectId: pid,
			EventType: "nps.scored", Attempt: 1, StartedAtMs: t0.Add(at).UnixMilli(), ConcurrencyLimit: limit,
			Outcome: &pb.Outcome{Class: class, Disposition: pb.Disposition_DISPOSITION_RETRY, StatusCode: status}}
	}
	ok, slow := pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT
	s.logAttempts(
		attempt("att_1", time.Minute, ok, 200, 20),
		attempt("att_2", 2*time.Minute, slow, 0, 6),
		attempt("att_3", 3*time.Minute, ok, 200, 9),
		attempt("att_4", 4*time.Minute, pb.OutcomeClass_OUTCOME_CLASS_CIRCUIT_OPEN, 0, 50),
		attempt("att_5", 2*time.Hour, ok, 200, 12),
	)
	at := func(d time.Duration) string { return url.QueryEscape(t0.Add(d).Format(time.RFC3339)) }
	stats := func(webhook string, from, to time.Duration) reply {
		return s.must(http.StatusOK, "GET", "/v1/webhooks/"+webhook+"/stats?from="+at(from)+"&to="+at(to), key, nil)
	}

	first := stats(w1, 0, time.Hour)
	require.EqualValues(t, 9, first.body["concurrency_limit"], "%s", first)
	require.Equal(t, t0.Add(3*time.Minute).Format(time.RFC3339), first.body["concurrency_limit_at"])
	require.EqualValues(t, 6, first.body["concurrency_limit_min"])
	both := stats(w1, 0, 3*time.Hour)
	require.EqualValues(t, 12, both.body["concurrency_limit"])
	require.EqualValues(t, 6, both.body["concurrency_limit_min"])
	long := stats(w1, -8*24*time.Hour, 3*time.Hour)
	require.EqualValues(t, 12, long.body["concurrency_limit"])
	require.NotContains(t, long.body, "concurrency_limit_min", "over 7 days the minimum would read every attempt")
	for _, r := range []reply{stats(w1, -2*time.Hour, -time.Hour), stats(w2, 0, 3*time.Hour)} {
		require.NotContains(t, r.body, "concurrency_limit", "no attempt sent in the range: %s", r)
		require.NotContains(t, r.body, "concurrency_limit_min")
	}
}

// TestDeliveredAttemptsCarryTheConcurrencyLimitIntoTheStats: a real delivery through the delivery
// service and the sink; with the adaptive limit off, every attempt records the fixed cap.
func TestDeliveredAttemptsCarryTheConcurrencyLimitIntoTheStats(t *testing.T) {
	s := startStack(t, withSink(), withDeliveryConfig(func(c *delivery.Config) {
		c.AdaptiveConcurrency, c.PerEndpointConcurrency = false, 7
	}))
	rc := newReceiver(t, http.StatusOK)
	pid, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": rc.URL}).str("id")
	s.produceDelivery(&pb.Delivery{DeliveryId: "msg_1", EventId: "evt_1", WebhookId: wh, ProjectId: pid, EventType: "nps.scored",
		Body: []byte(`{"event_id":"evt_1"}`), Attempt: 1, CreatedAtMs: time.Now().UnixMilli()})
	var r reply
	require.Eventually(t, func() bool {
		r = s.do("GET", "/v1/webhooks/"+wh+"/stats", key, nil)
		return r.status == http.StatusOK && r.body["concurrency_limit"] != nil
	}, 20*time.Second, 100*time.Millisecond, "the attempt did not reach the stats")
	require.EqualValues(t, 7, r.body["concurrency_limit"], "%s", r)
	require.EqualValues(t, 7, r.body["concurrency_limit_min"])
	require.Len(t, rc.withID("msg_1"), 1)
}

// TestPortalShowsTheEndpointsConcurrencyLimit: the portal's webhook list and page show the limit
// of the last 24 hours' latest sent attempt, and the page the lowest.
func TestPortalShowsTheEndpointsConcurrencyLimit(t *testing.T) {
	s := startStack(t, withClickHouse())
	pid, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"name": "CRM sync", "url": "https://example.com/a"}).str("id")
	now := time.Now()
	for i, limit := range []int32{11, 4, 9} {
		s.logAttempts(&pb.Attempt{AttemptId: fmt.Sprintf("att_%d", i), DeliveryId: "msg_1", EventId: "evt_1", WebhookId: wh,
			ProjectId: pid, EventType: "nps.scored", Attempt: int32(i + 1), ConcurrencyLimit: limit,
			StartedAtMs: now.Add(time.Duration(i-10) * time.Minute).UnixMilli(),
			Outcome:     &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, Disposition: pb.Disposition_DISPOSITION_RETRY, StatusCode: 503}})
	}
	get, landing := s.inPortal(pid)
	require.Contains(t, landing, `<dd class="concurrency-limit">9</dd>`)
	require.Contains(t, get("/portal/webhooks/"+wh), `<dd id="concurrency-limit">9 requests at once (lowest in 24 h: 4)</dd>`)
}

func TestBadQueryParametersAreRefusedNamingTheParameter(t *testing.T) {
	s := startStack(t, withClickHouse())
	_, key := s.project("Acme")
	w := s.webhook(key, map[string]any{"url": "https://example.com/1"}).str("id")
	cases := []struct{ path, param string }{
		{"/v1/attempts?limit=0", "limit"},
		{"/v1/attempts?limit=501", "limit"},
		{"/v1/attempts?limit=ten", "limit"},
		{"/v1/attempts?status_code=700", "status_code"},
		{"/v1/attempts?outcome=great", "outcome"},
		{"/v1/attempts?event_type=nps.maybe", "event_type"},
		{"/v1/attempts?from=yesterday", "from"},
		{"/v1/attempts?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"},
		{"/v1/attempts?cursor=not-a-cursor!", "cursor"},
		{"/v1/attempts?outcom=success", "outcom"},
		{"/v1/attempts?outcome=success&outcome=timeout", "outcome"},
		{"/v1/webhooks/" + w + "/attempts?webhook_id=" + w, "webhook_id"},
		{"/v1/events/evt_1/attempts?event_type=nps.scored", "event_type"},
		{"/v1/attempts/att_1?verbose=1", "verbose"},
		{"/v1/webhooks/" + w + "/stats?step=90m", "step"},
		{"/v1/webhooks/" + w + "/stats?step=1x", "step"},
		{"/v1/webhooks/" + w + "/stats?step=1h&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "step"},
		{"/v1/webhooks/" + w + "/stats?limit=5", "limit"},
		{"/v1/dead-letters?include_replayed=maybe", "include_replayed"},
		{"/v1/dead-letters?status_code=99", "status_code"},
	}
	for _, c := range cases {
		r := s.must(http.StatusBadRequest, "GET", c.path, key, nil)
		require.Equal(t, "invalid_parameter", r.errCode(), c.path)
		require.Equal(t, c.param, r.errField(), "%s → %s", c.path, r)
	}
	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{"limit": 100000}, "limit"},
		{map[string]any{"outcome": "great"}, "outcome"},
		{map[string]any{"from": "soon"}, "from"},
		{map[string]any{"webhook": "x"}, "webhook"},
	} {
		r := s.must(http.StatusBadRequest, "POST", "/v1/dead-letters/replay", key, c.body)
		require.Equal(t, c.field, r.errField(), "%v → %s", c.body, r)
	}
}

func TestDeadLettersAreListedWithFilters(t *testing.T) {
	s := startStack(t, withClickHouse())
	pid, key := s.project("Acme")
	w1 := s.webhook(key, map[string]any{"url": "https://example.com/1"}).str("id")
	w2 := s.webhook(key, map[string]any{"url": "https://example.com/2"}).str("id")
	dead := func(id, wh, etype string, class pb.OutcomeClass, status int32, at time.Duration) *pb.Delivery {
		return &pb.Delivery{DeliveryId: id, EventId: "evt_" + id, WebhookId: wh, ProjectId: pid, EventType: etype,
			Body: []byte(`{}`), Attempt: 6, LastOutcome: &pb.Outcome{Class: class, Disposition: pb.Disposition_DISPOSITION_DEAD,
				StatusCode: status, Error: "failed", AtMs: t0.Add(at).UnixMilli()}}
	}
	s.deadRows(
		dead("msg_a", w1, "nps.scored", pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, 503, time.Minute),
		dead("msg_b", w1, "survey.completed", pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, 404, 2*time.Minute),
		dead("msg_c", w2, "nps.scored", pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, 0, 3*time.Minute),
	)
	list := func(q string) []any { return ids(s.must(http.StatusOK, "GET", "/v1/dead-letters"+q, key, nil)) }
	require.Equal(t, []any{"msg_c.6", "msg_b.6", "msg_a.6"}, list(""))
	require.Equal(t, []any{"msg_b.6", "msg_a.6"}, list("?webhook_id="+w1))
	require.Equal(t, []any{"msg_c.6", "msg_a.6"}, list("?event_type=nps.scored"))
	require.Equal(t, []any{"msg_b.6"}, list("?outcome=http_permanent"))
	require.Equal(t, []any{"msg_a.6"}, list("?status_code=503"))
	require.Equal(t, []any{"msg_b.6"}, list("?event_id=evt_msg_b"))
	require.Equal(t, []any{"msg_c.6", "msg_b.6"}, list("?from="+url.QueryEscape(t0.Add(90*time.Second).Format(time.RFC3339))))
	first := s.must(http.StatusOK, "GET", "/v1/dead-letters?limit=2", key, nil)
	require.Len(t, first.list(), 2)
	rest := s.must(http.StatusOK, "GET", "/v1/dead-letters?limit=2&cursor="+url.QueryEscape(first.str("next_cursor")), key, nil)
	require.Equal(t, []any{"msg_a.6"}, ids(rest))
	one := s.must(http.StatusOK, "GET", "/v1/dead-letters?event_id=evt_msg_a", key, nil).list()[0]
	require.Equal(t, "http_retryable", one["outcome"])
	require.EqualValues(t, 6, one["attempts"])
	require.Equal(t, false, one["replayed"])
	require.Equal(t, t0.Add(time.Minute).Format(time.RFC3339), one["dead_at"])
}
