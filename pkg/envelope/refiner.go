package envelope

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/google/uuid"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// The "refiner" format: Refiner's webhook body (seeds/000): the contact (uuid, remote_id, email,
// first/last seen, attributes, segments, account), the triggering event, and for survey events the
// form and the response with its data (question → answer as text) and tags.

// refinerTime is Refiner's timestamp layout (microseconds, UTC).
const refinerTime = "2006-01-02T15:04:05.000000Z"

// refinerNamespace derives the uuids Refiner has and events do not (a contact without an
// anonymous id, an account, a tag): name-based (SHA-1) uuids of the project and the object's id,
// stable for the same object.
var refinerNamespace = uuid.UUID{0x6b, 0x1f, 0x2c, 0x77, 0x0e, 0x3a, 0x4d, 0x5b, 0x9a, 0x10, 0x2f, 0x8e, 0xc4, 0x51, 0x7d, 0x03}

type refinerBody struct {
	UUID           string           `json:"uuid"`
	ProjectUUID    string           `json:"project_uuid"`
	RemoteID       *string          `json:"remote_id"`
	Email          string           `json:"email"`
	FirstSeenAt    *string          `json:"first_seen_at"`
	LastSeenAt     *string          `json:"last_seen_at"`
	Attributes     json.RawMessage  `json:"attributes"`
	Segments       []refinerRef     `json:"segments"`
	Account        refinerAccount   `json:"account"`
	TriggeredEvent string           `json:"triggered_event"`
	Form           *refinerRef      `json:"form,omitempty"`
	Response       *refinerResponse `json:"response,omitempty"`
}

type refinerRef struct {
	UUID string `json:"uuid"`
	Name string `json:"name"`
}

type refinerAccount struct {
	UUID        *string         `json:"uuid"`
	RemoteID    *string         `json:"remote_id"`
	Domain      *string         `json:"domain"`
	FirstSeenAt *string         `json:"first_seen_at"`
	LastSeenAt  *string         `json:"last_seen_at"`
	Attributes  json.RawMessage `json:"attributes"`
}

type refinerResponse struct {
	UUID                 *string      `json:"uuid"`
	FirstShownAt         *string      `json:"first_shown_at"`
	LastShownAt          *string      `json:"last_shown_at"`
	ShowCounter          *int         `json:"show_counter"`
	FirstDataReceptionAt *string      `json:"first_data_reception_at"`
	LastDataReceptionAt  *string      `json:"last_data_reception_at"`
	CompletedAt          *string      `json:"completed_at"`
	DismissedAt          *string      `json:"dismissed_at"`
	ReceivedAt           *string      `json:"received_at"`
	Data                 object       `json:"data"`
	Tags                 []refinerRef `json:"tags"`
}

// WithRespondent gives the renderer what fan-out remembers of the event's user (the answers of
// every survey they answered, this event's included), for the Refiner format's `attributes`.
// Without it `attributes` holds the user's traits only (Send Test, tools rendering one event).
func WithRespondent(r *pb.Respondent) Option { return func(o *options) { o.respondent = r } }

// Answer is one survey answer as Refiner shows it in `response.data` and `attributes`: the
// question's id (else its title) and the answer as JSON text, or a list of texts.
type Answer struct {
	Key   string
	Value json.RawMessage
}

// RefinerAnswers lists the answers ev carries, as the Refiner format's `response.data` shows
// them, leaving out questions without an answer: what fan-out remembers of the user.
func RefinerAnswers(ev *pb.Event) []Answer {
	var out []Answer
	items := allItems(ev)
	seen := map[string]bool{}
	for i, it := range items {
		k := questionKey(it.GetQuestion(), i)
		if seen[k] {
			continue
		}
		seen[k] = true // as answersByQuestion: the first item of a key is the one shown
		if len(it.GetAnswer().GetFields()) == 0 {
			continue
		}
		v, err := json.Marshal(refinerAnswer(it.GetAnswer()))
		if err != nil {
			continue
		}
		out = append(out, Answer{k, v})
	}
	return out
}

// refinerAnswer is an answer as Refiner's `response.data` holds it: text, or a list of texts.
func refinerAnswer(a *pb.Answer) any {
	if len(a.GetFields()) > 1 {
		ts := make([]string, len(a.Fields))
		for i, f := range a.Fields {
			ts[i] = fieldText(f)
		}
		return ts
	}
	return answerText(a)
}

