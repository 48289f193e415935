package api_test

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestStorageMaskingRulesAreValidatedShownAndReplaced(t *testing.T) {
	s := startStack(t)
	require.Equal(t, "storage_masking[0].action", s.must(http.StatusBadRequest, "POST", "/v1/projects", adminToken,
		map[string]any{"name": "Acme", "storage_masking": []map[string]any{{"path": "payload.user.email", "action": "blur"}}}).errField())
	r := s.must(http.StatusCreated, "POST", "/v1/projects", adminToken, map[string]any{"name": "Acme",
		"storage_masking": []map[string]any{{"path": "payload.user.email", "action": "hash"}}})
	id, key := r.str("id"), r.str("api_key")
	want := []any{map[string]any{"path": "payload.user.email", "action": "hash"}}
	require.Equal(t, want, r.body["storage_masking"])
	require.Equal(t, want, s.must(http.StatusOK, "GET", "/v1/projects/"+id, adminToken, nil).body["storage_masking"])

	path := "/v1/projects/" + id + "/storage-masking"
	require.Equal(t, "storage_masking[1].path", s.must(http.StatusBadRequest, "PUT", path, adminToken,
		map[string]any{"storage_masking": []map[string]any{{"path": "a", "action": "drop"}, {"path": "a.[*]", "action": "drop"}}}).errField())
	require.Equal(t, "storage_masking", s.must(http.StatusBadRequest, "PUT", path, adminToken, map[string]any{}).errField())
	s.must(http.StatusUnauthorized, "PUT", path, key, map[string]any{"storage_masking": []any{}})
	s.must(http.StatusNotFound, "PUT", "/v1/projects/prj_nope/storage-masking", adminToken, map[string]any{"storage_masking": []any{}})
	r = s.must(http.StatusOK, "PUT", path, adminToken, map[string]any{"storage_masking": []map[string]any{
		{"path": "payload.user.email", "action": "mask", "keep": 2}, {"path": "payload.answers[*].value", "action": "drop"}}})
	require.Len(t, r.body["storage_masking"], 2)
	r = s.must(http.StatusOK, "PUT", path, adminToken, map[string]any{"storage_masking": []any{}})
	require.Equal(t, []any{}, r.body["storage_masking"])
}

