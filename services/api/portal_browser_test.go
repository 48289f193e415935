package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/apitest"
	"github.com/surveyhooks/surveyhooks/pkg/signature"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// The portal and the console are tested in Debian's chromium, headless, against the whole
// pipeline in process: ingest, fan-out, delivery, the sink, ClickHouse and the API, with a real
// receiver on 127.0.0.1. The browser sees only what a user would: pages, forms, links.

// screenshots is where the tests leave PNGs of the main pages (the README shows two).
const screenshots = "../../docs/screenshots"

// browser is one headless chromium with one tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: run deploy/install-deps.sh chromium (make test does): %v", err)
	}
	// Without the background-networking flags chromium waits on hosts it cannot reach here.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// The first run starts the browser: no timeout on it, or the timeout would end the browser.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")))
	// Every page records what its Content-Security-Policy blocked, so a test can require nothing was.
	_, err = chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__blocked = []; document.addEventListener("securitypolicyviolation",
			e => window.__blocked.push(e.violatedDirective + " " + e.blockedURI));`})
	require.NoError(t, err)
	// Pages confirm destructive actions with window.confirm: the user says yes.
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	}))
	return &browser{t: t, ctx: ctx}
}

// in is the browser for a subtest, so its failures are the subtest's.
func (b *browser) in(t *testing.T) *browser { return &browser{t: t, ctx: b.ctx} }

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, actions...))
}

// open navigates and returns the HTTP status of the page that finally loaded.
func (b *browser) open(u string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(u))
	require.NoError(b.t, err)
	return int(resp.Status)
}

// eval runs a script in the page (awaiting a promise) and returns its value.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	require.NoError(b.t, err, js)
	return v
}

func (b *browser) location() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	require.NoError(b.t, err)
	return loc
}

// text is the element's text with white space collapsed ("" when there is no such element);
// table cells are separated by " | ", so a row reads "a | b | c".
func (b *browser) text(sel string) string {
	b.t.Helper()
	s := eval[string](b, fmt.Sprintf(`(() => {
		const e = document.querySelector(%q);
		if (!e) return "";
		const c = e.cloneNode(true);
		c.querySelectorAll("td, th").forEach(td => td.append(" | "));
		return c.textContent;
	})()`, sel))
	return strings.Join(strings.Fields(s), " ")
}

func (b *browser) click(sel string) { b.run(chromedp.Click(chromedp.CSS(sel))) }

func (b *browser) typeIn(sel, text string) { b.run(chromedp.SendKeys(chromedp.CSS(sel), text)) }

func (b *browser) setValue(sel, v string) { b.run(chromedp.SetValue(chromedp.CSS(sel), v)) }

// waitText waits until the element's text contains want; reload reloads the page between looks
// (for what the pipeline has yet to deliver and record).
func (b *browser) waitText(sel, want string, reload bool) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := b.text(sel)
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s never showed %q; last %q; page:\n%s", sel, want, got, eval[string](b, `document.body.innerText`))
		}
		time.Sleep(150 * time.Millisecond)
		if reload {
			b.run(chromedp.Reload())
		}
	}
}

// waitCharted waits until the chart's table adds up to attempts and failed, reloading the page.
func (b *browser) waitCharted(attempts, failed int) {
	b.t.Helper()
	sum := `(col => [...document.querySelectorAll(".chart-table tbody tr")]
		.reduce((n, tr) => n + Number(tr.cells[col].textContent), 0))`
	var got []int
	require.Eventually(b.t, func() bool {
		b.run(chromedp.Reload())
		got = eval[[]int](b, fmt.Sprintf(`[%s(1), %s(3)]`, sum, sum))
		return got[0] == attempts && got[1] == failed
	}, 30*time.Second, 200*time.Millisecond, "the chart never added up to %d attempts, %d failed: %v", attempts, failed, got)
}

// submit clicks a button and waits for the page that answers the form.
func (b *browser) submit(button, thenSel string) {
	b.t.Helper()
	eval[bool](b, `document.body.dataset.before = "1"; true`)
	b.click(button)
	// The old page is gone once its marker is.
	deadline := time.Now().Add(45 * time.Second)
	for {
		old, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!!document.body && document.body.dataset.before === "1"`))
		if err == nil && !old {
			break
		}
		require.True(b.t, time.Now().Before(deadline), "submitting %s did not load a new page", button)
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(thenSel))); err != nil {
		b.t.Fatalf("after submitting %s, %s did not show (%v); page %s:\n%s", button, thenSel, err, b.location(),
			eval[string](b, `document.body.innerText`))
	}
}

