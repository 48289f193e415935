package attemptlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Respondent names one person by any of the identifiers a survey platform sends: user id,
// anonymous id, e-mail. Empty fields are not used.
type Respondent struct {
	UserID      string `json:"user_id,omitempty"`
	AnonymousID string `json:"anonymous_id,omitempty"`
	Email       string `json:"email,omitempty"`
	// Also lists further exact string values that identify the respondent in stored bodies: the
	// hashes masking rules wrote for their identifiers (matched case-sensitively, never logged).
	Also []string `json:"-"`
}

// Erased is what an erasure removed.
type Erased struct {
	Attempts    uint64 `json:"attempts"`
	DeadLetters uint64 `json:"dead_letters"`
}

// ErrNoIdentifier is returned for a respondent without any identifier.
var ErrNoIdentifier = errors.New("a respondent needs a user_id, anonymous_id or email")

// token is an identifier as the JSON string literal it appears as in a rendered body, and whether
// it matches regardless of case (e-mail addresses are written in any case).
type token struct {
	lit     string
	anyCase bool
}

// tokens: every body format is JSON written by encoding/json, which may escape <, > and &
// (\u003c…), so both spellings are matched. Matching the whole quoted literal, not a substring,
// keeps user "42" from matching "142".
func (r Respondent) tokens() []token {
	var out []token
	for _, id := range []struct {
		v       string
		anyCase bool
	}{{r.UserID, false}, {r.AnonymousID, false}, {r.Email, true}} {
		if strings.TrimSpace(id.v) == "" {
			continue
		}
		escaped, _ := json.Marshal(id.v)
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(id.v)
		plain := strings.TrimSuffix(b.String(), "\n")
		out = append(out, token{string(escaped), id.anyCase})
		if plain != string(escaped) {
			out = append(out, token{plain, id.anyCase})
		}
	}
	if len(out) == 0 {
		return nil // Also alone does not name anyone
	}
	for _, v := range r.Also {
		lit, _ := json.Marshal(v)
		out = append(out, token{string(lit), false})
	}
	return out
}

// Erase removes a respondent's attempts (request and response included) and dead letters of one
// project and says how many rows went. A row goes when its body holds one of the respondent's
// identifiers as a whole JSON string value, whatever field holds it (the body formats name the
// user differently); e-mail addresses match in any case. Rows are deleted with ALTER … DELETE and the call returns once the parts
// holding them are rewritten (see deleteWhere). The hourly rollup (counts only) and the by-event index
// (ids only) hold no personal data and are kept.
func (s *Store) Erase(ctx context.Context, projectID string, r Respondent) (Erased, error) {
	toks := r.tokens()
	if len(toks) == 0 {
		return Erased{}, ErrNoIdentifier
	}
	if projectID == "" {
		return Erased{}, errors.New("Erase: projectID is required")
	}
	match := func(col string) (string, []any) {
		conds := make([]string, len(toks))
		args := []any{projectID}
		for i, t := range toks {
			fn := "position"
			if t.anyCase {
				fn = "positionCaseInsensitive"
			}
			conds[i] = fn + "(" + col + ", ?) > 0"
			args = append(args, t.lit)
		}
		return "project_id = ? AND (" + strings.Join(conds, " OR ") + ")", args
	}
	var out Erased
	where, args := match("request_body")
	n, err := s.deleteWhere(ctx, "delivery_attempts", where, args...)
	if err != nil {
		return out, fmt.Errorf("erasing attempts: %w", err)
	}
	out.Attempts = n
	where, args = match("delivery")
	n, err = s.deleteWhere(ctx, "dead_letters", where, args...)
	if err != nil {
		return out, fmt.Errorf("erasing dead letters: %w", err)
	}
	out.DeadLetters = n
	// The log line names the project and counts only: never the identifiers.
	s.log.Info("respondent erased from the attempt log", "project_id", projectID, "attempts", out.Attempts,
		"dead_letters", out.DeadLetters)
	return out, nil
}

// StoppedByErasure counts the deliveries of a project that the delivery workers did not send
// because of erasure id: attempts with the outcome "erased" naming it (the worker writes
// "… erased (<id>)"), each delivery once. It grows as pending retries come due.
func (s *Store) StoppedByErasure(ctx context.Context, projectID, id string) (uint64, error) {
	var n uint64
	err := queryRow(ctx, s.conn, `SELECT uniqExact(delivery_id) FROM `+s.db+`.delivery_attempts
		WHERE project_id = ? AND outcome = 'erased' AND position(error, ?) > 0`, []any{projectID, "(" + id + ")"}, &n)
	if err != nil {
		return 0, fmt.Errorf("counting deliveries stopped by erasure %s: %w", id, err)
	}
	return n, nil
}