// The "done when": the attempt log holds no clear e-mail for a project whose storage rule
// says so, while the receiver got it in clear; a replay of the dead letter sends it in clear again.
func TestStorageRuleKeepsTheEmailOutOfTheAttemptLogButNotFromTheReceiver(t *testing.T) {
	s := startStack(t, withDelivery(), withSink())
	rc := newReceiver(t, http.StatusBadRequest) // permanent: dead after one attempt
	r := s.must(http.StatusCreated, "POST", "/v1/projects", adminToken, map[string]any{"name": "Acme",
		"storage_masking": []map[string]any{{"path": "payload.user.email", "action": "hash"}}})
	pid, key := r.str("id"), r.str("api_key")
	wh := s.webhook(key, map[string]any{"url": rc.URL}).str("id")
	// A project without rules stores bodies as sent.
	r = s.must(http.StatusCreated, "POST", "/v1/projects", adminToken, map[string]any{"name": "Other"})
	otherPID, otherKey := r.str("id"), r.str("api_key")
	otherWH := s.webhook(otherKey, map[string]any{"url": rc.URL}).str("id")

	const email = "ada@example.com"
	body := []byte(`{"event_id":"evt_1","event_type":"nps.scored","payload":{"user":{"id":"u1","email":"` + email + `"}}}`)
	for _, d := range []*pb.Delivery{
		{DeliveryId: "msg_masked", EventId: "evt_1", WebhookId: wh, ProjectId: pid, EventType: "nps.scored", Body: body, Attempt: 1, CreatedAtMs: time.Now().UnixMilli()},
		{DeliveryId: "msg_clear", EventId: "evt_1", WebhookId: otherWH, ProjectId: otherPID, EventType: "nps.scored", Body: body, Attempt: 1, CreatedAtMs: time.Now().UnixMilli()},
	} {
		s.produceDelivery(d)
	}
	dl := s.deadLetters(key, "", 1)[0]
	s.deadLetters(otherKey, "", 1)
	require.Equal(t, body, rc.withID("msg_masked")[0].body, "the receiver got the e-mail in clear")

	st, err := attemptlog.Open(s.ctx, s.cfg.ClickHouseAddr, s.cfg.ClickHouseDatabase)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	stored := func(projectID, webhookID string) string {
		items, _, err := st.ListAttempts(s.ctx, attemptlog.AttemptQuery{ProjectID: projectID, WebhookID: webhookID, Limit: 10})
		require.NoError(t, err)
		require.Len(t, items, 1)
		a, err := st.GetAttempt(s.ctx, projectID, items[0].AttemptID)
		require.NoError(t, err)
		return a.RequestBody
	}
	masked := stored(pid, wh)
	require.NotContains(t, masked, email)
	require.Regexp(t, regexp.MustCompile(`"email":"[0-9a-f]{64}"`), masked)
	require.Contains(t, masked, `"id":"u1"`, "only the rule's field is masked")
	require.Contains(t, stored(otherPID, otherWH), email, "a project without rules stores the body as sent")

	_, d, err := st.GetDeadLetter(s.ctx, pid, dl["id"].(string))
	require.NoError(t, err)
	require.NotContains(t, string(d.Body), email)
	require.NotContains(t, string(d.SealedBody), email)
	require.True(t, d.StorageMasked)

	// Replay sends the unmasked body the webhook is entitled to, byte for byte.
	rc.status.Store(http.StatusOK)
	s.must(http.StatusAccepted, "POST", "/v1/dead-letters/"+dl["id"].(string)+"/replay", key, nil)
	require.Eventually(t, func() bool { return len(rc.withID("msg_masked")) == 2 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, body, rc.withID("msg_masked")[1].body)

	// Erasure by e-mail finds the rows that hold it only hashed (written in another case, too).
	require.Eventually(t, func() bool {
		items, _, err := st.ListAttempts(s.ctx, attemptlog.AttemptQuery{ProjectID: pid, WebhookID: wh, Limit: 10})
		return err == nil && len(items) == 2
	}, 10*time.Second, 50*time.Millisecond, "the replay's attempt is stored")
	er := s.must(http.StatusAccepted, "POST", "/v1/projects/"+pid+"/erasures", adminToken, map[string]any{"email": "Ada@Example.com"}).str("id")
	var job reply
	require.Eventually(t, func() bool {
		job = s.must(http.StatusOK, "GET", "/v1/projects/"+pid+"/erasures/"+er, adminToken, nil)
		return job.str("status") != "running"
	}, 60*time.Second, 100*time.Millisecond)
	require.Equal(t, "done", job.str("status"), "%s", job)
	erased := job.body["erased"].(map[string]any)
	require.EqualValues(t, 2, erased["attempts"])
	// A replayed dead letter is two row versions (ReplacingMergeTree), both removed.
	require.Positive(t, erased["dead_letters"])
}

func TestSendTestAppliesTheWebhooksMaskingRules(t *testing.T) {
	s := startStack(t, withDelivery())
	rc := newReceiver(t, http.StatusOK)
	_, key := s.project("Acme")
	id := s.webhook(key, map[string]any{"url": rc.URL, "masking": []map[string]any{
		{"path": "payload.user.email", "action": "mask", "keep": 4}, {"path": "payload.user.name", "action": "drop"}}}).str("id")
	r := s.must(http.StatusOK, "POST", "/v1/webhooks/"+id+"/test", key, nil)
	require.Equal(t, "success", r.str("outcome"), "%s", r)
	got := rc.withID(r.str("delivery_id"))
	require.Len(t, got, 1)
	require.Contains(t, string(got[0].body), `"email":"test***"`)
	require.NotContains(t, string(got[0].body), "test@example.com")
	require.NotContains(t, string(got[0].body), "Test User")
}

func TestPortalShowsAWebhooksMaskingRules(t *testing.T) {
	s := startStack(t)
	pa, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": "https://example.com/a", "masking": []map[string]any{
		{"path": "payload.user.email", "action": "mask", "keep": 3}, {"path": "payload.answers[*].value", "action": "hash"}}}).str("id")
	get, _ := s.inPortal(pa)
	page := get("/portal/webhooks/" + wh)
	require.Contains(t, page, "<code>payload.user.email</code>: mask, keep 3")
	require.Contains(t, page, "<code>payload.answers[*].value</code>: hash")
}
