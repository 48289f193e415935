package portal

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
)

// notices are the fixed messages a redirect may ask the next page to show (never text from the URL).
var notices = map[string]string{
	"created":  "Webhook created. Its signing secret is ready: reveal it below when you set up your endpoint.",
	"updated":  "Webhook saved.",
	"enabled":  "Webhook enabled: matching events are delivered from now on.",
	"disabled": "Webhook disabled: no events are delivered until you enable it.",
	"deleted":  "Webhook deleted.",
	"rotated":  "Secret rotated. The new secret signs from now on; the previous one keeps signing until it expires (see below).",
	"replayed": "Replay queued: the delivery is being sent again.",
}

func notice(r *http.Request) string { return notices[r.URL.Query().Get("notice")] }

// webhook reads one webhook of the session: outside its scope is the same 404 as another
// project's webhook, which the API answers itself.
func (p *Portal) webhook(r *http.Request, s *session, id string) (*apiv1.Webhook, error) {
	if !s.Allows(id) {
		return nil, notFoundError("webhook", id)
	}
	var wh apiv1.Webhook
	if err := p.call(r, s, "GET", "/v1/webhooks/"+url.PathEscape(id), nil, &wh); err != nil {
		return nil, err
	}
	return &wh, nil
}

func (p *Portal) webhooks(r *http.Request, s *session) ([]apiv1.Webhook, error) {
	var list apiv1.List[apiv1.Webhook]
	if err := p.call(r, s, "GET", "/v1/webhooks", nil, &list); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Data, func(wh apiv1.Webhook) bool { return !s.Allows(wh.ID) }), nil
}

// health is a webhook's last 24 hours at a glance.
type health struct {
	Attempts    uint64
	SuccessRate string
	P99         string
	LastError   string
	LastErrorAt time.Time
	Unavailable bool // the delivery log did not answer
	// The endpoint's adaptive concurrency limit: the latest sent attempt's, and the lowest in 24 h
	// (0: no attempt sent).
	ConcurrencyLimit, ConcurrencyLimitMin int
}

func (p *Portal) health(r *http.Request, s *session, id string) health {
	var h health
	var st apiv1.Stats
	if err := p.call(r, s, "GET", "/v1/webhooks/"+url.PathEscape(id)+"/stats", nil, &st); err != nil {
		h.Unavailable = true
		return h
	}
	var ok uint64
	var p99 float64
	for _, b := range st.Data {
		h.Attempts += b.Count
		ok += b.Success
		if b.Count > 0 {
			p99 = max(p99, b.P99Ms)
		}
	}
	h.ConcurrencyLimit, h.ConcurrencyLimitMin = st.ConcurrencyLimit, st.ConcurrencyLimitMin
	if h.Attempts > 0 {
		h.SuccessRate = fmt.Sprintf("%.1f%%", 100*float64(ok)/float64(h.Attempts))
		h.P99 = ms(p99)
	}
	var recent apiv1.List[attemptlog.AttemptSummary]
	if err := p.call(r, s, "GET", query("/v1/webhooks/"+url.PathEscape(id)+"/attempts", "limit", "25"), nil, &recent); err == nil {
		for _, a := range recent.Data {
			if a.Outcome != "success" {
				h.LastError, h.LastErrorAt = describeFailure(a.Outcome, a.StatusCode, a.Error), a.StartedAt
				break
			}
		}
	}
	return h
}

func describeFailure(outcome string, status int, msg string) string {
	out := strings.ReplaceAll(outcome, "_", " ")
	if status > 0 {
		out += fmt.Sprintf(" (HTTP %d)", status)
	}
	if msg != "" {
		out += ": " + msg
	}
	return out
}

func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	if v < 10 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

type webhookRow struct {
	apiv1.Webhook
	Health health
}

func (p *Portal) listWebhooks(w http.ResponseWriter, r *http.Request, s *session) error {
	whs, err := p.webhooks(r, s)
	if err != nil {
		return err
	}
	rows := make([]webhookRow, 0, len(whs))
	for _, wh := range whs {
		rows = append(rows, webhookRow{Webhook: wh, Health: p.health(r, s, wh.ID)})
	}
	pg := s.page("Webhooks", "")
	pg.Notice = notice(r)
	pg.Data = struct {
		Rows           []webhookRow
		CanWrite       bool
		StorageMasking []apiv1.MaskingRule
	}{rows, !s.ReadOnly && !s.Scoped(), p.cfg.Backend.StorageMasking(s.ProjectID)}
	p.render(w, r, http.StatusOK, "webhooks", pg)
	return nil
}

