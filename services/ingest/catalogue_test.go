package ingest

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
)

// catalogueCases is, for every event type, a smallest valid event and what breaks it: removing or
// changing one thing must be refused with an error naming that field.
var catalogueCases = []struct {
	typ    string
	valid  string
	breaks []breakCase
}{
	{"survey.displayed", `{"survey":{"id":"s1"},"user":{"anonymous_id":"a1"}}`, []breakCase{
		{`{"user":{"anonymous_id":"a1"}}`, "survey.id"},
		{`{"survey":{"id":"s1"}}`, "user.id"},
	}},
	{"survey.question_answered", `{"survey":{"id":"s1"},"user":{"id":"u1"},"question":{"id":"q1"},"answer":{"fields":[{"text":"yes"}]}}`, []breakCase{
		{`{"user":{"id":"u1"},"question":{"id":"q1"},"answer":{"fields":[{"text":"yes"}]}}`, "survey.id"},
		{`{"survey":{"id":"s1"},"user":{"id":"u1"},"answer":{"fields":[{"text":"yes"}]}}`, "question.id"},
		{`{"survey":{"id":"s1"},"user":{"id":"u1"},"question":{"id":"q1"}}`, "answer.fields"},
		{`{"survey":{"id":"s1"},"user":{"id":"u1"},"question":{"id":"q1"},"answer":{"fields":[]}}`, "answer.fields"},
	}},
	{"survey.completed", `{"survey":{"id":"s1"},"user":{"id":"u1"},"response":{"id":"r1","completion":"fully_completed"}}`, []breakCase{
		{`{"user":{"id":"u1"}}`, "survey.id"},
		{`{"survey":{"id":"s1"},"user":{"id":"u1"},"response":{"completion":"done"}}`, "response.completion"},
	}},
	{"survey.dismissed", `{"survey":{"id":"s1"},"user":{"id":"u1"}}`, []breakCase{
		{`{"survey":{"name":"no id"},"user":{"id":"u1"}}`, "survey.id"},
	}},
	{"form.submitted", `{"element":{"id":"f1"}}`, []breakCase{ // no user: anonymous visitors submit forms
		{`{}`, "element.id"},
		{`{"element":{"id":"f1","type":"flow"}}`, "element.type"},
	}},
	{"nps.scored", `{"nps":{"score":0},"user":{"id":"u1"}}`, []breakCase{
		{`{"user":{"id":"u1"}}`, "nps.score"},
		{`{"nps":{"score":11},"user":{"id":"u1"}}`, "nps.score"},
		{`{"nps":{"score":-1},"user":{"id":"u1"}}`, "nps.score"},
		{`{"nps":{"score":7.5},"user":{"id":"u1"}}`, "nps.score"},
		{`{"nps":{"score":"9"},"user":{"id":"u1"}}`, "nps.score"},
		{`{"nps":{"score":9}}`, "user.id"},
	}},
	{"nps.feedback", `{"nps":{"feedback":"Great Product"},"user":{"id":"u1"}}`, []breakCase{
		{`{"nps":{"feedback":"  "},"user":{"id":"u1"}}`, "nps.feedback"},
		{`{"nps":{"score":12,"feedback":"x"},"user":{"id":"u1"}}`, "nps.score"},
	}},
	{"nps.dismissed", `{"user":{"id":"u1"}}`, []breakCase{
		{`{"user":{"email":"no-id@example.com"}}`, "user.id"},
	}},
	{"nps.ask_later", `{"user":{"anonymous_id":"a1"}}`, []breakCase{
		{`{}`, "user.id"},
	}},
	{"flow.seen", `{"element":{"id":1},"user":{"id":"u1"}}`, elementBreaks("flow")},
	{"flow.completed", `{"element":{"id":"1"},"user":{"id":"u1"}}`, elementBreaks("flow")},
	{"flow.dismissed", `{"element":{"id":"1"},"user":{"id":"u1"}}`, elementBreaks("flow")},
	{"checklist.seen", `{"element":{"id":"1"},"user":{"id":"u1"}}`, elementBreaks("checklist")},
	{"checklist.completed", `{"element":{"id":"1"},"user":{"id":"u1"}}`, elementBreaks("checklist")},
	{"checklist.dismissed", `{"element":{"id":"1"},"user":{"id":"u1"}}`, elementBreaks("checklist")},
	{"feature_tag.clicked", `{"element":{"id":"1"},"user":{"id":"u1"}}`, elementBreaks("feature_tag")},
	{"feature_tag.hovered", `{"element":{"id":"1"},"user":{"id":"u1"}}`, elementBreaks("feature_tag")},
	{"feature_tag.text_input", `{"element":{"id":"1","text":"csv"},"user":{"id":"u1"}}`, elementBreaks("feature_tag")},
	{"button.tracked", `{"element":{"id":"1"},"user":{"id":"u1"}}`, elementBreaks("button")},
	{"user.identified", `{"user":{"id":"u1","traits":{"plan":"pro"}}}`, []breakCase{
		{`{"user":{"anonymous_id":"a1"}}`, "user.id"},
		{`{"user":{"id":"u1","traits":["plan"]}}`, "user.traits"},
	}},
}

