package attemptlog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// TestEveryEngineGivesTheSameAnswers writes the same rows into every engine, asks every query and
// compares the answers, as JSON, with the first engine's: same rows in, same answers out.
func TestEveryEngineGivesTheSameAnswers(t *testing.T) {
	if len(engines) < 2 {
		t.Skip("one engine only: the current engine (libchdb) runs with -tags chdb (make test)")
	}
	var first, firstName string
	for _, e := range engines {
		got := answers(t, migrated(t, e))
		t.Logf("%s: %d bytes of answers", e.name, len(got))
		if first == "" {
			first, firstName = got, e.name
			continue
		}
		require.JSONEq(t, first, got, "%s answers as %s does", e.name, firstName)
	}
}

func answers(t *testing.T, st *attemptlog.Store) string {
	ctx := context.Background()
	classes := []pb.OutcomeClass{pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE,
		pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT}
	statuses := []int{200, 503, 404, 0}
	var in []*pb.Attempt
	var dl []*pb.Delivery
	for i := range 60 {
		at := base.Add(time.Duration(i*97) * time.Second).Add(time.Duration(i%7) * time.Millisecond)
		a := attempt(fmt.Sprintf("a%02d", i), []string{"p1", "p2"}[i%2], fmt.Sprintf("wh%d", i%3), fmt.Sprintf("e%d", i%11), at,
			statuses[i%4], classes[i%4])
		a.LatencyUs = int64(1000 + i*37)
		in = append(in, a)
		if i%5 == 0 {
			dl = append(dl, dead(fmt.Sprintf("d%02d", i), a.ProjectId, a.WebhookId, at, statuses[i%4], string(a.RequestBody)))
		}
	}
	require.NoError(t, st.InsertAttempts(ctx, in, src(len(in))))
	insertDead(t, st, dl...)

	out := map[string]any{}
	ask := func(name string, v any, err error) {
		require.NoError(t, err, name)
		out[name] = v
	}
	for _, q := range []attemptlog.AttemptQuery{
		{ProjectID: "p1", Limit: 7}, {ProjectID: "p1", WebhookID: "wh1"}, {ProjectID: "p2", EventID: "e3"},
		{ProjectID: "p1", Outcome: "timeout"}, {ProjectID: "p2", StatusCode: 503},
		{ProjectID: "p1", From: base.Add(10 * time.Minute), To: base.Add(50 * time.Minute)},
	} {
		var pages [][]attemptlog.AttemptSummary
		for {
			page, next, err := st.ListAttempts(ctx, q)
			require.NoError(t, err)
			pages = append(pages, page)
			if next == "" {
				break
			}
			q.Cursor = next
		}
		out[fmt.Sprintf("ListAttempts %+v", q)] = pages
	}
	d, err := st.GetAttempt(ctx, "p1", "a10")
	ask("GetAttempt", d, err)
	stats, err := st.Stats(ctx, attemptlog.StatsQuery{ProjectID: "p1", WebhookID: "wh1", From: base, To: base.Add(3 * time.Hour), Step: time.Hour})
	ask("Stats", stats, err)
	totals, err := st.EndpointTotals(ctx, base)
	slices.SortFunc(totals, func(a, b attemptlog.EndpointTotals) int {
		return strings.Compare(a.ProjectID+a.WebhookID, b.ProjectID+b.WebhookID)
	})
	ask("EndpointTotals", totals, err)
	dls, _, err := st.ListDeadLetters(ctx, attemptlog.DeadLetterQuery{ProjectID: "p1"})
	ask("ListDeadLetters", dls, err)
	open, err := st.OpenDeadLetters(ctx)
	ask("OpenDeadLetters", open, err)
	more := replayAttempts()
	require.NoError(t, st.InsertAttempts(ctx, more, src(len(more))))
	for _, o := range attemptlog.ReplayOutcomes {
		for _, c := range append([]string{""}, attemptlog.ReplayStatusClasses...) {
			q := attemptlog.ReplayQuery{ProjectID: "p1", WebhookID: "wh1", Since: base, Until: base.Add(time.Hour), Outcome: o, StatusClass: c, Limit: 2}
			var pages [][]attemptlog.ReplayCandidate
			for {
				page, err := st.ReplayCandidates(ctx, q)
				require.NoError(t, err)
				pages = append(pages, page)
				if len(page) < q.Limit {
					break
				}
				q.After = page[len(page)-1].DeliveryID
			}
			out[fmt.Sprintf("ReplayCandidates %s %s", o, c)] = pages
		}
	}
	bodies, err := st.ReplayBodies(ctx, "p1", "wh1", base, []string{"r02", "r15", "a10"})
	ask("ReplayBodies", bodies, err)
	erased, err := st.Erase(ctx, "p2", attemptlog.Respondent{Email: "ada@example.com"})
	ask("Erase", erased, err)
	b, err := json.Marshal(out)
	require.NoError(t, err)
	return string(b)
}
