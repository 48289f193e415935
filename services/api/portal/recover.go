package portal

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
)

// Recover (Svix's "Recover failed messages"): a webhook's page starts a replay job over a time
// range through the API (POST /v1/webhooks/{id}/replays, docs/replays.md), and the job's page
// follows it (GET /v1/replays/{id}) until it is done.

// recoverOutcomes are the outcomes the form offers, in the API's names.
var recoverOutcomes = []string{attemptlog.ReplayFailed, attemptlog.ReplayDead, attemptlog.ReplaySkipped, attemptlog.ReplayAll}

// recoverForm is the recover form's state: what the user chose, and the API's complaint if any.
type recoverForm struct {
	Since, Until string // datetime-local, UTC
	Outcome      string
	Outcomes     []string
	ErrField     string // "since", "until", "outcome" or "" (not one field)
	ErrMessage   string
}

func newRecoverForm(now time.Time) *recoverForm {
	now = now.UTC()
	return &recoverForm{Since: now.Add(-24 * time.Hour).Format(localTime), Until: now.Add(time.Minute).Format(localTime),
		Outcome: attemptlog.ReplayFailed, Outcomes: recoverOutcomes}
}

// Invalid reports whether the API's error is about field.
func (f *recoverForm) Invalid(field string) bool { return f != nil && f.ErrField == field }

// rfc3339 turns a datetime-local value (UTC) into the API's RFC 3339; a value that is not one is
// passed on as typed, for the API to name.
func rfc3339(v string) string {
	for _, layout := range []string{localTime, "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC().Format(time.RFC3339)
		}
	}
	return v
}

// recoverWebhook starts a replay job for the webhook and shows its page; the API's 4xx is shown
// beside the form field it names. With enable=true (the disabled banner's "Recover what was
// skipped") the webhook is enabled first: a job sends only into an enabled webhook.
func (p *Portal) recoverWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := p.webhook(r, s, r.PathValue("id"))
	if err != nil {
		return err
	}
	f := newRecoverForm(p.cfg.Now())
	f.Since, f.Until, f.Outcome = r.PostForm.Get("since"), r.PostForm.Get("until"), r.PostForm.Get("outcome")
	in := map[string]any{"since": rfc3339(f.Since), "outcome": f.Outcome}
	if f.Until != "" {
		in["until"] = rfc3339(f.Until)
	}
	if r.PostForm.Get("enable") == "true" && !wh.Enabled {
		if err := p.call(r, s, "PATCH", "/v1/webhooks/"+url.PathEscape(wh.ID), map[string]any{"enabled": true}, nil); err != nil {
			return err
		}
	}
	var job attemptlog.ReplayJob
	if err := p.call(r, s, "POST", "/v1/webhooks/"+url.PathEscape(wh.ID)+"/replays", in, &job); err != nil {
		var ae *httpapi.Error
		if !errors.As(err, &ae) || ae.Status >= 500 || ae.Status == http.StatusNotFound {
			return err
		}
		f.ErrField, f.ErrMessage = ae.Field, ae.Message
		if f.ErrField == "target_webhook_id" {
			f.ErrField = "" // the target is this webhook: not a field of the form
		}
		return p.webhookPage(w, r, s, "", f, ae.Status)
	}
	http.Redirect(w, r, "/portal/replays/"+url.PathEscape(job.ID), http.StatusSeeOther)
	return nil
}

// replayAllowed reports whether the session may see the job: both its webhooks are in scope.
func replayAllowed(s *session, j attemptlog.ReplayJob) bool {
	return s.Allows(j.WebhookID) && s.Allows(j.TargetWebhookID)
}

// recentReplays is the project's latest replay jobs the session may see; ok is false when the
// log does not answer (the page says so rather than fail).
func (p *Portal) recentReplays(r *http.Request, s *session, limit int) (jobs []attemptlog.ReplayJob, ok bool) {
	var list apiv1.List[attemptlog.ReplayJob]
	if err := p.call(r, s, "GET", "/v1/replays?limit=50", nil, &list); err != nil {
		return nil, false
	}
	jobs = slices.DeleteFunc(list.Data, func(j attemptlog.ReplayJob) bool { return !replayAllowed(s, j) })
	return jobs[:min(limit, len(jobs))], true
}

// showReplay is a replay job's page: its range, status and counts; it reloads itself every few
// seconds while the job runs.
func (p *Portal) showReplay(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	var job attemptlog.ReplayJob
	if err := p.call(r, s, "GET", "/v1/replays/"+url.PathEscape(id), nil, &job); err != nil {
		return err
	}
	if !replayAllowed(s, job) {
		return notFoundError("replay", id)
	}
	names := map[string]string{}
	if whs, err := p.webhooks(r, s); err == nil {
		for _, wh := range whs {
			names[wh.ID] = wh.Name
		}
	}
	pg := s.page("Recovery "+job.ID, "")
	if job.Status == attemptlog.JobRunning {
		pg.Refresh = 2
	}
	pg.BackURL, pg.BackLabel = "/portal/webhooks/"+url.PathEscape(job.WebhookID), "Back to "+nameOr(names, job.WebhookID)
	recent, ok := p.recentReplays(r, s, 10)
	pg.Data = struct {
		Job           attemptlog.ReplayJob
		Names         map[string]string
		Recent        []attemptlog.ReplayJob
		RecentMissing bool
	}{job, names, recent, !ok}
	p.render(w, r, http.StatusOK, "replay", pg)
	return nil
}

func nameOr(names map[string]string, id string) string {
	if n := names[id]; n != "" {
		return n
	}
	return id
}
