package envelope

import (
	"strings"
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

// EventType is one entry of the producer catalogue: its name, what an event of that type must
// carry beyond event_type (ingest's validation reads these fields), a one-line description for
// subscribers choosing it, and the smallest valid producer event of the type.
//
// Element, when set, is the element.type of the family (flows, checklists, feature tags, buttons,
// forms): element.type and element.action default to it and to the type's action, and a different
// element.type is refused.
type EventType struct {
	Name        string
	Description string
	Who         Who
	Survey      bool   // survey.id
	Question    bool   // question.id and an answer with at least one field
	Element     string // element.id of this element.type (unless SurveyOr)
	Action      string // element.action default
	SurveyOr    bool   // element.id or survey.id (forms: a form is either)
	Score       bool   // nps.score, an integer 0–10
	Feedback    bool   // nps.feedback, not blank
	Example     string // the smallest valid producer event of this type, as JSON
}

// Catalogue is the event catalogue producers may send (DESIGN §1), in documentation order;
// webhooks subscribe to these or to "*". TestEventType is not in it: only Send Test makes that one.
var Catalogue = []EventType{
	{Name: "survey.displayed", Description: "A survey was shown to a user.", Survey: true,
		Example: `{"event_type":"survey.displayed","survey":{"id":"s1"},"user":{"anonymous_id":"a1"}}`},
	{Name: "survey.question_answered", Description: "A user answered one question of a survey.", Survey: true, Question: true,
		Example: `{"event_type":"survey.question_answered","survey":{"id":"s1"},"user":{"id":"u1"},"question":{"id":"q1"},"answer":{"fields":[{"text":"yes"}]}}`},
	{Name: "survey.completed", Description: "A user finished a survey.", Survey: true,
		Example: `{"event_type":"survey.completed","survey":{"id":"s1"},"user":{"id":"u1"},"response":{"id":"r1","completion":"fully_completed"}}`},
	{Name: "survey.dismissed", Description: "A user closed a survey without finishing it.", Survey: true,
		Example: `{"event_type":"survey.dismissed","survey":{"id":"s1"},"user":{"id":"u1"}}`},
	{Name: "form.submitted", Description: "A form was submitted (by a known user or an anonymous visitor).",
		Who: UserOptional, Element: "form", Action: "submitted", SurveyOr: true,
		Example: `{"event_type":"form.submitted","element":{"id":"f1"}}`},
	{Name: "nps.scored", Description: "A user gave an NPS score from 0 to 10.", Score: true,
		Example: `{"event_type":"nps.scored","nps":{"score":0},"user":{"id":"u1"}}`},
	{Name: "nps.feedback", Description: "A user wrote feedback after an NPS score.", Feedback: true,
		Example: `{"event_type":"nps.feedback","nps":{"feedback":"Great Product"},"user":{"id":"u1"}}`},
	{Name: "nps.dismissed", Description: "A user closed the NPS question without a score.",
		Example: `{"event_type":"nps.dismissed","user":{"id":"u1"}}`},
	{Name: "nps.ask_later", Description: "A user asked to be asked the NPS question later.",
		Example: `{"event_type":"nps.ask_later","user":{"anonymous_id":"a1"}}`},
	element("flow.seen", "A product flow was shown."),
	element("flow.completed", "A user finished a product flow."),
	element("flow.dismissed", "A user closed a product flow."),
	element("checklist.seen", "A checklist was shown."),
	element("checklist.completed", "A user completed a checklist."),
	element("checklist.dismissed", "A user closed a checklist."),
	element("feature_tag.clicked", "A user clicked a tagged feature."),
	element("feature_tag.hovered", "A user hovered over a tagged feature."),
	element("feature_tag.text_input", "A user typed into a tagged field."),
	element("button.tracked", "A user pressed a tracked button."),
	{Name: "user.identified", Description: "A user was identified with your user id.", Who: UserID,
		Example: `{"event_type":"user.identified","user":{"id":"u1","traits":{"plan":"pro"}}}`},
}

// element is the entry of a "<element type>.<action>" event type.
func element(name, description string) EventType {
	family, action, _ := strings.Cut(name, ".")
	return EventType{Name: name, Description: description, Element: family, Action: action,
		Example: `{"event_type":"` + name + `","element":{"id":"1"},"user":{"id":"u1"}}`}
}

// EventTypes are the names of the Catalogue, in its order.
var EventTypes = func() []string {
	names := make([]string, len(Catalogue))
	for i, t := range Catalogue {
		names[i] = t.Name
	}
	return names
}()

var eventTypesByName = func() map[string]*EventType {
	m := make(map[string]*EventType, len(Catalogue))
	for i := range Catalogue {
		m[Catalogue[i].Name] = &Catalogue[i]
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

// KnownEventType reports whether t is in the catalogue.
func KnownEventType(t string) bool {
	_, ok := eventTypesByName[t]
	return ok
}

// Requires says in words what an event of type t must carry beyond event_type and the user
// identification every event needs (the "also requires" column of docs/events.md).
func (t EventType) Requires() string {
	var r []string
	if t.Survey {
		r = append(r, "`survey.id`")
	}
	if t.Question {
		r = append(r, "`question.id`", "`answer.fields` (at least one)")
	}
	switch {
	case t.SurveyOr:
		r = append(r, "`element.id` (the "+t.Element+") or `survey.id`")
	case t.Element != "":
		r = append(r, "`element.id` (element.type `"+t.Element+"`)")
	}
	if t.Score {
		r = append(r, "`nps.score` (0–10)")
	}
	if t.Feedback {
		r = append(r, "`nps.feedback`")
	}
	s := strings.Join(r, ", ")
	switch t.Who {
	case UserID:
		s = strings.TrimPrefix(s+", `user.id` (an anonymous id is not enough)", ", ")
	case UserOptional:
		s += "; no user needed (anonymous visitors submit forms)"
	}
	if s == "" {
		return "—"
	}
	return s
}
