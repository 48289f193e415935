package envelope_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// A separate flag from -update, so that regenerating the formats' golden files can never touch the
// frozen v1 files.
var updateFormats = flag.Bool("update-formats", false, "rewrite the formats' golden files (only when adding a format)")

// ms parses an RFC 3339 time into Unix milliseconds.
func ms(t string) int64 {
	tm, err := time.Parse(time.RFC3339Nano, t)
	if err != nil {
		panic(err)
	}
	return tm.UnixMilli()
}

func text(id, s string) *pb.Field {
	v, _ := json.Marshal(s)
	return &pb.Field{Id: id, Type: "string", Text: s, Value: v}
}

func number(id string, n float64) *pb.Field {
	return &pb.Field{Id: id, Type: "number", Number: &n, Value: []byte(strconv.FormatFloat(n, 'f', -1, 64))}
}

// deviation is a field where the rendered body knowingly differs from the document's sample: the
// value we send instead (absent: the field is not sent), and why.
type deviation struct {
	path string // dot-separated; list indexes as numbers
	want any
	why  string
}

var absent = &struct{}{}

// formatCase renders ev for wh and checks it against testdata/<golden>.golden.json and, when the
// document has one, against its sample.
type formatCase struct {
	golden     string
	sample     string // file in testdata/samples; "" when the document shows none
	ev         *pb.Event
	wh         *pb.Webhook
	project    *pb.Project // what fan-out knows of the event's project; nil: nothing
	deviations []deviation
}

func userpilotUser() (*pb.User, *pb.Account, *pb.Context) {
	return &pb.User{Id: "1", Name: "John Doe", Email: "john@userpilot.co",
			Traits: []byte(`{"plan":"growth","role":"admin","email":"other@example.com"}`)},
		&pb.Account{Id: "1", Name: "Userpilot", Traits: []byte(`{"seats":25,"industry":"saas"}`)},
		&pb.Context{Hostname: "demo.userpilot.io", Pathname: "/dashboard"}
}

// userpilotElement is the event behind Userpilot's flow, checklist, feature tag, form and button
// samples: element id 1 at 1679578625 (seconds).
func userpilotElement(eventType string) *pb.Event {
	u, a, c := userpilotUser()
	kind, action, _ := strings.Cut(eventType, ".")
	return &pb.Event{EventId: "evt_up_" + eventType, ProjectId: "NX-bd46697c", EventType: eventType, TimeMs: 1679578625000,
		Element: &pb.Element{Type: kind, Id: "1", Action: action}, User: u, Account: a, Context: c}
}

func userpilotNps(eventType string, n *pb.Nps) *pb.Event {
	u, a, c := userpilotUser()
	return &pb.Event{EventId: "evt_up_" + eventType, ProjectId: "NX-bd46697c", EventType: eventType, TimeMs: 1679578619000,
		Nps: n, User: u, Account: a, Context: c}
}

