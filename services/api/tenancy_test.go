package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// TestAProjectKeySeesAndChangesOnlyItsOwnProject runs every operation of the API with project B's
// key against project A's ids: each answers 404 (or, for lists, shows nothing of A's), and A's
// data is unchanged afterwards. The cases are checked against the OpenAPI document, which
// openapi_test.go checks against the router, so a new endpoint without a case fails here.
func TestAProjectKeySeesAndChangesOnlyItsOwnProject(t *testing.T) {
	s := startStack(t, withClickHouse())
	pa, keyA := s.project("A")
	pb_, keyB := s.project("B")
	wA := s.webhook(keyA, map[string]any{"url": "https://example.com/a"}).str("id")
	wB := s.webhook(keyB, map[string]any{"url": "https://example.com/b"}).str("id")
	s.logRows(pa, row{"att_a", wA, "evt_a", "nps.scored", pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, 200, time.Minute, time.Millisecond, 1})
	s.deadRows(&pb.Delivery{DeliveryId: "msg_a", EventId: "evt_a", WebhookId: wA, ProjectId: pa, EventType: "nps.scored",
		Body: []byte(`{}`), Attempt: 1, LastOutcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT,
			StatusCode: 404, AtMs: t0.UnixMilli()}})
	deadA := "msg_a.1"
	opsW := s.must(http.StatusCreated, "POST", "/v1/operational-webhooks", adminToken,
		map[string]any{"url": "https://ops.example.com/hook", "events": []string{"webhook.disabled"}}).str("id")
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	replayA := s.must(http.StatusAccepted, "POST", "/v1/webhooks/"+wA+"/replays", keyA, map[string]any{"since": since}).str("id")
	s.must(http.StatusOK, "GET", "/v1/replays/"+replayA, keyA, nil)
	keyIDA := s.must(http.StatusCreated, "POST", "/v1/projects/"+pa+"/keys", keyA, map[string]any{"name": "a2", "scopes": []string{"read"}}).str("id")
	// A can see its own data, so a 404 for B below is tenancy, not absence.
	s.must(http.StatusOK, "GET", "/v1/attempts/att_a", keyA, nil)
	s.must(http.StatusOK, "GET", "/v1/events/evt_a/attempts", keyA, nil)
	require.Len(t, s.must(http.StatusOK, "GET", "/v1/dead-letters", keyA, nil).list(), 1)

	type check func(t *testing.T)
	notFound := func(method, path string, body any) check {
		return func(t *testing.T) {
			r := s.must(http.StatusNotFound, method, path, keyB, body)
			require.Equal(t, "not_found", r.errCode())
		}
	}
	onlyB := func(path string, want []any) check {
		return func(t *testing.T) {
			require.Equal(t, want, ids(s.must(http.StatusOK, "GET", path, keyB, nil)))
		}
	}
	cases := map[string]check{
		"GET /healthz":      func(t *testing.T) { s.must(http.StatusOK, "GET", "/healthz", "", nil) },
		"GET /openapi.json": func(t *testing.T) { s.must(http.StatusOK, "GET", "/openapi.json", "", nil) },
		"POST /v1/projects": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "POST", "/v1/projects", keyB, map[string]any{"name": "C"})
		},
		"GET /v1/projects/{id}": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "GET", "/v1/projects/"+pa, keyB, nil)
		},
		"POST /v1/projects/{id}/erasures": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "POST", "/v1/projects/"+pa+"/erasures", keyB, map[string]any{"user_id": "u1"})
		},
		"PATCH /v1/projects/{id}": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "PATCH", "/v1/projects/"+pa, keyB, map[string]any{"delivery_weight": 5})
		},
		"PUT /v1/projects/{id}/storage-masking": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "PUT", "/v1/projects/"+pa+"/storage-masking", keyB, map[string]any{"storage_masking": []any{}})
		},
		"GET /v1/projects/{id}/erasures/{erasure_id}": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "GET", "/v1/projects/"+pa+"/erasures/era_x", keyB, nil)
		},
		"POST /v1/projects/{id}/portal-sessions": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "POST", "/v1/projects/"+pa+"/portal-sessions", keyB, map[string]any{})
			// The admin token cannot scope a session of B to A's webhook either.
			r := s.must(http.StatusBadRequest, "POST", "/v1/projects/"+pb_+"/portal-sessions", adminToken,
				map[string]any{"webhook_ids": []string{wA}})
			require.Equal(t, "webhook_ids[0]", r.errField())
		},
		"GET /v1/projects/{id}/keys":  notFound("GET", "/v1/projects/"+pa+"/keys", nil),
		"POST /v1/projects/{id}/keys": notFound("POST", "/v1/projects/"+pa+"/keys", map[string]any{"name": "mine now", "scopes": []string{"manage"}}),
		"DELETE /v1/projects/{id}/keys/{key_id}": func(t *testing.T) {
			notFound("DELETE", "/v1/projects/"+pa+"/keys/key_primary", nil)(t)
			// Nor can B revoke A's key through its own project's path.
			s.must(http.StatusNotFound, "DELETE", "/v1/projects/"+pb_+"/keys/"+keyIDA, keyB, nil)
		},
		"POST /v1/webhooks": func(t *testing.T) {
			r := s.must(http.StatusCreated, "POST", "/v1/webhooks", keyB, map[string]any{"name": "b2",
				"url": "https://example.com/b2", "events": []string{"*"}})
			require.NotEqual(t, pa, r.str("project_id"))
			s.must(http.StatusNoContent, "DELETE", "/v1/webhooks/"+r.str("id"), keyB, nil)
		},
		"GET /v1/event-types": func(t *testing.T) { // the code's catalogue: nothing of any project
			require.NotContains(t, string(s.must(http.StatusOK, "GET", "/v1/event-types", keyB, nil).raw), pa)
		},
		"GET /v1/webhooks":                      onlyB("/v1/webhooks", []any{wB}),
		"GET /v1/webhooks/{id}":                 notFound("GET", "/v1/webhooks/"+wA, nil),
		"PATCH /v1/webhooks/{id}":               notFound("PATCH", "/v1/webhooks/"+wA, map[string]any{"name": "taken"}),
		"DELETE /v1/webhooks/{id}":              notFound("DELETE", "/v1/webhooks/"+wA, nil),
		"POST /v1/webhooks/{id}/secrets/rotate": notFound("POST", "/v1/webhooks/"+wA+"/secrets/rotate", map[string]any{"secret": secrets.NewWebhookSecret()}),
		"POST /v1/webhooks/{id}/test":           notFound("POST", "/v1/webhooks/"+wA+"/test", nil),
		"GET /v1/attempts":                      onlyB("/v1/attempts?webhook_id="+wA, []any{}),
		"GET /v1/attempts/{id}":                 notFound("GET", "/v1/attempts/att_a", nil),
		"GET /v1/webhooks/{id}/attempts":        notFound("GET", "/v1/webhooks/"+wA+"/attempts", nil),
		"GET /v1/events/{event_id}/attempts":    notFound("GET", "/v1/events/evt_a/attempts", nil),
		"GET /v1/webhooks/{id}/stats":           notFound("GET", "/v1/webhooks/"+wA+"/stats", nil),
		"GET /v1/dead-letters":                  onlyB("/v1/dead-letters?webhook_id="+wA+"&include_replayed=true", []any{}),
		"POST /v1/dead-letters/{id}/replay":     notFound("POST", "/v1/dead-letters/"+deadA+"/replay", nil),
		// Operational webhooks are the platform's: a project key reaches none of them, by either
		// path, and the admin token does not see a project's webhook through them.
		"POST /v1/operational-webhooks": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "POST", "/v1/operational-webhooks", keyB, map[string]any{"url": "https://example.com/b", "events": []string{"*"}})
		},
		"GET /v1/operational-webhooks": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "GET", "/v1/operational-webhooks", keyB, nil)
			r := s.must(http.StatusOK, "GET", "/v1/operational-webhooks", adminToken, nil)
			require.Equal(t, []any{opsW}, ids(r))
		},
		"GET /v1/operational-webhooks/{id}": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "GET", "/v1/operational-webhooks/"+opsW, keyB, nil)
			s.must(http.StatusNotFound, "GET", "/v1/webhooks/"+opsW, keyB, nil)
			s.must(http.StatusNotFound, "GET", "/v1/operational-webhooks/"+wA, adminToken, nil)
		},
		"PATCH /v1/operational-webhooks/{id}": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "PATCH", "/v1/operational-webhooks/"+opsW, keyB, map[string]any{"enabled": false})
			s.must(http.StatusNotFound, "PATCH", "/v1/webhooks/"+opsW, keyB, map[string]any{"enabled": false})
			s.must(http.StatusNotFound, "PATCH", "/v1/operational-webhooks/"+wA, adminToken, map[string]any{"enabled": false})
		},
		"POST /v1/operational-webhooks/{id}/secrets/rotate": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "POST", "/v1/operational-webhooks/"+opsW+"/secrets/rotate", keyB, nil)
			s.must(http.StatusNotFound, "POST", "/v1/webhooks/"+opsW+"/secrets/rotate", keyB, nil)
			s.must(http.StatusNotFound, "POST", "/v1/operational-webhooks/"+wA+"/secrets/rotate", adminToken, nil)
		},
		"DELETE /v1/operational-webhooks/{id}": func(t *testing.T) {
			s.must(http.StatusUnauthorized, "DELETE", "/v1/operational-webhooks/"+opsW, keyB, nil)
			s.must(http.StatusNotFound, "DELETE", "/v1/webhooks/"+opsW, keyB, nil)
			s.must(http.StatusNotFound, "DELETE", "/v1/operational-webhooks/"+wA, adminToken, nil)
		},
		"POST /v1/webhooks/{id}/replays": func(t *testing.T) {
			notFound("POST", "/v1/webhooks/"+wA+"/replays", map[string]any{"since": since})(t)
			// Nor into A's webhook from B's own.
			r := s.must(http.StatusBadRequest, "POST", "/v1/webhooks/"+wB+"/replays", keyB, map[string]any{"since": since, "target_webhook_id": wA})
			require.Equal(t, "target_webhook_id", r.errField())
		},
		"GET /v1/replays":      onlyB("/v1/replays", []any{}),
		"GET /v1/replays/{id}": notFound("GET", "/v1/replays/"+replayA, nil),
		"POST /v1/dead-letters/replay": func(t *testing.T) {
			notFound("POST", "/v1/dead-letters/replay", map[string]any{"webhook_id": wA})(t)
			r := s.must(http.StatusAccepted, "POST", "/v1/dead-letters/replay", keyB, map[string]any{"event_id": "evt_a"})
			require.EqualValues(t, 0, r.body["replayed"])
		},
	}

	// Every documented operation has a case, and every case is a documented operation.
	doc := s.must(http.StatusOK, "GET", "/openapi.json", "", nil)
	var documented []string
	for path, item := range doc.body["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			if method != "parameters" {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	var covered []string
	for k := range cases {
		covered = append(covered, k)
	}
	slices.Sort(documented)
	slices.Sort(covered)
	require.Equal(t, documented, covered)

	for _, name := range covered {
		t.Run(name, cases[name])
	}

	// A is untouched.
	for _, k := range s.must(http.StatusOK, "GET", "/v1/projects/"+pa+"/keys", keyA, nil).list() {
		require.Equal(t, "active", k["status"], "%v", k)
	}
	require.Len(t, s.must(http.StatusOK, "GET", "/v1/projects/"+pa+"/keys", keyA, nil).list(), 2)
	wh := s.must(http.StatusOK, "GET", "/v1/webhooks/"+wA, keyA, nil)
	require.EqualValues(t, 1, wh.body["revision"])
	require.Equal(t, "hook", wh.str("name"))
	require.Len(t, wh.body["secrets"], 1)
	dead := s.must(http.StatusOK, "GET", "/v1/dead-letters", keyA, nil).list()
	require.Len(t, dead, 1)
	require.Equal(t, false, dead[0]["replayed"])
}
