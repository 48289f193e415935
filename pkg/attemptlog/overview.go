package attemptlog

import (
	"context"
	"fmt"
	"time"
)

// EndpointTotals is one webhook's totals over a range, across every project: what the operator
// console ranks endpoints by.
type EndpointTotals struct {
	ProjectID, WebhookID string
	Attempts, Success    uint64
	P99Ms                float64
}

// EndpointTotals reads every webhook's totals since from, from the hourly rollup.
func (s *Store) EndpointTotals(ctx context.Context, from time.Time) ([]EndpointTotals, error) {
	rows, err := s.conn.Query(ctx, fmt.Sprintf(`SELECT project_id, webhook_id, countMerge(attempts), sumMerge(success),
		quantilesMerge(0.5, 0.95, 0.99)(latency_us) FROM %s.attempts_hourly WHERE hour >= ?
		GROUP BY project_id, webhook_id`, s.db), from.UTC().Truncate(time.Hour))
	if err != nil {
		return nil, fmt.Errorf("reading endpoint totals: %w", err)
	}
	defer rows.Close()
	var out []EndpointTotals
	for rows.Next() {
		var e EndpointTotals
		var qs []float64
		if err := rows.Scan(&e.ProjectID, &e.WebhookID, &e.Attempts, &e.Success, &qs); err != nil {
			return nil, fmt.Errorf("reading endpoint totals: %w", err)
		}
		if len(qs) == 3 {
			e.P99Ms = qs[2] / 1000
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// OpenDeadLetters counts each project's dead letters not yet replayed.
func (s *Store) OpenDeadLetters(ctx context.Context) (map[string]uint64, error) {
	rows, err := s.conn.Query(ctx, fmt.Sprintf(`SELECT project_id, count() FROM %s.dead_letters FINAL
		WHERE replayed = 0 GROUP BY project_id`, s.db))
	if err != nil {
		return nil, fmt.Errorf("counting dead letters: %w", err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var p string
		var n uint64
		if err := rows.Scan(&p, &n); err != nil {
			return nil, fmt.Errorf("counting dead letters: %w", err)
		}
		out[p] = n
	}
	return out, rows.Err()
}