type breakCase struct {
	event string // without event_type
	field string
}

func elementBreaks(family string) []breakCase {
	other := "button"
	if family == "button" {
		other = "flow"
	}
	return []breakCase{
		{`{"user":{"id":"u1"}}`, "element.id"},
		{`{"element":{"name":"no id"},"user":{"id":"u1"}}`, "element.id"},
		{`{"element":{"id":"1","type":"` + other + `"},"user":{"id":"u1"}}`, "element.type"},
		{`{"element":{"id":"1"}}`, "user.id"},
		{`{"element":{"id":1.5},"user":{"id":"u1"}}`, "element.id"},
	}
}

func withType(event, typ string) string {
	if event == "{}" {
		return `{"event_type":"` + typ + `"}`
	}
	return `{"event_type":"` + typ + `",` + strings.TrimPrefix(event, "{")
}

func TestEveryEventTypeIsValidatedByItsRule(t *testing.T) {
	var covered []string
	for _, c := range catalogueCases {
		covered = append(covered, c.typ)
		t.Run(c.typ, func(t *testing.T) {
			evs, _, herr := decodeEvents([]byte(withType(c.valid, c.typ)), 10, 1000)
			require.Nil(t, herr, "the smallest valid %s must be accepted", c.typ)
			require.Equal(t, c.typ, evs[0].ev.EventType)
			require.Equal(t, int64(1000), evs[0].ev.TimeMs, "time defaults to the receive time")
			if et, _ := envelope.LookupEventType(c.typ); et.Element != "" && evs[0].ev.Element != nil {
				require.Equal(t, et.Element, evs[0].ev.Element.Type, "element.type is filled in")
				require.Equal(t, et.Action, evs[0].ev.Element.Action, "element.action is filled in")
			}
			for _, b := range c.breaks {
				_, _, herr := decodeEvents([]byte(withType(b.event, c.typ)), 10, 1000)
				require.NotNil(t, herr, "%s must be refused", b.event)
				require.Equal(t, 400, herr.Status)
				require.Equal(t, b.field, herr.Field, "%s: %s", b.event, herr.Message)

				// The same mistake in a batch names the event.
				batch := `{"events":[` + withType(c.valid, c.typ) + `,` + withType(b.event, c.typ) + `]}`
				_, _, herr = decodeEvents([]byte(batch), 10, 1000)
				require.NotNil(t, herr)
				require.Equal(t, "events[1]."+b.field, herr.Field, herr.Message)
			}
		})
	}
	require.ElementsMatch(t, envelope.EventTypes, covered, "the table must cover every event type, and only those")
}

// TestEveryCatalogueExampleIsAccepted: the catalogue's smallest example of each type is valid.
func TestEveryCatalogueExampleIsAccepted(t *testing.T) {
	for _, et := range envelope.Catalogue {
		evs, _, herr := decodeEvents([]byte(et.Example), 10, 1000)
		require.Nil(t, herr, "the example of %s: %v", et.Name, herr)
		require.Equal(t, et.Name, evs[0].ev.EventType)
	}
}

func TestTheSendTestTypeAndUnknownTypesAreRefused(t *testing.T) {
	for _, typ := range []string{"webhook.test", "survey.exploded", ""} {
		_, _, herr := decodeEvents([]byte(withType(`{"user":{"id":"u1"}}`, typ)), 10, 1)
		require.NotNil(t, herr, typ)
		require.Equal(t, "event_type", herr.Field)
	}
	_, _, herr := decodeEvents([]byte(`{"user":{"id":"u1"}}`), 10, 1)
	require.Equal(t, "event_type", herr.Field)
	require.Equal(t, "missing_field", herr.Code)
}