func formatCases() []formatCase {
	userpilot := &pb.Webhook{Id: "wh_up", Format: "userpilot"}
	return []formatCase{{
		// Refiner's sample is a "Saw Survey" whose response already holds data (nps: "9") but no
		// data reception time: a survey.displayed event whose response items carry no reply time.
		golden: "refiner_saw_survey", sample: "refiner.json",
		ev: &pb.Event{
			EventId: "evt_refiner", ProjectId: "56421950-5d32-11ea-9bb4-9f1f1a987a49", EventType: "survey.displayed",
			TimeMs: ms("2022-04-27T17:04:27Z"),
			User: &pb.User{Id: "Your-User-ID", AnonymousId: "9205e5d0-f728-11ea-95d6-25411f8367ca",
				FirstSeenMs: ms("2020-09-15T07:53:40Z"), LastSeenMs: ms("2020-09-15T07:53:48Z"),
				Traits: []byte(`{"did_you_hear_the_latest_news":"yes","form_submissions_count":"1","form_views_count":"1","how_big_is_your_team":"10+","plan":"enterprise"}`),
				Segments: []*pb.Segment{
					{Id: "56466b00-5d32-11ea-ac9b-ed991110cd88", Name: "All Users"},
					{Id: "63a027f0-9af2-11ea-b3cb-559f22ac4088", Name: "Active Users"},
					{Id: "001368e0-9f60-11ea-b34a-d43258357a51", Name: "Promoters"},
					{Id: "0611f7b0-9f60-11ea-9826-e14c34c4cf0", Name: "Power Users"},
				}},
			Survey: &pb.Survey{Id: "34780fd0-2c11-11ec-8f58-7bd83b655011", Name: "NPS Survey"},
			Response: &pb.Response{Id: "18de5430-c64c-11ec-aa71-e1784a46b058", TimeMs: ms("2022-04-27T17:04:27Z"),
				Tags: []string{"Tag#1"}, Items: []*pb.Item{
					{Question: &pb.Question{Id: "nps", Type: "nps"}, Answer: &pb.Answer{Fields: []*pb.Field{number("", 9)}}},
					{Question: &pb.Question{Id: "something", Type: "input"}, Answer: &pb.Answer{Fields: []*pb.Field{text("", "else")}}},
				}},
		},
		wh: &pb.Webhook{Id: "wh_refiner", Format: "refiner"},
		deviations: []deviation{
			{"account.uuid", nil, "Refiner's internal account uuid: we derive one from the account's id, and this user has no account"},
			{"account.first_seen_at", nil, "events carry no account timestamps"},
			{"account.last_seen_at", nil, "events carry no account timestamps"},
			{"response.tags.0.uuid", "2127db1e-2474-5c46-b0bd-abceab0f2c8c", "events carry tag names only: the uuid is derived from the project and the name"},
			{"project_uuid", envelope.ProjectUUID("56421950-5d32-11ea-9bb4-9f1f1a987a49"), "the project's uuid is derived from its id"},
		},
	}, {
		// Screeb's sample is a response.ended: the response's last answer is repeated as
		// question/answer, and three items are shown without content.
		golden: "screeb_response_ended", sample: "screeb.json",
		project: &pb.Project{Id: "b5969d13-5e5e-4648-9806-5339ddafd984", Name: "ACME"},
		ev: &pb.Event{
			EventId: "64c7ea3b-827b-4679-b25d-7fd61f6c3d33", ProjectId: "b5969d13-5e5e-4648-9806-5339ddafd984",
			EventType: "survey.completed", TimeMs: 1627566309325,
			Channel: &pb.Channel{Id: "411ee7c3-7e64-409f-9d75-c782b3f73aa4", Type: "android"},
			Survey: &pb.Survey{Id: "9b913c69-3daf-4a6e-a26d-042004fc7881", Name: "Measure NPS",
				ScenarioId: "cc4a3710-e8ee-4672-a35c-5c17485ec441", ScenarioVersion: 9, ScenarioTimeMs: 1627517311069},
			User: &pb.User{Id: "samuel@screeb.app", AnonymousId: "2eb83fb4-b1b3-4e48-be48-a8fd9c4e5a7d",
				Name: "Samuel Berthe", Email: "samuel@screeb.app", Groups: []string{"Screeb", "10-100-companies", "plan-enterprise"}},
			Response: &pb.Response{Id: "5854a797-628c-4906-bb4c-da03e418cf47", Locale: "en-US", TimeMs: ms("2021-07-29T13:44:59.831Z"),
				TimeToCompleteS: 34, Completion: "fully_completed", Tags: []string{"screeb", "feedback"},
				HiddenFields: []byte(`{"firstname":"Samuel","lastname":"Berthe","email":"samuel@screeb.app","locale":"en-US","support":"desktop","timezone":-120,"user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) ...."}`),
				Items: []*pb.Item{
					{Question: &pb.Question{Id: "9a4bc5e1", Type: "nps", Title: "How likely are you to recommend us?"},
						Answer: &pb.Answer{RepliedAtMs: 1627566290000, Fields: []*pb.Field{number("f1", 9)}}},
					{Question: &pb.Question{Id: "77c2f0aa", Type: "multiple_choice", Title: "What do you use most?"},
						Answer: &pb.Answer{RepliedAtMs: 1627566300000, Fields: []*pb.Field{
							{Id: "f2", Type: "choice", Text: "Dashboards", Value: []byte(`"Dashboards"`)},
							{Id: "f3", Type: "choice", Text: "Reports", Value: []byte(`"Reports"`)}}}},
					{Question: &pb.Question{Id: "a44252c3-ef3d-4156-90d6-a3d6364516c0", Type: "input", Title: "How can we improve your experience?"},
						Answer: &pb.Answer{RepliedAtMs: 1627566309286, Tags: []string{"screeb", "feedback"},
							Fields: []*pb.Field{text("c71dfe9d-6b47-452f-bda2-6091c13561b0", "The new dashboard is buggy.")}}},
				}},
		},
		wh: &pb.Webhook{Id: "wh_screeb", Format: "screeb"},
		deviations: []deviation{
			{"time", "2021-07-29T13:45:09.325Z", "events carry milliseconds; the sample shows nanoseconds"},
			{"payload.survey.scenario_time", "2021-07-29T00:08:31.069Z", "events carry milliseconds; the sample shows microseconds"},
			{"payload.organization.id", envelope.ProjectUUID("b5969d13-5e5e-4648-9806-5339ddafd984"), "the project's uuid is derived from its id"},
			{"payload.user.user_id", "samuel@screeb.app", "the document's copy shows its e-mail obfuscation, \"[email protected]\", for the address"},
			{"payload.user.email", "samuel@screeb.app", "as user_id"},
			{"payload.response.hidden_fields.email", "samuel@screeb.app", "as user_id"},
			{"payload.response.time_ms", ms("2021-07-29T13:44:59.831Z"), "the sample's time_ms (1627918228831) disagrees with its own time; both come from one instant here"},
		},
	}, {
		golden: "userpilot_flows_seen", sample: "userpilot_flows.json", ev: userpilotElement("flow.seen"), wh: userpilot,
	}, {
		golden: "userpilot_checklist_completed", sample: "userpilot_checklist.json", ev: userpilotElement("checklist.completed"), wh: userpilot,
	}, {
		golden: "userpilot_feature_tag_hover", sample: "userpilot_feature_tag.json", ev: userpilotElement("feature_tag.hovered"), wh: userpilot,
	}, {
		golden: "userpilot_forms_submitted", sample: "userpilot_forms.json", ev: userpilotElement("form.submitted"), wh: userpilot,
	}, {
		golden: "userpilot_button_tracked", sample: "userpilot_button.json", ev: userpilotElement("button.tracked"), wh: userpilot,
	}, {
		golden: "userpilot_nps_feedback", sample: "userpilot_nps_feedback.json", wh: userpilot,
		ev: userpilotNps("nps.feedback", &pb.Nps{Score: ptr(int32(10)), Question: "How likely it is that you would recommend us to your friends?",
			FollowUpQuestion: "Why did you choose this score? ", Feedback: "Great Product"}),
	}, {
		golden: "userpilot_nps_ask_later", sample: "userpilot_nps_ask_later.json", wh: userpilot, ev: userpilotNps("nps.ask_later", nil),
	}, {
		// "//... rest of chosen user properties": chosen traits follow the fixed fields, in the
		// order chosen; a chosen name that is a fixed field ("email") does not override it.
		golden: "userpilot_chosen_properties", sample: "userpilot_flows.json", ev: userpilotElement("flow.seen"),
		wh: &pb.Webhook{Id: "wh_up2", Format: "userpilot", UserProperties: []string{"role", "plan", "email", "absent"},
			CompanyProperties: []string{"seats"}},
	}, {
		golden: "askusers_survey_response_created", sample: "askusers.json",
		ev: &pb.Event{
			EventId: "550e8400-e29b-41d4-a716-446655440000", ProjectId: "prj_askusers", EventType: "survey.completed",
			TimeMs: ms("2025-01-15T10:30:00Z"),
			Survey: &pb.Survey{Id: "survey-uuid", Name: "Product Feedback Survey"},
			Response: &pb.Response{Id: "response-uuid", Completion: "fully_completed", CompletedAtMs: ms("2025-01-15T10:30:00Z"),
				Items: []*pb.Item{
					{Question: &pb.Question{Id: "question-id-1"}, Answer: &pb.Answer{Fields: []*pb.Field{text("", "Answer 1")}}},
					{Question: &pb.Question{Id: "question-id-2"}, Answer: &pb.Answer{Fields: []*pb.Field{text("", "Answer 2")}}},
				}},
		},
		wh: &pb.Webhook{Id: "wh_askusers", Format: "askusers"},
	},
		// Shapes the documents show no sample of: frozen by their golden files only.
		{golden: "askusers_form_submission_created", ev: formSubmitted(), wh: &pb.Webhook{Format: "askusers"}},
		{golden: "askusers_feature_tag_clicked", ev: featureTag(), wh: &pb.Webhook{Format: "askusers"}},
		{golden: "screeb_response_answered_nps", ev: npsScored(), wh: &pb.Webhook{Format: "screeb"}},
		{golden: "screeb_feature_tag_clicked", ev: featureTag(), wh: &pb.Webhook{Format: "screeb"}},
		{golden: "refiner_completed_survey", ev: completedResponse(), wh: &pb.Webhook{Format: "refiner", UserProperties: []string{"plan"}}},
		{golden: "userpilot_nps_score", ev: npsScored(), wh: userpilot},
		{golden: "userpilot_survey_completed", ev: completedResponse(), wh: userpilot},
		{golden: "segmanta_question_completed", ev: questionAnswered(), wh: &pb.Webhook{Format: "segmanta"}},
		{golden: "segmanta_survey_completed", ev: completedResponse(), wh: &pb.Webhook{Format: "segmanta"}},
		{golden: "segmanta_nps_scored", ev: npsScored(), wh: &pb.Webhook{Format: "segmanta"}},
	}
}

