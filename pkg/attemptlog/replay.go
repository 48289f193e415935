package attemptlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Replay outcomes: which deliveries a replay job takes, judged by each delivery's latest attempt.
const (
	ReplayFailed    = "failed"    // latest attempt did not succeed: waiting for a retry, or dead
	ReplayDead      = "dead"      // latest attempt dead-lettered it (retries exhausted or permanent)
	ReplaySkipped   = "skipped"   // latest attempt was not sent: the webhook was disabled
	ReplayDelivered = "delivered" // latest attempt succeeded
	ReplayAll       = "all"       // every delivery, whatever its latest attempt
)

// ReplayOutcomes lists the valid outcome filters.
var ReplayOutcomes = []string{ReplayFailed, ReplayDead, ReplaySkipped, ReplayDelivered, ReplayAll}

// ReplayStatusClasses lists the valid status-class filters: the latest attempt's HTTP status,
// "none" when it got no HTTP answer (timeout, connection error, not sent).
var ReplayStatusClasses = []string{"2xx", "3xx", "4xx", "5xx", "none"}

// TruncatedHeader is the request header the delivery service records on an attempt whose request
// body it cut to keep the record bounded: such a body cannot be replayed.
const TruncatedHeader = "surveyhooks-truncated"

// ReplayQuery selects the deliveries of one webhook a replay job sends. A delivery is in
// [Since, Until) when one of its attempts started then; what it is (the filters) is decided by its
// latest attempt since Since, later ones included, so a delivery a retry or an earlier replay has
// recovered is no longer "failed". Test sends are never taken.
type ReplayQuery struct {
	ProjectID, WebhookID string // required
	Since, Until         time.Time
	Outcome              string   // one of ReplayOutcomes; "" is ReplayAll
	StatusClass          string   // one of ReplayStatusClasses; "": any
	EventTypes           []string // empty: any
	After                string   // the cursor: only deliveries whose id sorts after it
	Limit                int      // at most 1000; default 100
}

// ReplayCandidate is one delivery a replay job sends: its latest attempt.
type ReplayCandidate struct {
	DeliveryID  string
	AttemptID   string // the latest attempt, whose request body is sent again
	EventID     string
	EventType   string
	Disposition string
	StatusCode  int
	StartedAt   time.Time // of the latest attempt
}

// Validate checks the query's filters.
func (q ReplayQuery) Validate() error {
	switch {
	case q.ProjectID == "" || q.WebhookID == "":
		return errors.New("replay query: project and webhook are required")
	case !q.Until.After(q.Since):
		return errors.New("replay query: until must be after since")
	case q.Outcome != "" && !slices.Contains(ReplayOutcomes, q.Outcome):
		return fmt.Errorf("replay query: outcome %q is not one of %s", q.Outcome, strings.Join(ReplayOutcomes, ", "))
	case q.StatusClass != "" && !slices.Contains(ReplayStatusClasses, q.StatusClass):
		return fmt.Errorf("replay query: status class %q is not one of %s", q.StatusClass, strings.Join(ReplayStatusClasses, ", "))
	}
	return nil
}

// ReplayCandidates returns one page of a replay job's deliveries, in delivery-id order after
// q.After; fewer than the limit means the last page. Each page groups the webhook's attempts since
// q.Since (the table's order, project then webhook then time, keeps that a range read) and returns
// only ids, never bodies: ReplayBodies reads those for the page.
func (s *Store) ReplayCandidates(ctx context.Context, q ReplayQuery) ([]ReplayCandidate, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	n := q.Limit
	if n <= 0 {
		n = 100
	}
	n = min(n, 1000)
	where := []string{"project_id = ?", "webhook_id = ?", "started_at >= ?", "started_ms >= ?", "test = 0", "delivery_id > ?"}
	args := []any{q.ProjectID, q.WebhookID, q.Since.UTC().Truncate(time.Second), uint64(q.Since.UnixMilli()), q.After}
	if len(q.EventTypes) > 0 {
		where = append(where, "has(?, event_type)")
		args = append(args, q.EventTypes)
	}
	having := []string{"first_ms < ?"}
	args = append(args, uint64(q.Until.UnixMilli()))
	switch q.Outcome {
	case ReplayFailed:
		having = append(having, "last_disposition IN ('retry', 'dead')")
	case ReplayDead, ReplaySkipped, ReplayDelivered:
		having = append(having, "last_disposition = ?")
		args = append(args, q.Outcome)
	}
	switch q.StatusClass {
	case "":
	case "none":
		having = append(having, "last_status = 0")
	default:
		lo := uint16(q.StatusClass[0]-'0') * 100
		having = append(having, "last_status >= ? AND last_status < ?")
		args = append(args, lo, lo+100)
	}
	// The latest attempt: the latest start, then the highest attempt number (a replay restarts at 1
	// but starts later). started_ms needs 41 bits, so the key fits in 64.
	const key = "started_ms * 65536 + attempt"
	query := fmt.Sprintf(`SELECT delivery_id, argMax(attempt_id, %[1]s) AS last_attempt, any(event_id), any(event_type),
		argMax(disposition, %[1]s) AS last_disposition, argMax(status_code, %[1]s) AS last_status,
		max(started_ms), min(started_ms) AS first_ms
		FROM %[2]s.delivery_attempts WHERE %[3]s GROUP BY delivery_id HAVING %[4]s ORDER BY delivery_id LIMIT %[5]d`,
		key, s.db, strings.Join(where, " AND "), strings.Join(having, " AND "), n)
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing deliveries to replay: %w", err)
	}
	defer rows.Close()
	out := []ReplayCandidate{}
	for rows.Next() {
		var c ReplayCandidate
		var status uint16
		var lastMs, firstMs uint64
		if err := rows.Scan(&c.DeliveryID, &c.AttemptID, &c.EventID, &c.EventType, &c.Disposition, &status, &lastMs, &firstMs); err != nil {
			return nil, fmt.Errorf("reading deliveries to replay: %w", err)
		}
		c.StatusCode, c.StartedAt = int(status), time.UnixMilli(int64(lastMs)).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// ReplayBody is what the log kept of an attempt's request body.
type ReplayBody struct {
	Body []byte
	// StorageMasked says Body is the copy the project's storage masking rules masked; SealedBody is
	// then the unmasked body sealed by the sink (empty: it had no key, the body is not replayable).
	StorageMasked bool
	SealedBody    []byte
	// Truncated says the delivery service cut Body to keep its record bounded: not replayable.
	Truncated bool
	// Unmarked says the row was stored before attempts recorded StorageMasked: Body may be masked.
	Unmarked bool
}

// ReplayBodies returns the request bodies of a webhook's attempts (ReplayCandidates' AttemptID),
// by attempt id; since bounds the read to the job's time range onwards.
func (s *Store) ReplayBodies(ctx context.Context, projectID, webhookID string, since time.Time, attemptIDs []string) (map[string]ReplayBody, error) {
	out := map[string]ReplayBody{}
	if len(attemptIDs) == 0 {
		return out, nil
	}
	rows, err := s.conn.Query(ctx, "SELECT attempt_id, request_body, request_header_names, storage_masked, sealed_body FROM "+s.db+
		`.delivery_attempts WHERE project_id = ? AND webhook_id = ? AND started_at >= ? AND has(?, attempt_id)`,
		projectID, webhookID, since.UTC().Truncate(time.Second), attemptIDs)
	if err != nil {
		return nil, fmt.Errorf("reading bodies to replay: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, body, sealed string
		var names []string
		var masked uint8
		if err := rows.Scan(&id, &body, &names, &masked, &sealed); err != nil {
			return nil, fmt.Errorf("reading bodies to replay: %w", err)
		}
		b := ReplayBody{Body: []byte(body), StorageMasked: masked == 1, SealedBody: []byte(sealed), Unmarked: masked == 2}
		b.Truncated = slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, TruncatedHeader) })
		out[id] = b
	}
	return out, rows.Err()
}

