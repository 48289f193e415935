package api_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPortalSessionsAreMintedWithTheAdminTokenAndOpenOnce(t *testing.T) {
	s := startStack(t)
	pa, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": "https://example.com/a"}).str("id")
	path := "/v1/projects/" + pa + "/portal-sessions"

	s.must(http.StatusUnauthorized, "POST", path, key, map[string]any{})
	s.must(http.StatusNotFound, "POST", "/v1/projects/prj_nope/portal-sessions", adminToken, map[string]any{})
	for body, field := range map[string]string{
		`{"expires_in":0}`:         "expires_in",
		`{"expires_in":604801}`:    "expires_in",
		`{"webhook_ids":["wh_x"]}`: "webhook_ids[0]",
		`{"read_only":"yes"}`:      "read_only",
	} {
		require.Equal(t, field, s.must(http.StatusBadRequest, "POST", path, adminToken, body).errField(), body)
	}
	require.Equal(t, "unknown_field", s.must(http.StatusBadRequest, "POST", path, adminToken, `{"scope":"all"}`).errCode())

	r := s.must(http.StatusCreated, "POST", path, adminToken, map[string]any{"webhook_ids": []string{wh, wh}, "read_only": true, "expires_in": 600})
	require.Equal(t, []any{wh}, r.body["webhook_ids"])
	require.Equal(t, true, r.body["read_only"])
	exp, err := time.Parse(time.RFC3339, r.str("expires_at"))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(10*time.Minute), exp, 5*time.Second)
	link := r.str("url")
	require.True(t, strings.HasPrefix(link, s.base+"/portal/s/"), link)
	// No body at all is a session for the whole project, for an hour.
	r = s.must(http.StatusCreated, "POST", path, adminToken, nil)
	require.Equal(t, []any{}, r.body["webhook_ids"])

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Head(link)
	require.NoError(t, err)
	resp.Body.Close()
	require.Empty(t, resp.Header.Get("Set-Cookie"), "a HEAD leaves the link unspent")
	resp, err = client.Get(link)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/portal/", resp.Header.Get("Location"))
	cookie := resp.Header.Get("Set-Cookie")
	require.Contains(t, cookie, "HttpOnly")
	require.Contains(t, cookie, "SameSite=Strict")
	require.Contains(t, cookie, "Path=/portal/")
	require.NotContains(t, cookie, "Secure", "plain HTTP")

	resp, err = client.Get(link)
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, string(page), "already been used")
	require.Empty(t, resp.Header.Get("Set-Cookie"))
}

// TestPortalPagesSayWhatIsDownWhenClickHouseIs: without the delivery log the portal still manages
// webhooks and says plainly which pages cannot be shown.
func TestPortalPagesSayWhatIsDownWhenClickHouseIs(t *testing.T) {
	s := startStack(t) // ClickHouse points at a port nothing listens on
	pa, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"name": "CRM sync", "url": "https://example.com/a"}).str("id")
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{Jar: jar}
	get := func(path string) (int, string) {
		resp, err := client.Get(s.base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	link := s.must(http.StatusCreated, "POST", "/v1/projects/"+pa+"/portal-sessions", adminToken, nil).str("url")
	status, page := get(strings.TrimPrefix(link, s.base))
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, "CRM sync")
	require.Contains(t, page, "delivery log unavailable")

	status, page = get("/portal/webhooks/" + wh)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, "The delivery log is temporarily unavailable")
	require.Contains(t, page, "The list of recoveries is temporarily unavailable")
	require.NotContains(t, page, "No recoveries yet", "an outage is not an empty list")
	require.NotContains(t, page, "ClickHouse at", "no internal address shown to subscribers")

	status, page = get("/portal/attempts")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Contains(t, page, "Temporarily unavailable")
	require.NotContains(t, page, "ClickHouse at")
	require.NotContains(t, page, "goroutine")
}
