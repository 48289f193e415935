package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Body formats a webhook can choose (Webhook.format). "" is the surveyhooks envelope, in the
// webhook's pinned payload version; every other format reproduces one platform's webhook body, so
// a receiver written against that platform works unchanged. A format reproduces one version of its
// platform's payload and, like an envelope version, never changes once released (golden files in
// testdata freeze it): a new platform version would be a new format name.
const (
	FormatEnvelope  = ""
	FormatRefiner   = "refiner"   // Refiner's contact + form + response body
	FormatScreeb    = "screeb"    // Screeb webhook v2.0.0
	FormatUserpilot = "userpilot" // Userpilot's {type, timestamp, app_token, data}
	FormatAskUsers  = "askusers"  // Ask Users' {event_type, event_id, timestamp, data}
	FormatSegmanta  = "segmanta"  // question/survey completion hooks (shape of our choosing)
)

// Formats lists the formats a webhook may choose besides FormatEnvelope.
var Formats = []string{FormatRefiner, FormatScreeb, FormatUserpilot, FormatAskUsers, FormatSegmanta}

// eventNames holds, per format, the platform's names for our event types. An event type missing
// from a format's table has no counterpart on that platform: it keeps its surveyhooks name and is
// rendered in the format's closest shape (see docs/payloads.md).
var eventNames = map[string]map[string]string{
	FormatRefiner: {
		"survey.displayed":         "Saw Survey",
		"survey.question_answered": "Survey Interaction",
		"nps.scored":               "Survey Interaction",
		"nps.feedback":             "Survey Interaction",
		"survey.completed":         "Completed Survey",
		"form.submitted":           "Completed Survey",
		"survey.dismissed":         "Dismissed Survey",
		"nps.dismissed":            "Dismissed Survey",
		"nps.ask_later":            "Dismissed Survey",
		"user.identified":          "Identified User",
	},
	FormatScreeb: {
		"survey.displayed":         "response.displayed",
		"survey.question_answered": "response.answered",
		"nps.scored":               "response.answered",
		"nps.feedback":             "response.answered",
		"survey.completed":         "response.ended",
		"survey.dismissed":         "response.ended",
		"form.submitted":           "response.ended",
		"nps.dismissed":            "response.ended",
		"nps.ask_later":            "response.ended",
	},
	FormatUserpilot: {
		"flow.seen":              "flows.seen",
		"flow.completed":         "flows.completed",
		"flow.dismissed":         "flows.dismissed",
		"checklist.seen":         "checklist.seen",
		"checklist.completed":    "checklist.completed",
		"checklist.dismissed":    "checklist.dismissed",
		"nps.scored":             "nps.score",
		"nps.feedback":           "nps.feedback",
		"nps.dismissed":          "nps.dismissed",
		"nps.ask_later":          "nps.ask_later",
		"form.submitted":         "forms.submitted",
		"feature_tag.clicked":    "feature_tag.clicked",
		"feature_tag.hovered":    "feature_tag.hover",
		"feature_tag.text_input": "feature_tag.text_input",
		"button.tracked":         "button_tracked_event.occurred",
	},
	FormatAskUsers: {
		"survey.completed": "survey.response.created",
		"form.submitted":   "form.submission.created",
	},
	FormatSegmanta: {
		"survey.question_answered": "question.completed",
		"nps.scored":               "question.completed",
		"nps.feedback":             "question.completed",
		"survey.completed":         "survey.completed",
		"form.submitted":           "survey.completed",
	},
}

// EventName returns what a format calls a surveyhooks event type, and whether the platform has a
// name for it at all: when it has none (and for the envelope) the name is the surveyhooks one.
func EventName(format, eventType string) (name string, ok bool) {
	if n, ok := eventNames[format][eventType]; ok {
		return n, true
	}
	return eventType, false
}

// eventName is EventName's name.
func eventName(format, eventType string) string {
	n, _ := EventName(format, eventType)
	return n
}

// ValidateFormat reports whether f is "" or one of Formats.
func ValidateFormat(f string) error {
	if f == FormatEnvelope || slices.Contains(Formats, f) {
		return nil
	}
	return fmt.Errorf("unknown format %q; one of \"\" (the surveyhooks envelope), %q", f, Formats)
}