// Job states (replay jobs).
const (
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// ReplayJob is the record of one replay job: what it replays, where it got to and what it did.
type ReplayJob struct {
	ID              string     `json:"id"`
	ProjectID       string     `json:"project_id"`
	WebhookID       string     `json:"webhook_id"`
	TargetWebhookID string     `json:"target_webhook_id"`
	Since           time.Time  `json:"since"`
	Until           time.Time  `json:"until"`
	Outcome         string     `json:"outcome"`
	StatusClass     string     `json:"status_class,omitempty"`
	EventTypes      []string   `json:"event_types"`
	Status          string     `json:"status"` // "running", "done" or "failed"
	Matched         uint64     `json:"matched"`
	Replayed        uint64     `json:"replayed"`
	Skipped         uint64     `json:"skipped"`
	Error           string     `json:"error,omitempty"`
	RequestedAt     time.Time  `json:"requested_at"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`
	// Cursor is the last delivery id sent; Owner the API process running the job and Heartbeat
	// when it last said so: a running job whose heartbeat is old lost its process.
	Cursor    string    `json:"-"`
	Owner     string    `json:"-"`
	Heartbeat time.Time `json:"-"`
}

// Query is the job's ReplayQuery, from its cursor on.
func (j ReplayJob) Query(limit int) ReplayQuery {
	return ReplayQuery{ProjectID: j.ProjectID, WebhookID: j.WebhookID, Since: j.Since, Until: j.Until, Outcome: j.Outcome,
		StatusClass: j.StatusClass, EventTypes: j.EventTypes, After: j.Cursor, Limit: limit}
}

const replayColumns = `id, project_id, webhook_id, target_webhook_id, since_ms, until_ms, outcome, status_class, event_types,
status, cursor, matched, replayed, skipped, error, owner, heartbeat_ms, requested_ms, finished_ms`

// SaveReplay records a job's state (a newer version of its row).
func (s *Store) SaveReplay(ctx context.Context, j ReplayJob) error {
	var finished, heartbeat uint64
	if j.FinishedAt != nil {
		finished = uint64(j.FinishedAt.UnixMilli())
	}
	if !j.Heartbeat.IsZero() { // none: a process that stopped handed the job back
		heartbeat = uint64(j.Heartbeat.UnixMilli())
	}
	types := j.EventTypes
	if types == nil {
		types = []string{}
	}
	row := []any{j.ID, j.ProjectID, j.WebhookID, j.TargetWebhookID, uint64(j.Since.UnixMilli()), uint64(j.Until.UnixMilli()),
		j.Outcome, j.StatusClass, types, j.Status, j.Cursor, j.Matched, j.Replayed, j.Skipped, j.Error, j.Owner,
		heartbeat, uint64(j.RequestedAt.UnixMilli()), finished, uint64(time.Now().UnixNano())}
	if err := s.conn.Insert(ctx, "INSERT INTO "+s.db+".replays ("+replayColumns+", version)", [][]any{row}); err != nil {
		return fmt.Errorf("recording replay %s: %w", j.ID, err)
	}
	return nil
}

func scanReplay(rows Rows) (ReplayJob, error) {
	var j ReplayJob
	var since, until, heartbeat, requested, finished uint64
	err := rows.Scan(&j.ID, &j.ProjectID, &j.WebhookID, &j.TargetWebhookID, &since, &until, &j.Outcome, &j.StatusClass,
		&j.EventTypes, &j.Status, &j.Cursor, &j.Matched, &j.Replayed, &j.Skipped, &j.Error, &j.Owner, &heartbeat,
		&requested, &finished)
	if err != nil {
		return j, err
	}
	ms := func(v uint64) time.Time { return time.UnixMilli(int64(v)).UTC() }
	j.Since, j.Until, j.Heartbeat, j.RequestedAt = ms(since), ms(until), ms(heartbeat), ms(requested)
	if j.EventTypes == nil {
		j.EventTypes = []string{}
	}
	if finished > 0 {
		t := ms(finished)
		j.FinishedAt = &t
	}
	return j, nil
}

func (s *Store) replays(ctx context.Context, where string, limit int, args ...any) ([]ReplayJob, error) {
	rows, err := s.conn.Query(ctx, fmt.Sprintf("SELECT %s FROM %s.replays FINAL WHERE %s ORDER BY requested_ms DESC, id DESC LIMIT %d",
		replayColumns, s.db, where, limit), args...)
	if err != nil {
		return nil, fmt.Errorf("reading replays: %w", err)
	}
	defer rows.Close()
	out := []ReplayJob{}
	for rows.Next() {
		j, err := scanReplay(rows)
		if err != nil {
			return nil, fmt.Errorf("reading replays: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// GetReplay returns a project's replay job.
func (s *Store) GetReplay(ctx context.Context, projectID, id string) (*ReplayJob, error) {
	js, err := s.replays(ctx, "project_id = ? AND id = ?", 1, projectID, id)
	if err != nil {
		return nil, fmt.Errorf("reading replay %s: %w", id, err)
	}
	if len(js) == 0 {
		return nil, ErrNotFound
	}
	return &js[0], nil
}

// ListReplays returns a project's latest replay jobs, newest first (at most limit, 1–500).
func (s *Store) ListReplays(ctx context.Context, projectID string, limit int) ([]ReplayJob, error) {
	return s.replays(ctx, "project_id = ?", min(max(limit, 1), 500), projectID)
}

// StaleReplays returns the running jobs, of every project, whose heartbeat is older than before:
// their process stopped, and another takes them over.
func (s *Store) StaleReplays(ctx context.Context, before time.Time) ([]ReplayJob, error) {
	return s.replays(ctx, "status = ? AND heartbeat_ms < ?", 1000, JobRunning, uint64(before.UnixMilli()))
}
