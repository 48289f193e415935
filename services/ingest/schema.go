package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Rule is what one event type requires beyond the common fields (event_type, a user id or
// anonymous id).
type Rule struct {
	Survey   bool // survey.id
	Question bool // question.id and an answer
	Element  bool // element.id
	Score    bool // nps.score, 0–10
	Feedback bool // nps.feedback
	FormID   bool // element.id or survey.id
	UserID   bool // user.id (an anonymous id is not enough)
}

// EventTypes is the catalogue producers may send, with each type's rule.
var EventTypes = map[string]Rule{
	"survey.displayed":         {Survey: true},
	"survey.question_answered": {Survey: true, Question: true},
	"survey.completed":         {Survey: true},
	"survey.dismissed":         {Survey: true},
	"form.submitted":           {FormID: true},
	"nps.scored":               {Score: true},
	"nps.feedback":             {Feedback: true},
	"nps.dismissed":            {},
	"nps.ask_later":            {},
	"flow.seen":                {Element: true},
	"flow.completed":           {Element: true},
	"flow.dismissed":           {Element: true},
	"checklist.seen":           {Element: true},
	"checklist.completed":      {Element: true},
	"checklist.dismissed":      {Element: true},
	"feature_tag.clicked":      {Element: true},
	"feature_tag.hovered":      {Element: true},
	"feature_tag.text_input":   {Element: true},
	"button.tracked":           {Element: true},
	"user.identified":          {UserID: true},
}

// The producer's JSON event. Field names follow the protobuf Event in snake_case; free-form maps
// (traits, hidden fields, properties) are JSON objects kept as sent.
type inEvent struct {
	ProjectID  string          `json:"project_id"` // Kafka records only: HTTP takes it from the key
	EventID    string          `json:"event_id"`
	EventType  string          `json:"event_type"`
	Time       string          `json:"time"`
	TimeMs     int64           `json:"time_ms"`
	Preview    bool            `json:"preview"`
	Channel    *pb.Channel     `json:"channel"`
	Survey     *inSurvey       `json:"survey"`
	User       *inUser         `json:"user"`
	Account    *inAccount      `json:"account"`
	Response   *inResponse     `json:"response"`
	Question   *pb.Question    `json:"question"`
	Answer     *inAnswer       `json:"answer"`
	Context    *inContext      `json:"context"`
	Element    *pb.Element     `json:"element"`
	NPS        *inNPS          `json:"nps"`
	Properties json.RawMessage `json:"properties"`
}

type inSurvey struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	ScenarioID      string `json:"scenario_id"`
	ScenarioVersion int32  `json:"scenario_version"`
	ScenarioTime    string `json:"scenario_time"`
	ScenarioTimeMs  int64  `json:"scenario_time_ms"`
}

type inUser struct {
	ID          string          `json:"id"`
	AnonymousID string          `json:"anonymous_id"`
	Email       string          `json:"email"`
	Name        string          `json:"name"`
	Traits      json.RawMessage `json:"traits"`
	Segments    []*pb.Segment   `json:"segments"`
	Groups      []string        `json:"groups"`
	FirstSeenAt string          `json:"first_seen_at"`
	LastSeenAt  string          `json:"last_seen_at"`
}

type inAccount struct {
	ID     string          `json:"id"`
	Name   string          `json:"name"`
	Domain string          `json:"domain"`
	Traits json.RawMessage `json:"traits"`
}

type inResponse struct {
	ID             string          `json:"id"`
	Locale         string          `json:"locale"`
	Completion     string          `json:"completion"`
	Time           string          `json:"time"`
	TimeToComplete int64           `json:"time_to_complete_second"`
	HiddenFields   json.RawMessage `json:"hidden_fields"`
	Items          []inItem        `json:"items"`
	Tags           []string        `json:"tags"`
	CompletedAt    string          `json:"completed_at"`
	DismissedAt    string          `json:"dismissed_at"`
}

type inItem struct {
	Question *pb.Question `json:"question"`
	Answer   *inAnswer    `json:"answer"`
}

type inAnswer struct {
	Fields    []inField `json:"fields"`
	RepliedAt string    `json:"replied_at"`
	Tags      []string  `json:"tags"`
}

type inField struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Value   json.RawMessage `json:"value"`
	Text    string          `json:"text"`
	Number  *float64        `json:"number"`
	Boolean *bool           `json:"boolean"`
	Time    string          `json:"time"`
}

