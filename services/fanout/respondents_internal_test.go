package fanout

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func answer(k, v string) envelope.Answer {
	b, _ := json.Marshal(v)
	return envelope.Answer{Key: k, Value: b}
}

func keysOf(r *pb.Respondent) []string {
	var ks []string
	for _, a := range r.GetAnswers() {
		ks = append(ks, a.Key)
	}
	return ks
}

func TestRememberKeepsTheNewestAnswersWithinBounds(t *testing.T) {
	t.Run("a question answered again moves to the end with its new answer", func(t *testing.T) {
		r, changed, _ := remember(nil, []envelope.Answer{answer("a", "1"), answer("b", "2")}, 10, "s1")
		require.True(t, changed)
		r2, changed, _ := remember(r, []envelope.Answer{answer("a", "3")}, 20, "s2")
		require.True(t, changed)
		require.Equal(t, []string{"b", "a"}, keysOf(r2))
		require.JSONEq(t, `"3"`, string(r2.Answers[1].Value))
		require.EqualValues(t, 20, r2.UpdatedAtMs)
		require.Equal(t, []string{"a", "b"}, keysOf(r), "the previous state is not modified (an aborted batch reuses it)")
	})
	t.Run("the same answer again changes nothing (no record)", func(t *testing.T) {
		r, _, _ := remember(nil, []envelope.Answer{answer("a", "1")}, 10, "s1")
		r2, changed, _ := remember(r, []envelope.Answer{answer("a", "1")}, 20, "s1")
		require.False(t, changed)
		require.Same(t, r, r2)
		_, changed, _ = remember(r, nil, 20, "s1")
		require.False(t, changed)
	})
	t.Run("at most MaxRespondentAnswers, the oldest forgotten", func(t *testing.T) {
		var r *pb.Respondent
		for i := range MaxRespondentAnswers + 5 {
			r, _, _ = remember(r, []envelope.Answer{answer(fmt.Sprintf("q%d", i), "x")}, int64(i), "s")
		}
		require.Len(t, r.Answers, MaxRespondentAnswers)
		require.Equal(t, "q5", r.Answers[0].Key)
		require.Equal(t, fmt.Sprintf("q%d", MaxRespondentAnswers+4), r.Answers[MaxRespondentAnswers-1].Key)
	})
	t.Run("at most MaxRespondentBytes, the oldest forgotten", func(t *testing.T) {
		var r *pb.Respondent
		long := strings.Repeat("é", 3000) // 6,000 bytes: under maxAnswerBytes
		for i := range 30 {
			r, _, _ = remember(r, []envelope.Answer{answer(fmt.Sprintf("q%d", i), long)}, int64(i), "s")
		}
		r.ProjectId, r.User = strings.Repeat("p", 200), strings.Repeat("u", 500)
		require.LessOrEqual(t, proto.Size(r), MaxRespondentBytes)
		require.Less(t, len(r.Answers), 30)
		require.Equal(t, "q29", r.Answers[len(r.Answers)-1].Key, "the newest is kept")
	})
	t.Run("an answer over maxAnswerBytes is not remembered, and counted", func(t *testing.T) {
		r, changed, skipped := remember(nil, []envelope.Answer{answer("essay", strings.Repeat("x", maxAnswerBytes)), answer("b", "2")}, 1, "s")
		require.True(t, changed)
		require.Equal(t, 1, skipped)
		require.Equal(t, []string{"b"}, keysOf(r))
	})
}

func TestEventProjectReadsOnlyTheProjectID(t *testing.T) {
	v, _ := proto.Marshal(&pb.Event{EventId: "e", ProjectId: "prj_1", EventType: "survey.completed", User: &pb.User{Id: "u"}})
	require.Equal(t, "prj_1", eventProject(v))
	require.Equal(t, "", eventProject([]byte("not protobuf")))
}
