package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A port url.Parse accepts but no connection can use is refused when the webhook is written,
// on creation and on every change, rather than surfacing as a failure at delivery.
func TestWebhookURLWithAnImpossiblePortIsRefused(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	id := s.webhook(key, map[string]any{"url": "http://127.0.0.1:8080/h"}).str("id")
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:0/h", false},
		{"http://127.0.0.1:65536/h", false},
		{"http://127.0.0.1:99999999999/h", false},
		{"https://[::1]:70000/h", false},
		{"http://127.0.0.1:1/h", true},
		{"https://example.com:65535/h", true},
		{"https://example.com/h", true}, // no port: the scheme's
	} {
		t.Run(c.url, func(t *testing.T) {
			body := map[string]any{"name": "n", "url": c.url, "events": []string{"survey.completed"}}
			patch := map[string]any{"url": c.url}
			if c.ok {
				s.must(http.StatusCreated, "POST", "/v1/webhooks", key, body)
				require.Equal(t, c.url, s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+id, key, patch).str("url"))
				return
			}
			r := s.must(http.StatusBadRequest, "POST", "/v1/webhooks", key, body)
			require.Equal(t, "url", r.errField(), "%s", r)
			require.Contains(t, string(r.raw), "port", "%s", r)
			r = s.must(http.StatusBadRequest, "PATCH", "/v1/webhooks/"+id, key, patch)
			require.Equal(t, "url", r.errField(), "%s", r)
		})
	}
}

// Bulk replay's limit has the minimum the OpenAPI document states: 0 is refused, not read as
// "as many as allowed"; only an absent limit means that.
func TestBulkReplayRefusesLimitZero(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	for _, limit := range []any{0, -1, 1.5, "1"} {
		r := s.must(http.StatusBadRequest, "POST", "/v1/dead-letters/replay", key, map[string]any{"limit": limit})
		require.Equal(t, "limit", r.errField(), "limit %v: %s", limit, r)
	}
}