func TestDecodeErrorsNameTheFieldPath(t *testing.T) {
	ok := `"event_type":"survey.completed","survey":{"id":"s1"},"user":{"id":"u1"}`
	for _, c := range []struct{ body, field, code string }{
		{`{` + ok + `,"usr":{}}`, "usr", "unknown_field"},
		{`{` + ok + `,"response":{"items":[{"answer":{"fields":[{"number":"9"}]}}]}}`, "response.items[0].answer.fields[0].number", "invalid_field"},
		{`{` + ok + `,"response":{"items":[{},{"answer":{"fields":[{"colour":1}]}}]}}`, "response.items[1].answer.fields[0].colour", "unknown_field"},
		{`{` + ok + `,"time":1679578625}`, "time", "invalid_field"},
		{`{` + ok + `,"time":"yesterday"}`, "time", "invalid_field"},
		{`{` + ok + `,"time":"2024-05-01T12:00:00Z","time_ms":5}`, "time_ms", "invalid_field"},
		{`{` + ok + `,"properties":"x"}`, "properties", "invalid_field"},
		{`{` + ok + `,"response":{"hidden_fields":[1]}}`, "response.hidden_fields", "invalid_field"},
		{`{"event_type":"survey.completed","survey":{"id":"s1"},"user":{"id":"u1","segments":[{"id":"s","colour":"red"}]}}`, "user.segments[0].colour", "unknown_field"},
		{`{"event_type":"survey.completed","survey":{"id":"s1"},"user":{"id":"u1","groups":["a",2]}}`, "user.groups[1]", "invalid_field"},
		{`{` + ok + `,"event_id":"has space"}`, "event_id", "invalid_field"},
		{`{` + ok + `,"event_id":"` + strings.Repeat("x", 129) + `"}`, "event_id", "invalid_field"},
		{`{` + ok + `,"received_at_ms":5}`, "received_at_ms", "invalid_field"},
		{`{"event_type":"survey.completed","survey":{"id":"s1","scenario_version":"9"},"user":{"id":"u1"}}`, "survey.scenario_version", "invalid_field"},
		{`{` + ok + `,"preview":"yes"}`, "preview", "invalid_field"},
		{`{"events":[{` + ok + `}],"extra":1}`, "extra", "unknown_field"},
		{`{"events":{}}`, "events", "invalid_field"},
		{`{"events":[]}`, "events", "missing_field"},
		{`{"events":[{` + ok + `},7]}`, "events[1]", "invalid_field"},
		{`{"events":[{` + ok + `},{` + ok + `,"nps":{"score":42}}]}`, "events[1].nps.score", "invalid_field"},
		{`[{` + ok + `}]`, "", "invalid_json"},
		{`{` + ok, "", "invalid_json"},
		{``, "", "invalid_json"},
	} {
		_, _, herr := decodeEvents([]byte(c.body), 10, 1)
		require.NotNil(t, herr, c.body)
		require.Equal(t, c.field, herr.Field, "%s → %s", c.body, herr.Message)
		require.Equal(t, c.code, herr.Code, "%s → %s", c.body, herr.Message)
	}
}

func TestBatchLargerThanTheLimitIs413(t *testing.T) {
	ev := `{"event_type":"nps.ask_later","user":{"id":"u1"}}`
	body := `{"events":[` + strings.TrimSuffix(strings.Repeat(ev+",", 4), ",") + `]}`
	_, _, herr := decodeEvents([]byte(body), 3, 1)
	require.NotNil(t, herr)
	require.Equal(t, 413, herr.Status)
	evs, batch, herr := decodeEvents([]byte(body), 4, 1)
	require.Nil(t, herr)
	require.True(t, batch)
	require.Len(t, evs, 4)
}