func npsScored() *pb.Event {
	return &pb.Event{
		EventId: "evt_nps", ProjectId: "prj_acme", EventType: "nps.scored", TimeMs: 1679578619000,
		Survey:  &pb.Survey{Id: "s_nps", Name: "Quarterly NPS"},
		User:    &pb.User{Id: "u_7", Email: "ada@example.com", Name: "Ada"},
		Account: &pb.Account{Id: "42", Name: "Example Inc."},
		Nps:     &pb.Nps{Score: ptr(int32(4)), Question: "How likely are you to recommend us?"},
		Context: &pb.Context{Hostname: "app.example.com", Pathname: "/settings"},
	}
}

func formSubmitted() *pb.Event {
	return &pb.Event{
		EventId: "evt_form", ProjectId: "prj_acme", EventType: "form.submitted", TimeMs: ms("2025-01-15T10:31:00Z"),
		Survey:  &pb.Survey{Id: "form-uuid", Name: "Contact us"},
		User:    &pb.User{Id: "u_8", Email: "grace@example.com", Name: "Grace"},
		Element: &pb.Element{Type: "form", Id: "form-uuid", Action: "submitted"},
		Response: &pb.Response{Id: "submission-uuid", Items: []*pb.Item{
			{Question: &pb.Question{Id: "email", Type: "input"}, Answer: &pb.Answer{Fields: []*pb.Field{text("", "grace@example.com")}}},
			{Question: &pb.Question{Id: "topics", Type: "multiple_choice"}, Answer: &pb.Answer{Fields: []*pb.Field{text("", "billing"), text("", "sso")}}},
			{Question: &pb.Question{Id: "seats", Type: "number"}, Answer: &pb.Answer{Fields: []*pb.Field{number("", 25)}}},
		}},
	}
}