// post sends a form from the current page with its CSRF token, as an edited form would, and
// returns the answer's status.
func (b *browser) post(path string, fields map[string]string) int {
	b.t.Helper()
	f, _ := json.Marshal(fields)
	return eval[int](b, fmt.Sprintf(`(async () => {
		const f = new URLSearchParams(%s || {});
		f.set("csrf", document.querySelector("input[name=csrf]").value);
		return (await fetch(%q, {method: "POST", body: f})).status;
	})()`, f, path))
}

// checkPage requires what every page must offer: a label for every control, nothing blocked by
// the Content-Security-Policy (no inline script or style, nothing from elsewhere), the portal's
// script loaded.
func (b *browser) checkPage() {
	b.t.Helper()
	unlabelled := eval[[]string](b, `[...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
		.filter(e => e.labels.length === 0 && !e.getAttribute("aria-label")).map(e => e.outerHTML)`)
	require.Empty(b.t, unlabelled, "controls without a label on %s", b.location())
	require.Empty(b.t, eval[[]string](b, `window.__blocked || []`), "blocked by the CSP on %s", b.location())
	require.Equal(b.t, 1, eval[int](b, `document.querySelectorAll("script[src='/portal/static/portal.js']").length`))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(b.t, err)
	require.NoError(b.t, os.MkdirAll(screenshots, 0o755))
	require.NoError(b.t, os.WriteFile(filepath.Join(screenshots, name), png, 0o644))
}

// portalLink mints a portal session through the API, as the platform would.
func (s *stack) portalLink(projectID string, body map[string]any) string {
	s.t.Helper()
	r := s.must(http.StatusCreated, "POST", "/v1/projects/"+projectID+"/portal-sessions", adminToken, body)
	return r.str("url")
}

