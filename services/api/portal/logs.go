package portal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
)

// outcomes are the log's outcome names a filter may choose, as the API knows them.
var outcomes = []string{"success", "http_retryable", "http_permanent", "timeout", "connection_error",
	"blocked_destination", "circuit_open", "gone", "webhook_disabled", "invalid_request"}

// logFilter is the delivery log's (and the dead letters') filter form.
type logFilter struct {
	WebhookID, Outcome, EventType, EventID, StatusCode string
	From, To                                           string // datetime-local, UTC
	Webhooks                                           []apiv1.Webhook
	Outcomes, EventTypes                               []string
	Error                                              string
	NeedWebhook                                        bool // a session scoped to several webhooks must pick one
}

const localTime = "2006-01-02T15:04"

// filterOf reads the filter from the query string, within the session's scope.
func (p *Portal) filterOf(r *http.Request, s *session) (*logFilter, error) {
	q := r.URL.Query()
	f := &logFilter{WebhookID: q.Get("webhook_id"), Outcome: q.Get("outcome"), EventType: q.Get("event_type"),
		EventID: q.Get("event_id"), StatusCode: q.Get("status_code"), From: q.Get("from"), To: q.Get("to"),
		Outcomes: outcomes, EventTypes: append(slices.Clone(envelope.EventTypes), envelope.TestEventType)}
	whs, err := p.webhooks(r, s)
	if err != nil {
		return nil, err
	}
	f.Webhooks = whs
	if s.Scoped() {
		if f.WebhookID == "" && len(s.WebhookIDs) == 1 {
			f.WebhookID = s.WebhookIDs[0]
		}
		if f.WebhookID == "" {
			f.NeedWebhook = true
		} else if !s.Allows(f.WebhookID) {
			return nil, notFoundError("webhook", f.WebhookID)
		}
	}
	return f, nil
}

// apiTime turns a datetime-local value (read as UTC) into the API's RFC 3339; anything else is
// passed on for the API to refuse by name.
func apiTime(v string) string {
	if t, err := time.Parse(localTime, v); err == nil {
		return t.UTC().Format(time.RFC3339)
	}
	return v
}

func (f *logFilter) params(extra ...string) []string {
	return append([]string{"webhook_id", f.WebhookID, "outcome", f.Outcome, "event_type", f.EventType,
		"event_id", f.EventID, "status_code", f.StatusCode, "from", apiTime(f.From), "to", apiTime(f.To)}, extra...)
}

// pageURL is this filter's page with another cursor.
func (f *logFilter) pageURL(path, cursor string) string {
	return query(path, "webhook_id", f.WebhookID, "outcome", f.Outcome, "event_type", f.EventType, "event_id", f.EventID,
		"status_code", f.StatusCode, "from", f.From, "to", f.To, "cursor", cursor)
}

func (p *Portal) listAttempts(w http.ResponseWriter, r *http.Request, s *session) error {
	f, err := p.filterOf(r, s)
	if err != nil {
		return err
	}
	var list apiv1.List[attemptlog.AttemptSummary]
	if !f.NeedWebhook {
		err := p.call(r, s, "GET", query("/v1/attempts", f.params("limit", "50", "cursor", r.URL.Query().Get("cursor"))...), nil, &list)
		if ae, ok := err.(*httpapi.Error); ok && ae.Status == http.StatusBadRequest {
			f.Error = ae.Message
		} else if err != nil {
			return err
		}
	}
	next := ""
	if list.NextCursor != "" {
		next = f.pageURL("/portal/attempts", list.NextCursor)
	}
	pg := s.page("Delivery log", "")
	pg.Data = struct {
		Filter   *logFilter
		Attempts []attemptlog.AttemptSummary
		Next     string
		Names    map[string]string
	}{f, list.Data, next, names(f.Webhooks)}
	p.render(w, r, http.StatusOK, "attempts", pg)
	return nil
}

func names(whs []apiv1.Webhook) map[string]string {
	m := make(map[string]string, len(whs))
	for _, wh := range whs {
		m[wh.ID] = wh.Name
	}
	return m
}

