package attemptlog

import (
	"context"
	"fmt"
)

// ApplyTTL forces the merges that apply TTL, which a current server runs on its own schedule.
func (s *Store) ApplyTTL(ctx context.Context) error {
	for _, t := range []string{"delivery_attempts", "attempts_by_event", "dead_letters"} {
		if err := s.conn.Exec(ctx, fmt.Sprintf("OPTIMIZE TABLE %s.%s FINAL", s.db, t)); err != nil {
			return fmt.Errorf("optimizing %s: %w", t, err)
		}
	}
	return nil
}

// Exec runs a statement in the store's database, for tests that set up what older versions left.
func (s *Store) Exec(ctx context.Context, q string) error { return s.conn.Exec(ctx, q) }

// CountWhere counts a table's rows (every version, FINAL not applied) matching where.
func (s *Store) CountWhere(ctx context.Context, table, where string) (uint64, error) {
	var n uint64
	err := queryRow(ctx, s.conn, fmt.Sprintf("SELECT count() FROM %s.%s WHERE %s", s.db, table, where), nil, &n)
	return n, err
}