// form is the webhook form's state: what the user typed, and the API's complaint if any.
type form struct {
	Action     string
	Submit     string
	New        bool
	Name       string
	Descr      string
	URL        string
	AllEvents  bool
	Events     []eventChoice
	Enabled    bool
	Version    string
	Versions   []string
	Format     string
	Formats    []string
	Filter     string
	Transform  string
	RateLimit  string
	RetryCE    bool
	Headers    string
	UserProps  string
	CompProps  string
	ErrField   string // the form field the error is about ("" when not one field)
	ErrMessage string
}

func (f *form) fill() {
	f.Versions, f.Formats = envelope.Versions, append([]string{""}, envelope.Formats...)
	if f.Version == "" {
		f.Version = envelope.DefaultVersion
	}
}

func formOf(wh *apiv1.Webhook) *form {
	f := &form{Name: wh.Name, Descr: wh.Description, URL: wh.URL, Enabled: wh.Enabled, Version: wh.PayloadVersion,
		Format: wh.Format, Filter: wh.Filter, Transform: wh.Transform, RetryCE: wh.RetryClientErrors,
		UserProps: strings.Join(wh.UserProperties, ", "), CompProps: strings.Join(wh.CompanyProperties, ", ")}
	if wh.RateLimitPerS > 0 {
		f.RateLimit = strconv.FormatFloat(wh.RateLimitPerS, 'f', -1, 64)
	}
	var hs []string
	for k, v := range wh.Headers {
		hs = append(hs, k+": "+v)
	}
	slices.Sort(hs)
	f.Headers = strings.Join(hs, "\n")
	f.AllEvents = slices.Contains(wh.Events, "*")
	f.fill()
	f.Events = eventChoices(wh.Events, f.Format, f.Version)
	return f
}

