package envelope

import (
	"encoding/json"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// The "screeb" format: Screeb's webhook v2.0.0 (seeds/001). Every section of the payload is
// present, as Screeb's spec marks none optional; what the event does not carry is empty.

const screebVersion = "2.0.0"

type screebBody struct {
	EventID   string        `json:"event_id"`
	EventType string        `json:"event_type"`
	Version   string        `json:"version"`
	Time      string        `json:"time"`
	TimeMs    int64         `json:"time_ms"`
	Payload   screebPayload `json:"payload"`
}

type screebPayload struct {
	Organization screebOrganization `json:"organization"`
	Channel      screebChannel      `json:"channel"`
	Survey       screebSurvey       `json:"survey"`
	User         screebUser         `json:"user"`
	Response     screebResponse     `json:"response"`
}

type screebOrganization struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type screebChannel struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

type screebSurvey struct {
	ID              string  `json:"id"`
	Name            string  `json:"name"`
	ScenarioID      string  `json:"scenario_id"`
	ScenarioVersion int32   `json:"scenario_version"`
	ScenarioTime    *string `json:"scenario_time"`
	ScenarioTimeMs  int64   `json:"scenario_time_ms"`
}

type screebUser struct {
	AnonymousID string   `json:"anonymous_id"`
	UserID      string   `json:"user_id"`
	Name        string   `json:"name"`
	Email       string   `json:"email"`
	GroupNames  []string `json:"group_names"`
}

type screebResponse struct {
	ID              string          `json:"id"`
	Locale          string          `json:"locale"`
	Time            *string         `json:"time"`
	TimeMs          int64           `json:"time_ms"`
	TimeToCompleteS int64           `json:"time_to_complete_second"`
	Completion      string          `json:"completion"`
	HiddenFields    json.RawMessage `json:"hidden_fields"`
	Question        *screebQuestion `json:"question,omitempty"`
	Answer          *screebAnswer   `json:"answer,omitempty"`
	Tags            []string        `json:"tags"`
	Items           []screebItem    `json:"items"`
}

type screebItem struct {
	Question *screebQuestion `json:"question"`
	Answer   *screebAnswer   `json:"answer"`
}

type screebQuestion struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Title string `json:"title"`
}

type screebAnswer struct {
	Fields      []screebField `json:"fields"`
	RepliedAt   *string       `json:"replied_at"`
	RepliedAtMs int64         `json:"replied_at_ms"`
	Tags        []string      `json:"tags"`
}

// screebField carries every typed slot, null when not applicable, as Screeb's sample does.
type screebField struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Value   json.RawMessage `json:"value"`
	Text    *string         `json:"text"`
	Number  *float64        `json:"number"`
	Boolean *bool           `json:"boolean"`
	Time    *string         `json:"time"`
}

func renderScreeb(ev *pb.Event, o options) ([]byte, error) {
	p := screebPayload{
		// Screeb's spec types organization.id as a uuid: the project's, derived from its id.
		Organization: screebOrganization{ID: ProjectUUID(ev.GetProjectId()), Name: o.project.GetName()},
		Channel:      screebChannel{ID: ev.GetChannel().GetId(), Type: ev.GetChannel().GetType()},
	}
	if s := ev.GetSurvey(); s != nil {
		p.Survey = screebSurvey{ID: s.Id, Name: s.Name, ScenarioID: s.ScenarioId, ScenarioVersion: s.ScenarioVersion,
			ScenarioTime: nullTime(s.ScenarioTimeMs, isoMillis), ScenarioTimeMs: s.ScenarioTimeMs}
	}
	u := ev.GetUser()
	p.User = screebUser{AnonymousID: u.GetAnonymousId(), UserID: u.GetId(), Name: u.GetName(), Email: u.GetEmail(),
		GroupNames: nonNil(u.GetGroups())}
	r := ev.GetResponse()
	p.Response = screebResponse{ID: r.GetId(), Locale: r.GetLocale(), Time: nullTime(r.GetTimeMs(), isoMillis),
		TimeMs: r.GetTimeMs(), TimeToCompleteS: r.GetTimeToCompleteS(), Completion: r.GetCompletion(),
		HiddenFields: objectOrEmpty(r.GetHiddenFields()), Tags: nonNil(r.GetTags()), Items: []screebItem{}}
	items := allItems(ev)
	for _, it := range items {
		p.Response.Items = append(p.Response.Items, screebItem{screebQ(it.Question), screebA(it.Answer)})
	}
	// The question the event is about; for a response that ended, Screeb shows the last one.
	cur := currentItem(ev)
	if cur == nil && len(items) > 0 {
		cur = items[len(items)-1]
	}
	if cur != nil {
		p.Response.Question, p.Response.Answer = screebQ(cur.Question), screebA(cur.Answer)
	}
	return json.Marshal(screebBody{EventID: ev.GetEventId(), EventType: eventName(FormatScreeb, ev.GetEventType()),
		Version: screebVersion, Time: timeString(ev.GetTimeMs()), TimeMs: ev.GetTimeMs(), Payload: p})
}

func screebQ(q *pb.Question) *screebQuestion {
	if q == nil {
		return nil
	}
	return &screebQuestion{ID: q.Id, Type: q.Type, Title: q.Title}
}

func screebA(a *pb.Answer) *screebAnswer {
	if a == nil {
		return nil
	}
	sa := &screebAnswer{Fields: []screebField{}, RepliedAt: nullTime(a.RepliedAtMs, isoMillis),
		RepliedAtMs: a.RepliedAtMs, Tags: nonNil(a.Tags)}
	for _, f := range a.Fields {
		sf := screebField{ID: f.Id, Type: f.Type, Value: rawOrNull(f.Value), Number: f.Number, Boolean: f.Boolean,
			Text: nullString(f.Text), Time: nullTime(f.TimeMs, isoMillis)}
		sa.Fields = append(sa.Fields, sf)
	}
	return sa
}

// isoMillis is RFC 3339 in UTC with milliseconds, the precision events carry.
const isoMillis = "2006-01-02T15:04:05.000Z07:00"

// nonNil returns s, or an empty slice for nil, so that lists encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