// renderFormat renders ev in wh's format (or envelope version), before any transform.
func renderFormat(ev *pb.Event, wh *pb.Webhook, o options) ([]byte, error) {
	switch f := wh.GetFormat(); f {
	case FormatEnvelope:
	case FormatRefiner:
		return renderRefiner(ev, wh, o)
	case FormatScreeb:
		return renderScreeb(ev, o)
	case FormatUserpilot:
		return renderUserpilot(ev, wh)
	case FormatAskUsers:
		return renderAskUsers(ev, wh)
	case FormatSegmanta:
		return renderSegmanta(ev, wh)
	default:
		return nil, ValidateFormat(f)
	}
	v := wh.GetPayloadVersion()
	if v == "" {
		v = DefaultVersion
	}
	switch v {
	case "1":
		return json.Marshal(v1Envelope(ev, wh))
	default:
		return nil, fmt.Errorf("unknown payload version %q (have %v)", v, Versions)
	}
}

// Helpers shared by the formats.

// timeIn formats milliseconds in layout (UTC); "" when zero.
func timeIn(ms int64, layout string) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(layout)
}

// nullTime is timeIn as a JSON string, or null when zero.
func nullTime(ms int64, layout string) *string {
	if ms == 0 {
		return nil
	}
	s := timeIn(ms, layout)
	return &s
}

// nullString is s, or null when empty.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// objectOrEmpty is a JSON object, or {} when empty.
func objectOrEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage(`{}`)
	}
	return b
}

// maxSafeInteger is JavaScript's Number.MAX_SAFE_INTEGER: larger integers do not survive
// JSON.parse, so ids beyond it stay strings (every body is written as JavaScript writes it).
const maxSafeInteger = 1<<53 - 1

// idValue renders an id as a JSON number when it is a plain decimal integer a JavaScript number
// holds exactly, as platforms that use numeric ids do, and as a string otherwise.
func idValue(id string) any {
	if i, err := strconv.ParseInt(id, 10, 64); err == nil && strconv.FormatInt(i, 10) == id &&
		i >= -maxSafeInteger && i <= maxSafeInteger {
		return i
	}
	return id
}

// member is one key of an ordered JSON object; object keeps its keys in the order given, for
// formats whose samples show an order (receivers must not depend on it, but people read bodies).
type member struct {
	key string
	val any
}

