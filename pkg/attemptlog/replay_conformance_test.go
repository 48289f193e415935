package attemptlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// replayAttempts: deliveries of webhook wh1 in project p1 (and one elsewhere), each a story told
// by its attempts. The range is [base, base+1h).
//
//	d-dead     503, 503 then dead (status 503)               failed, dead, 5xx
//	d-retry    timeout, waiting for a retry (no status)      failed, none
//	d-ok       503 then 200                                  delivered, 2xx
//	d-skip     not sent: webhook disabled                    skipped, none
//	d-404      404, dead at once; a survey.completed         failed, dead, 4xx
//	d-late     first attempt after the range                 never
//	d-early    failed before the range, succeeded after it   never (no attempt in the range)
//	d-fixed    failed in the range, recovered after it       delivered (its latest attempt)
//	d-test     a Send Test that failed                       never
func replayAttempts() []*pb.Attempt {
	mk := func(id, delivery string, n int, at time.Time, status int, class pb.OutcomeClass, disp pb.Disposition) *pb.Attempt {
		a := attempt(id, "p1", "wh1", "ev-"+delivery, at, status, class)
		a.DeliveryId, a.Attempt, a.Outcome.Disposition = delivery, int32(n), disp
		return a
	}
	retry, dead, ok := pb.Disposition_DISPOSITION_RETRY, pb.Disposition_DISPOSITION_DEAD, pb.Disposition_DISPOSITION_DELIVERED
	c5, c2 := pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, pb.OutcomeClass_OUTCOME_CLASS_SUCCESS
	out := []*pb.Attempt{
		mk("r01", "d-dead", 1, base.Add(1*time.Minute), 503, c5, retry),
		mk("r02", "d-dead", 2, base.Add(2*time.Minute), 503, c5, dead),
		mk("r03", "d-retry", 1, base.Add(3*time.Minute), 0, pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, retry),
		mk("r04", "d-ok", 1, base.Add(4*time.Minute), 503, c5, retry),
		mk("r05", "d-ok", 2, base.Add(5*time.Minute), 200, c2, ok),
		mk("r06", "d-skip", 1, base.Add(6*time.Minute), 0, pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, pb.Disposition_DISPOSITION_SKIPPED),
		mk("r07", "d-404", 1, base.Add(7*time.Minute), 404, pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, dead),
		mk("r08", "d-late", 1, base.Add(61*time.Minute), 503, c5, dead),
		mk("r09", "d-early", 1, base.Add(-time.Minute), 503, c5, retry),
		mk("r10", "d-early", 2, base.Add(62*time.Minute), 200, c2, ok),
		mk("r11", "d-fixed", 1, base.Add(8*time.Minute), 503, c5, dead),
		mk("r12", "d-fixed", 1, base.Add(63*time.Minute), 200, c2, ok), // a replay: attempt 1 again, later
		mk("r13", "d-test", 1, base.Add(9*time.Minute), 500, c5, dead),
	}
	out[6].EventType = "survey.completed"
	out[12].Test = true
	other := attempt("r14", "p2", "wh1", "ev-x", base.Add(time.Minute), 503, c5)
	other.Outcome.Disposition = dead
	masked := mk("r15", "d-masked", 1, base.Add(10*time.Minute), 500, c5, dead)
	masked.RequestBody, masked.StorageMasked, masked.SealedBody = []byte(`{"email":"***"}`), true, []byte("sealed\x00bytes")
	return append(out, other, masked)
}

func candidateIDs(cs []attemptlog.ReplayCandidate) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.DeliveryID+"@"+c.AttemptID)
	}
	return out
}