type inContext struct {
	Hostname  string `json:"hostname"`
	Pathname  string `json:"pathname"`
	UserAgent string `json:"user_agent"`
	IP        string `json:"ip"`
}

type inNPS struct {
	Score            *int32 `json:"score"`
	Question         string `json:"question"`
	FollowUpQuestion string `json:"follow_up_question"`
	Feedback         string `json:"feedback"`
}

func bad(field, format string, args ...any) *httpapi.Error {
	return httpapi.Errorf(http.StatusBadRequest, "invalid_field", field, format, args...)
}

// decodeEvent parses and validates one producer event; prefix names it in errors ("events[2].").
func decodeEvent(raw []byte, prefix string, now time.Time) (*pb.Event, string, *httpapi.Error) {
	var in inEvent
	if err := httpapi.DecodeStrict(raw, &in); err != nil {
		e := httpapi.JSONError(err)
		if he, ok := err.(*httpapi.Error); ok {
			e = he
		}
		if e.Field != "" {
			e.Field = prefix + e.Field
		}
		return nil, in.ProjectID, e
	}
	ev, herr := convert(&in, prefix, now)
	return ev, in.ProjectID, herr
}

func parseTime(field, s string) (int64, *httpapi.Error) {
	if s == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, bad(field, "%s must be an RFC 3339 time, got %q", field, s)
	}
	return t.UnixMilli(), nil
}

func object(field string, raw json.RawMessage) ([]byte, *httpapi.Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, bad(field, "%s must be a JSON object", field)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return nil, bad(field, "%s is not valid JSON", field)
	}
	return c.Bytes(), nil
}