func (p *Portal) showAttempt(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	var a attemptlog.AttemptDetail
	if err := p.call(r, s, "GET", "/v1/attempts/"+url.PathEscape(id), nil, &a); err != nil {
		return err
	}
	if !s.Allows(a.WebhookID) {
		return notFoundError("attempt", id)
	}
	a.RequestBody, a.ResponseBody = indent([]byte(a.RequestBody)), indent([]byte(a.ResponseBody))
	pg := s.page("Attempt "+a.AttemptID, "")
	pg.BackURL, pg.BackLabel = query("/portal/attempts", "webhook_id", a.WebhookID), "Back to the delivery log"
	pg.Data = a
	p.render(w, r, http.StatusOK, "attempt", pg)
	return nil
}

// indent pretty-prints a JSON body, and leaves anything else as it is.
func indent(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") == nil {
		return out.String()
	}
	return string(b)
}

func (p *Portal) listDeadLetters(w http.ResponseWriter, r *http.Request, s *session) error {
	f, err := p.filterOf(r, s)
	if err != nil {
		return err
	}
	var list apiv1.List[attemptlog.DeadLetter]
	if !f.NeedWebhook {
		err := p.call(r, s, "GET", query("/v1/dead-letters", f.params("limit", "50", "cursor", r.URL.Query().Get("cursor"))...), nil, &list)
		if ae, ok := err.(*httpapi.Error); ok && ae.Status == http.StatusBadRequest {
			f.Error = ae.Message
		} else if err != nil {
			return err
		}
	}
	next := ""
	if list.NextCursor != "" {
		next = f.pageURL("/portal/dead-letters", list.NextCursor)
	}
	pg := s.page("Dead letters", "")
	pg.Notice = notice(r)
	if n, err := strconv.Atoi(r.URL.Query().Get("replayed")); err == nil && n >= 0 {
		pg.Notice = fmt.Sprintf("Replay queued for %d dead letter(s).", n)
	}
	pg.Data = struct {
		Filter *logFilter
		Dead   []attemptlog.DeadLetter
		Next   string
		Names  map[string]string
	}{f, list.Data, next, names(f.Webhooks)}
	p.render(w, r, http.StatusOK, "dead_letters", pg)
	return nil
}

// replayDeadLetter replays one dead letter. A scoped session first finds it among its own
// webhooks' dead letters, so an id from outside the scope is a 404 like one from another project.
func (p *Portal) replayDeadLetter(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	if s.Scoped() {
		whID, evID := r.PostForm.Get("webhook_id"), r.PostForm.Get("event_id")
		if !s.Allows(whID) || evID == "" {
			return notFoundError("dead letter", id)
		}
		var list apiv1.List[attemptlog.DeadLetter]
		if err := p.call(r, s, "GET", query("/v1/dead-letters", "webhook_id", whID, "event_id", evID, "include_replayed", "true", "limit", "500"), nil, &list); err != nil {
			return err
		}
		if !slices.ContainsFunc(list.Data, func(d attemptlog.DeadLetter) bool { return d.ID == id }) {
			return notFoundError("dead letter", id)
		}
	}
	if err := p.call(r, s, "POST", "/v1/dead-letters/"+url.PathEscape(id)+"/replay", nil, nil); err != nil {
		return err
	}
	http.Redirect(w, r, "/portal/dead-letters?notice=replayed", http.StatusSeeOther)
	return nil
}

// replayDeadLetters replays every dead letter the filter shows (the API's bulk replay).
func (p *Portal) replayDeadLetters(w http.ResponseWriter, r *http.Request, s *session) error {
	v := r.PostForm
	in := map[string]any{}
	for _, k := range []string{"webhook_id", "outcome", "event_type", "event_id"} {
		if v.Get(k) != "" {
			in[k] = v.Get(k)
		}
	}
	for _, k := range []string{"from", "to"} {
		if v.Get(k) != "" {
			in[k] = apiTime(v.Get(k))
		}
	}
	if s.Scoped() {
		id, _ := in["webhook_id"].(string)
		if !s.Allows(id) || id == "" {
			return notFoundError("webhook", id)
		}
	}
	var res apiv1.DeadLetterReplay
	if err := p.call(r, s, "POST", "/v1/dead-letters/replay", in, &res); err != nil {
		return err
	}
	http.Redirect(w, r, query("/portal/dead-letters", "webhook_id", v.Get("webhook_id"), "replayed", strconv.Itoa(res.Replayed)), http.StatusSeeOther)
	return nil
}
