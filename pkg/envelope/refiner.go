package envelope

import (
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

func renderRefiner(ev *pb.Event, wh *pb.Webhook) ([]byte, error) {
	u := ev.GetUser()
	b := refinerBody{
		UUID: u.GetAnonymousId(), ProjectUUID: ProjectUUID(ev.GetProjectId()), RemoteID: nullString(u.GetId()), Email: u.GetEmail(),
		FirstSeenAt: nullTime(u.GetFirstSeenMs(), refinerTime), LastSeenAt: nullTime(u.GetLastSeenMs(), refinerTime),
		Attributes: objectOrEmpty(chosenTraits(u.GetTraits(), wh.GetUserProperties())), Segments: []refinerRef{},
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
		Data: answersByQuestion(items, func(a *pb.Answer) any {
			if len(a.GetFields()) > 1 {
				ts := make([]string, len(a.Fields))
				for i, f := range a.Fields {
					ts[i] = fieldText(f)
				}
				return ts
			}
			return answerText(a)
		}),
		Tags: []refinerRef{},
	}
	for _, t := range r.GetTags() {
		out.Tags = append(out.Tags, refinerRef{UUID: refinerUUID(ev.GetProjectId(), "tag", t), Name: t})
	}
	return out
}

func refinerUUID(projectID, kind, id string) string {
	return uuid.NewSHA1(refinerNamespace, []byte(strings.Join([]string{projectID, kind, id}, "\x00"))).String()
}
