// Package envelope renders the body a subscriber receives: the versioned JSON envelope
// `{event_id, event_type, version, time, time_ms, payload}` of DESIGN §1, or one of the compatible
// formats that reproduce another platform's webhook body (Formats), optionally reshaped by the
// webhook's transform; and it decides, with the webhook's filter, whether an event goes to a
// webhook at all. Filters and transforms are CEL expressions (package expr).
//
// A webhook is pinned to a payload version; once a version or a format is released its output
// never changes (golden files in testdata freeze it), so a new shape is always a new version beside
// the old ones. It must never depend on anything but the Event, the Webhook, and the project and
// the respondent (the user's remembered answers, WithRespondent) it is given, and
// must never compile an expression per event on the fan-out path (NewRenderer, once per revision).
package envelope

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/ids"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// TestEventType is the event type "Send Test" delivers; producers cannot send it.
const TestEventType = "webhook.test"

// DefaultVersion is the payload version a webhook gets when none is chosen.
const DefaultVersion = "1"

// Versions lists the payload versions a webhook can be pinned to.
var Versions = []string{"1"}

// MaxProperties is how many user and company properties a webhook may choose, together (Userpilot).
const MaxProperties = 10

// Option gives Render what a body may say beyond the Event and the Webhook.
type Option func(*options)

type options struct {
	project    *pb.Project
	respondent *pb.Respondent
}

// WithProject gives the renderer the event's project (from the `projects` topic), for formats
// that show more of it than its id: Screeb's organization.name. Without it the name is empty.
func WithProject(p *pb.Project) Option { return func(o *options) { o.project = p } }

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

// ProjectUUID is the UUID of a project, derived from its id (name-based, so stable for ever and
// the same in every process): what formats that type the project's id as a UUID carry (Refiner's
// project_uuid, Screeb's organization.id), and what the API shows as the project's uuid.
func ProjectUUID(projectID string) string { return ids.NameUUID(ids.Namespace, projectID) }

// Render returns the body for ev as webhook wh receives it: in wh's format (or, for the surveyhooks
// envelope, its pinned payload version), then reshaped by wh's transform if it has one, written as
// JSON.stringify writes it (see stringify). It does not apply wh's filter. It compiles the
// transform on every call: fan-out, which renders per event, uses a Renderer compiled once per
// webhook revision instead.
func Render(ev *pb.Event, wh *pb.Webhook, opts ...Option) ([]byte, error) {
	if wh.GetTransform() == "" {
		body, err := renderFormat(ev, wh, collect(opts))
		if err != nil {
			return nil, err
		}
		return stringify(body)
	}
	r, err := NewRenderer(wh)
	if err != nil {
		return nil, err
	}
	return r.Render(ev, opts...)
}

// TestEvent is the event "Send Test" delivers: a well-formed sample with every section filled, so
// a subscriber can see the shape of what will arrive.
func TestEvent(projectID string, now time.Time) *pb.Event {
	score := int32(9)
	return &pb.Event{
		EventType: TestEventType, ProjectId: projectID, TimeMs: now.UnixMilli(), ReceivedAtMs: now.UnixMilli(),
		Channel: &pb.Channel{Id: "test-channel", Type: "widget"},
		Survey:  &pb.Survey{Id: "test-survey", Name: "Test survey", ScenarioId: "test-scenario", ScenarioVersion: 1},
		User: &pb.User{Id: "test-user", Email: "test@example.com", Name: "Test User",
			Traits: []byte(`{"plan":"enterprise"}`)},
		Account:  &pb.Account{Id: "test-account", Name: "Example Inc."},
		Response: &pb.Response{Id: "test-response", Locale: "en-US", Completion: "fully_completed"},
		Nps:      &pb.Nps{Score: &score, Question: "How likely are you to recommend us?"},
		Context:  &pb.Context{Hostname: "example.com", Pathname: "/"},
	}
}

// timeString formats milliseconds as RFC 3339 UTC with milliseconds.
func timeString(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// rawObject returns b as a JSON object, or nil when empty.
func rawObject(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

// chosenTraits keeps only the named traits of a JSON object; with no names it keeps all.
func chosenTraits(traits []byte, names []string) json.RawMessage {
	if len(traits) == 0 {
		return nil
	}
	if len(names) == 0 {
		return json.RawMessage(traits)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(traits, &all); err != nil {
		return nil
	}
	kept := make(map[string]json.RawMessage, len(names))
	for k, v := range all {
		if slices.Contains(names, k) {
			kept[k] = v
		}
	}
	if len(kept) == 0 {
		return nil
	}
	out, _ := json.Marshal(kept)
	return out
}
