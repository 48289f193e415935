package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/apitest"
	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
	"github.com/surveyhooks/surveyhooks/services/api"
	"github.com/surveyhooks/surveyhooks/services/fanout"
	"github.com/surveyhooks/surveyhooks/services/ingest"
)

// startIngest runs an ingest process (that knows the admin token) on the stack's cluster, and
// fan-out when asked; it returns ingest's base URL.
func startIngest(t *testing.T, s *stack, withFanout bool) string {
	t.Helper()
	var icfg ingest.Config
	require.NoError(t, config.Defaults(&icfg))
	icfg.Kafka, icfg.Addr, icfg.AdminToken = s.cfg.Kafka, proctest.Addr(t), adminToken
	s.run("ingest", func(ctx context.Context) error { return ingest.Run(ctx, icfg, quiet) })
	if withFanout {
		var fcfg fanout.Config
		require.NoError(t, config.Defaults(&fcfg))
		fcfg.Kafka = s.cfg.Kafka
		s.run("fanout", func(ctx context.Context) error { return fanout.Run(ctx, fcfg, quiet) })
	}
	base := "http://" + icfg.Addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "ingest did not start listening")
	return base
}

// post sends events to ingest and returns the status and the decoded answer.
func post(t *testing.T, ingestURL, token string, body any) (int, map[string]any) {
	t.Helper()
	r, err := apitest.Do(context.Background(), nil, apitest.Request{Method: http.MethodPost, URL: ingestURL + "/v1/events", Token: token, Body: body})
	require.NoError(t, err)
	require.NotNil(t, r.Body, "ingest's answer is not a JSON object: %s", r)
	return r.Status, r.Body
}

func errField(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	f, _ := e["field"].(string)
	return f
}

