package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestErasureRemovesARespondentsAttemptsAndDeadLettersAndReportsTheCount(t *testing.T) {
	s := startStack(t, withClickHouse())
	pa, key := s.project("Acme")
	pb2, key2 := s.project("Other")
	path := "/v1/projects/" + pa + "/erasures"

	s.must(http.StatusUnauthorized, "POST", path, key, map[string]any{"email": "ada@example.com"})
	s.must(http.StatusNotFound, "POST", "/v1/projects/prj_nope/erasures", adminToken, map[string]any{"email": "a@b"})
	require.Equal(t, "user_id", s.must(http.StatusBadRequest, "POST", path, adminToken, map[string]any{}).errField())
	require.Equal(t, "email", s.must(http.StatusBadRequest, "POST", path, adminToken, map[string]any{"email": "  "}).errField())
	require.Equal(t, "unknown_field", s.must(http.StatusBadRequest, "POST", path, adminToken, `{"phone":"1"}`).errCode())

	s.logRows(pa, row{id: "att_keep", webhook: "wh_a", event: "evt_1", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, status: 200})
	s.logRows(pb2, row{id: "att_other", webhook: "wh_b", event: "evt_ada", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, status: 200})
	// logRows writes {"event_id":"<event>"}: an event id equal to the e-mail stands for a body naming her.
	s.logRows(pa, row{id: "att_ada", webhook: "wh_a", event: "ada@example.com", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, status: 200})
	s.deadRows(&pb.Delivery{DeliveryId: "msg_ada", EventId: "evt_2", WebhookId: "wh_a", ProjectId: pa, EventType: "nps.scored",
		Body: []byte(`{"user":{"email":"ada@example.com"}}`), Attempt: 6, LastOutcome: &pb.Outcome{StatusCode: 500, AtMs: t0.UnixMilli()}})

	job := s.must(http.StatusAccepted, "POST", path, adminToken, map[string]any{"email": "ada@example.com"})
	id := job.str("id")
	require.Equal(t, "running", job.str("status"))
	require.NotContains(t, job.raw, "ada@example.com", "the job never holds the identifier")

	var done reply
	require.Eventually(t, func() bool {
		done = s.must(http.StatusOK, "GET", path+"/"+id, adminToken, nil)
		return done.str("status") != "running"
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "done", done.str("status"), done.String())
	require.Equal(t, map[string]any{"attempts": 1.0, "dead_letters": 1.0}, done.body["erased"])

	require.Equal(t, []any{"att_keep"}, ids(s.must(http.StatusOK, "GET", "/v1/attempts", key, nil)))
	require.Empty(t, s.must(http.StatusOK, "GET", "/v1/dead-letters", key, nil).list())
	require.Equal(t, []any{"att_other"}, ids(s.must(http.StatusOK, "GET", "/v1/attempts", key2, nil)), "another project keeps its rows")
	s.must(http.StatusNotFound, "GET", "/v1/projects/"+pb2+"/erasures/"+id, adminToken, nil)
}
