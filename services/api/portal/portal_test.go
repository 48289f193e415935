package portal

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/envelope"
)

func testSessions(t *testing.T, now *time.Time) *sessions {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s, err := newSessions(key, func() time.Time { return *now })
	require.NoError(t, err)
	return s
}

func TestPortalLinkWorksOnceAndExpires(t *testing.T) {
	now := time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC)
	s := testSessions(t, &now)
	g := Grant{ProjectID: "prj_a", WebhookIDs: []string{"wh_1"}, ReadOnly: true, Expires: now.Add(time.Hour)}
	link := s.link(g)

	cookie, got, err := s.exchange(link)
	require.NoError(t, err)
	require.Equal(t, g, got)
	v, err := s.open(cookie, kindPortal)
	require.NoError(t, err)
	require.Equal(t, g, v.Grant)
	require.NotEmpty(t, v.CSRF)
	require.True(t, validCSRF(v, v.CSRF))
	require.False(t, validCSRF(v, "forged"))
	require.False(t, validCSRF(v, ""))

	_, _, err = s.exchange(link)
	require.ErrorIs(t, err, errSpent, "a link opens the portal once")

	// A cookie is not a link, a portal session is not a console session, and a changed byte
	// opens nothing.
	_, _, err = s.exchange(cookie)
	require.ErrorIs(t, err, errInvalid)
	_, err = s.open(cookie, kindConsole)
	require.ErrorIs(t, err, errInvalid)
	tampered := []byte(cookie)
	tampered[len(tampered)/2] ^= 1
	_, err = s.open(string(tampered), kindPortal)
	require.ErrorIs(t, err, errInvalid)

	// Signing out refuses the cookie, even a copy kept elsewhere.
	other, _, err := s.exchange(s.link(g))
	require.NoError(t, err)
	ov, err := s.open(other, kindPortal)
	require.NoError(t, err)
	s.end(ov)
	_, err = s.open(other, kindPortal)
	require.ErrorIs(t, err, errInvalid)
	_, err = s.open(cookie, kindPortal)
	require.NoError(t, err, "other sessions go on")

	expiring := s.link(Grant{ProjectID: "prj_a", Expires: now.Add(time.Minute)})
	now = now.Add(time.Hour)
	_, _, err = s.exchange(expiring)
	require.ErrorIs(t, err, errExpired)
	_, err = s.open(cookie, kindPortal)
	require.ErrorIs(t, err, errExpired, "the session ends with the grant")
}

func TestPortalScopeAllowsOnlyItsWebhooks(t *testing.T) {
	require.True(t, Grant{}.Allows("wh_any"))
	g := Grant{WebhookIDs: []string{"wh_1", "wh_2"}}
	require.True(t, g.Allows("wh_2"))
	require.False(t, g.Allows("wh_3"))
	require.False(t, g.Allows(""))
}

func TestPortalChartsScaleBucketsToTheirMaximum(t *testing.T) {
	t0 := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	c := drawCharts([]attemptlog.StatsBucket{
		{Start: t0, Count: 4, Success: 3, P50Ms: 10, P99Ms: 40},
		{Start: t0.Add(time.Hour)},
		{Start: t0.Add(2 * time.Hour), Count: 2, Success: 2, P50Ms: 5, P99Ms: 8},
	}, "1h", "last 24 hours, by hour")
	require.False(t, c.Empty)
	require.EqualValues(t, 4, c.Outcomes.Max)
	require.Len(t, c.Outcomes.Success, 2)
	require.Len(t, c.Outcomes.Failed, 1)
	// The tallest bar fills the plot; the failed part sits on top of the succeeded part.
	plotH := chartH - padT - padB
	require.InDelta(t, plotH, c.Outcomes.Success[0].H+c.Outcomes.Failed[0].H, 0.01)
	require.InDelta(t, c.Outcomes.Success[0].Y, c.Outcomes.Failed[0].Y+c.Outcomes.Failed[0].H, 0.01)
	// Empty hours have no latency point; the lines join the others.
	require.Len(t, c.Latency.P99Dots, 2)
	require.Equal(t, "10:00", c.Rows[0].Start)
	require.Equal(t, "75.0%", c.Rows[0].Rate)
	require.Equal(t, "40 ms", c.Rows[0].P99)
	require.False(t, c.Rows[1].HasLatency)
	require.Equal(t, "40 ms", c.Latency.YTicks[4].Label)

	require.True(t, drawCharts([]attemptlog.StatsBucket{{Start: t0}}, "1d", "").Empty)
}

func TestPortalPickerDescribesEveryEventType(t *testing.T) {
	choices := eventChoices([]string{"nps.scored"}, "", envelope.DefaultVersion)
	require.Len(t, choices, len(envelope.EventTypes))
	for _, c := range choices {
		require.NotEmpty(t, c.Description, c.Name)
		require.Contains(t, c.Example, `"event_type": "`+c.Name+`"`)
		require.Equal(t, c.Name == "nps.scored", c.Checked, c.Name)
	}
	for _, f := range envelope.Formats {
		require.NotContains(t, example("survey.completed", f, envelope.DefaultVersion), "(no example", f)
	}
}

func TestPortalFrameAncestorsAreOriginsOnly(t *testing.T) {
	require.NoError(t, ValidOrigins([]string{"https://app.example.com", "http://127.0.0.1:3000"}))
	for _, bad := range []string{"app.example.com", "https://a.example.com/path", "https://a.example.com; script-src *",
		"javascript:alert(1)", "https://*"} {
		require.Error(t, ValidOrigins([]string{bad}), bad)
	}
	key := make([]byte, 32)
	p, err := New(Config{SessionKey: key, FrameAncestors: []string{"https://app.example.com"}})
	require.NoError(t, err)
	require.Contains(t, p.csp, "frame-ancestors 'self' https://app.example.com")
}