// second starts another API process on the same cluster and returns a stack that talks to it.
func (s *stack) second() *stack {
	s.t.Helper()
	cfg := s.cfg
	cfg.Addr = proctest.Addr(s.t)
	s.run("api", func(ctx context.Context) error { return api.Run(ctx, cfg, quiet) })
	s2 := *s
	s2.cfg, s2.base = cfg, "http://"+cfg.Addr
	require.Eventually(s.t, func() bool {
		resp, err := http.Get(s2.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "the second API did not start listening")
	return &s2
}

func nps(project, id string) map[string]any {
	ev := map[string]any{"event_id": id, "event_type": "nps.scored", "user": map[string]any{"id": "u1"},
		"survey": map[string]any{"id": "s1"}, "nps": map[string]any{"score": 9}}
	if project != "" {
		ev["project_id"] = project
	}
	return ev
}

// Issue 16, point 4: the admin token acts for any project — it manages a project's webhooks when
// X-Surveyhooks-Project names it, and posts events naming their project_id — and each project's
// webhook receives only its own project's events.
func TestAdminTokenPostsAndManagesWebhooksForAnyProject(t *testing.T) {
	s := startStack(t, withDelivery())
	ingestURL := startIngest(t, s, true)
	pa, keyA := s.project("A")
	pb_, keyB := s.project("B")
	rcA, rcB := newReceiver(t, http.StatusOK), newReceiver(t, http.StatusOK)
	as := func(p string) map[string]string { return map[string]string{api.ProjectHeader: p} }

	wA := s.doH("POST", "/v1/webhooks", adminToken, as(pa), map[string]any{"name": "a", "url": rcA.URL, "events": []string{"*"}})
	require.Equal(t, http.StatusCreated, wA.status, "%s", wA)
	require.Equal(t, pa, wA.str("project_id"))
	wB := s.doH("POST", "/v1/webhooks", adminToken, as(pb_), map[string]any{"name": "b", "url": rcB.URL, "events": []string{"*"}})
	require.Equal(t, http.StatusCreated, wB.status, "%s", wB)
	// Each project's key sees the webhook the admin made for it, and only that one.
	require.Equal(t, []any{wA.str("id")}, ids(s.must(http.StatusOK, "GET", "/v1/webhooks", keyA, nil)))
	require.Equal(t, []any{wB.str("id")}, ids(s.must(http.StatusOK, "GET", "/v1/webhooks", keyB, nil)))
	require.Equal(t, []any{wA.str("id")}, ids(s.doH("GET", "/v1/webhooks", adminToken, as(pa), nil)))
	// The admin acting for B cannot reach A's webhook.
	require.Equal(t, http.StatusNotFound, s.doH("GET", "/v1/webhooks/"+wA.str("id"), adminToken, as(pb_), nil).status)
	r := s.doH("PATCH", "/v1/webhooks/"+wA.str("id"), adminToken, as(pa), map[string]any{"name": "renamed"})
	require.Equal(t, http.StatusOK, r.status, "%s", r)
	require.Equal(t, "renamed", r.str("name"))

	// Bad input names what is wrong.
	r = s.doH("GET", "/v1/webhooks", adminToken, nil, nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, api.ProjectHeader, r.errField())
	r = s.doH("GET", "/v1/webhooks", adminToken, as("prj_nope"), nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, api.ProjectHeader, r.errField())
	r = s.doH("GET", "/v1/webhooks", keyA, as(pb_), nil) // a project key names only its own project
	require.Equal(t, http.StatusForbidden, r.status)

	// Events: the admin token names each event's project.
	st, body := post(t, ingestURL, adminToken, map[string]any{"events": []any{nps(pa, "a-1"), nps(pb_, "b-1"), nps(pa, "a-2")}})
	require.Equal(t, http.StatusAccepted, st, "%v", body)
	st, body = post(t, ingestURL, adminToken, nps(pb_, "b-2"))
	require.Equal(t, http.StatusAccepted, st, "%v", body)
	st, body = post(t, ingestURL, adminToken, map[string]any{"events": []any{nps(pa, "a-3"), nps("", "x")}})
	require.Equal(t, http.StatusBadRequest, st)
	require.Equal(t, "events[1].project_id", errField(body))
	st, body = post(t, ingestURL, adminToken, nps("prj_nope", "x"))
	require.Equal(t, http.StatusBadRequest, st)
	require.Equal(t, "project_id", errField(body))
	// A project key still cannot post for another project.
	st, body = post(t, ingestURL, keyA, nps(pb_, "x"))
	require.Equal(t, http.StatusBadRequest, st)
	require.Equal(t, "project_id", errField(body))

	eventIDs := func(rc *receiver) []string {
		var out []string
		for _, r := range rc.requests() {
			var env map[string]any
			require.NoError(t, json.Unmarshal(r.body, &env))
			out = append(out, env["event_id"].(string))
		}
		return out
	}
	require.Eventually(t, func() bool { return len(rcA.requests()) >= 2 && len(rcB.requests()) >= 2 },
		20*time.Second, 50*time.Millisecond, "A got %v, B got %v", eventIDs(rcA), eventIDs(rcB))
	time.Sleep(300 * time.Millisecond) // anything misrouted would have arrived by now
	require.ElementsMatch(t, []string{"a-1", "a-2"}, eventIDs(rcA))
	require.ElementsMatch(t, []string{"b-1", "b-2"}, eventIDs(rcB))
}

// Issue 16, point 4: a project holds several named keys with scopes and an optional expiry,
// listed without their secret; each call needs its scope.
func TestProjectKeysHaveScopesAndExpiryAndAreListedWithoutTheirSecret(t *testing.T) {
	s := startStack(t)
	ingestURL := startIngest(t, s, false)
	pa, keyA := s.project("A")
	pb_, keyB := s.project("B")
	keys := "/v1/projects/" + pa + "/keys"
	mk := func(token string, body map[string]any) reply {
		return s.must(http.StatusCreated, "POST", keys, token, body)
	}
	reader := mk(adminToken, map[string]any{"name": "dashboards", "scopes": []string{"read"}})
	manager := mk(keyA, map[string]any{"name": "terraform", "scopes": []string{"manage", "read", "manage"}})
	ingester := mk(adminToken, map[string]any{"name": "web app", "scopes": []string{"ingest"}})
	soon := mk(adminToken, map[string]any{"name": "short-lived", "scopes": []string{"read", "ingest"},
		"expires_at": time.Now().Add(1500 * time.Millisecond).Format(time.RFC3339Nano)})
	require.Equal(t, []any{"manage", "read"}, manager.body["scopes"])
	require.NotEmpty(t, reader.str("key"))
	require.Equal(t, reader.str("key")[:10], reader.str("prefix"))

	// Listed without secrets, the project's first key included.
	list := s.must(http.StatusOK, "GET", keys, manager.str("key"), nil)
	require.NotContains(t, string(list.raw), reader.str("key"))
	require.NotContains(t, string(list.raw), keyA)
	var names []string
	for _, k := range list.list() {
		require.NotContains(t, k, "key")
		require.Equal(t, "active", k["status"])
		names = append(names, k["name"].(string))
	}
	require.Equal(t, "primary", names[0], "the project's first key is listed first")
	require.ElementsMatch(t, []string{"primary", "dashboards", "terraform", "web app", "short-lived"}, names)

	// Scopes: read → GET; manage → writes; ingest → POST /v1/events only.
	hook := map[string]any{"name": "h", "url": "https://example.com/h", "events": []string{"*"}}
	s.must(http.StatusOK, "GET", "/v1/webhooks", reader.str("key"), nil)
	require.Equal(t, "forbidden", s.must(http.StatusForbidden, "POST", "/v1/webhooks", reader.str("key"), hook).errCode())
	s.must(http.StatusCreated, "POST", "/v1/webhooks", manager.str("key"), hook)
	s.must(http.StatusForbidden, "GET", "/v1/webhooks", ingester.str("key"), nil)
	s.must(http.StatusForbidden, "POST", keys, reader.str("key"), map[string]any{"name": "x", "scopes": []string{"read"}})
	st, _ := post(t, ingestURL, ingester.str("key"), nps("", "i-1"))
	require.Equal(t, http.StatusAccepted, st)
	st, _ = post(t, ingestURL, reader.str("key"), nps("", "i-2"))
	require.Equal(t, http.StatusForbidden, st)

	// Another project's key cannot see or create A's keys.
	s.must(http.StatusNotFound, "GET", keys, keyB, nil)
	s.must(http.StatusNotFound, "POST", keys, keyB, map[string]any{"name": "x", "scopes": []string{"read"}})
	require.Len(t, s.must(http.StatusOK, "GET", "/v1/projects/"+pb_+"/keys", keyB, nil).list(), 1)

	// Bad input names the field.
	for field, body := range map[string]map[string]any{
		"name":       {"scopes": []string{"read"}},
		"scopes":     {"name": "x"},
		"scopes[1]":  {"name": "x", "scopes": []string{"read", "admin"}},
		"expires_at": {"name": "x", "scopes": []string{"read"}, "expires_at": "2001-01-01T00:00:00Z"},
	} {
		require.Equal(t, field, s.must(http.StatusBadRequest, "POST", keys, adminToken, body).errField())
	}

	// The short-lived key works until it expires, then is refused by the API and by ingest.
	s.must(http.StatusOK, "GET", "/v1/webhooks", soon.str("key"), nil)
	require.Eventually(t, func() bool {
		return s.do("GET", "/v1/webhooks", soon.str("key"), nil).status == http.StatusUnauthorized
	}, 5*time.Second, 50*time.Millisecond)
	st, _ = post(t, ingestURL, soon.str("key"), nps("", "i-3"))
	require.Equal(t, http.StatusUnauthorized, st)
	for _, k := range s.must(http.StatusOK, "GET", keys, adminToken, nil).list() {
		if k["id"] == soon.str("id") {
			require.Equal(t, "expired", k["status"])
		}
	}
}

// Issue 16, point 4: rotation with overlap — a new key works beside the old one; once the old one
// is revoked, every process refuses it: this API process at once, a second API process and
// ingest as soon as they read the `projects` record.
func TestRevokedKeyIsRefusedByEveryProcess(t *testing.T) {
	s := startStack(t)
	s2 := s.second()
	ingestURL := startIngest(t, s, false)
	pa, oldKey := s.project("A")
	keys := "/v1/projects/" + pa + "/keys"
	fresh := s.must(http.StatusCreated, "POST", keys, oldKey, map[string]any{"name": "2026-12", "scopes": []string{"ingest", "read", "manage"}})
	newKey := fresh.str("key")

	// Overlap: both keys work everywhere.
	for _, k := range []string{oldKey, newKey} {
		s.must(http.StatusOK, "GET", "/v1/webhooks", k, nil)
		require.Eventually(t, func() bool { return s2.do("GET", "/v1/webhooks", k, nil).status == http.StatusOK },
			5*time.Second, 20*time.Millisecond)
		st, _ := post(t, ingestURL, k, nps("", "overlap-"+k[:10]))
		require.Equal(t, http.StatusAccepted, st)
	}

	revoked := s.must(http.StatusOK, "DELETE", keys+"/key_primary", newKey, nil)
	require.Equal(t, "revoked", revoked.str("status"))
	require.NotEmpty(t, revoked.body["revoked_at"])
	s.must(http.StatusUnauthorized, "GET", "/v1/webhooks", oldKey, nil) // this process: at once
	start := time.Now()
	require.Eventually(t, func() bool {
		st, _ := post(t, ingestURL, oldKey, nps("", "after"))
		return s2.do("GET", "/v1/webhooks", oldKey, nil).status == http.StatusUnauthorized && st == http.StatusUnauthorized
	}, 5*time.Second, 10*time.Millisecond)
	t.Logf("the revocation reached the second API process and ingest within %s", time.Since(start))
	// The new key goes on working everywhere; revoking twice is harmless.
	s2.must(http.StatusOK, "GET", "/v1/webhooks", newKey, nil)
	st, _ := post(t, ingestURL, newKey, nps("", "after-new"))
	require.Equal(t, http.StatusAccepted, st)
	require.Equal(t, "revoked", s2.must(http.StatusOK, "DELETE", keys+"/key_primary", newKey, nil).str("status"))
	s.must(http.StatusNotFound, "DELETE", keys+"/key_nope", newKey, nil)
	// Changes on two processes at once never undo one another: a revocation on one while keys
	// are created on the other stays a revocation.
	temp := s.must(http.StatusCreated, "POST", keys, newKey, map[string]any{"name": "temp", "scopes": []string{"read"}})
	created := make(chan int, 5)
	go func() {
		for i := 0; i < 5; i++ {
			created <- s2.do("POST", keys, newKey, map[string]any{"name": "more", "scopes": []string{"read"}}).status
		}
		close(created)
	}()
	s.must(http.StatusOK, "DELETE", keys+"/"+temp.str("id"), newKey, nil)
	for st := range created {
		require.Equal(t, http.StatusCreated, st)
	}
	require.Eventually(t, func() bool {
		return s2.do("GET", "/v1/webhooks", temp.str("key"), nil).status == http.StatusUnauthorized
	},
		5*time.Second, 10*time.Millisecond)
	s.must(http.StatusUnauthorized, "GET", "/v1/webhooks", temp.str("key"), nil)
	// Both processes converge on all eight keys: the five created on the second process reach
	// this one once it has read their `projects` records.
	for _, proc := range []*stack{s, s2} {
		require.Eventually(t, func() bool { return len(proc.must(http.StatusOK, "GET", keys, newKey, nil).list()) == 8 },
			5*time.Second, 20*time.Millisecond)
	}
	// The list shows the revoked keys as revoked.
	for _, k := range s2.must(http.StatusOK, "GET", keys, newKey, nil).list() {
		want := map[string]string{"key_primary": "revoked", temp.str("id"): "revoked"}[k["id"].(string)]
		if want == "" {
			want = "active"
		}
		require.Equal(t, want, k["status"], "%v", k)
	}
}

// Issue 16, point 4: Idempotency-Key on API writes — the same key and body get the stored answer
// (nothing is done twice), the same key with another body gets 422 naming the header; keys are
// per project, and shared by every API process.
func TestIdempotencyKeyReplaysTheStoredAnswer(t *testing.T) {
	s := startStack(t)
	s2 := s.second()
	pa, keyA := s.project("A")
	_, keyB := s.project("B")
	hook := map[string]any{"name": "h", "url": "https://example.com/h", "events": []string{"*"}}
	idem := map[string]string{"Idempotency-Key": "create-h-1"}

	first := s.doH("POST", "/v1/webhooks", keyA, idem, hook)
	require.Equal(t, http.StatusCreated, first.status, "%s", first)
	again := s.doH("POST", "/v1/webhooks", keyA, idem, hook)
	require.Equal(t, http.StatusCreated, again.status)
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	require.Equal(t, first.raw, again.raw)
	// A retry that reaches another API process gets the same answer.
	other2 := s2.doH("POST", "/v1/webhooks", keyA, idem, hook)
	require.Equal(t, http.StatusCreated, other2.status)
	require.Equal(t, "true", other2.header.Get("Idempotent-Replayed"))
	require.Equal(t, first.raw, other2.raw)
	require.Len(t, s.must(http.StatusOK, "GET", "/v1/webhooks", keyA, nil).list(), 1, "the webhook was created once")
	// The stored answer holds the webhook's secret: it is sealed on the topic.
	require.NotEmpty(t, first.str("secret"))
	for _, rec := range s.records(s.cfg.Kafka.Topics.Idempotency, func(rs []*kgo.Record) bool { return len(rs) > 0 }) {
		require.NotContains(t, string(rec.Value), first.str("secret"))
		require.NotContains(t, string(rec.Value), "example.com")
	}

	other := map[string]any{"name": "other", "url": "https://example.com/h", "events": []string{"*"}}
	r := s.doH("POST", "/v1/webhooks", keyA, idem, other)
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Equal(t, "Idempotency-Key", r.errField())
	r = s2.doH("DELETE", "/v1/webhooks/"+first.str("id"), keyA, idem, nil) // another path is another request
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Equal(t, "Idempotency-Key", r.errField())

	// Another project's use of the same key is its own.
	b := s.doH("POST", "/v1/webhooks", keyB, idem, hook)
	require.Equal(t, http.StatusCreated, b.status)
	require.NotEqual(t, first.str("id"), b.str("id"))
	require.Empty(t, b.header.Get("Idempotent-Replayed"))

	// The admin token acting for A shares A's keys; a 4xx answer is stored too.
	r = s.doH("POST", "/v1/webhooks", adminToken, map[string]string{"Idempotency-Key": "create-h-1", api.ProjectHeader: pa}, hook)
	require.Equal(t, "true", r.header.Get("Idempotent-Replayed"))
	bad := map[string]string{"Idempotency-Key": "bad-1"}
	require.Equal(t, http.StatusBadRequest, s.doH("POST", "/v1/webhooks", keyA, bad, map[string]any{"name": "x"}).status)
	r = s.doH("POST", "/v1/webhooks", keyA, bad, map[string]any{"name": "x"})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, "true", r.header.Get("Idempotent-Replayed"))

	// Key creation and revocation replay too: a retried creation returns the same key, not a second one.
	keys := "/v1/projects/" + pa + "/keys"
	k1 := s.doH("POST", keys, adminToken, map[string]string{"Idempotency-Key": "k"}, map[string]any{"name": "ci", "scopes": []string{"read"}})
	k2 := s.doH("POST", keys, adminToken, map[string]string{"Idempotency-Key": "k"}, map[string]any{"name": "ci", "scopes": []string{"read"}})
	require.Equal(t, http.StatusCreated, k2.status)
	require.Equal(t, k1.str("key"), k2.str("key"))
	require.Len(t, s.must(http.StatusOK, "GET", keys, adminToken, nil).list(), 2)

	// The admin token's own writes have their own keys: a retried project creation makes one project.
	p1 := s.doH("POST", "/v1/projects", adminToken, map[string]string{"Idempotency-Key": "k"}, map[string]any{"name": "C"})
	p2 := s.doH("POST", "/v1/projects", adminToken, map[string]string{"Idempotency-Key": "k"}, map[string]any{"name": "C"})
	require.Equal(t, http.StatusCreated, p2.status)
	require.Equal(t, p1.str("id"), p2.str("id"))

	// Reads ignore the header; an overlong key is refused naming it.
	s.doH("GET", "/v1/webhooks", keyA, idem, nil)
	long := map[string]string{"Idempotency-Key": string(bytes.Repeat([]byte("k"), 256))}
	r = s.doH("POST", "/v1/webhooks", keyA, long, hook)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, "Idempotency-Key", r.errField())
}