// readForm reads the posted form into the form's state and the API body it stands for; a value
// the API could not even be sent (a rate that is not a number, a header line without a colon)
// is reported here, naming the field.
func readForm(r *http.Request) (*form, map[string]any) {
	v := r.PostForm
	f := &form{Name: v.Get("name"), Descr: v.Get("description"), URL: v.Get("url"), AllEvents: v.Get("all_events") == "on",
		Enabled: v.Get("enabled") == "on", Version: v.Get("payload_version"), Format: v.Get("format"),
		Filter: v.Get("filter"), Transform: v.Get("transform"), RateLimit: strings.TrimSpace(v.Get("rate_limit_per_s")),
		RetryCE: v.Get("retry_client_errors") == "on", Headers: v.Get("headers"),
		UserProps: v.Get("user_properties"), CompProps: v.Get("company_properties")}
	f.fill()
	events := v["events"]
	if f.AllEvents {
		events = []string{"*"}
	}
	f.Events = eventChoices(events, f.Format, f.Version)
	body := map[string]any{"name": f.Name, "description": f.Descr, "url": f.URL, "events": nonNil(events),
		"payload_version": f.Version, "format": f.Format, "filter": f.Filter, "transform": f.Transform,
		"retry_client_errors": f.RetryCE, "user_properties": split(f.UserProps), "company_properties": split(f.CompProps)}
	rate := 0.0
	if f.RateLimit != "" {
		var err error
		if rate, err = strconv.ParseFloat(f.RateLimit, 64); err != nil {
			f.ErrField, f.ErrMessage = "rate_limit_per_s", "The rate limit must be a number of deliveries per second (0 or empty: unlimited)."
		}
	}
	body["rate_limit_per_s"] = rate
	headers := map[string]any{}
	for i, line := range strings.Split(f.Headers, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, val, ok := strings.Cut(line, ":")
		if !ok {
			f.ErrField, f.ErrMessage = "headers", fmt.Sprintf("Header line %d must read \"Name: value\".", i+1)
			continue
		}
		headers[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	body["headers"] = headers
	return f, body
}

func split(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// formField maps the API's field name (events[2], headers.X-Team, …) to the form field showing it.
func formField(apiField string) string {
	name, _, _ := strings.Cut(apiField, "[")
	name, _, _ = strings.Cut(name, ".")
	if name == "event_toggles" {
		return "events"
	}
	return name
}

func (p *Portal) renderForm(w http.ResponseWriter, r *http.Request, s *session, status int, title string, f *form) {
	pg := s.page(title, "")
	pg.Data = f
	p.render(w, r, status, "webhook_form", pg)
}

func (p *Portal) newWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	if s.Scoped() {
		return &httpapi.Error{Status: http.StatusForbidden, Message: "This portal session manages only the webhooks it was opened for; it cannot create others."}
	}
	f := &form{Action: "/portal/webhooks", Submit: "Create webhook", New: true, Enabled: true}
	f.fill()
	f.Events = eventChoices(nil, f.Format, f.Version)
	p.renderForm(w, r, s, http.StatusOK, "New webhook", f)
	return nil
}

func (p *Portal) createWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	if s.Scoped() {
		return &httpapi.Error{Status: http.StatusForbidden, Message: "This portal session manages only the webhooks it was opened for; it cannot create others."}
	}
	f, body := readForm(r)
	f.Action, f.Submit, f.New = "/portal/webhooks", "Create webhook", true
	body["enabled"] = f.Enabled
	if r.PostForm.Get("preview") != "" || f.ErrMessage != "" {
		p.renderForm(w, r, s, http.StatusOK, "New webhook", f)
		return nil
	}
	var created apiv1.Webhook
	if err := p.call(r, s, "POST", "/v1/webhooks", body, &created); err != nil {
		return p.formError(w, r, s, "New webhook", f, err)
	}
	http.Redirect(w, r, "/portal/webhooks/"+url.PathEscape(created.ID)+"?notice=created", http.StatusSeeOther)
	return nil
}

// formError shows the API's validation error inline in the form; other errors go up.
func (p *Portal) formError(w http.ResponseWriter, r *http.Request, s *session, title string, f *form, err error) error {
	ae, ok := err.(*httpapi.Error)
	if !ok || ae.Status != http.StatusBadRequest {
		return err
	}
	f.ErrField, f.ErrMessage = formField(ae.Field), ae.Message
	p.renderForm(w, r, s, http.StatusBadRequest, title, f)
	return nil
}

func (p *Portal) editWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := p.webhook(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	f := formOf(wh)
	f.Action, f.Submit = "/portal/webhooks/"+url.PathEscape(wh.ID)+"/edit", "Save changes"
	p.renderForm(w, r, s, http.StatusOK, "Edit "+wh.Name, f)
	return nil
}

func (p *Portal) updateWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := p.webhook(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	f, body := readForm(r)
	f.Action, f.Submit = "/portal/webhooks/"+url.PathEscape(wh.ID)+"/edit", "Save changes"
	if r.PostForm.Get("preview") != "" || f.ErrMessage != "" {
		p.renderForm(w, r, s, http.StatusOK, "Edit "+wh.Name, f)
		return nil
	}
	// A merge patch keeps headers it is not told about: the ones taken out of the form are nulled.
	headers := body["headers"].(map[string]any)
	for k := range wh.Headers {
		if _, kept := headers[k]; !kept {
			headers[k] = nil
		}
	}
	if err := p.call(r, s, "PATCH", "/v1/webhooks/"+url.PathEscape(wh.ID), body, nil); err != nil {
		return p.formError(w, r, s, "Edit "+wh.Name, f, err)
	}
	http.Redirect(w, r, "/portal/webhooks/"+url.PathEscape(wh.ID)+"?notice=updated", http.StatusSeeOther)
	return nil
}

func (p *Portal) toggleWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := p.webhook(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	enable := r.PostForm.Get("enabled") == "true"
	if err := p.call(r, s, "PATCH", "/v1/webhooks/"+url.PathEscape(wh.ID), map[string]any{"enabled": enable}, nil); err != nil {
		return err
	}
	n := "disabled"
	if enable {
		n = "enabled"
	}
	http.Redirect(w, r, "/portal/webhooks/"+url.PathEscape(wh.ID)+"?notice="+n, http.StatusSeeOther)
	return nil
}

func (p *Portal) deleteWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := p.webhook(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := p.call(r, s, "DELETE", "/v1/webhooks/"+url.PathEscape(wh.ID), nil, nil); err != nil {
		return err
	}
	http.Redirect(w, r, "/portal/?notice=deleted", http.StatusSeeOther)
	return nil
}

// detail is the webhook page.
type detail struct {
	Webhook        *apiv1.Webhook
	Health         health
	Chart          *charts
	Step           string
	Attempts       []attemptlog.AttemptSummary
	Snippet        string
	Secret         string // only on the page answering "Reveal"
	LogError       string
	Recover        *recoverForm
	Replays        []attemptlog.ReplayJob // the project's recent recoveries the session may see
	ReplaysMissing bool                   // the log did not answer
	// Stopped is set when surveyhooks disabled the webhook itself ("failing", "gone"): since
	// when, for "Recover what was skipped".
	Stopped      bool
	StoppedSince time.Time
}

func (p *Portal) showWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	return p.webhookPage(w, r, s, "", nil, http.StatusOK)
}

