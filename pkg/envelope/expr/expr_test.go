package expr_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/envelope/expr"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func score(s int32) *int32 { return &s }

func npsEvent(s int32) *pb.Event {
	return &pb.Event{
		EventId: "e1", EventType: "nps.scored", ProjectId: "p1",
		Survey: &pb.Survey{Id: "s_1", Name: "NPS"},
		User: &pb.User{Id: "u1", Email: "ada@example.com",
			Traits: []byte(`{"plan":"enterprise","seats":42,"beta":true,"ratio":0.5}`)},
		Account:    &pb.Account{Id: "a1", Traits: []byte(`{"tier":"gold"}`)},
		Response:   &pb.Response{Id: "r1", HiddenFields: []byte(`{"source":"email"}`)},
		Nps:        &pb.Nps{Score: score(s), Feedback: "Too slow"},
		Properties: []byte(`{"campaign":"q3"}`),
	}
}

func TestFilters(t *testing.T) {
	detractor, promoter := npsEvent(3), npsEvent(10)
	noNps := &pb.Event{EventId: "e2", EventType: "survey.completed", Survey: &pb.Survey{Id: "s_2"}}
	badTraits := &pb.Event{EventId: "e3", EventType: "nps.scored", User: &pb.User{Traits: []byte(`[1,2]`)}}
	for _, c := range []struct {
		name    string
		filter  string
		ev      *pb.Event
		want    bool
		evalErr string // non-empty: evaluation fails (counted as no match by the caller)
	}{
		{"detractor matches score ≤ 6", `event.nps.score <= 6`, detractor, true, ""},
		{"promoter does not match score ≤ 6", `event.nps.score <= 6`, promoter, false, ""},
		{"the issue's filter, detractor", `event.event_type == "nps.scored" && event.nps.score <= 6`, detractor, true, ""},
		{"the issue's filter, other event", `event.event_type == "nps.scored" && event.nps.score <= 6`, noNps, false, ""},
		{"presence test guards an absent score", `has(event.nps.score) && event.nps.score <= 6`, noNps, false, ""},
		{"survey id", `event.survey.id == "s_1"`, detractor, true, ""},
		{"survey id, other survey", `event.survey.id == "s_1"`, noNps, false, ""},
		{"event type prefix", `event.event_type.startsWith("nps.")`, detractor, true, ""},
		{"string extension", `event.nps.feedback.lowerAscii().contains("slow")`, detractor, true, ""},
		{"user trait", `traits.plan == "enterprise"`, detractor, true, ""},
		{"integral trait compares with an int", `traits.seats > 10`, detractor, true, ""},
		{"fractional trait compares with an int", `traits.ratio < 1`, detractor, true, ""},
		{"account trait", `account_traits.tier in ["gold", "platinum"]`, detractor, true, ""},
		{"hidden field", `hidden_fields.source == "email"`, detractor, true, ""},
		{"properties", `properties.campaign == "q3"`, detractor, true, ""},
		{"key test on traits", `"plan" in traits && traits.plan == "free"`, noNps, false, ""},
		{"optional access on traits", `traits.?plan.orValue("free") == "free"`, noNps, true, ""},
		{"missing trait is an evaluation error", `traits.plan == "enterprise"`, noNps, false, "no such key"},
		{"traits that are not an object", `traits.plan == "x"`, badTraits, false, "not a JSON object"},
		{"dyn result that is not a bool", `traits.plan`, detractor, false, "did not return a bool"},
		{"cost limit", `[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))`, detractor, false, "cost limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := expr.CompileFilter(c.filter)
			require.NoError(t, err)
			got, err := f.Match(c.ev)
			if c.evalErr != "" {
				require.ErrorContains(t, err, c.evalErr)
				require.False(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}

func TestInvalidFiltersAreRefusedWithTheCheckersMessage(t *testing.T) {
	for _, c := range []struct{ filter, msg string }{
		{`event.nps.score <=`, "Syntax error"},
		{`event.nps.scor <= 6`, "undefined field 'scor'"},
		{`evnt.nps.score <= 6`, "undeclared reference to 'evnt'"},
		{`event.nps.score <= "6"`, "found no matching overload for '_<=_'"},
		{`event.survey.id`, "must return a bool"},
		{``, "empty"},
		{strings.Repeat("a", expr.MaxLength+1), "limit is 4096"},
	} {
		t.Run(c.filter, func(t *testing.T) {
			_, err := expr.CompileFilter(c.filter)
			require.ErrorContains(t, err, c.msg)
		})
	}
}

func TestTransforms(t *testing.T) {
	body := []byte(`{"event_id":"e1","event_type":"nps.scored","time_ms":1627566309325,"payload":{"nps":{"score":3},"user":{"id":"u1","email":"ada@example.com"},"ratio":0.25}}`)
	for _, c := range []struct {
		name, transform, want string
	}{
		{"pick fields", `{"id": body.event_id, "score": body.payload.nps.score}`, `{"id":"e1","score":3}`},
		{"integers stay integers", `{"next": body.payload.nps.score + 1, "ms": body.time_ms}`, `{"ms":1627566309325,"next":4}`},
		{"fractions stay fractions", `{"r": body.payload.ratio * 2.0}`, `{"r":0.5}`},
		{"slack message from the event", `{"text": "NPS " + string(event.nps.score) + " from " + event.user.email}`, `{"text":"NPS 3 from ada@example.com"}`},
		{"list result", `[body.event_type, traits.plan]`, `["nps.scored","enterprise"]`},
		{"body unchanged, keys sorted", `body`, `{"event_id":"e1","event_type":"nps.scored","payload":{"nps":{"score":3},"ratio":0.25,"user":{"email":"ada@example.com","id":"u1"}},"time_ms":1627566309325}`},
		{"proto message in the result", `{"survey": event.survey}`, `{"survey":{"id":"s_1","name":"NPS"}}`},
		{"optional none is null", `{"plan": traits.?missing}`, `{"plan":null}`},
		{"bind and map", `cel.bind(u, body.payload.user, {"who": u.email.upperAscii()})`, `{"who":"ADA@EXAMPLE.COM"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := expr.CompileTransform(c.transform)
			require.NoError(t, err)
			got, err := tr.Apply(npsEvent(3), body)
			require.NoError(t, err)
			require.JSONEq(t, c.want, string(got))
			require.Equal(t, c.want, string(got), "the encoding is deterministic")
		})
	}
}

func TestTransformErrors(t *testing.T) {
	for _, c := range []struct{ transform, compileErr, evalErr string }{
		{`"just a string"`, "must return a map or a list", ""},
		{`body.event_id == "x"`, "must return a map or a list", ""},
		{`{"a": }`, "Syntax error", ""},
		{`{"x": body.nope}`, "", "no such key"},
		{`body.event_id`, "", "not a map or a list"},
		{`{"x": 1.0 / 0.0}`, "", "JSON cannot represent"},
		{`{1: "a"}`, "", "keys are strings"},
	} {
		t.Run(c.transform, func(t *testing.T) {
			tr, err := expr.CompileTransform(c.transform)
			if c.compileErr != "" {
				require.ErrorContains(t, err, c.compileErr)
				return
			}
			require.NoError(t, err)
			_, err = tr.Apply(npsEvent(3), []byte(`{"event_id":"e1"}`))
			require.ErrorContains(t, err, c.evalErr)
		})
	}
}

func BenchmarkFilterMatch(b *testing.B) {
	f, err := expr.CompileFilter(`event.event_type == "nps.scored" && event.nps.score <= 6`)
	require.NoError(b, err)
	ev := npsEvent(3)
	for b.Loop() {
		if ok, err := f.Match(ev); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
