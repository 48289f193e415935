package attemptlog_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// TestMigrateUpgradesTablesMadeBeforeRetentionDays: a database made by an earlier version (no
// retention_days, no erasures table) keeps its rows, gains the column filled with the default
// retention (storage_masked "unknown" and concurrency_limit 0 on old rows), and takes the new
// writes and queries.
func TestMigrateUpgradesTablesMadeBeforeRetentionDays(t *testing.T) {
	ctx := context.Background()
	st := openServer(t, attemptlog.WithRetention(attemptlog.Retention{DefaultDays: 14, MaxDays: 90}))
	if st.Form() != attemptlog.Legacy {
		t.Skip("the earlier schema was the 18.16-compatible form")
	}
	old := strings.ReplaceAll(attemptlog.Schema, ",\n    concurrency_limit UInt16", "")
	old = strings.ReplaceAll(old, ",\n    storage_masked UInt8,\n    sealed_body String", "")
	old = strings.ReplaceAll(old, ",\n    retention_days UInt16", "")
	old = old[:strings.Index(old, "\n;\n-- Erasure jobs")]
	for _, stmt := range strings.Split(old, "\n;\n") {
		var lines []string
		for _, l := range strings.Split(stmt, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if q := strings.TrimSpace(strings.Join(lines, "\n")); q != "" {
			require.NoError(t, st.Exec(ctx, q))
		}
	}
	require.NoError(t, st.Exec(ctx, `INSERT INTO delivery_attempts (attempt_id, project_id, webhook_id, started_at, started_ms)
		SELECT 'old', 'p1', 'wh', now(), toUInt64(toUInt32(now())) * 1000`)) // INSERT … VALUES hangs on 18.16

	require.NoError(t, st.Migrate(ctx))
	a := attempt("new", "p1", "wh", "e1", time.Now(), 200, pb.OutcomeClass_OUTCOME_CLASS_SUCCESS)
	a.ConcurrencyLimit = 7
	require.NoError(t, st.InsertAttempts(ctx, []*pb.Attempt{a}, src(1)))
	got, _, err := st.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: "p1"})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"old", "new"}, ids(got))
	bodies, err := st.ReplayBodies(ctx, "p1", "wh", time.Now().Add(-time.Hour), []string{"old", "new"})
	require.NoError(t, err)
	limits, err := st.ConcurrencyLimits(ctx, attemptlog.StatsQuery{ProjectID: "p1", WebhookID: "wh",
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, 7, limits.Latest, "the new row's limit; the old row's is 0, not recorded")
	require.Equal(t, 7, limits.Min)
	require.True(t, bodies["old"].Unmarked, "an old row may hold a masked body without saying so")
	require.False(t, bodies["new"].Unmarked)
	run, err := st.EnforceRetention(ctx, time.Now().AddDate(0, 0, 15))
	require.NoError(t, err)
	require.Equal(t, uint64(2), run.Attempts, "the old row got the default 14 days too")
	require.NoError(t, st.SaveErasure(ctx, attemptlog.ErasureJob{ID: "er", ProjectID: "p1", Status: "running", RequestedAt: time.Now()}))
}