func testReplay(t *testing.T, e engine) {
	ctx := context.Background()
	st := migrated(t, e)
	in := replayAttempts()
	require.NoError(t, st.InsertAttempts(ctx, in, src(len(in))))

	q := attemptlog.ReplayQuery{ProjectID: "p1", WebhookID: "wh1", Since: base, Until: base.Add(time.Hour)}
	for _, c := range []struct {
		name string
		tune func(*attemptlog.ReplayQuery)
		want []string
	}{
		{"all", func(*attemptlog.ReplayQuery) {}, []string{"d-404@r07", "d-dead@r02", "d-fixed@r12", "d-masked@r15", "d-ok@r05", "d-retry@r03", "d-skip@r06"}},
		{"failed", func(q *attemptlog.ReplayQuery) { q.Outcome = "failed" }, []string{"d-404@r07", "d-dead@r02", "d-masked@r15", "d-retry@r03"}},
		{"dead", func(q *attemptlog.ReplayQuery) { q.Outcome = "dead" }, []string{"d-404@r07", "d-dead@r02", "d-masked@r15"}},
		{"skipped", func(q *attemptlog.ReplayQuery) { q.Outcome = "skipped" }, []string{"d-skip@r06"}},
		{"delivered", func(q *attemptlog.ReplayQuery) { q.Outcome = "delivered" }, []string{"d-fixed@r12", "d-ok@r05"}},
		{"5xx", func(q *attemptlog.ReplayQuery) { q.Outcome, q.StatusClass = "failed", "5xx" }, []string{"d-dead@r02", "d-masked@r15"}},
		{"4xx", func(q *attemptlog.ReplayQuery) { q.StatusClass = "4xx" }, []string{"d-404@r07"}},
		{"no answer", func(q *attemptlog.ReplayQuery) { q.StatusClass = "none" }, []string{"d-retry@r03", "d-skip@r06"}},
		{"event type", func(q *attemptlog.ReplayQuery) { q.EventTypes = []string{"survey.completed", "form.submitted"} }, []string{"d-404@r07"}},
		{"narrow range", func(q *attemptlog.ReplayQuery) { q.Until = base.Add(3 * time.Minute) }, []string{"d-dead@r02"}},
		{"another project", func(q *attemptlog.ReplayQuery) { q.ProjectID = "p2" }, []string{"dl-ev-x-wh1@r14"}},
	} {
		qc := q
		c.tune(&qc)
		got, err := st.ReplayCandidates(ctx, qc)
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, candidateIDs(got), c.name)
	}

	var paged []string
	page := q
	page.Limit = 3
	for range 5 {
		got, err := st.ReplayCandidates(ctx, page)
		require.NoError(t, err)
		paged = append(paged, candidateIDs(got)...)
		if len(got) < page.Limit {
			break
		}
		page.After = got[len(got)-1].DeliveryID
	}
	require.Len(t, paged, 7, "pages walk every delivery once: %v", paged)

	first, err := st.ReplayCandidates(ctx, attemptlog.ReplayQuery{ProjectID: "p1", WebhookID: "wh1", Since: base, Until: base.Add(time.Hour), Outcome: "dead"})
	require.NoError(t, err)
	require.Equal(t, attemptlog.ReplayCandidate{DeliveryID: "d-404", AttemptID: "r07", EventID: "ev-d-404", EventType: "survey.completed",
		Disposition: "dead", StatusCode: 404, StartedAt: base.Add(7 * time.Minute)}, first[0])

	_, err = st.ReplayCandidates(ctx, attemptlog.ReplayQuery{ProjectID: "p1", WebhookID: "wh1", Since: base, Until: base, Outcome: "dead"})
	require.Error(t, err, "an empty range")
	_, err = st.ReplayCandidates(ctx, attemptlog.ReplayQuery{ProjectID: "p1", WebhookID: "wh1", Since: base, Until: base.Add(time.Hour), Outcome: "lost"})
	require.ErrorContains(t, err, `outcome "lost"`)

	bodies, err := st.ReplayBodies(ctx, "p1", "wh1", base, []string{"r02", "r15", "r14"})
	require.NoError(t, err)
	require.Len(t, bodies, 2, "another project's attempt is not read")
	require.Equal(t, in[1].RequestBody, bodies["r02"].Body)
	require.False(t, bodies["r02"].StorageMasked)
	require.Equal(t, attemptlog.ReplayBody{Body: []byte(`{"email":"***"}`), StorageMasked: true, SealedBody: []byte("sealed\x00bytes")}, bodies["r15"])

	cut := attempt("r16", "p1", "wh1", "ev-cut", base.Add(11*time.Minute), 500, c5Class)
	cut.RequestHeaders[attemptlog.TruncatedHeader] = "request body: kept 10 of 2000000 bytes"
	require.NoError(t, st.InsertAttempts(ctx, []*pb.Attempt{cut}, src(1)))
	bodies, err = st.ReplayBodies(ctx, "p1", "wh1", base, []string{"r16"})
	require.NoError(t, err)
	require.True(t, bodies["r16"].Truncated)

	// Jobs: the latest state wins; stale running jobs are found for a takeover.
	now := time.Now().UTC().Truncate(time.Millisecond)
	job := attemptlog.ReplayJob{ID: "rp_1", ProjectID: "p1", WebhookID: "wh1", TargetWebhookID: "wh2", Since: base, Until: base.Add(time.Hour),
		Outcome: "failed", StatusClass: "5xx", EventTypes: []string{"nps.scored"}, Status: attemptlog.JobRunning, RequestedAt: now,
		Owner: "api-1", Heartbeat: now.Add(-10 * time.Minute)}
	require.NoError(t, st.SaveReplay(ctx, job))
	other := attemptlog.ReplayJob{ID: "rp_2", ProjectID: "p1", WebhookID: "wh1", TargetWebhookID: "wh1", Since: base, Until: base.Add(time.Hour),
		Outcome: "all", EventTypes: []string{}, Status: attemptlog.JobRunning, RequestedAt: now.Add(time.Second), Owner: "api-2", Heartbeat: now}
	require.NoError(t, st.SaveReplay(ctx, other))
	stale, err := st.StaleReplays(ctx, now.Add(-time.Minute))
	require.NoError(t, err)
	require.Len(t, stale, 1)
	require.Equal(t, job, stale[0])
	handed := other
	handed.Owner, handed.Heartbeat = "", time.Time{} // a process that stopped handed it back
	require.NoError(t, st.SaveReplay(ctx, handed))
	stale, err = st.StaleReplays(ctx, now.Add(-time.Minute))
	require.NoError(t, err)
	require.Equal(t, []string{"rp_2", "rp_1"}, []string{stale[0].ID, stale[1].ID}, "a job handed back is taken over at once")
	require.NoError(t, st.SaveReplay(ctx, other))

	job.Status, job.Cursor, job.Matched, job.Replayed, job.Skipped, job.FinishedAt = attemptlog.JobDone, "d-dead", 3, 2, 1, &now
	require.NoError(t, st.SaveReplay(ctx, job))
	got, err := st.GetReplay(ctx, "p1", "rp_1")
	require.NoError(t, err)
	require.Equal(t, job, *got, "the latest state of the job")
	_, err = st.GetReplay(ctx, "p2", "rp_1")
	require.ErrorIs(t, err, attemptlog.ErrNotFound)
	stale, err = st.StaleReplays(ctx, now.Add(-time.Minute))
	require.NoError(t, err)
	require.Empty(t, stale, "a finished job is not taken over")
	list, err := st.ListReplays(ctx, "p1", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"rp_2", "rp_1"}, []string{list[0].ID, list[1].ID}, "newest first")
}

const c5Class = pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE
