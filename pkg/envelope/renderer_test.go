package envelope_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Pinned versions never move: a webhook that gains a filter (or loses one) gets the same bytes.
func TestV1BodiesAreByteIdenticalBeforeAndAfterAFilter(t *testing.T) {
	for _, ev := range []*pb.Event{completedResponse(), questionAnswered(), featureTag(), maximalEvent()} {
		plain := &pb.Webhook{Id: "wh", PayloadVersion: "1", UserProperties: []string{"plan"}, Revision: 1}
		before, err := envelope.Render(ev, plain)
		require.NoError(t, err)

		filtered := &pb.Webhook{Id: "wh", PayloadVersion: "1", UserProperties: []string{"plan"}, Revision: 2,
			Filter: `event.event_type != "nps.dismissed"`}
		r, err := envelope.NewRenderer(filtered)
		require.NoError(t, err)
		ok, err := r.Match(ev)
		require.NoError(t, err)
		require.True(t, ok)
		after, err := r.Render(ev)
		require.NoError(t, err)
		require.Equal(t, string(before), string(after), "%s", ev.EventType)
	}
}

func TestRendererAppliesFormatThenTransform(t *testing.T) {
	wh := &pb.Webhook{Format: "userpilot", Transform: `{"kind": body.type, "who": body.data.user.email, "score": event.nps.score}`}
	r, err := envelope.NewRenderer(wh)
	require.NoError(t, err)
	got, err := r.Render(npsScored())
	require.NoError(t, err)
	require.Equal(t, `{"kind":"nps.score","score":4,"who":"ada@example.com"}`, string(got))

	viaRender, err := envelope.Render(npsScored(), wh)
	require.NoError(t, err)
	require.Equal(t, string(got), string(viaRender), "Render (Send Test) and the compiled renderer agree")
}

func TestRendererWithoutFilterMatchesEverything(t *testing.T) {
	r, err := envelope.NewRenderer(&pb.Webhook{})
	require.NoError(t, err)
	require.False(t, r.HasFilter())
	ok, err := r.Match(featureTag())
	require.NoError(t, err)
	require.True(t, ok)
}

func TestNewRendererNamesTheFieldAtFault(t *testing.T) {
	for _, c := range []struct {
		wh   *pb.Webhook
		want string
	}{
		{&pb.Webhook{Filter: `event.nps.scor <= 6`}, "filter: ERROR: <input>:1:10: undefined field 'scor'"},
		{&pb.Webhook{Transform: `{"a": }`}, "transform: ERROR: <input>:1:7: Syntax error"},
		{&pb.Webhook{Format: "typeform"}, `format: unknown format "typeform"`},
		{&pb.Webhook{PayloadVersion: "9"}, `payload_version: unknown payload version "9"`},
	} {
		_, err := envelope.NewRenderer(c.wh)
		require.ErrorContains(t, err, c.want)
	}
	_, err := envelope.NewRenderer(&pb.Webhook{Format: "screeb", PayloadVersion: "9"})
	require.NoError(t, err, "formats have their own fixed version: payload_version does not apply")
}

func TestValidateExpressions(t *testing.T) {
	for _, c := range []struct {
		name     string
		validate func(string) error
		expr     string
		want     string // "" when valid
	}{
		{"no filter", envelope.ValidateFilter, "", ""},
		{"detractors", envelope.ValidateFilter, `event.event_type == "nps.scored" && event.nps.score <= 6`, ""},
		{"survey id", envelope.ValidateFilter, `event.survey.id == "s_1"`, ""},
		{"traits", envelope.ValidateFilter, `traits.plan == "pro"`, ""},
		{"syntax", envelope.ValidateFilter, `event.nps.score <=`, "Syntax error"},
		{"not a bool", envelope.ValidateFilter, `event.survey`, "must return a bool"},
		{"unknown variable", envelope.ValidateFilter, `body.event_id == "x"`, "undeclared reference to 'body'"},
		{"no transform", envelope.ValidateTransform, "", ""},
		{"reshape", envelope.ValidateTransform, `{"id": body.event_id}`, ""},
		{"not a map", envelope.ValidateTransform, `event.event_id`, "must return a map or a list"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.validate(c.expr)
			if c.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, c.want)
		})
	}
}

func BenchmarkRenderV1(b *testing.B) {
	ev, wh := completedResponse(), &pb.Webhook{}
	for b.Loop() {
		if _, err := envelope.Render(ev, wh); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRendererWithFilterAndTransform(b *testing.B) {
	r, err := envelope.NewRenderer(&pb.Webhook{Filter: `event.nps.score >= 0`, Transform: `{"id": body.event_id, "score": body.payload.nps.score}`})
	require.NoError(b, err)
	ev := completedResponse()
	for b.Loop() {
		if ok, err := r.Match(ev); !ok || err != nil {
			b.Fatal(ok, err)
		}
		if _, err := r.Render(ev); err != nil {
			b.Fatal(err)
		}
	}
}
