package api_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
	"github.com/surveyhooks/surveyhooks/pkg/signature"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api"
)

// waitAttempts waits until the log holds n attempts of webhook id.
func (s *stack) waitAttempts(key, id string, n int) []map[string]any {
	s.t.Helper()
	var r reply
	require.Eventually(s.t, func() bool {
		r = s.do("GET", "/v1/webhooks/"+id+"/attempts", key, nil)
		return r.status == http.StatusOK && len(r.list()) == n
	}, 20*time.Second, 100*time.Millisecond, "waiting for %d attempts: %s", n, r)
	return r.list()
}

// waitReplay waits until replay job id has finished, and returns it.
func (s *stack) waitReplay(key, id string) reply {
	s.t.Helper()
	var r reply
	require.Eventually(s.t, func() bool {
		r = s.do("GET", "/v1/replays/"+id, key, nil)
		return r.status == http.StatusOK && r.str("status") != "running"
	}, 20*time.Second, 50*time.Millisecond, "waiting for replay %s: %s", id, r)
	return r
}

// Issue 16, point 3: recover failed deliveries of a time range, as a job with progress and counts,
// into the same webhook (same webhook-id) or another of the project; receivers see a replay header.
func TestReplayJobRecoversFailedDeliveriesOfATimeRange(t *testing.T) {
	s := startStack(t, withDelivery(), withSink())
	rc := newReceiver(t, http.StatusOK)
	pid, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": rc.URL}).str("id")
	since := time.Now().Add(-time.Second).UTC()

	ok := s.deliver(pid, wh, "msg_ok")
	require.Eventually(t, func() bool { return len(rc.withID("msg_ok")) == 1 }, 10*time.Second, 20*time.Millisecond)
	rc.status.Store(http.StatusBadRequest) // permanent: dead after one attempt
	f1, f2 := s.deliver(pid, wh, "msg_f1"), s.deliver(pid, wh, "msg_f2")
	s.waitAttempts(key, wh, 3)
	rc.status.Store(http.StatusOK)

	body := map[string]any{"since": since.Format(time.RFC3339Nano), "outcome": "failed"}
	idem := map[string]string{"Idempotency-Key": "recover-1"}
	first := s.doH("POST", "/v1/webhooks/"+wh+"/replays", key, idem, body)
	require.Equal(t, http.StatusAccepted, first.status, "%s", first)
	job := first.str("id")
	require.Regexp(t, `^rp_`, job)
	require.Equal(t, "/v1/replays/"+job, first.header.Get("Location"))
	require.Equal(t, wh, first.str("target_webhook_id"))
	again := s.doH("POST", "/v1/webhooks/"+wh+"/replays", key, idem, body)
	require.Equal(t, http.StatusAccepted, again.status)
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	require.Equal(t, job, again.str("id"), "the same key answers the same job")

	done := s.waitReplay(key, job)
	require.Equal(t, "done", done.str("status"), "%s", done)
	require.EqualValues(t, 2, done.body["matched"])
	require.EqualValues(t, 2, done.body["replayed"])
	require.EqualValues(t, 0, done.body["skipped"])
	require.NotEmpty(t, done.str("finished_at"))
	for _, d := range []struct {
		id   string
		body []byte
	}{{"msg_f1", f1.Body}, {"msg_f2", f2.Body}} {
		require.Eventually(t, func() bool { return len(rc.withID(d.id)) == 2 }, 10*time.Second, 20*time.Millisecond,
			"%s is sent once more, with its original webhook-id", d.id)
		orig, replay := rc.withID(d.id)[0], rc.withID(d.id)[1]
		require.Empty(t, orig.header.Get(api.ReplayHeader), "the original is not marked")
		require.Equal(t, job, replay.header.Get(api.ReplayHeader), "the receiver can tell the replay")
		require.Equal(t, d.body, replay.body, "the same body, byte for byte")
	}
	time.Sleep(300 * time.Millisecond)
	require.Len(t, rc.withID("msg_ok"), 1, "a delivered one is not part of outcome=failed")
	require.Len(t, rc.withID("msg_f1"), 2, "submitting twice with one Idempotency-Key replays once")

	// Recovered: once the replays' attempts are logged, nothing of the range is failed any more.
	s.waitAttempts(key, wh, 5)
	r := s.must(http.StatusAccepted, "POST", "/v1/webhooks/"+wh+"/replays", key, body)
	require.NotEqual(t, job, r.str("id"), "without a key, a new job")
	require.EqualValues(t, 0, s.waitReplay(key, r.str("id")).body["matched"])

	// Everything, into another webhook of the project: new, stable ids; the header names the job.
	rc2 := newReceiver(t, http.StatusOK)
	wh2 := s.webhook(key, map[string]any{"url": rc2.URL}).str("id")
	r = s.must(http.StatusAccepted, "POST", "/v1/webhooks/"+wh+"/replays", key, map[string]any{
		"since": since.Format(time.RFC3339Nano), "until": time.Now().Add(time.Hour).Format(time.RFC3339), "outcome": "all",
		"event_types": []string{"nps.scored"}, "status_class": "2xx", "target_webhook_id": wh2})
	into := r.str("id")
	done = s.waitReplay(key, into)
	require.Equal(t, "done", done.str("status"), "%s", done)
	require.EqualValues(t, 3, done.body["replayed"], "%s", done)
	require.Eventually(t, func() bool { return len(rc2.requests()) == 3 }, 10*time.Second, 20*time.Millisecond)
	seen := map[string]bool{}
	for _, got := range rc2.requests() {
		require.Equal(t, into, got.header.Get(api.ReplayHeader))
		id := got.header.Get(signature.HeaderID)
		require.Regexp(t, `^msg_`, id)
		require.NotContains(t, []string{ok.DeliveryId, f1.DeliveryId, f2.DeliveryId}, id, "a new delivery id in another webhook")
		seen[id] = true
	}
	require.Len(t, seen, 3)

	list := s.must(http.StatusOK, "GET", "/v1/replays?limit=10", key, nil).list()
	require.Len(t, list, 3)
	require.Equal(t, into, list[0]["id"], "newest first")

	// Another project's webhook is no target, and another project sees none of these jobs.
	_, keyB := s.project("B")
	whB := s.webhook(keyB, map[string]any{"url": rc2.URL}).str("id")
	r = s.must(http.StatusBadRequest, "POST", "/v1/webhooks/"+wh+"/replays", key, map[string]any{"since": since.Format(time.RFC3339), "target_webhook_id": whB})
	require.Equal(t, "target_webhook_id", r.errField())
	s.must(http.StatusNotFound, "GET", "/v1/replays/"+job, keyB, nil)
	s.must(http.StatusNotFound, "POST", "/v1/webhooks/"+wh+"/replays", keyB, map[string]any{"since": since.Format(time.RFC3339)})
}

