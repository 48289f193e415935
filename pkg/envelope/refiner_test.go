package envelope_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestRefinerAnswersAreWhatResponseDataShows(t *testing.T) {
	ev := &pb.Event{EventType: "survey.completed", Response: &pb.Response{Items: []*pb.Item{
		{Question: &pb.Question{Id: "team"}, Answer: &pb.Answer{Fields: []*pb.Field{text("f", "10+")}}},
		{Question: &pb.Question{Id: "tools"}, Answer: &pb.Answer{Fields: []*pb.Field{text("a", "Go"), text("b", "R&D <x>")}}},
		{Question: &pb.Question{Id: "skipped"}},
	}}}
	require.Equal(t, []envelope.Answer{
		{Key: "team", Value: json.RawMessage(`"10+"`)},
		{Key: "tools", Value: json.RawMessage(`["Go","R\u0026D \u003cx\u003e"]`)},
	}, envelope.RefinerAnswers(ev), "unanswered questions are not remembered")
}

// Refiner: "The attribute object contains all traits which we have on record for the given user
// […] as well as all survey responses we've received for a user."
func TestRefinerAttributesHoldTraitsThenRememberedAnswers(t *testing.T) {
	ev := &pb.Event{EventType: "survey.displayed", ProjectId: "p",
		User: &pb.User{Id: "u", Traits: []byte(`{"plan":"enterprise","team":"trait wins"}`)}}
	r := &pb.Respondent{Answers: []*pb.RespondentAnswer{
		{Key: "nps", Value: []byte(`"9"`)}, {Key: "team", Value: []byte(`"10+"`)}, {Key: "tools", Value: []byte(`["Go","Rust"]`)},
	}}
	attributes := func(opts ...envelope.Option) string {
		body, err := envelope.Render(ev, &pb.Webhook{Format: envelope.FormatRefiner}, opts...)
		require.NoError(t, err)
		var b struct{ Attributes json.RawMessage }
		require.NoError(t, json.Unmarshal(body, &b))
		return string(b.Attributes)
	}
	require.Equal(t, `{"plan":"enterprise","team":"trait wins","nps":"9","tools":["Go","Rust"]}`, attributes(envelope.WithRespondent(r)))
	require.Equal(t, `{"plan":"enterprise","team":"trait wins"}`, attributes(), "without a respondent: the traits")
	ev.User.Traits = nil
	require.Equal(t, `{"nps":"9","team":"10+","tools":["Go","Rust"]}`, attributes(envelope.WithRespondent(r)))
}