func convert(in *inEvent, p string, now time.Time) (*pb.Event, *httpapi.Error) {
	if in.EventType == "" {
		return nil, bad(p+"event_type", "event_type is required")
	}
	rule, ok := EventTypes[in.EventType]
	if !ok {
		if in.EventType == envelope.TestEventType {
			return nil, bad(p+"event_type", "%q is sent only by Send Test (POST /v1/webhooks/{id}/test)", in.EventType)
		}
		return nil, bad(p+"event_type", "unknown event_type %q; see docs/events.md", in.EventType)
	}
	if len(in.EventID) > 128 {
		return nil, bad(p+"event_id", "event_id is at most 128 characters")
	}
	ev := &pb.Event{EventId: in.EventID, EventType: in.EventType, Preview: in.Preview, TimeMs: in.TimeMs,
		ReceivedAtMs: now.UnixMilli(), Channel: in.Channel, Question: in.Question, Element: in.Element}
	var err *httpapi.Error
	if in.Time != "" {
		if ev.TimeMs, err = parseTime(p+"time", in.Time); err != nil {
			return nil, err
		}
	}
	if ev.TimeMs == 0 {
		ev.TimeMs = ev.ReceivedAtMs
	}
	if in.User == nil || (in.User.ID == "" && in.User.AnonymousID == "") {
		return nil, bad(p+"user.id", "user.id or user.anonymous_id is required")
	}
	if rule.UserID && in.User.ID == "" {
		return nil, bad(p+"user.id", "user.id is required for %s", in.EventType)
	}
	u := in.User
	ev.User = &pb.User{Id: u.ID, AnonymousId: u.AnonymousID, Email: u.Email, Name: u.Name, Segments: u.Segments, Groups: u.Groups}
	if ev.User.Traits, err = object(p+"user.traits", u.Traits); err != nil {
		return nil, err
	}
	if ev.User.FirstSeenMs, err = parseTime(p+"user.first_seen_at", u.FirstSeenAt); err != nil {
		return nil, err
	}
	if ev.User.LastSeenMs, err = parseTime(p+"user.last_seen_at", u.LastSeenAt); err != nil {
		return nil, err
	}
	if a := in.Account; a != nil {
		ev.Account = &pb.Account{Id: a.ID, Name: a.Name, Domain: a.Domain}
		if ev.Account.Traits, err = object(p+"account.traits", a.Traits); err != nil {
			return nil, err
		}
	}
	if s := in.Survey; s != nil {
		ev.Survey = &pb.Survey{Id: s.ID, Name: s.Name, ScenarioId: s.ScenarioID, ScenarioVersion: s.ScenarioVersion, ScenarioTimeMs: s.ScenarioTimeMs}
		if s.ScenarioTime != "" {
			if ev.Survey.ScenarioTimeMs, err = parseTime(p+"survey.scenario_time", s.ScenarioTime); err != nil {
				return nil, err
			}
		}
	}
	if rule.Survey && ev.GetSurvey().GetId() == "" {
		return nil, bad(p+"survey.id", "survey.id is required for %s", in.EventType)
	}
	if rule.Element && ev.GetElement().GetId() == "" {
		return nil, bad(p+"element.id", "element.id is required for %s", in.EventType)
	}
	if rule.FormID && ev.GetElement().GetId() == "" && ev.GetSurvey().GetId() == "" {
		return nil, bad(p+"element.id", "element.id (the form) or survey.id is required for %s", in.EventType)
	}
	if r := in.Response; r != nil {
		ev.Response = &pb.Response{Id: r.ID, Locale: r.Locale, Completion: r.Completion, TimeToCompleteS: r.TimeToComplete, Tags: r.Tags}
		switch r.Completion {
		case "", "not_started", "partially_completed", "fully_completed":
		default:
			return nil, bad(p+"response.completion", "response.completion must be not_started, partially_completed or fully_completed, got %q", r.Completion)
		}
		if ev.Response.HiddenFields, err = object(p+"response.hidden_fields", r.HiddenFields); err != nil {
			return nil, err
		}
		for f, t := range map[string]struct {
			s   string
			dst *int64
		}{"time": {r.Time, &ev.Response.TimeMs}, "completed_at": {r.CompletedAt, &ev.Response.CompletedAtMs}, "dismissed_at": {r.DismissedAt, &ev.Response.DismissedAtMs}} {
			if *t.dst, err = parseTime(p+"response."+f, t.s); err != nil {
				return nil, err
			}
		}
		for i, it := range r.Items {
			a, err := answer(fmt.Sprintf("%sresponse.items[%d].answer", p, i), it.Answer)
			if err != nil {
				return nil, err
			}
			ev.Response.Items = append(ev.Response.Items, &pb.Item{Question: it.Question, Answer: a})
		}
	}
	if ev.Answer, err = answer(p+"answer", in.Answer); err != nil {
		return nil, err
	}
	if rule.Question {
		if ev.GetQuestion().GetId() == "" {
			return nil, bad(p+"question.id", "question.id is required for %s", in.EventType)
		}
		if ev.Answer == nil {
			return nil, bad(p+"answer", "answer is required for %s", in.EventType)
		}
	}
	if c := in.Context; c != nil {
		ev.Context = &pb.Context{Hostname: c.Hostname, Pathname: c.Pathname, UserAgent: c.UserAgent, Ip: c.IP}
	}
	if n := in.NPS; n != nil {
		if n.Score != nil && (*n.Score < 0 || *n.Score > 10) {
			return nil, bad(p+"nps.score", "nps.score must be between 0 and 10, got %d", *n.Score)
		}
		ev.Nps = &pb.Nps{Score: n.Score, Question: n.Question, FollowUpQuestion: n.FollowUpQuestion, Feedback: n.Feedback}
	}
	if rule.Score && ev.GetNps().GetScore() == 0 && (ev.Nps == nil || ev.Nps.Score == nil) {
		return nil, bad(p+"nps.score", "nps.score (0–10) is required for %s", in.EventType)
	}
	if rule.Feedback && strings.TrimSpace(ev.GetNps().GetFeedback()) == "" {
		return nil, bad(p+"nps.feedback", "nps.feedback is required for %s", in.EventType)
	}
	if ev.Properties, err = object(p+"properties", in.Properties); err != nil {
		return nil, err
	}
	return ev, nil
}

func answer(field string, a *inAnswer) (*pb.Answer, *httpapi.Error) {
	if a == nil {
		return nil, nil
	}
	out := &pb.Answer{Tags: a.Tags}
	var err *httpapi.Error
	if out.RepliedAtMs, err = parseTime(field+".replied_at", a.RepliedAt); err != nil {
		return nil, err
	}
	for i, f := range a.Fields {
		pf := &pb.Field{Id: f.ID, Type: f.Type, Text: f.Text, Number: f.Number, Boolean: f.Boolean}
		if v := bytes.TrimSpace(f.Value); len(v) > 0 {
			var c bytes.Buffer
			if json.Compact(&c, v) != nil {
				return nil, bad(fmt.Sprintf("%s.fields[%d].value", field, i), "value is not valid JSON")
			}
			pf.Value = c.Bytes()
		}
		if pf.TimeMs, err = parseTime(fmt.Sprintf("%s.fields[%d].time", field, i), f.Time); err != nil {
			return nil, err
		}
		out.Fields = append(out.Fields, pf)
	}
	return out, nil
}