// refinerAttributes is Refiner's `attributes`: the user's traits (or the chosen ones), then every
// remembered answer whose key no trait uses (a trait is what the producer says about the user now;
// an answer with the same name is older news), oldest first.
func refinerAttributes(traits json.RawMessage, r *pb.Respondent) json.RawMessage {
	if len(r.GetAnswers()) == 0 {
		return objectOrEmpty(traits)
	}
	var named map[string]json.RawMessage
	if len(traits) > 0 && json.Unmarshal(traits, &named) != nil {
		named = nil
	}
	out := object{}
	if named != nil {
		// Keep the producer's order of traits: decode them in order.
		dec := json.NewDecoder(bytes.NewReader(traits))
		if _, err := dec.Token(); err == nil {
			for dec.More() {
				t, err := dec.Token()
				if err != nil {
					break
				}
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					break
				}
				out = append(out, member{t.(string), v})
			}
		}
	}
	for _, a := range r.GetAnswers() {
		if _, taken := named[a.GetKey()]; !taken && json.Valid(a.GetValue()) {
			out = append(out, member{a.GetKey(), json.RawMessage(a.GetValue())})
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return objectOrEmpty(traits)
	}
	return b
}

func renderRefiner(ev *pb.Event, wh *pb.Webhook, o options) ([]byte, error) {
	u := ev.GetUser()
	b := refinerBody{
		UUID: u.GetAnonymousId(), ProjectUUID: ProjectUUID(ev.GetProjectId()), RemoteID: nullString(u.GetId()), Email: u.GetEmail(),
		FirstSeenAt: nullTime(u.GetFirstSeenMs(), refinerTime), LastSeenAt: nullTime(u.GetLastSeenMs(), refinerTime),
		Attributes: refinerAttributes(chosenTraits(u.GetTraits(), wh.GetUserProperties()), o.respondent), Segments: []refinerRef{},
		TriggeredEvent: eventName(FormatRefiner, ev.GetEventType()),
	}
	if b.UUID == "" && u.GetId() != "" {
		b.UUID = refinerUUID(ev.GetProjectId(), "user", u.GetId())
	}
	for _, s := range u.GetSegments() {
		b.Segments = append(b.Segments, refinerRef{UUID: s.Id, Name: s.Name})
	}
	a := ev.GetAccount()
	b.Account = refinerAccount{RemoteID: nullString(a.GetId()), Domain: nullString(a.GetDomain()),
		Attributes: objectOrEmpty(chosenTraits(a.GetTraits(), wh.GetCompanyProperties()))}
	if a.GetId() != "" {
		id := refinerUUID(ev.GetProjectId(), "account", a.GetId())
		b.Account.UUID = &id
	}
	if s := ev.GetSurvey(); s != nil {
		b.Form = &refinerRef{UUID: s.Id, Name: s.Name}
	}
	if ev.GetResponse() != nil || ev.GetSurvey() != nil {
		b.Response = refinerResp(ev)
	}
	return json.Marshal(b)
}

func refinerResp(ev *pb.Event) *refinerResponse {
	r := ev.GetResponse()
	shown := r.GetTimeMs()
	if shown == 0 && ev.GetEventType() == "survey.displayed" {
		shown = ev.GetTimeMs()
	}
	completed, dismissed := r.GetCompletedAtMs(), r.GetDismissedAtMs()
	switch ev.GetEventType() {
	case "survey.completed", "form.submitted":
		if completed == 0 {
			completed = ev.GetTimeMs()
		}
	case "survey.dismissed", "nps.dismissed":
		if dismissed == 0 {
			dismissed = ev.GetTimeMs()
		}
	}
	items := allItems(ev)
	var first, last int64
	for _, it := range items {
		if t := it.GetAnswer().GetRepliedAtMs(); t != 0 {
			if first == 0 || t < first {
				first = t
			}
			last = max(last, t)
		}
	}
	out := &refinerResponse{
		UUID: nullString(r.GetId()), FirstShownAt: nullTime(shown, refinerTime), LastShownAt: nullTime(shown, refinerTime),
		FirstDataReceptionAt: nullTime(first, refinerTime), LastDataReceptionAt: nullTime(last, refinerTime),
		CompletedAt: nullTime(completed, refinerTime), DismissedAt: nullTime(dismissed, refinerTime),
		ReceivedAt: nullTime(completed, refinerTime),
		Data:       answersByQuestion(items, refinerAnswer),
		Tags:       []refinerRef{},
	}
	for _, t := range r.GetTags() {
		out.Tags = append(out.Tags, refinerRef{UUID: refinerUUID(ev.GetProjectId(), "tag", t), Name: t})
	}
	return out
}

func refinerUUID(projectID, kind, id string) string {
	return uuid.NewSHA1(refinerNamespace, []byte(strings.Join([]string{projectID, kind, id}, "\x00"))).String()
}