func TestFormatsReproduceTheReferenceSamples(t *testing.T) {
	for _, c := range formatCases() {
		t.Run(c.golden, func(t *testing.T) {
			got, err := envelope.Render(c.ev, c.wh, envelope.WithProject(c.project))
			require.NoError(t, err)
			path := filepath.Join("testdata", c.golden+".golden.json")
			if *updateFormats {
				var pretty bytes.Buffer
				require.NoError(t, json.Indent(&pretty, got, "", "  "))
				require.NoError(t, os.WriteFile(path, append(pretty.Bytes(), '\n'), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			var compact bytes.Buffer
			require.NoError(t, json.Compact(&compact, want))
			require.Equal(t, compact.String(), string(got), "format output changed: formats are frozen, add a new one instead")

			if c.sample == "" {
				return
			}
			raw, err := os.ReadFile(filepath.Join("testdata", "samples", c.sample))
			require.NoError(t, err)
			var sample, body any
			require.NoError(t, json.Unmarshal(raw, &sample))
			require.NoError(t, json.Unmarshal(got, &body))
			for _, d := range c.deviations {
				sample = setPath(t, sample, strings.Split(d.path, "."), d.want)
			}
			requireShows(t, sample, body, "")
		})
	}
}

// requireShows asserts that every field of want is in got with the same value (got may have more
// fields); lists must have the same length.
func requireShows(t *testing.T, want, got any, path string) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		require.True(t, ok, "%s: want an object, got %v", path, got)
		for k, wv := range w {
			gv, ok := g[k]
			require.True(t, ok, "%s.%s: missing", path, k)
			requireShows(t, wv, gv, path+"."+k)
		}
	case []any:
		g, ok := got.([]any)
		require.True(t, ok, "%s: want a list, got %v", path, got)
		require.Len(t, g, len(w), "%s", path)
		for i := range w {
			requireShows(t, w[i], g[i], path+"."+strconv.Itoa(i))
		}
	default:
		require.Equal(t, want, got, "%s", path)
	}
}

// setPath replaces the value at path in v (a decoded JSON value) by val, normalised through JSON.
func setPath(t *testing.T, v any, path []string, val any) any {
	t.Helper()
	if len(path) == 0 {
		b, err := json.Marshal(val)
		require.NoError(t, err)
		var out any
		require.NoError(t, json.Unmarshal(b, &out))
		return out
	}
	switch x := v.(type) {
	case map[string]any:
		_, ok := x[path[0]]
		require.True(t, ok, "deviation for %q: the sample has no such field", path[0])
		x[path[0]] = setPath(t, x[path[0]], path[1:], val)
		return x
	case []any:
		i, err := strconv.Atoi(path[0])
		require.NoError(t, err)
		x[i] = setPath(t, x[i], path[1:], val)
		return x
	}
	t.Fatalf("deviation path %v goes through a scalar", path)
	return nil
}

func TestEveryFormatRendersEveryEventType(t *testing.T) {
	types := append([]string{envelope.TestEventType}, envelope.EventTypes...)
	for _, f := range append([]string{""}, envelope.Formats...) {
		for _, typ := range types {
			for name, ev := range map[string]*pb.Event{"maximal": maximalEvent(), "bare": {EventId: "e", EventType: typ}} {
				ev.EventType = typ
				body, err := envelope.Render(ev, &pb.Webhook{Format: f, UserProperties: []string{"plan"}})
				require.NoError(t, err, "%s %s %s", f, typ, name)
				var obj map[string]any
				require.NoError(t, json.Unmarshal(body, &obj), "%s %s %s: a JSON object", f, typ, name)
			}
		}
	}
}

func TestEventNames(t *testing.T) {
	for _, c := range []struct {
		format, eventType, want string
		ok                      bool
	}{
		{"screeb", "survey.question_answered", "response.answered", true},
		{"userpilot", "feature_tag.hovered", "feature_tag.hover", true},
		{"userpilot", "checklist.seen", "checklist.seen", true},
		{"screeb", "flow.seen", "flow.seen", false},
		{"", "survey.completed", "survey.completed", false},
	} {
		name, ok := envelope.EventName(c.format, c.eventType)
		require.Equal(t, c.want, name, "%s %s", c.format, c.eventType)
		require.Equal(t, c.ok, ok, "%s %s", c.format, c.eventType)
	}
}

func TestUnknownFormatIsAnError(t *testing.T) {
	_, err := envelope.Render(featureTag(), &pb.Webhook{Format: "typeform"})
	require.ErrorContains(t, err, `unknown format "typeform"`)
	require.NoError(t, envelope.ValidateFormat(""))
	require.NoError(t, envelope.ValidateFormat("screeb"))
}
