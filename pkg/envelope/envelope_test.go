package envelope_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files (only when adding a new version)")

func ptr[T any](v T) *T { return &v }

// completedResponse is a survey.completed event carrying every section, modelled on Screeb's v2
// sample payload.
func completedResponse() *pb.Event {
	return &pb.Event{
		EventId: "64c7ea3b-827b-4679-b25d-7fd61f6c3d33", ProjectId: "prj_acme", EventType: "survey.completed",
		TimeMs:  1627566309325,
		Channel: &pb.Channel{Id: "411ee7c3-7e64-409f-9d75-c782b3f73aa4", Type: "android"},
		Survey: &pb.Survey{Id: "9b913c69-3daf-4a6e-a26d-042004fc7881", Name: "Measure NPS",
			ScenarioId: "cc4a3710-e8ee-4672-a35c-5c17485ec441", ScenarioVersion: 9, ScenarioTimeMs: 1627517311069},
		User: &pb.User{Id: "samuel@example.com", AnonymousId: "2eb83fb4-b1b3-4e48-be48-a8fd9c4e5a7d",
			Email: "samuel@example.com", Name: "Samuel Berthe",
			Traits:   []byte(`{"plan":"enterprise","how_big_is_your_team":"10+","form_views_count":1}`),
			Segments: []*pb.Segment{{Id: "56466b00", Name: "All Users"}, {Id: "63a027f0", Name: "Promoters"}},
			Groups:   []string{"Screeb", "plan-enterprise"}, FirstSeenMs: 1600156420000},
		Account: &pb.Account{Id: "9206a9a0", Name: "ACME", Domain: "acme.example",
			Traits: []byte(`{"seats":42,"industry":"retail"}`)},
		Response: &pb.Response{Id: "5854a797-628c-4906-bb4c-da03e418cf47", Locale: "en-US",
			Completion: "fully_completed", TimeMs: 1627566299831, TimeToCompleteS: 34,
			HiddenFields: []byte(`{"support":"desktop","timezone":-120}`), Tags: []string{"feedback"},
			Items: []*pb.Item{{
				Question: &pb.Question{Id: "a44252c3", Type: "input", Title: "How can we improve your experience?"},
				Answer: &pb.Answer{RepliedAtMs: 1627566309286, Tags: []string{"feedback"}, Fields: []*pb.Field{
					{Id: "c71dfe9d", Type: "string", Text: "The new dashboard is buggy.", Value: []byte(`"The new dashboard is buggy."`)}}},
			}, {
				Question: &pb.Question{Id: "b1", Type: "nps", Title: "How likely are you to recommend us?"},
				Answer:   &pb.Answer{Fields: []*pb.Field{{Id: "f2", Type: "number", Number: ptr(9.0), Value: []byte(`9`)}}},
			}},
			CompletedAtMs: 1627566309325},
		Nps:     &pb.Nps{Score: ptr(int32(9)), Question: "How likely are you to recommend us?"},
		Context: &pb.Context{Hostname: "app.acme.example", Pathname: "/dashboard", UserAgent: "Mozilla/5.0"},
	}
}

func questionAnswered() *pb.Event {
	return &pb.Event{
		EventId: "e2", ProjectId: "prj_acme", EventType: "survey.question_answered", TimeMs: 1627566309286,
		Survey:   &pb.Survey{Id: "s1", Name: "Onboarding"},
		User:     &pb.User{Id: "u1"},
		Response: &pb.Response{Id: "r1", Completion: "partially_completed"},
		Question: &pb.Question{Id: "q1", Type: "multiple_choice", Title: "Which features do you use?"},
		Answer: &pb.Answer{RepliedAtMs: 1627566309286, Fields: []*pb.Field{
			{Id: "c1", Type: "choice", Text: "Reports", Value: []byte(`"Reports"`)},
			{Id: "c2", Type: "boolean", Boolean: ptr(true), Value: []byte(`true`)},
			{Id: "c3", Type: "time", TimeMs: 1627566300000, Value: []byte(`"2021-07-29T13:45:00Z"`)},
		}},
	}
}

func featureTag() *pb.Event {
	return &pb.Event{
		EventId: "e3", ProjectId: "prj_acme", EventType: "feature_tag.clicked", TimeMs: 1679578625000,
		Element: &pb.Element{Type: "feature_tag", Id: "1", Action: "clicked"},
		User:    &pb.User{Id: "1", Name: "John Doe", Email: "john@userpilot.co"},
		Account: &pb.Account{Id: "1", Name: "Userpilot"},
		Context: &pb.Context{Hostname: "demo.userpilot.io", Pathname: "/dashboard"},
	}
}

func TestV1BodiesMatchTheirGoldenFiles(t *testing.T) {
	plain := &pb.Webhook{Id: "wh_1", PayloadVersion: "1"}
	chosen := &pb.Webhook{Id: "wh_2", PayloadVersion: "1", UserProperties: []string{"plan"}, CompanyProperties: []string{"seats"}}
	for name, c := range map[string]struct {
		ev *pb.Event
		wh *pb.Webhook
	}{
		"v1_survey_completed":          {completedResponse(), plain},
		"v1_survey_completed_chosen":   {completedResponse(), chosen},
		"v1_question_answered":         {questionAnswered(), plain},
		"v1_feature_tag_clicked":       {featureTag(), plain},
		"v1_default_version_is_pinned": {featureTag(), &pb.Webhook{Id: "wh_3"}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := envelope.Render(c.ev, c.wh)
			require.NoError(t, err)
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				var pretty bytes.Buffer
				require.NoError(t, json.Indent(&pretty, got, "", "  "))
				require.NoError(t, os.WriteFile(path, append(pretty.Bytes(), '\n'), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			var compact bytes.Buffer
			require.NoError(t, json.Compact(&compact, want))
			require.Equal(t, compact.String(), string(got), "version 1 output changed: versions are frozen, add a new one instead")
		})
	}
}

func TestChosenPropertiesKeepOnlyThoseTraits(t *testing.T) {
	body, err := envelope.Render(completedResponse(), &pb.Webhook{UserProperties: []string{"plan", "absent"}})
	require.NoError(t, err)
	var out struct {
		Payload struct {
			User    struct{ Traits map[string]any }
			Account struct{ Traits map[string]any }
		}
	}
	require.NoError(t, json.Unmarshal(body, &out))
	require.Equal(t, map[string]any{"plan": "enterprise"}, out.Payload.User.Traits)
	require.Len(t, out.Payload.Account.Traits, 2, "no company properties chosen: all company traits are sent")
}

func TestUnknownVersionIsAnError(t *testing.T) {
	_, err := envelope.Render(featureTag(), &pb.Webhook{PayloadVersion: "9"})
	require.ErrorContains(t, err, `unknown payload version "9"`)
}

func TestTestEventRenders(t *testing.T) {
	ev := envelope.TestEvent("prj_1", time.UnixMilli(1700000000000))
	ev.EventId = "evt_1"
	body, err := envelope.Render(ev, &pb.Webhook{})
	require.NoError(t, err)
	require.Contains(t, string(body), `"event_type":"webhook.test"`)
	require.Contains(t, string(body), `"time":"2023-11-14T22:13:20.000Z"`)
}
