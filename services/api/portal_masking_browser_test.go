package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// The portal shows, read-only, what is masked: the project's storage rules (what the delivery log
// keeps) on the webhooks page, and each webhook's own rules (what it receives) on its card and
// its page.
func TestPortalShowsStorageAndWebhookMaskingRulesInARealBrowser(t *testing.T) {
	s := startStack(t, withClickHouse())
	pa, key := s.project("Acme Surveys")
	b := startBrowser(t)
	masked := s.webhook(key, map[string]any{"name": "CRM sync", "url": "https://example.com/a", "masking": []map[string]any{
		{"path": "payload.user.email", "action": "mask", "keep": 3}, {"path": "payload.user.id", "action": "hash"}}}).str("id")
	s.webhook(key, map[string]any{"name": "Analytics", "url": "https://example.com/b"})

	require.Equal(t, http.StatusOK, b.open(s.portalLink(pa, map[string]any{})))
	require.Contains(t, b.text("#storage-masking"), "No storage masking rules")

	s.must(http.StatusOK, "PUT", "/v1/projects/"+pa+"/storage-masking", adminToken, map[string]any{"storage_masking": []map[string]any{
		{"path": "payload.user.email", "action": "hash"}, {"path": "payload.response.items[*].answer", "action": "drop"}}})
	b.open(s.base + "/portal/")
	require.Equal(t, "Stored data masking", b.text("#storage-masking h2"))
	require.Contains(t, b.text("#storage-masking ul.masking li:nth-child(1)"), "payload.user.email: hash")
	require.Contains(t, b.text("#storage-masking ul.masking li:nth-child(2)"), "payload.response.items[*].answer: drop")

	card := `.webhook-row[data-id="` + masked + `"] .masking-rules`
	require.Contains(t, b.text(card), "payload.user.email: mask, keep 3")
	require.Contains(t, b.text(card), "payload.user.id: hash")
	require.Equal(t, 1, eval[int](b, `document.querySelectorAll(".webhook-row .masking-rules").length`),
		"a webhook without rules shows none")
	b.checkPage()
	b.screenshot("portal-masking.png")

	b.open(s.base + "/portal/webhooks/" + masked)
	require.Contains(t, b.text("ul.masking"), "payload.user.email: mask, keep 3")
}
