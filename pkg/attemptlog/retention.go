package attemptlog

import (
	"context"
	"fmt"
	"time"
)

// Retention says how many days each project's attempts and dead letters are kept. Every row
// carries its project's days when written; changing a project's retention applies to rows written
// afterwards (and, on the legacy form, to rows the next retention run sees with the new days only
// once they were written with them).
type Retention struct {
	DefaultDays int            // projects not listed
	MaxDays     int            // the platform maximum: no project keeps rows longer
	Projects    map[string]int // project id → days
}

// DefaultRetention keeps every project's rows 30 days, at most 90.
var DefaultRetention = Retention{DefaultDays: 30, MaxDays: 90}

// Validate checks the days are positive and the default within the maximum.
func (r Retention) Validate() error {
	if r.MaxDays < 1 || r.MaxDays > 3650 {
		return fmt.Errorf("retention: maximum %d days is not within 1–3650", r.MaxDays)
	}
	if r.DefaultDays < 1 || r.DefaultDays > r.MaxDays {
		return fmt.Errorf("retention: default %d days is not within 1–%d", r.DefaultDays, r.MaxDays)
	}
	for p, d := range r.Projects {
		if d < 1 || d > r.MaxDays {
			return fmt.Errorf("retention: project %s's %d days is not within 1–%d", p, d, r.MaxDays)
		}
	}
	return nil
}

// Days is a project's retention, bounded by the maximum.
func (r Retention) Days(projectID string) uint16 {
	d, ok := r.Projects[projectID]
	if !ok {
		d = r.DefaultDays
	}
	return uint16(min(max(d, 1), r.MaxDays))
}

// mutationWait bounds how long a delete waits for 18.16's background mutation (a stuck one would
// otherwise hold the sink's retention loop or an erasure job for ever).
const mutationWait = 15 * time.Minute

// RetentionRun is what one retention run removed.
type RetentionRun struct {
	Attempts, DeadLetters uint64 // rows past their project's retention, deleted (legacy form)
	Partitions            int    // daily partitions past the platform maximum, dropped
}

// EnforceRetention removes what is older than its project's retention at now. On the current
// form TTL does this at merges and the run only drops whole partitions past the platform maximum;
// on the legacy form (no TTL) it also deletes rows past their own retention_days, with a mutation
// it waits for. The sink runs it at start and hourly.
func (s *Store) EnforceRetention(ctx context.Context, now time.Time) (RetentionRun, error) {
	var run RetentionRun
	if s.form == Legacy {
		for _, t := range []struct {
			table, at string
			n         *uint64
		}{{"delivery_attempts", "started_at", &run.Attempts}, {"dead_letters", "dead_at", &run.DeadLetters}} {
			// Nothing is kept less than a day: the first condition lets ClickHouse skip recent parts.
			where := fmt.Sprintf("%s < ? AND toUInt32(%s) + toUInt32(retention_days) * 86400 < ?", t.at, t.at)
			n, err := s.deleteWhere(ctx, t.table, where, now.Add(-24*time.Hour).UTC().Truncate(time.Second), uint32(now.Unix()))
			if err != nil {
				return run, fmt.Errorf("retention of %s: %w", t.table, err)
			}
			*t.n = n
		}
	}
	n, err := s.DropPartitionsBefore(ctx, now.AddDate(0, 0, -s.retention.MaxDays))
	if err != nil {
		return run, err
	}
	run.Partitions = n
	if run != (RetentionRun{}) {
		s.log.Info("retention removed old rows", "attempts", run.Attempts, "dead_letters", run.DeadLetters,
			"partitions", run.Partitions, "form", string(s.form))
	}
	return run, nil
}

// deleteWhere counts the rows of table matching where, deletes them and returns the count. It
// uses ALTER … DELETE, which rewrites the parts holding those rows, so the bytes are gone once it
// returns (a lightweight DELETE would only hide them until a later merge). A current server runs
// it synchronously (mutations_sync = 2); 18.16 runs mutations in the background, so it waits.
func (s *Store) deleteWhere(ctx context.Context, table, where string, args ...any) (uint64, error) {
	var n uint64
	if err := queryRow(ctx, s.conn, fmt.Sprintf("SELECT count() FROM %s.%s WHERE %s", s.db, table, where), args, &n); err != nil {
		return 0, fmt.Errorf("counting rows to delete: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	q := fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE %s", s.db, table, where)
	if s.form == Current {
		if err := s.conn.Exec(ctx, q+" SETTINGS mutations_sync = 2", args...); err != nil {
			return 0, fmt.Errorf("deleting rows: %w", err)
		}
		return n, nil
	}
	if err := s.conn.Exec(ctx, q, args...); err != nil {
		return 0, fmt.Errorf("deleting rows: %w", err)
	}
	deadline := time.After(mutationWait)
	for {
		var pending uint64
		if err := queryRow(ctx, s.conn, `SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0`,
			[]any{s.db, table}, &pending); err != nil {
			return 0, fmt.Errorf("waiting for the delete: %w", err)
		}
		if pending == 0 {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for the delete: %w", ctx.Err())
		case <-deadline:
			return 0, fmt.Errorf("the delete of %d rows from %s is not done after %s; ClickHouse goes on with it (system.mutations)",
				n, table, mutationWait)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