func TestEventIsMappedOntoTheProtobufEvent(t *testing.T) {
	body := `{
	  "event_id":"e1","event_type":"survey.question_answered","project_id":"p1",
	  "time":"2021-07-29T13:45:09.325Z","preview":false,
	  "channel":{"id":"c1","type":"android"},
	  "survey":{"id":"s1","name":"NPS","scenario_id":"sc","scenario_version":9,"scenario_time":"2021-07-29T00:08:31.069Z"},
	  "user":{"id":"u1","anonymous_id":"a1","email":"e@x","name":"N","traits":{ "plan" : "pro", "n": [1, 2] },
	          "segments":[{"id":"g1","name":"All"}],"groups":["x"],"first_seen_ms":5,"last_seen_at":"1970-01-01T00:00:00.006Z"},
	  "account":{"id":"ac","name":"ACME","domain":"acme.test","traits":{"seats":3}},
	  "response":{"id":"r1","locale":"en-US","completion":"partially_completed","time_ms":7,"time_to_complete_second":34,
	              "hidden_fields":{"k":"v"},"tags":["t"],"completed_at_ms":8,"dismissed_at":null,
	              "items":[{"question":{"id":"q0"},"answer":{"fields":[{"value":3}]}}]},
	  "question":{"id":"q1","type":"input","title":"How?"},
	  "answer":{"fields":[{"id":"f1","type":"string","value":"fine \"really\""},{"boolean":true},{"time":"1970-01-01T00:00:01Z"}],"replied_at_ms":9,"tags":["a"]},
	  "context":{"hostname":"h","pathname":"/p","user_agent":"ua","ip":"192.0.2.1"},
	  "nps":{"score":null},
	  "properties":{"sent_at_ns":123,"nested":{"a":"b"}}
	}`
	evs, _, herr := decodeEvents([]byte(body), 1, 1000)
	require.Nil(t, herr)
	d := evs[0]
	ev := d.ev
	require.Equal(t, "p1", d.projectID)
	require.Equal(t, int64(1627566309325), ev.TimeMs)
	require.Equal(t, int64(1000), ev.ReceivedAtMs)
	require.Equal(t, "android", ev.Channel.Type)
	require.Equal(t, int32(9), ev.Survey.ScenarioVersion)
	require.Equal(t, int64(1627517311069), ev.Survey.ScenarioTimeMs)
	require.JSONEq(t, `{"plan":"pro","n":[1,2]}`, string(ev.User.Traits))
	require.Equal(t, `{"plan":"pro","n":[1,2]}`, string(ev.User.Traits), "free-form objects are stored compact")
	require.Equal(t, int64(5), ev.User.FirstSeenMs)
	require.Equal(t, int64(6), ev.User.LastSeenMs)
	require.Equal(t, "All", ev.User.Segments[0].Name)
	require.Equal(t, []string{"x"}, ev.User.Groups)
	require.JSONEq(t, `{"seats":3}`, string(ev.Account.Traits))
	require.Equal(t, int64(34), ev.Response.TimeToCompleteS)
	require.Equal(t, int64(7), ev.Response.TimeMs)
	require.Equal(t, int64(8), ev.Response.CompletedAtMs)
	require.Zero(t, ev.Response.DismissedAtMs)
	require.JSONEq(t, `{"k":"v"}`, string(ev.Response.HiddenFields))
	require.Equal(t, "q0", ev.Response.Items[0].Question.Id)
	f0 := ev.Response.Items[0].Answer.Fields[0]
	require.Equal(t, 3.0, *f0.Number, "a numeric value fills the number slot")
	require.Equal(t, "number", f0.Type)
	fs := ev.Answer.Fields
	require.Equal(t, `fine "really"`, fs[0].Text, "a string value fills the text slot, unescaped")
	require.True(t, json.Valid(fs[0].Value))
	require.Equal(t, "true", string(fs[1].Value), "a typed slot fills the raw value")
	require.Equal(t, "boolean", fs[1].Type)
	require.Equal(t, int64(1000), fs[2].TimeMs)
	require.Equal(t, `"1970-01-01T00:00:01Z"`, string(fs[2].Value))
	require.Equal(t, int64(9), ev.Answer.RepliedAtMs)
	require.Equal(t, "192.0.2.1", ev.Context.Ip)
	require.Nil(t, ev.Nps.Score)
	require.JSONEq(t, `{"sent_at_ns":123,"nested":{"a":"b"}}`, string(ev.Properties))
}

// TestEveryDocumentedExampleIsAccepted keeps docs/events.md honest: each ```json block is accepted,
// a block under "### <event type>" is an event of that type, and every type has one.
func TestEveryDocumentedExampleIsAccepted(t *testing.T) {
	doc, err := os.ReadFile("../../docs/events.md")
	require.NoError(t, err)
	block := regexp.MustCompile("(?s)```json\n(.*?)```")
	heading := regexp.MustCompile(`(?m)^#{2,3} (\S+)`)
	var documented []string
	for _, m := range block.FindAllSubmatchIndex(doc, -1) {
		hs := heading.FindAllSubmatch(doc[:m[0]], -1)
		require.NotEmpty(t, hs)
		under := string(hs[len(hs)-1][1])
		evs, _, herr := decodeEvents(doc[m[2]:m[3]], 500, 1)
		require.Nil(t, herr, "example under %q: %v", under, herr)
		if _, ok := envelope.LookupEventType(under); ok {
			require.Len(t, evs, 1)
			require.Equal(t, under, evs[0].ev.EventType, "the example under %q", under)
			documented = append(documented, under)
		}
	}
	for _, et := range envelope.Catalogue {
		require.True(t, slices.Contains(documented, et.Name), "docs/events.md has no example of %s", et.Name)
	}
}