// inPortal signs in to projectID's portal through a one-time link, without a browser, and returns
// a getter of its pages (which must answer 200) and the page the link landed on.
func (s *stack) inPortal(projectID string) (get func(path string) string, landing string) {
	s.t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(s.t, err)
	client := &http.Client{Jar: jar}
	get = func(path string) string {
		s.t.Helper()
		resp, err := client.Get(s.base + path)
		require.NoError(s.t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(s.t, http.StatusOK, resp.StatusCode, "%s: %s", path, b)
		return string(b)
	}
	return get, get(strings.TrimPrefix(s.portalLink(projectID, map[string]any{}), s.base))
}

// withPipeline adds ingest and fan-out, so events posted over HTTP reach the receiver.
func (s *stack) withPipeline() string {
	s.t.Helper()
	return startIngest(s.t, s, true)
}

// sendEvents posts events to ingest with the project key, once ingest knows the key.
func sendEvents(t *testing.T, ingestURL, key string, events ...map[string]any) {
	t.Helper()
	var r apitest.Reply
	require.Eventually(t, func() bool {
		var err error
		r, err = apitest.Do(context.Background(), nil, apitest.Request{Method: "POST", URL: ingestURL + "/v1/events",
			Token: key, Body: map[string]any{"events": events}})
		return err == nil && r.Status != http.StatusServiceUnavailable && r.Status != http.StatusUnauthorized
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, http.StatusAccepted, r.Status, "%s", r)
}

func npsEvent(user string) map[string]any {
	return map[string]any{"event_type": "nps.scored", "user": map[string]any{"id": user},
		"survey": map[string]any{"id": "nps-q3"}, "nps": map[string]any{"score": 9}}
}

func TestPortalInARealBrowser(t *testing.T) {
	s := startStack(t, withDelivery(), withSink())
	ingestURL := s.withPipeline()
	rc := newReceiver(t, http.StatusOK)
	pa, keyA := s.project("Acme Surveys")
	pbID, keyB := s.project("Globex")
	b := startBrowser(t)

	// Security headers on every page: a strict policy, no referrer for the link's token.
	resp, err := http.Get(s.base + "/portal/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	csp := resp.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "script-src 'self'")
	require.Contains(t, csp, "default-src 'none'")
	require.NotContains(t, csp, "unsafe-inline")
	require.Equal(t, "same-origin", resp.Header.Get("Referrer-Policy"))

	link := s.portalLink(pa, map[string]any{})
	var whA string

	t.Run("sign in through a one-time link", func(t *testing.T) {
		b := b.in(t)
		require.Equal(t, http.StatusOK, b.open(link))
		require.Equal(t, s.base+"/portal/", b.location(), "the link's token is gone from the address bar")
		require.Equal(t, "Webhooks", b.text("h1"))
		require.Contains(t, b.text("header"), "Acme Surveys")
		res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{})
		require.NoError(t, err)
		cookies := res.Cookies
		require.Len(t, cookies, 1)
		require.True(t, cookies[0].HTTPOnly)
		require.Equal(t, network.CookieSameSiteStrict, cookies[0].SameSite)
		require.False(t, cookies[0].Secure, "plain HTTP: Secure only over TLS")

		// The link is spent: opening it again says so.
		require.Equal(t, http.StatusUnauthorized, b.open(link))
		require.Contains(t, b.text("#message"), "already been used")
	})

	t.Run("create a webhook through the form", func(t *testing.T) {
		b := b.in(t)
		b.open(s.base + "/portal/")
		b.submit(`a[href="/portal/webhooks/new"]`, "form.webhook-form")
		// The example body of a type is there to read before choosing it.
		require.Contains(t, b.text(`.event-picker li:nth-child(6)`), "A user gave an NPS score")
		require.Contains(t, b.text(`.event-picker li:nth-child(6) pre`), `"event_type": "nps.scored"`)
		b.typeIn("#name", "CRM sync")
		b.typeIn("#url", "ftp://nowhere")
		b.click(`input[value="nps.scored"]`)
		b.click(`input[value="survey.completed"]`)
		// Examples follow the chosen format; what was typed stays.
		envelopeExample := b.text(`.event-picker li:nth-child(6) pre`)
		b.setValue("#format", "askusers")
		b.submit(`button[name=preview]`, "form.webhook-form")
		require.Equal(t, "CRM sync", eval[string](b, `document.querySelector("#name").value`))
		require.True(t, eval[bool](b, `document.querySelector('input[value="nps.scored"]').checked`))
		askUsers := b.text(`.event-picker li:nth-child(6) pre`)
		require.NotEqual(t, envelopeExample, askUsers)
		require.Contains(t, askUsers, `"data"`, "Ask Users' {event_type, event_id, timestamp, data}")
		b.setValue("#format", "")
		// The API's own validation message, beside the field it names.
		b.submit("#save", "#form-error")
		require.Contains(t, b.text("#form-error"), "url must be an absolute http or https URL")
		require.Equal(t, "true", eval[string](b, `document.querySelector("#url").getAttribute("aria-invalid")`))
		b.setValue("#url", rc.URL+"/hook")
		b.submit("#save", "#send-test")
		require.Contains(t, b.text(".notice"), "Webhook created")
		loc := b.location()
		whA = strings.TrimPrefix(loc[:strings.Index(loc, "?")], s.base+"/portal/webhooks/")
		wh := s.must(http.StatusOK, "GET", "/v1/webhooks/"+whA, keyA, nil)
		require.Equal(t, "CRM sync", wh.str("name"))
		require.Equal(t, []any{"nps.scored", "survey.completed"}, wh.body["events"])
		require.NotRegexp(t, `whsec_[A-Za-z0-9+/]{16}`, eval[string](b, `document.documentElement.outerHTML`),
			"no secret on the page until the user reveals it")
	})

	t.Run("Send Test shows the request and response, then the attempt in the log", func(t *testing.T) {
		b := b.in(t)
		b.open(s.base + "/portal/webhooks/" + whA)
		b.submit("#send-test", "#test-outcome")
		require.Contains(t, b.text("#test-outcome"), "Delivered — HTTP 200")
		require.Equal(t, "receiver says hi", b.text("#test-response"))
		require.Contains(t, b.text("#test-request"), `"event_type": "webhook.test"`)
		require.Len(t, rc.requests(), 1)
		b.open(s.base + "/portal/attempts")
		b.waitText("#attempts", "webhook.test", true)
		require.Contains(t, b.text("#attempts tbody tr"), "success")
		// The attempt's detail: request headers (signatures) and the response.
		b.submit("#attempts tbody tr a", "#attempt-outcome")
		require.Contains(t, b.text("table.headers"), "Webhook-Signature")
		require.Equal(t, "receiver says hi", b.text("#response-body"))
	})

	t.Run("events are delivered and charted", func(t *testing.T) {
		b := b.in(t)
		sendEvents(t, ingestURL, keyA, npsEvent("u1"), npsEvent("u2"), npsEvent("u3"))
		require.Eventually(t, func() bool { return len(rc.requests()) >= 4 }, 30*time.Second, 50*time.Millisecond)
		b.open(s.base + "/portal/webhooks/" + whA)
		// Test + 3 events, from the rollup (in one hour, or two if the test straddles one).
		b.waitCharted(4, 0)
		require.GreaterOrEqual(t, eval[int](b, `document.querySelectorAll("#outcomes-chart rect.bar-ok").length`), 1)
		require.NotEmpty(t, eval[string](b, `document.querySelector("#latency-chart polyline.line-p99").getAttribute("points")`))
		b.screenshot("portal-webhook.png")
		// The day view reads the same rollup.
		b.open(s.base + "/portal/webhooks/" + whA + "?step=1d")
		require.Contains(t, b.text("#outcomes-chart figcaption"), "last 30 days")
		b.waitCharted(4, 0)
		b.open(s.base + "/portal/")
		require.Contains(t, b.text(".webhook-row .rate"), "100.0%")
	})

	t.Run("a failing endpoint is dead-lettered and replayed from the page", func(t *testing.T) {
		b := b.in(t)
		rc.status.Store(http.StatusInternalServerError)
		sendEvents(t, ingestURL, keyA, npsEvent("u-dead"))
		b.open(s.base + "/portal/dead-letters")
		b.waitText("#dead-letters", "http retryable", true)
		require.Contains(t, b.text("#dead-letters tbody tr"), "HTTP 500")
		evID := eval[string](b, `document.querySelector("#dead-letters input[name=event_id]").value`)
		require.Equal(t, "CRM sync", b.text("#dead-letters tbody tr td:nth-child(2)"))
		before := len(rc.requests())
		rc.status.Store(http.StatusOK)
		b.submit("#dead-letters button.replay", "h1")
		require.Contains(t, b.text(".notice"), "Replay queued")
		require.Eventually(t, func() bool { return len(rc.requests()) > before }, 30*time.Second, 50*time.Millisecond)
		last := rc.requests()[len(rc.requests())-1]
		require.Contains(t, string(last.body), evID, "the replay carries the same event")
		require.Contains(t, b.text("#no-dead"), "No dead letters match")
		// The home page names the last error.
		b.open(s.base + "/portal/")
		require.Contains(t, b.text(".last-error"), "HTTP 500")
		b.screenshot("portal-webhooks.png")
	})

	t.Run("replay every dead letter the filter shows, and filter the log", func(t *testing.T) {
		b := b.in(t)
		rc.status.Store(http.StatusServiceUnavailable)
		sendEvents(t, ingestURL, keyA, npsEvent("u-bulk-1"), npsEvent("u-bulk-2"))
		b.open(s.base + "/portal/dead-letters?webhook_id=" + url.QueryEscape(whA))
		b.waitText("#dead-letters", "HTTP 503", true)
		require.Eventually(t, func() bool {
			b.run(chromedp.Reload())
			return eval[int](b, `document.querySelectorAll("#dead-letters tbody tr").length`) == 2
		}, 30*time.Second, 200*time.Millisecond)
		b.screenshot("portal-dead-letters.png")
		before := len(rc.requests())
		rc.status.Store(http.StatusOK)
		b.submit("#replay-all", "h1")
		require.Contains(t, b.text(".notice"), "Replay queued for 2 dead letter(s)")
		require.Eventually(t, func() bool { return len(rc.requests()) >= before+2 }, 30*time.Second, 50*time.Millisecond)

		// The log's filter form: only the failed tries.
		b.open(s.base + "/portal/attempts")
		b.setValue("#outcome", "http_retryable")
		b.submit(`.filters button[type=submit]`, "#attempts")
		require.Contains(t, b.location(), "outcome=http_retryable")
		var outcomes []string
		require.Eventually(t, func() bool {
			b.run(chromedp.Reload())
			outcomes = eval[[]string](b, `[...document.querySelectorAll("#attempts tbody tr td:nth-child(4)")].map(td => td.textContent.trim())`)
			return len(outcomes) == 9
		}, 30*time.Second, 200*time.Millisecond, "3 tries of each of 3 dead-lettered events: %v", outcomes)
		for _, o := range outcomes {
			require.Equal(t, "http retryable", o)
		}
		b.screenshot("portal-log.png")
		// A bad value gets the API's message, naming it.
		b.open(s.base + "/portal/attempts?status_code=999")
		require.Contains(t, b.text(".error"), "status_code must be")
	})

	var recovery string
	t.Run("recover what failed from the webhook page, and follow the job to its counts", func(t *testing.T) {
		b := b.in(t)
		rc.status.Store(http.StatusInternalServerError)
		sendEvents(t, ingestURL, keyA, npsEvent("u-recover"))
		// Dead-lettered, and its attempts in the log.
		require.Eventually(t, func() bool {
			for _, d := range s.must(http.StatusOK, "GET", "/v1/dead-letters?webhook_id="+whA, keyA, nil).list() {
				if d["replayed"] == false {
					return true
				}
			}
			return false
		}, 30*time.Second, 100*time.Millisecond)
		rc.status.Store(http.StatusOK)
		before := len(rc.requests())

		b.open(s.base + "/portal/webhooks/" + whA)
		require.Contains(t, b.text("#recover"), "No recoveries yet")
		// The defaults: the last 24 hours, what failed.
		require.Equal(t, "failed", eval[string](b, `document.querySelector("#recover-outcome").value`))
		since, err := time.Parse("2006-01-02T15:04", eval[string](b, `document.querySelector("#since").value`))
		require.NoError(t, err)
		require.WithinDuration(t, time.Now().UTC().Add(-24*time.Hour), since, 2*time.Minute)
		// The API's refusal, beside the field it names.
		b.setValue("#since", "2001-01-01T00:00")
		b.submit("#recover-start", "#recover-error")
		require.Contains(t, b.text("#recover-error"), "retention")
		require.Equal(t, "true", eval[string](b, `document.querySelector("#since").getAttribute("aria-invalid")`))
		require.Equal(t, "2001-01-01T00:00", eval[string](b, `document.querySelector("#since").value`), "what was typed stays")

		b.setValue("#since", since.Format("2006-01-02T15:04"))
		b.submit("#recover-start", "#job")
		require.Contains(t, b.location(), "/portal/replays/rp_")
		recovery = strings.TrimPrefix(b.location(), s.base+"/portal/replays/")
		// The page refreshes itself until the job is done.
		b.waitText("#job-status", "done", false)
		matched := b.text("#job-matched")
		require.NotEqual(t, "0", matched)
		require.Equal(t, matched, b.text("#job-replayed"), "everything matched was sent")
		require.Equal(t, "0", b.text("#job-skipped"))
		require.Eventually(t, func() bool {
			for _, r := range rc.requests()[before:] {
				if r.header.Get("surveyhooks-replay") == recovery && strings.Contains(string(r.body), "u-recover") {
					return true
				}
			}
			return false
		}, 30*time.Second, 50*time.Millisecond, "the receiver got the recovered delivery, marked with the job")
		b.screenshot("portal-recover.png")

		// The webhook page lists it among the recent recoveries.
		b.open(s.base + "/portal/webhooks/" + whA)
		require.Contains(t, b.text("#replays tbody tr:first-child"), "done")
		require.Equal(t, "/portal/replays/"+recovery, eval[string](b, `document.querySelector("#replays a").getAttribute("href")`))
	})

	t.Run("edit with the API's validation inline, disable and enable", func(t *testing.T) {
		b := b.in(t)
		b.open(s.base + "/portal/webhooks/" + whA)
		b.submit(`a[href$="/edit"]`, "form.webhook-form")
		require.Equal(t, "CRM sync", eval[string](b, `document.querySelector("#name").value`))
		b.click("details.advanced summary")
		b.typeIn("#filter", `event.event_type ==`)
		b.submit("#save", "#form-error")
		require.Contains(t, b.text("#form-error"), "invalid filter")
		require.Equal(t, "true", eval[string](b, `document.querySelector("#filter").getAttribute("aria-invalid")`))
		b.setValue("#filter", `event.event_type.startsWith("nps.")`)
		b.setValue("#description", "Pushes NPS to the CRM")
		b.submit("#save", "#send-test")
		require.Contains(t, b.text(".notice"), "Webhook saved")
		wh := s.must(http.StatusOK, "GET", "/v1/webhooks/"+whA, keyA, nil)
		require.Equal(t, `event.event_type.startsWith("nps.")`, wh.str("filter"))
		require.Equal(t, "Pushes NPS to the CRM", wh.str("description"))
		require.Equal(t, []any{"nps.scored", "survey.completed"}, wh.body["events"], "what the form did not change stays")

		b.submit(`form[action$="/enabled"] button`, "#state")
		require.Equal(t, "Disabled", b.text("#state"))
		require.Equal(t, false, s.must(http.StatusOK, "GET", "/v1/webhooks/"+whA, keyA, nil).body["enabled"])
		b.submit(`form[action$="/enabled"] button`, "#state")
		require.Equal(t, "Enabled", b.text("#state"))
	})

	t.Run("rotate and reveal the secret", func(t *testing.T) {
		b := b.in(t)
		b.open(s.base + "/portal/webhooks/" + whA)
		require.Equal(t, 1, strings.Count(b.text(".secrets"), "sha256:"))
		b.setValue("#overlap", "3600")
		b.submit("#rotate", ".notice")
		require.Contains(t, b.text(".notice"), "Secret rotated")
		secrets := b.text(".secrets")
		require.Equal(t, 2, strings.Count(secrets, "sha256:"))
		require.Contains(t, secrets, "stops signing")
		b.submit("#reveal", "#secret")
		secret := eval[string](b, `document.querySelector("#secret").value`)
		require.True(t, strings.HasPrefix(secret, "whsec_"), secret)
		sum := sha256.Sum256([]byte(secret))
		require.Contains(t, b.text(".secrets li:first-child"), "sha256:"+hex.EncodeToString(sum[:6]))
		// Deliveries are signed with it from now on.
		b.open(s.base + "/portal/webhooks/" + whA)
		b.submit("#send-test", "#test-outcome")
		last := rc.requests()[len(rc.requests())-1]
		require.NoError(t, signature.VerifyStandard(secret, last.header.Get(signature.HeaderID),
			last.header.Get(signature.HeaderTimestamp), last.header.Get(signature.HeaderSignature), last.body, time.Minute))
	})

	t.Run("usable at 375 px", func(t *testing.T) {
		b := b.in(t)
		b.run(chromedp.EmulateViewport(375, 812))
		defer func() {
			_, err := chromedp.Call(b.ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
			require.NoError(t, err)
		}()
		attempt := s.must(http.StatusOK, "GET", "/v1/webhooks/"+whA+"/attempts", keyA, nil).list()[0]["id"].(string)
		for _, path := range []string{"/portal/", "/portal/webhooks/" + whA, "/portal/attempts", "/portal/webhooks/new",
			"/portal/webhooks/" + whA + "/edit", "/portal/attempts/" + attempt, "/portal/dead-letters?webhook_id=" + whA,
			"/portal/replays/" + recovery} {
			b.open(s.base + path)
			b.checkPage()
			require.LessOrEqual(t, eval[int](b, `document.documentElement.scrollWidth`), 375, "%s scrolls sideways at 375 px", path)
		}
		b.open(s.base + "/portal/webhooks/" + whA)
		b.screenshot("portal-webhook-375.png")
		// The keyboard: the first Tab reaches "Skip to content", and Enter on a focused button sends its form.
		b.run(chromedp.KeyEvent("\t"))
		require.Equal(t, "Skip to content", eval[string](b, `document.activeElement.textContent`))
		eval[bool](b, `document.querySelector("#send-test").focus(); document.body.dataset.before = "1"; true`)
		b.run(chromedp.KeyEvent("\r"))
		b.run(chromedp.WaitVisible(chromedp.CSS("#test-outcome")))
		require.Contains(t, b.text("#test-outcome"), "Delivered")
	})

	t.Run("another project's session sees and touches nothing of the first", func(t *testing.T) {
		b := b.in(t)
		whB := s.webhook(keyB, map[string]any{"name": "Globex hook", "url": rc.URL + "/b"}).str("id")
		attA := s.must(http.StatusOK, "GET", "/v1/webhooks/"+whA+"/attempts", keyA, nil).list()[0]["id"].(string)
		deadA := s.deadLetters(keyA, "?include_replayed=true", 4)[0]["id"].(string) // 3 replayed, 1 recovered
		require.Equal(t, http.StatusOK, b.open(s.portalLink(pbID, map[string]any{})))
		require.Contains(t, b.text("header"), "Globex")
		require.NotContains(t, b.text("main"), "CRM sync")
		// Ids of the first project typed into addresses: the same 404 as an id that does not exist.
		for _, path := range []string{"/portal/webhooks/" + whA, "/portal/webhooks/" + whA + "/edit", "/portal/attempts/" + attA,
			"/portal/replays/" + recovery} {
			require.Equal(t, http.StatusNotFound, b.open(s.base+path), path)
			require.Equal(t, "Not found", b.text("h1"))
		}
		b.open(s.base + "/portal/attempts?webhook_id=" + url.QueryEscape(whA))
		require.Contains(t, b.text("#no-attempts"), "No attempts match")
		require.Empty(t, b.text("#attempts"))
		b.open(s.base + "/portal/dead-letters?webhook_id=" + url.QueryEscape(whA))
		require.Contains(t, b.text("#no-dead"), "No dead letters match")
		b.open(s.base + "/portal/webhooks/" + whB)
		require.Contains(t, b.text("#no-replays"), "No recoveries yet", "the first project's recovery is not listed")
		// Forms of the second project's own page, sent with the first's ids.
		b.open(s.base + "/portal/webhooks/" + whB)
		for path, fields := range map[string]map[string]string{
			"/portal/webhooks/" + whA + "/delete":       {},
			"/portal/webhooks/" + whA + "/enabled":      {"enabled": "false"},
			"/portal/webhooks/" + whA + "/edit":         {"name": "taken", "url": "https://example.com", "events": "nps.scored"},
			"/portal/webhooks/" + whA + "/test":         {},
			"/portal/webhooks/" + whA + "/secret":       {},
			"/portal/webhooks/" + whA + "/rotate":       {"expire_previous_in_s": "0"},
			"/portal/dead-letters/" + deadA + "/replay": {},
		} {
			require.Equal(t, http.StatusNotFound, b.post(path, fields), path)
		}
		// A forged CSRF token is refused before anything else.
		require.Equal(t, http.StatusForbidden, eval[int](b, fmt.Sprintf(
			`fetch(%q, {method: "POST", body: new URLSearchParams({csrf: "forged"})}).then(r => r.status)`, "/portal/webhooks/"+whB+"/delete")))
		// The first project is as it was.
		wh := s.must(http.StatusOK, "GET", "/v1/webhooks/"+whA, keyA, nil)
		require.Equal(t, "CRM sync", wh.str("name"))
		require.Equal(t, true, wh.body["enabled"])
		require.Len(t, wh.body["secrets"], 2)
		s.must(http.StatusOK, "GET", "/v1/webhooks/"+whB, keyB, nil)
	})

	t.Run("scoped and read-only sessions", func(t *testing.T) {
		b := b.in(t)
		other := s.webhook(keyA, map[string]any{"name": "Scoped hook", "url": rc.URL + "/scoped"}).str("id")
		require.Equal(t, http.StatusOK, b.open(s.portalLink(pa, map[string]any{"webhook_ids": []string{other}, "read_only": true})))
		require.Contains(t, b.text("main"), "Scoped hook")
		require.NotContains(t, b.text("main"), "CRM sync")
		require.Contains(t, b.text(".badge"), "Read-only")
		require.Equal(t, http.StatusNotFound, b.open(s.base+"/portal/webhooks/"+whA))
		b.open(s.base + "/portal/webhooks/" + other)
		require.Zero(t, b.text("#send-test"), "no write buttons in a read-only session")
		require.Equal(t, http.StatusForbidden, b.post("/portal/webhooks/"+other+"/test", nil))
		require.Equal(t, http.StatusForbidden, b.post("/portal/webhooks/"+other+"/secret", nil))

		// Signing out ends the session.
		b.submit(`form[action="/portal/signout"] button`, "#message")
		require.Contains(t, b.text("#message"), "signed out")
		require.Equal(t, http.StatusUnauthorized, b.open(s.base+"/portal/"))
		require.Contains(t, b.text("#message"), "not signed in")
	})

	t.Run("an expired or forged link gets a clear page", func(t *testing.T) {
		b := b.in(t)
		expiring := s.portalLink(pa, map[string]any{"expires_in": 1})
		time.Sleep(1100 * time.Millisecond)
		require.Equal(t, http.StatusUnauthorized, b.open(expiring))
		require.Contains(t, b.text("#message"), "has expired")
		require.Equal(t, http.StatusUnauthorized, b.open(s.base+"/portal/s/forged-token"))
		require.Contains(t, b.text("#message"), "not valid")
		require.Equal(t, http.StatusNotFound, b.open(s.base+"/portal/no-such-page"))
		require.Equal(t, "Page not found", b.text("h1"))
	})

	t.Run("the operator console", func(t *testing.T) {
		b := b.in(t)
		// A retry due in an hour waits in the last tier.
		held, err := proto.Marshal(&pb.Delivery{DeliveryId: "msg_held", EventId: "evt_held", WebhookId: whA, ProjectId: pa,
			EventType: "nps.scored", Body: []byte(`{}`), Attempt: 3, Tier: 2, NotBeforeMs: time.Now().Add(time.Hour).UnixMilli()})
		require.NoError(t, err)
		tier := s.cfg.Kafka.Topics.Retry(s.cfg.Kafka.RetrySchedule[1])
		require.NoError(t, s.kcl.ProduceSync(s.ctx, &kgo.Record{Topic: tier, Key: []byte(whA), Value: held}).FirstErr())
		// The platform's own endpoint for failing and disabled webhooks, switched off by hand.
		ops := s.must(http.StatusCreated, "POST", "/v1/operational-webhooks", adminToken,
			map[string]any{"name": "on-call pager", "url": "https://ops.example.com/surveyhooks", "events": []string{"webhook.disabled", "webhook.failing"}})
		s.must(http.StatusOK, "PATCH", "/v1/operational-webhooks/"+ops.str("id"), adminToken, map[string]any{"enabled": false})
		require.Equal(t, http.StatusOK, b.open(s.base+"/console/"))
		require.Equal(t, "Operator console", b.text("h1"))
		b.typeIn("#token", "wrong-token-0123456789")
		b.submit(`button[type=submit]`, "#signin-error")
		b.typeIn("#token", adminToken)
		b.submit(`button[type=submit]`, "#projects")
		require.Contains(t, b.text(fmt.Sprintf(`#projects tr[data-id=%q]`, pa)), "Acme Surveys")
		attempts, err := strconv.Atoi(b.text(fmt.Sprintf(`#projects tr[data-id=%q] td:nth-child(3)`, pa)))
		require.NoError(t, err)
		require.GreaterOrEqual(t, attempts, 8, "2 tests, 3 events, 3 tries of the dead one and its replay")
		require.Contains(t, b.text("#tiers"), "deliveries-retry-200ms | 0 | — |")
		b.waitText("#tiers", tier+" | 1 |", true)
		require.NotContains(t, b.text("#tiers"), tier+" | 1 | — |", "the held record's age is shown")
		require.Contains(t, b.text("#lag"), "surveyhooks-delivery")
		require.Contains(t, b.text("main"), "CRM sync", "the failing endpoint is ranked")
		opsRow := b.text(fmt.Sprintf(`#operational tr[data-id=%q]`, ops.str("id")))
		for _, want := range []string{"on-call pager", "https://ops.example.com/surveyhooks", "webhook.disabled, webhook.failing", "disabled"} {
			require.Contains(t, opsRow, want)
		}
		b.screenshot("console.png")
		// From a row into that project's portal.
		b.submit(fmt.Sprintf(`#projects tr[data-id=%q] button`, pa), ".webhook-row")
		require.Contains(t, b.text("header"), "Acme Surveys")
		require.Contains(t, b.text("main"), "CRM sync")
	})
}