// webhookPage shows the webhook; secret when the user asked to reveal it, rf when the recover
// form comes back with the API's complaint (nil: its defaults).
func (p *Portal) webhookPage(w http.ResponseWriter, r *http.Request, s *session, secret string, rf *recoverForm, status int) error {
	wh, err := p.webhook(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	if rf == nil {
		rf = newRecoverForm(p.cfg.Now())
	}
	d := &detail{Webhook: wh, Health: p.health(r, s, wh.ID), Step: r.URL.Query().Get("step"), Snippet: snippet, Secret: secret,
		Recover: rf}
	var ok bool
	d.Replays, ok = p.recentReplays(r, s, 5)
	d.ReplaysMissing = !ok
	if !wh.Enabled && (wh.DisabledReason == "failing" || wh.DisabledReason == "gone") {
		d.Stopped, d.StoppedSince = true, wh.UpdatedAt
		if wh.FailingSince != nil {
			d.StoppedSince = *wh.FailingSince
		}
	}
	if d.Step != "1d" {
		d.Step = "1h"
	}
	d.Chart, err = p.charts(r, s, wh.ID, d.Step)
	if err != nil {
		d.LogError = logUnavailable
		if ae := (*httpapi.Error)(nil); errors.As(err, &ae) && ae.Status != http.StatusServiceUnavailable {
			d.LogError = ae.Message
		}
	}
	var recent apiv1.List[attemptlog.AttemptSummary]
	if err := p.call(r, s, "GET", query("/v1/webhooks/"+url.PathEscape(wh.ID)+"/attempts", "limit", "10"), nil, &recent); err == nil {
		d.Attempts = recent.Data
	}
	pg := s.page(wh.Name, "")
	pg.Notice = notice(r)
	pg.Data = d
	p.render(w, r, status, "webhook", pg)
	return nil
}

func (p *Portal) sendTest(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := p.webhook(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	var res apiv1.TestResult
	if err := p.call(r, s, "POST", "/v1/webhooks/"+url.PathEscape(wh.ID)+"/test", nil, &res); err != nil {
		return err
	}
	res.RequestBody = indent([]byte(res.RequestBody))
	pg := s.page("Test sent to "+wh.Name, "")
	pg.BackURL, pg.BackLabel = "/portal/webhooks/"+url.PathEscape(wh.ID), "Back to "+wh.Name
	pg.Data = struct {
		Webhook *apiv1.Webhook
		Result  apiv1.TestResult
	}{wh, res}
	p.render(w, r, http.StatusOK, "test", pg)
	return nil
}

func (p *Portal) revealSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := p.webhook(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	secret, err := p.cfg.Backend.RevealSecret(s.ProjectID, wh.ID)
	if err != nil {
		return err
	}
	return p.webhookPage(w, r, s, secret, nil, http.StatusOK)
}

func (p *Portal) rotateSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := p.webhook(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	overlap, err := strconv.ParseInt(r.PostForm.Get("expire_previous_in_s"), 10, 64)
	if err != nil {
		overlap = int64(24 * time.Hour / time.Second)
	}
	if err := p.call(r, s, "POST", "/v1/webhooks/"+url.PathEscape(wh.ID)+"/secrets/rotate",
		map[string]any{"expire_previous_in_s": overlap}, nil); err != nil {
		return err
	}
	http.Redirect(w, r, "/portal/webhooks/"+url.PathEscape(wh.ID)+"?notice=rotated", http.StatusSeeOther)
	return nil
}

// snippet is the verification code shown beside the secret: Standard Webhooks, in Node.js.
const snippet = `// Node.js: verify a surveyhooks webhook (Standard Webhooks signature)
const crypto = require("crypto");
function verify(secret, headers, rawBody) {
  const id = headers["webhook-id"], ts = headers["webhook-timestamp"];
  if (Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false; // replayed or stale
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = crypto.createHmac("sha256", key).update(id + "." + ts + "." + rawBody).digest("base64");
  return headers["webhook-signature"].split(" ").some((s) => s === "v1," + expected);
}`