// ErasureJob is the record of one erasure: it never holds the respondent's identifiers.
type ErasureJob struct {
	ID        string `json:"id"`
	ProjectID string `json:"project_id"`
	Status    string `json:"status"` // "running", "done" or "failed"
	Erased    Erased `json:"erased"`
	// PendingStopped is how many deliveries this erasure stopped so far (StoppedByErasure): not
	// stored with the job, read from the attempt log when the job is shown.
	PendingStopped uint64     `json:"pending_stopped"`
	Error          string     `json:"error,omitempty"`
	RequestedAt    time.Time  `json:"requested_at"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	// Sealed is the respondent's identifiers sealed by the API while the job runs, so that it can
	// be resumed after a restart; never shown, and cleared when the job ends.
	Sealed []byte `json:"-"`
}

// SaveErasure records a job's state (a newer version of its row).
func (s *Store) SaveErasure(ctx context.Context, j ErasureJob) error {
	var finished uint64
	if j.FinishedAt != nil {
		finished = uint64(j.FinishedAt.UnixMilli())
	}
	if j.Status != "running" {
		j.Sealed = nil
	}
	row := []any{j.ID, j.ProjectID, j.Status, j.Erased.Attempts, j.Erased.DeadLetters, j.Error,
		uint64(j.RequestedAt.UnixMilli()), finished, uint64(time.Now().UnixNano()), string(j.Sealed)}
	if err := s.conn.Insert(ctx, "INSERT INTO "+s.db+`.erasures (id, project_id, status, attempts, dead_letters, error,
		requested_ms, finished_ms, version, sealed_respondent)`, [][]any{row}); err != nil {
		return fmt.Errorf("recording erasure %s: %w", j.ID, err)
	}
	if j.Status != "running" {
		// Merge the running version (with the sealed identifiers) away now rather than whenever
		// ClickHouse merges on its own: the table is small.
		if err := s.conn.Exec(ctx, "OPTIMIZE TABLE "+s.db+".erasures FINAL"); err != nil {
			return fmt.Errorf("compacting erasures after %s: %w", j.ID, err)
		}
	}
	return nil
}

// RunningErasures lists the jobs of every project still marked running, with their sealed
// identifiers and what they counted so far: at start, the API resumes them (an erasure is
// idempotent).
func (s *Store) RunningErasures(ctx context.Context) ([]ErasureJob, error) {
	rows, err := s.conn.Query(ctx, `SELECT id, project_id, attempts, dead_letters, requested_ms, sealed_respondent FROM `+s.db+
		".erasures FINAL WHERE status = 'running' ORDER BY requested_ms")
	if err != nil {
		return nil, fmt.Errorf("listing running erasures: %w", err)
	}
	defer rows.Close()
	var out []ErasureJob
	for rows.Next() {
		var j ErasureJob
		var requested uint64
		var sealed string
		if err := rows.Scan(&j.ID, &j.ProjectID, &j.Erased.Attempts, &j.Erased.DeadLetters, &requested, &sealed); err != nil {
			return nil, fmt.Errorf("listing running erasures: %w", err)
		}
		j.Status, j.RequestedAt, j.Sealed = "running", time.UnixMilli(int64(requested)).UTC(), []byte(sealed)
		out = append(out, j)
	}
	return out, rows.Err()
}

// GetErasure returns a project's erasure job.
func (s *Store) GetErasure(ctx context.Context, projectID, id string) (*ErasureJob, error) {
	j := &ErasureJob{}
	var requested, finished uint64
	err := queryRow(ctx, s.conn, `SELECT id, project_id, status, attempts, dead_letters, error, requested_ms, finished_ms
		FROM `+s.db+".erasures FINAL WHERE project_id = ? AND id = ?", []any{projectID, id},
		&j.ID, &j.ProjectID, &j.Status, &j.Erased.Attempts, &j.Erased.DeadLetters, &j.Error, &requested, &finished)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("reading erasure %s: %w", id, err)
	}
	j.RequestedAt = time.UnixMilli(int64(requested)).UTC()
	if finished > 0 {
		t := time.UnixMilli(int64(finished)).UTC()
		j.FinishedAt = &t
	}
	return j, nil
}
