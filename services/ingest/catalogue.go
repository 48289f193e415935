package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Limits on what one event may carry.
const (
	maxIDLen = 128 // event_id, project_id
)

func bad(field, format string, args ...any) *httpapi.Error {
	return httpapi.Errorf(http.StatusBadRequest, "invalid_field", field, format, args...)
}

func missing(field, format string, args ...any) *httpapi.Error {
	return httpapi.Errorf(http.StatusBadRequest, "missing_field", field, format, args...)
}

// Validate checks ev against the catalogue (envelope.Catalogue) and normalises it: element defaults, time_ms from the
// receive time when absent. p prefixes every field name in errors ("events[2]."). It is the same
// check for JSON and protobuf input, so both kinds of producer get the same answers.
func Validate(ev *pb.Event, p string) *httpapi.Error {
	if ev.EventType == "" {
		return missing(p+"event_type", "event_type is required")
	}
	t, ok := envelope.LookupEventType(ev.EventType)
	if !ok {
		if ev.EventType == envelope.TestEventType {
			return bad(p+"event_type", "%q is made only by Send Test (POST /v1/webhooks/{id}/test)", ev.EventType)
		}
		return bad(p+"event_type", "unknown event_type %q; the catalogue is in docs/events.md", ev.EventType)
	}
	if len(ev.EventId) > maxIDLen {
		return bad(p+"event_id", "event_id is at most %d characters", maxIDLen)
	}
	if strings.ContainsFunc(ev.EventId, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return bad(p+"event_id", "event_id must not contain spaces or control characters")
	}
	if ev.TimeMs < 0 {
		return bad(p+"time_ms", "time_ms must not be negative")
	}
	if ev.TimeMs == 0 {
		ev.TimeMs = ev.ReceivedAtMs
	}
	u := ev.GetUser()
	switch {
	case t.Who == envelope.UserID && u.GetId() == "":
		return missing(p+"user.id", "user.id is required for %s", t.Name)
	case t.Who == envelope.UserOrAnonymous && u.GetId() == "" && u.GetAnonymousId() == "":
		return missing(p+"user.id", "user.id or user.anonymous_id is required for %s", t.Name)
	}
	if t.Survey && ev.GetSurvey().GetId() == "" {
		return missing(p+"survey.id", "survey.id is required for %s", t.Name)
	}
	if t.Question {
		if ev.GetQuestion().GetId() == "" {
			return missing(p+"question.id", "question.id is required for %s", t.Name)
		}
		if len(ev.GetAnswer().GetFields()) == 0 {
			return missing(p+"answer.fields", "answer with at least one field is required for %s", t.Name)
		}
	}
	if t.Element != "" {
		if err := element(ev, &t, p); err != nil {
			return err
		}
	}
	if n := ev.GetNps(); n != nil && n.Score != nil && (*n.Score < 0 || *n.Score > 10) {
		return bad(p+"nps.score", "nps.score must be an integer from 0 to 10, got %d", *n.Score)
	}
	if t.Score && (ev.GetNps() == nil || ev.Nps.Score == nil) {
		return missing(p+"nps.score", "nps.score (an integer from 0 to 10) is required for %s", t.Name)
	}
	if t.Feedback && strings.TrimSpace(ev.GetNps().GetFeedback()) == "" {
		return missing(p+"nps.feedback", "nps.feedback is required for %s", t.Name)
	}
	if r := ev.GetResponse(); r != nil {
		switch r.Completion {
		case "", "not_started", "partially_completed", "fully_completed":
		default:
			return bad(p+"response.completion", "response.completion must be not_started, partially_completed or fully_completed, got %q", r.Completion)
		}
		if r.TimeToCompleteS < 0 {
			return bad(p+"response.time_to_complete_s", "response.time_to_complete_s must not be negative")
		}
	}
	// Protobuf producers hand us the JSON bytes themselves: they must be objects too.
	for _, o := range []struct {
		field string
		b     []byte
	}{{"user.traits", u.GetTraits()}, {"account.traits", ev.GetAccount().GetTraits()},
		{"response.hidden_fields", ev.GetResponse().GetHiddenFields()}, {"properties", ev.Properties}} {
		if len(o.b) > 0 && !isJSONObject(o.b) {
			return bad(p+o.field, "%s must be a JSON object", o.field)
		}
		if len(o.b) > 0 {
			if herr := strictJSON(o.b, p+o.field); herr != nil {
				return herr
			}
		}
	}
	// So are answers' raw values, which JSON input had checked while decoding.
	check := func(at string, a *pb.Answer) *httpapi.Error {
		for i, f := range a.GetFields() {
			if len(f.Value) == 0 {
				continue
			}
			path := func() string { return fmt.Sprintf("%s%sfields[%d].value", p, at, i) } // only for an error
			if !json.Valid(f.Value) {
				return bad(path(), "%s must be a JSON value", path())
			}
			if strictJSON(f.Value, "") != nil {
				return strictJSON(f.Value, path())
			}
		}
		return nil
	}
	if herr := check("answer.", ev.GetAnswer()); herr != nil {
		return herr
	}
	for i, it := range ev.GetResponse().GetItems() {
		if herr := check(fmt.Sprintf("response.items[%d].answer.", i), it.GetAnswer()); herr != nil {
			return herr
		}
	}
	return nil
}

func element(ev *pb.Event, t *envelope.EventType, p string) *httpapi.Error {
	e := ev.GetElement()
	if e.GetId() == "" {
		if t.SurveyOr && ev.GetSurvey().GetId() != "" {
			return nil // a survey-backed form: the survey is the form
		}
		if t.SurveyOr {
			return missing(p+"element.id", "element.id (the form) or survey.id is required for %s", t.Name)
		}
		return missing(p+"element.id", "element.id is required for %s", t.Name)
	}
	if e.Type != "" && e.Type != t.Element {
		return bad(p+"element.type", "element.type of %s is %q, got %q", t.Name, t.Element, e.Type)
	}
	e.Type = t.Element
	if e.Action == "" {
		e.Action = t.Action
	}
	return nil
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 1 && b[0] == '{' && json.Valid(b)
}