// A replay sends the bodies the source webhook received, so another webhook is a target only if it
// renders and masks bodies the same way: else a target that hashes an e-mail would receive it in clear.
func TestReplayIntoAWebhookThatShapesBodiesOtherwiseIsRefused(t *testing.T) {
	s := startStack(t, withClickHouse())
	_, key := s.project("Acme")
	hash := []map[string]any{{"path": "payload.user.email", "action": "hash"}}
	src := s.webhook(key, map[string]any{"url": "https://example.com/a"}).str("id")
	masked := s.webhook(key, map[string]any{"url": "https://example.com/b", "masking": hash}).str("id")
	screeb := s.webhook(key, map[string]any{"url": "https://example.com/c", "format": "screeb",
		"events": []string{"survey.completed"}}).str("id")
	same := s.webhook(key, map[string]any{"url": "https://example.com/d"}).str("id")
	hourAgo := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	into := func(target string) map[string]any {
		return map[string]any{"since": hourAgo, "target_webhook_id": target}
	}

	r := s.must(http.StatusUnprocessableEntity, "POST", "/v1/webhooks/"+src+"/replays", key, into(masked))
	require.Equal(t, "target_webhook_id", r.errField(), "%s", r)
	require.Equal(t, "target_renders_differently", r.errCode())
	require.Contains(t, string(r.raw), "(masking)", "%s", r)
	r = s.must(http.StatusUnprocessableEntity, "POST", "/v1/webhooks/"+masked+"/replays", key, into(src))
	require.Contains(t, string(r.raw), "(masking)", "either way round: %s", r)
	r = s.must(http.StatusUnprocessableEntity, "POST", "/v1/webhooks/"+src+"/replays", key, into(screeb))
	require.Equal(t, "target_webhook_id", r.errField(), "%s", r)
	require.Contains(t, string(r.raw), "(format)", "%s", r)

	r = s.must(http.StatusAccepted, "POST", "/v1/webhooks/"+src+"/replays", key, into(same))
	require.Equal(t, same, r.str("target_webhook_id"))
	s.must(http.StatusAccepted, "POST", "/v1/webhooks/"+masked+"/replays", key, map[string]any{"since": hourAgo})
}

