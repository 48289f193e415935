package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOrderingIsShownValidatedAndKeptByOtherEdits(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	r := s.webhook(key, map[string]any{"url": "https://example.com/h", "events": []string{"survey.completed"}})
	require.Equal(t, "", r.str("ordering"), "unordered unless asked for")
	path := "/v1/webhooks/" + r.str("id")
	require.Equal(t, "respondent", s.must(http.StatusOK, "PATCH", path, key, map[string]any{"ordering": "respondent"}).str("ordering"))
	require.Equal(t, "respondent", s.must(http.StatusOK, "PATCH", path, key, map[string]any{"name": "renamed"}).str("ordering"),
		"a PATCH of another field keeps it")
	bad := s.must(http.StatusBadRequest, "PATCH", path, key, map[string]any{"ordering": "fifo"})
	require.Equal(t, "ordering", bad.errField(), "the error names the field: %s", bad)
	created := s.webhook(key, map[string]any{"url": "https://example.com/h2", "events": []string{"survey.completed"}, "ordering": "respondent"})
	require.Equal(t, "respondent", s.must(http.StatusOK, "GET", "/v1/webhooks/"+created.str("id"), key, nil).str("ordering"))
	require.Equal(t, "", s.must(http.StatusOK, "PATCH", path, key, map[string]any{"ordering": nil}).str("ordering"), "null: back to none")
}

func TestPortalShowsAWebhooksOrdering(t *testing.T) {
	s := startStack(t)
	pa, key := s.project("Acme")
	ordered := s.webhook(key, map[string]any{"name": "Rebuilder", "url": "https://example.com/a", "ordering": "respondent"}).str("id")
	plain := s.webhook(key, map[string]any{"name": "Plain", "url": "https://example.com/b"}).str("id")
	get, _ := s.inPortal(pa)
	require.Contains(t, get("/portal/webhooks/"+ordered), "Per respondent")
	require.NotContains(t, get("/portal/webhooks/"+plain), "Per respondent")
}