type object []member

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(m.val)
		if err != nil {
			return nil, fmt.Errorf("encoding %q: %w", m.key, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// chosenMembers returns the chosen traits, in the order they were chosen, skipping names already
// used by the object they join. With no names chosen it returns none (Userpilot sends only chosen
// properties).
func chosenMembers(traits []byte, names []string, taken ...string) object {
	if len(traits) == 0 || len(names) == 0 {
		return nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(traits, &all); err != nil {
		return nil
	}
	var out object
	for _, n := range names {
		if v, ok := all[n]; ok && !slices.Contains(taken, n) {
			out = append(out, member{n, v})
		}
	}
	return out
}

// fieldJSON is a field's value as JSON: the raw value as sent, else the typed value.
func fieldJSON(f *pb.Field) json.RawMessage {
	if len(f.Value) > 0 {
		return f.Value
	}
	var v any
	switch {
	case f.Number != nil:
		v = *f.Number
	case f.Boolean != nil:
		v = *f.Boolean
	case f.TimeMs != 0:
		v = timeString(f.TimeMs)
	case f.Text != "":
		v = f.Text
	default:
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(v)
	return b
}

// fieldText is a field's value as text, as platforms that send answers as strings show it.
func fieldText(f *pb.Field) string {
	switch {
	case f.Text != "":
		return f.Text
	case f.Number != nil:
		return strconv.FormatFloat(*f.Number, 'f', -1, 64)
	case f.Boolean != nil:
		return strconv.FormatBool(*f.Boolean)
	case f.TimeMs != 0:
		return timeString(f.TimeMs)
	}
	var s string
	if json.Unmarshal(f.Value, &s) == nil {
		return s
	}
	return string(f.Value)
}

// answerJSON is an answer as one JSON value: its field's value, or an array when it has several.
func answerJSON(a *pb.Answer) json.RawMessage {
	fs := a.GetFields()
	switch len(fs) {
	case 0:
		return json.RawMessage("null")
	case 1:
		return fieldJSON(fs[0])
	}
	vs := make([]json.RawMessage, len(fs))
	for i, f := range fs {
		vs[i] = fieldJSON(f)
	}
	b, _ := json.Marshal(vs)
	return b
}

// answerText is an answer as text: its fields' texts joined by ", ".
func answerText(a *pb.Answer) string {
	ts := make([]string, 0, len(a.GetFields()))
	for _, f := range a.GetFields() {
		ts = append(ts, fieldText(f))
	}
	return strings.Join(ts, ", ")
}

// npsItems turns an NPS section into question/answer items, for formats that only know answers:
// the score (question id "nps") and the follow-up feedback (question id "nps_feedback").
func npsItems(ev *pb.Event) []*pb.Item {
	n := ev.GetNps()
	if n == nil {
		return nil
	}
	var items []*pb.Item
	if n.Score != nil {
		s := float64(*n.Score)
		items = append(items, &pb.Item{
			Question: &pb.Question{Id: "nps", Type: "nps", Title: n.Question},
			Answer: &pb.Answer{RepliedAtMs: ev.TimeMs, Fields: []*pb.Field{{Type: "number", Number: &s,
				Value: []byte(strconv.Itoa(int(*n.Score)))}}},
		})
	}
	if n.Feedback != "" {
		v, _ := json.Marshal(n.Feedback)
		items = append(items, &pb.Item{
			Question: &pb.Question{Id: "nps_feedback", Type: "input", Title: n.FollowUpQuestion},
			Answer:   &pb.Answer{RepliedAtMs: ev.TimeMs, Fields: []*pb.Field{{Type: "string", Text: n.Feedback, Value: v}}},
		})
	}
	return items
}

// currentItem is the question and answer an event is about: its own, else (for nps.*) the NPS
// item it carries.
func currentItem(ev *pb.Event) *pb.Item {
	if ev.Question != nil || ev.Answer != nil {
		return &pb.Item{Question: ev.Question, Answer: ev.Answer}
	}
	if items := npsItems(ev); len(items) > 0 {
		if ev.EventType == "nps.feedback" {
			return items[len(items)-1]
		}
		return items[0]
	}
	return nil
}

// allItems is every answer an event knows of: the response's items, then the event's own question
// if the items do not hold it yet, then the NPS items unless an NPS question is already there.
func allItems(ev *pb.Event) []*pb.Item {
	items := slices.Clone(ev.GetResponse().GetItems())
	has := func(pred func(q *pb.Question) bool) bool {
		return slices.ContainsFunc(items, func(it *pb.Item) bool { return pred(it.GetQuestion()) })
	}
	if q := ev.GetQuestion(); q != nil || ev.GetAnswer() != nil {
		if q == nil || !has(func(o *pb.Question) bool { return o.GetId() == q.GetId() }) {
			items = append(items, &pb.Item{Question: q, Answer: ev.GetAnswer()})
		}
	}
	if !has(func(q *pb.Question) bool { return q.GetType() == "nps" }) {
		items = append(items, npsItems(ev)...)
	}
	return items
}

// questionKey names a question in a question → answer map: its id, else its title.
func questionKey(q *pb.Question, i int) string {
	switch {
	case q.GetId() != "":
		return q.GetId()
	case q.GetTitle() != "":
		return q.GetTitle()
	}
	return "question_" + strconv.Itoa(i+1)
}

// answersByQuestion maps each question of items to value(answer), in a JSON object ordered as
// the items are.
func answersByQuestion(items []*pb.Item, value func(*pb.Answer) any) object {
	out := object{}
	seen := map[string]bool{}
	for i, it := range items {
		k := questionKey(it.GetQuestion(), i)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, member{k, value(it.GetAnswer())})
	}
	return out
}
