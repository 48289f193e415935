package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Who says which user identification an event type needs.
type Who int

const (
	// UserOrAnonymous needs user.id or user.anonymous_id: the event is about someone.
	UserOrAnonymous Who = iota
	// UserID needs user.id: an anonymous id cannot be identified.
	UserID
	// UserOptional needs no user: a form on a public page may be submitted by a visitor nobody
	// knows (Ask Users' form.submission.created).
	UserOptional
)

// EventType is one entry of the producer catalogue and what an event of that type must carry
// beyond event_type. Element, when set, is the element.type of the family (flows, checklists,
// feature tags, buttons, forms): element.type and element.action default to it and to the
// type's action, and a different element.type is refused.
type EventType struct {
	Name     string
	Who      Who
	Survey   bool   // survey.id
	Question bool   // question.id and an answer with at least one field
	Element  string // element.id of this element.type (unless SurveyOr)
	Action   string // element.action default
	SurveyOr bool   // element.id or survey.id (forms: a form is either)
	Score    bool   // nps.score, an integer 0–10
	Feedback bool   // nps.feedback, not blank
}

// EventTypes is the catalogue producers may send (DESIGN §1), in documentation order.
// `webhook.test` is not in it: only the API's Send Test makes that one.
var EventTypes = []EventType{
	{Name: "survey.displayed", Survey: true},
	{Name: "survey.question_answered", Survey: true, Question: true},
	{Name: "survey.completed", Survey: true},
	{Name: "survey.dismissed", Survey: true},
	{Name: "form.submitted", Who: UserOptional, Element: "form", Action: "submitted", SurveyOr: true},
	{Name: "nps.scored", Score: true},
	{Name: "nps.feedback", Feedback: true},
	{Name: "nps.dismissed"},
	{Name: "nps.ask_later"},
	{Name: "flow.seen", Element: "flow", Action: "seen"},
	{Name: "flow.completed", Element: "flow", Action: "completed"},
	{Name: "flow.dismissed", Element: "flow", Action: "dismissed"},
	{Name: "checklist.seen", Element: "checklist", Action: "seen"},
	{Name: "checklist.completed", Element: "checklist", Action: "completed"},
	{Name: "checklist.dismissed", Element: "checklist", Action: "dismissed"},
	{Name: "feature_tag.clicked", Element: "feature_tag", Action: "clicked"},
	{Name: "feature_tag.hovered", Element: "feature_tag", Action: "hovered"},
	{Name: "feature_tag.text_input", Element: "feature_tag", Action: "text_input"},
	{Name: "button.tracked", Element: "button", Action: "tracked"},
	{Name: "user.identified", Who: UserID},
}

// testEventType is made only by the API's Send Test.
const testEventType = "webhook.test"

var eventTypesByName = func() map[string]*EventType {
	m := make(map[string]*EventType, len(EventTypes))
	for i := range EventTypes {
		m[EventTypes[i].Name] = &EventTypes[i]
	}
	return m
}()

// LookupEventType returns the catalogue entry named name.
func LookupEventType(name string) (EventType, bool) {
	t, ok := eventTypesByName[name]
	if !ok {
		return EventType{}, false
	}
	return *t, true
}

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

// Validate checks ev against the catalogue and normalises it: element defaults, time_ms from the
// receive time when absent. p prefixes every field name in errors ("events[2]."). It is the same
// check for JSON and protobuf input, so both kinds of producer get the same answers.
func Validate(ev *pb.Event, p string) *httpapi.Error {
	if ev.EventType == "" {
		return missing(p+"event_type", "event_type is required")
	}
	t, ok := eventTypesByName[ev.EventType]
	if !ok {
		if ev.EventType == testEventType {
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
	case t.Who == UserID && u.GetId() == "":
		return missing(p+"user.id", "user.id is required for %s", t.Name)
	case t.Who == UserOrAnonymous && u.GetId() == "" && u.GetAnonymousId() == "":
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
		if err := element(ev, t, p); err != nil {
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

func element(ev *pb.Event, t *EventType, p string) *httpapi.Error {
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
