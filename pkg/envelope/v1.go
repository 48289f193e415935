package envelope

import (
	"encoding/json"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Version 1 of the envelope. Frozen: fields may never be renamed, retyped or removed, and no field
// may be added — a change is a new version (see testdata/v1_*.golden.json).

type v1 struct {
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	Version   string    `json:"version"`
	Time      string    `json:"time"`
	TimeMs    int64     `json:"time_ms"`
	Payload   v1Payload `json:"payload"`
}

type v1Payload struct {
	Project    v1Project       `json:"project"`
	Channel    *v1Channel      `json:"channel,omitempty"`
	Survey     *v1Survey       `json:"survey,omitempty"`
	User       *v1User         `json:"user,omitempty"`
	Account    *v1Account      `json:"account,omitempty"`
	Response   *v1Response     `json:"response,omitempty"`
	Question   *v1Question     `json:"question,omitempty"`
	Answer     *v1Answer       `json:"answer,omitempty"`
	Element    *v1Element      `json:"element,omitempty"`
	Nps        *v1Nps          `json:"nps,omitempty"`
	Context    *v1Context      `json:"context,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

type v1Project struct {
	ID string `json:"id"`
}

type v1Channel struct {
	ID   string `json:"id,omitempty"`
	Type string `json:"type,omitempty"`
}

type v1Survey struct {
	ID              string `json:"id"`
	Name            string `json:"name,omitempty"`
	ScenarioID      string `json:"scenario_id,omitempty"`
	ScenarioVersion int32  `json:"scenario_version,omitempty"`
	ScenarioTime    string `json:"scenario_time,omitempty"`
	ScenarioTimeMs  int64  `json:"scenario_time_ms,omitempty"`
}

type v1User struct {
	ID          string          `json:"id,omitempty"`
	AnonymousID string          `json:"anonymous_id,omitempty"`
	Email       string          `json:"email,omitempty"`
	Name        string          `json:"name,omitempty"`
	Traits      json.RawMessage `json:"traits,omitempty"`
	Segments    []v1Segment     `json:"segments,omitempty"`
	Groups      []string        `json:"groups,omitempty"`
	FirstSeen   string          `json:"first_seen_at,omitempty"`
	LastSeen    string          `json:"last_seen_at,omitempty"`
}

type v1Segment struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

type v1Account struct {
	ID     string          `json:"id,omitempty"`
	Name   string          `json:"name,omitempty"`
	Domain string          `json:"domain,omitempty"`
	Traits json.RawMessage `json:"traits,omitempty"`
}

type v1Response struct {
	ID              string          `json:"id"`
	Locale          string          `json:"locale,omitempty"`
	Completion      string          `json:"completion,omitempty"`
	Time            string          `json:"time,omitempty"`
	TimeMs          int64           `json:"time_ms,omitempty"`
	TimeToCompleteS int64           `json:"time_to_complete_second,omitempty"`
	HiddenFields    json.RawMessage `json:"hidden_fields,omitempty"`
	Items           []v1Item        `json:"items,omitempty"`
	Tags            []string        `json:"tags,omitempty"`
	CompletedAt     string          `json:"completed_at,omitempty"`
	DismissedAt     string          `json:"dismissed_at,omitempty"`
}

type v1Item struct {
	Question *v1Question `json:"question,omitempty"`
	Answer   *v1Answer   `json:"answer,omitempty"`
}

type v1Question struct {
	ID    string `json:"id"`
	Type  string `json:"type,omitempty"`
	Title string `json:"title,omitempty"`
}

type v1Answer struct {
	Fields      []v1Field `json:"fields"`
	RepliedAt   string    `json:"replied_at,omitempty"`
	RepliedAtMs int64     `json:"replied_at_ms,omitempty"`
	Tags        []string  `json:"tags,omitempty"`
}

// v1Field always carries every typed slot, null when not applicable (as Screeb's spec does).
type v1Field struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Value   json.RawMessage `json:"value"`
	Text    *string         `json:"text"`
	Number  *float64        `json:"number"`
	Boolean *bool           `json:"boolean"`
	Time    *string         `json:"time"`
}

type v1Element struct {
	Type   string `json:"type,omitempty"`
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Action string `json:"action,omitempty"`
	Text   string `json:"text,omitempty"`
}

type v1Nps struct {
	Score            *int32 `json:"score,omitempty"`
	Question         string `json:"question,omitempty"`
	FollowUpQuestion string `json:"follow_up_question,omitempty"`
	Feedback         string `json:"feedback,omitempty"`
}

type v1Context struct {
	Hostname  string `json:"hostname,omitempty"`
	Pathname  string `json:"pathname,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

func v1Envelope(ev *pb.Event, wh *pb.Webhook) *v1 {
	p := v1Payload{Project: v1Project{ID: ev.GetProjectId()}, Properties: rawObject(ev.GetProperties())}
	if c := ev.GetChannel(); c != nil {
		p.Channel = &v1Channel{ID: c.Id, Type: c.Type}
	}
	if s := ev.GetSurvey(); s != nil {
		p.Survey = &v1Survey{ID: s.Id, Name: s.Name, ScenarioID: s.ScenarioId, ScenarioVersion: s.ScenarioVersion,
			ScenarioTime: timeString(s.ScenarioTimeMs), ScenarioTimeMs: s.ScenarioTimeMs}
	}
	if u := ev.GetUser(); u != nil {
		vu := &v1User{ID: u.Id, AnonymousID: u.AnonymousId, Email: u.Email, Name: u.Name,
			Traits: chosenTraits(u.Traits, wh.GetUserProperties()), Groups: u.Groups,
			FirstSeen: timeString(u.FirstSeenMs), LastSeen: timeString(u.LastSeenMs)}
		for _, s := range u.Segments {
			vu.Segments = append(vu.Segments, v1Segment{ID: s.Id, Name: s.Name})
		}
		p.User = vu
	}
	if a := ev.GetAccount(); a != nil {
		p.Account = &v1Account{ID: a.Id, Name: a.Name, Domain: a.Domain,
			Traits: chosenTraits(a.Traits, wh.GetCompanyProperties())}
	}
	if r := ev.GetResponse(); r != nil {
		vr := &v1Response{ID: r.Id, Locale: r.Locale, Completion: r.Completion, Time: timeString(r.TimeMs),
			TimeMs: r.TimeMs, TimeToCompleteS: r.TimeToCompleteS, HiddenFields: rawObject(r.HiddenFields),
			Tags: r.Tags, CompletedAt: timeString(r.CompletedAtMs), DismissedAt: timeString(r.DismissedAtMs)}
		for _, it := range r.Items {
			vr.Items = append(vr.Items, v1Item{Question: v1Q(it.Question), Answer: v1A(it.Answer)})
		}
		p.Response = vr
	}
	p.Question = v1Q(ev.GetQuestion())
	p.Answer = v1A(ev.GetAnswer())
	if e := ev.GetElement(); e != nil {
		p.Element = &v1Element{Type: e.Type, ID: e.Id, Name: e.Name, Action: e.Action, Text: e.Text}
	}
	if n := ev.GetNps(); n != nil {
		p.Nps = &v1Nps{Score: n.Score, Question: n.Question, FollowUpQuestion: n.FollowUpQuestion, Feedback: n.Feedback}
	}
	if c := ev.GetContext(); c != nil {
		p.Context = &v1Context{Hostname: c.Hostname, Pathname: c.Pathname, UserAgent: c.UserAgent}
	}
	return &v1{EventID: ev.GetEventId(), EventType: ev.GetEventType(), Version: "1",
		Time: timeString(ev.GetTimeMs()), TimeMs: ev.GetTimeMs(), Payload: p}
}

func v1Q(q *pb.Question) *v1Question {
	if q == nil {
		return nil
	}
	return &v1Question{ID: q.Id, Type: q.Type, Title: q.Title}
}

func v1A(a *pb.Answer) *v1Answer {
	if a == nil {
		return nil
	}
	va := &v1Answer{Fields: []v1Field{}, RepliedAt: timeString(a.RepliedAtMs), RepliedAtMs: a.RepliedAtMs, Tags: a.Tags}
	for _, f := range a.Fields {
		vf := v1Field{ID: f.Id, Type: f.Type, Value: rawOrNull(f.Value), Number: f.Number, Boolean: f.Boolean}
		if f.Text != "" {
			t := f.Text
			vf.Text = &t
		}
		if f.TimeMs != 0 {
			t := timeString(f.TimeMs)
			vf.Time = &t
		}
		va.Fields = append(va.Fields, vf)
	}
	return va
}

func rawOrNull(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return json.RawMessage(b)
}