func TestReplayRequestsNameTheFieldThatIsWrong(t *testing.T) {
	s := startStack(t, withClickHouse())
	_, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": "https://example.com/h"}).str("id")
	off := s.webhook(key, map[string]any{"url": "https://example.com/off", "enabled": false}).str("id")
	now := time.Now().UTC()
	hourAgo := now.Add(-time.Hour).Format(time.RFC3339)
	for _, c := range []struct {
		name   string
		body   map[string]any
		status int
		field  string
	}{
		{"no since", map[string]any{"outcome": "failed"}, 400, "since"},
		{"since not RFC 3339", map[string]any{"since": "yesterday"}, 400, "since"},
		{"since before retention", map[string]any{"since": now.AddDate(0, 0, -31).Format(time.RFC3339)}, 400, "since"},
		{"since in the future", map[string]any{"since": now.Add(time.Hour).Format(time.RFC3339)}, 400, "since"},
		{"until not RFC 3339", map[string]any{"since": hourAgo, "until": "now"}, 400, "until"},
		{"until before since", map[string]any{"since": hourAgo, "until": now.Add(-2 * time.Hour).Format(time.RFC3339)}, 400, "until"},
		{"until equal to since", map[string]any{"since": hourAgo, "until": hourAgo}, 400, "until"},
		{"outcome", map[string]any{"since": hourAgo, "outcome": "lost"}, 400, "outcome"},
		{"status class", map[string]any{"since": hourAgo, "status_class": "6xx"}, 400, "status_class"},
		{"event type", map[string]any{"since": hourAgo, "event_types": []string{"nps.scored", "nps.bogus"}}, 400, "event_types[1]"},
		{"unknown field", map[string]any{"since": hourAgo, "webhook": wh}, 400, "webhook"},
		{"target in no project", map[string]any{"since": hourAgo, "target_webhook_id": "wh_nope"}, 400, "target_webhook_id"},
		{"disabled target", map[string]any{"since": hourAgo, "target_webhook_id": off}, 409, "target_webhook_id"},
	} {
		r := s.do("POST", "/v1/webhooks/"+wh+"/replays", key, c.body)
		require.Equal(t, c.status, r.status, "%s: %s", c.name, r)
		require.Equal(t, c.field, r.errField(), "%s: %s", c.name, r)
	}
	r := s.must(http.StatusBadRequest, "GET", "/v1/replays?limit=0", key, nil)
	require.Equal(t, "limit", r.errField())
	s.must(http.StatusNotFound, "GET", "/v1/replays/rp_nope", key, nil)
	s.must(http.StatusNotFound, "POST", "/v1/webhooks/wh_nope/replays", key, map[string]any{"since": hourAgo})
}

// A job left running by an API process that stopped is taken over by the next one to start, from
// its last saved page: never "running" for ever, and what was already sent is not sent again.
func TestReplayJobOfAStoppedProcessIsResumedByTheNext(t *testing.T) {
	s := startStack(t, withDelivery(), withSink())
	rc := newReceiver(t, http.StatusInternalServerError)
	pid, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": rc.URL}).str("id")
	since := time.Now().Add(-time.Second).UTC().Truncate(time.Millisecond)
	for _, id := range []string{"msg_a", "msg_b", "msg_c"} {
		s.deliver(pid, wh, id)
	}
	s.waitAttempts(key, wh, 9) // 500: three attempts each (retries after 200 ms and 400 ms), then dead
	rc.status.Store(http.StatusOK)

	// A process claimed the job, sent msg_a and stopped (its heartbeat is old).
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	st, err := attemptlog.Open(ctx, s.cfg.ClickHouseAddr, s.cfg.ClickHouseDatabase)
	require.NoError(t, err)
	defer st.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	require.NoError(t, st.SaveReplay(ctx, attemptlog.ReplayJob{ID: "rp_orphan", ProjectID: pid, WebhookID: wh, TargetWebhookID: wh,
		Since: since, Until: now, Outcome: "dead", EventTypes: []string{}, Status: "running", Cursor: "msg_a", Matched: 1, Replayed: 1,
		RequestedAt: now.Add(-10 * time.Minute), Owner: "api-gone", Heartbeat: now.Add(-10 * time.Minute)}))

	s2 := s.second()
	done := s2.waitReplay(key, "rp_orphan")
	require.Equal(t, "done", done.str("status"), "%s", done)
	require.EqualValues(t, 3, done.body["matched"])
	require.EqualValues(t, 3, done.body["replayed"])
	require.Eventually(t, func() bool { return len(rc.withID("msg_b")) == 4 && len(rc.withID("msg_c")) == 4 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, rc.withID("msg_a"), 3, "msg_a, before the saved cursor, is not sent again")
	require.Equal(t, "rp_orphan", rc.withID("msg_b")[3].header.Get(api.ReplayHeader))
}

// A project whose storage rule hashes e-mails keeps only the hash in clear in the log; a replay job
// sends the body the webhook was entitled to, unmasked, from the copy the sink sealed.
func TestReplayJobSendsTheUnmaskedBodyOfAStorageMaskedProject(t *testing.T) {
	s := startStack(t, withDelivery(), withSink())
	rc := newReceiver(t, http.StatusBadRequest)
	r := s.must(http.StatusCreated, "POST", "/v1/projects", adminToken, map[string]any{"name": "Acme",
		"storage_masking": []map[string]any{{"path": "payload.user.email", "action": "hash"}}})
	pid, key := r.str("id"), r.str("api_key")
	wh := s.webhook(key, map[string]any{"url": rc.URL}).str("id")
	since := time.Now().Add(-time.Second).UTC()
	const email = "ada@example.com"
	d := s.deliver(pid, wh, "msg_masked")
	d.Body = []byte(`{"event_id":"evt_2","event_type":"nps.scored","payload":{"user":{"id":"u1","email":"` + email + `"}}}`)
	d.DeliveryId = "msg_masked_2"
	s.produceDelivery(d)
	attempts := s.waitAttempts(key, wh, 2)
	for _, a := range attempts {
		got := s.must(http.StatusOK, "GET", "/v1/attempts/"+a["id"].(string), key, nil)
		require.NotContains(t, string(got.raw), email, "the log shows no clear e-mail")
	}
	rc.status.Store(http.StatusOK)
	job := s.must(http.StatusAccepted, "POST", "/v1/webhooks/"+wh+"/replays", key, map[string]any{"since": since.Format(time.RFC3339Nano)}).str("id")
	done := s.waitReplay(key, job)
	require.EqualValues(t, 2, done.body["replayed"], "%s", done)
	require.Eventually(t, func() bool { return len(rc.withID("msg_masked_2")) == 2 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, d.Body, rc.withID("msg_masked_2")[1].body, "the unmasked body, byte for byte")
}

// The API reads the sink's retention variables (one setting for both) to bound a replay job's
// since; a bad value stops it at start, naming the variable.
func TestAPIRetentionSettingsNameTheirVariable(t *testing.T) {
	t.Setenv("SURVEYHOOKS_ADMIN_TOKEN", adminToken)
	t.Setenv("SURVEYHOOKS_ENCRYPTION_KEY", base64.StdEncoding.EncodeToString(make([]byte, 32)))
	for _, c := range []struct {
		env  map[string]string
		want string // the variable the error names; "" when valid
	}{
		{map[string]string{}, ""},
		{map[string]string{"SINK_PROJECT_RETENTION": "prj_a=7,prj_b=90"}, ""},
		{map[string]string{"SINK_PROJECT_RETENTION": "prj_a=91"}, "SINK_PROJECT_RETENTION"},
		{map[string]string{"SINK_RETENTION_DAYS": "0"}, "SINK_RETENTION_DAYS"},
		{map[string]string{"SINK_RETENTION_DAYS": "120"}, "SINK_RETENTION_DAYS"},
		{map[string]string{"SINK_MAX_RETENTION_DAYS": "4000"}, "SINK_MAX_RETENTION_DAYS"},
	} {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		var cfg api.Config
		err := config.Load(&cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if c.want == "" {
			require.NoError(t, err, c.env)
		} else {
			require.ErrorContains(t, err, c.want, c.env)
		}
		for k := range c.env {
			t.Setenv(k, "")
		}
	}
}

// Deliveries not sent while the webhook was disabled (disposition skipped, body kept) are sent by
// a job with outcome=skipped once it is enabled again; the failed ones of the range are not.
func TestReplayJobSendsWhatWasSkippedWhileTheWebhookWasDisabled(t *testing.T) {
	s := startStack(t, withDelivery(), withSink())
	rc := newReceiver(t, http.StatusOK)
	pid, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": rc.URL}).str("id")
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	st, err := attemptlog.Open(ctx, s.cfg.ClickHouseAddr, s.cfg.ClickHouseDatabase)
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Migrate(ctx))
	at := time.Now().Add(-10 * time.Minute)
	mk := func(id string, disp pb.Disposition, class pb.OutcomeClass, status int32) *pb.Attempt {
		return &pb.Attempt{AttemptId: "att_" + id, DeliveryId: id, EventId: "evt_" + id, WebhookId: wh, ProjectId: pid,
			EventType: "survey.completed", Attempt: 1, StartedAtMs: at.UnixMilli(), RequestBody: []byte(`{"event_id":"evt_` + id + `"}`),
			Outcome: &pb.Outcome{Class: class, Disposition: disp, StatusCode: status}}
	}
	rows := []*pb.Attempt{
		mk("msg_s1", pb.Disposition_DISPOSITION_SKIPPED, pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, 0),
		mk("msg_s2", pb.Disposition_DISPOSITION_SKIPPED, pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, 0),
		mk("msg_dead", pb.Disposition_DISPOSITION_DEAD, pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, 404),
	}
	require.NoError(t, st.InsertAttempts(ctx, rows, make([]attemptlog.Source, len(rows))))

	job := s.must(http.StatusAccepted, "POST", "/v1/webhooks/"+wh+"/replays", key, map[string]any{
		"since": at.Add(-time.Minute).Format(time.RFC3339), "outcome": "skipped", "status_class": "none"}).str("id")
	done := s.waitReplay(key, job)
	require.EqualValues(t, 2, done.body["matched"], "%s", done)
	require.EqualValues(t, 2, done.body["replayed"])
	require.Eventually(t, func() bool { return len(rc.requests()) == 2 }, 10*time.Second, 20*time.Millisecond)
	for _, id := range []string{"msg_s1", "msg_s2"} {
		got := rc.withID(id)
		require.Len(t, got, 1, id)
		require.Equal(t, `{"event_id":"evt_`+id+`"}`, string(got[0].body))
		require.Equal(t, job, got[0].header.Get(api.ReplayHeader))
	}
	require.Empty(t, rc.withID("msg_dead"))
}

// An API process that stops mid-job hands the job back (still running, no heartbeat, its cursor
// saved) and the next process to start finishes it: every delivery of the range is queued, none
// lost, at most the interrupted page twice.
func TestReplayJobOfAProcessThatStopsIsHandedBackAndFinishedByAnother(t *testing.T) {
	s := startStack(t, withClickHouse())
	pid, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": "https://example.com/h"}).str("id")
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	st, err := attemptlog.Open(ctx, s.cfg.ClickHouseAddr, s.cfg.ClickHouseDatabase)
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Migrate(ctx))
	const n = 2000
	at := time.Now().Add(-30 * time.Minute)
	rows := make([]*pb.Attempt, n)
	for i := range rows {
		id := fmt.Sprintf("msg_%05d", i)
		rows[i] = &pb.Attempt{AttemptId: "att_" + id, DeliveryId: id, EventId: "evt_" + id, WebhookId: wh, ProjectId: pid,
			EventType: "nps.scored", Attempt: 6, StartedAtMs: at.Add(time.Duration(i) * time.Millisecond).UnixMilli(),
			RequestBody: []byte(`{"n":` + fmt.Sprint(i) + `}`), Outcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT,
				Disposition: pb.Disposition_DISPOSITION_DEAD}}
	}
	require.NoError(t, st.InsertAttempts(ctx, rows, make([]attemptlog.Source, n)))

	// A process of its own, stopped as soon as it accepted the job.
	cfg := s.cfg
	cfg.Addr = proctest.Addr(t)
	pctx, stop := context.WithCancel(s.ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- api.Run(pctx, cfg, quiet) }()
	other := *s
	other.base = "http://" + cfg.Addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(other.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond)
	job := other.must(http.StatusAccepted, "POST", "/v1/webhooks/"+wh+"/replays", key, map[string]any{
		"since": at.Add(-time.Minute).Format(time.RFC3339), "outcome": "dead"}).str("id")
	stop()
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the API did not stop")
	}
	left, err := st.GetReplay(ctx, pid, job)
	require.NoError(t, err)
	require.Equal(t, "running", left.Status, "stopped mid-job (if this fails, the job was too fast: raise n)")
	require.Empty(t, left.Owner, "handed back")
	require.Less(t, left.Replayed, uint64(n))
	t.Logf("the first process replayed %d of %d before it stopped", left.Replayed, n)

	s2 := s.second()
	done := s2.waitReplay(key, job)
	require.Equal(t, "done", done.str("status"), "%s", done)
	require.EqualValues(t, n, done.body["matched"])
	require.EqualValues(t, n, done.body["replayed"])
	seen := map[string]int{}
	recs := s.records(s.cfg.Kafka.Topics.Deliveries, func(rs []*kgo.Record) bool { return len(rs) >= n })
	for _, r := range recs {
		if d := decode(t, r.Value, &pb.Delivery{}); d.ReplayJobId == job {
			seen[d.DeliveryId]++
		}
	}
	require.Len(t, seen, n, "every delivery of the range is queued")
	require.LessOrEqual(t, len(recs), n+200, "at most the interrupted page twice")
}
