package attemptlog

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// AttemptQuery selects attempts of one project, newest first.
type AttemptQuery struct {
	ProjectID                              string // required: tenancy
	WebhookID, EventID, EventType, Outcome string
	StatusCode                             int
	From, To                               time.Time // zero: unbounded
	Limit                                  int       // default 50, at most 500
	Cursor                                 string    // from the previous page
}

// AttemptSummary is one attempt in a list.
type AttemptSummary struct {
	AttemptID   string    `json:"id"`
	DeliveryID  string    `json:"delivery_id"`
	EventID     string    `json:"event_id"`
	WebhookID   string    `json:"webhook_id"`
	EventType   string    `json:"event_type"`
	Outcome     string    `json:"outcome"`
	Disposition string    `json:"disposition"`
	Error       string    `json:"error,omitempty"`
	Attempt     int       `json:"attempt"`
	Tier        int       `json:"tier"`
	StatusCode  int       `json:"status_code"`
	StartedAt   time.Time `json:"started_at"`
	LatencyMs   float64   `json:"latency_ms"`
	Test        bool      `json:"test"`
}

// AttemptDetail is one attempt with its full request and response.
type AttemptDetail struct {
	AttemptSummary
	RequestURL        string            `json:"request_url"`
	RequestHeaders    map[string]string `json:"request_headers"`
	RequestBody       string            `json:"request_body"`
	ResponseHeaders   map[string]string `json:"response_headers"`
	ResponseBody      string            `json:"response_body"`
	ResponseTruncated bool              `json:"response_truncated"`
	Worker            string            `json:"worker"`
	TraceID           string            `json:"trace_id,omitempty"`
	NextAttemptAt     *time.Time        `json:"next_attempt_at,omitempty"`
}

const summaryColumns = `attempt_id, delivery_id, event_id, webhook_id, event_type, outcome, disposition, error, attempt,
tier, status_code, started_ms, latency_us, test`

type summaryRow struct {
	id, delivery, event, webhook, etype, outcome, disp, errText string
	attempt                                                     uint16
	tier                                                        uint8
	status                                                      uint16
	startedMs, latencyUs                                        uint64
	test                                                        uint8
}

func (r *summaryRow) dest() []any {
	return []any{&r.id, &r.delivery, &r.event, &r.webhook, &r.etype, &r.outcome, &r.disp, &r.errText, &r.attempt,
		&r.tier, &r.status, &r.startedMs, &r.latencyUs, &r.test}
}

func (r *summaryRow) summary() AttemptSummary {
	return AttemptSummary{AttemptID: r.id, DeliveryID: r.delivery, EventID: r.event, WebhookID: r.webhook,
		EventType: r.etype, Outcome: r.outcome, Disposition: r.disp, Error: r.errText, Attempt: int(r.attempt),
		Tier: int(r.tier), StatusCode: int(r.status), StartedAt: time.UnixMilli(int64(r.startedMs)).UTC(),
		LatencyMs: float64(r.latencyUs) / 1000, Test: r.test == 1}
}

func encodeCursor(ms uint64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatUint(ms, 10) + "|" + id))
}

// ErrBadCursor is returned for a cursor this package did not make.
var ErrBadCursor = errors.New("cursor is not valid")

func decodeCursor(c string) (uint64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", ErrBadCursor
	}
	ms, id, ok := strings.Cut(string(b), "|")
	v, err := strconv.ParseUint(ms, 10, 64)
	if !ok || err != nil {
		return 0, "", ErrBadCursor
	}
	return v, id, nil
}

func limit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 500:
		return 500
	}
	return n
}

// ListAttempts returns one page of attempts and the cursor of the next page ("" at the end).
func (s *Store) ListAttempts(ctx context.Context, q AttemptQuery) ([]AttemptSummary, string, error) {
	if q.ProjectID == "" {
		return nil, "", errors.New("ListAttempts: ProjectID is required")
	}
	where := []string{"project_id = ?"}
	args := []any{q.ProjectID}
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if q.WebhookID != "" {
		add("webhook_id = ?", q.WebhookID)
	}
	if q.EventID != "" {
		// The narrow by-event table finds the attempts without scanning the project's rows.
		add("attempt_id IN (SELECT attempt_id FROM "+s.db+".attempts_by_event WHERE project_id = ? AND event_id = ?)", q.ProjectID)
		args = append(args, q.EventID)
	}
	if q.EventType != "" {
		add("event_type = ?", q.EventType)
	}
	if q.Outcome != "" {
		add("outcome = ?", q.Outcome)
	}
	if q.StatusCode != 0 {
		add("status_code = ?", uint16(q.StatusCode))
	}
	if !q.From.IsZero() {
		add("started_at >= ?", q.From.UTC().Truncate(time.Second))
		add("started_ms >= ?", uint64(q.From.UnixMilli()))
	}
	if !q.To.IsZero() {
		add("started_ms < ?", uint64(q.To.UnixMilli()))
	}
	if q.Cursor != "" {
		ms, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(started_ms < ? OR (started_ms = ? AND attempt_id < ?))")
		args = append(args, ms, ms, id)
	}
	n := limit(q.Limit)
	query := fmt.Sprintf("SELECT %s FROM %s.delivery_attempts WHERE %s ORDER BY started_ms DESC, attempt_id DESC LIMIT %d",
		summaryColumns, s.db, strings.Join(where, " AND "), n+1)
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("listing attempts: %w", err)
	}
	defer rows.Close()
	out := []AttemptSummary{}
	var last summaryRow
	for rows.Next() {
		var r summaryRow
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, "", fmt.Errorf("reading attempts: %w", err)
		}
		if len(out) == n {
			return out, encodeCursor(last.startedMs, last.id), nil
		}
		out = append(out, r.summary())
		last = r
	}
	return out, "", rows.Err()
}

// GetAttempt returns one attempt of the project with its full request and response.
func (s *Store) GetAttempt(ctx context.Context, projectID, attemptID string) (*AttemptDetail, error) {
	var r summaryRow
	var url, reqBody, respBody, worker, trace string
	var qn, qv, rn, rv []string
	var trunc uint8
	var next uint64
	err := queryRow(ctx, s.conn, "SELECT "+summaryColumns+`, request_url, request_header_names, request_header_values,
		request_body, response_header_names, response_header_values, response_body, response_truncated, worker, trace_id,
		next_attempt_ms FROM `+s.db+".delivery_attempts WHERE project_id = ? AND attempt_id = ? LIMIT 1", []any{projectID, attemptID},
		append(r.dest(), &url, &qn, &qv, &reqBody, &rn, &rv, &respBody, &trunc, &worker, &trace, &next)...)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("reading attempt %s: %w", attemptID, err)
	}
	d := &AttemptDetail{AttemptSummary: r.summary(), RequestURL: url, RequestHeaders: joinHeaders(qn, qv),
		RequestBody: reqBody, ResponseHeaders: joinHeaders(rn, rv), ResponseBody: respBody,
		ResponseTruncated: trunc == 1, Worker: worker, TraceID: trace}
	if next > 0 {
		t := time.UnixMilli(int64(next)).UTC()
		d.NextAttemptAt = &t
	}
	return d, nil
}

// StatsQuery selects one webhook's statistics per step.
type StatsQuery struct {
	ProjectID, WebhookID string
	From, To             time.Time
	Step                 time.Duration // a whole number of hours
}

// StatsBucket is one step of statistics.
type StatsBucket struct {
	Start       time.Time `json:"start"`
	Count       uint64    `json:"count"`
	Success     uint64    `json:"success"`
	Status2xx   uint64    `json:"status_2xx"`
	Status3xx   uint64    `json:"status_3xx"`
	Status4xx   uint64    `json:"status_4xx"`
	Status5xx   uint64    `json:"status_5xx"`
	Errors      uint64    `json:"errors"`
	SuccessRate float64   `json:"success_rate"`
	P50Ms       float64   `json:"p50_ms"`
	P95Ms       float64   `json:"p95_ms"`
	P99Ms       float64   `json:"p99_ms"`
}

// Stats reads the hourly rollup (never the raw rows), merged into steps.
func (s *Store) Stats(ctx context.Context, q StatsQuery) ([]StatsBucket, error) {
	if q.Step < time.Hour || q.Step%time.Hour != 0 {
		return nil, fmt.Errorf("step must be a whole number of hours, got %s", q.Step)
	}
	step := int64(q.Step / time.Second)
	rows, err := s.conn.Query(ctx, fmt.Sprintf(`SELECT toUInt64(intDiv(toUInt32(hour), %d) * %d) AS bucket,
		countMerge(attempts), sumMerge(success), sumMerge(s2xx), sumMerge(s3xx), sumMerge(s4xx), sumMerge(s5xx),
		sumMerge(errors), quantilesMerge(0.5, 0.95, 0.99)(latency_us)
		FROM %s.attempts_hourly WHERE project_id = ? AND webhook_id = ? AND hour >= ? AND hour < ?
		GROUP BY bucket ORDER BY bucket`, step, step, s.db),
		q.ProjectID, q.WebhookID, q.From.UTC().Truncate(time.Hour), q.To.UTC())
	if err != nil {
		return nil, fmt.Errorf("reading statistics: %w", err)
	}
	defer rows.Close()
	out := []StatsBucket{}
	for rows.Next() {
		var b StatsBucket
		var start uint64
		var qs []float64
		if err := rows.Scan(&start, &b.Count, &b.Success, &b.Status2xx, &b.Status3xx, &b.Status4xx, &b.Status5xx, &b.Errors, &qs); err != nil {
			return nil, fmt.Errorf("reading statistics: %w", err)
		}
		b.Start = time.Unix(int64(start), 0).UTC()
		if b.Count > 0 {
			b.SuccessRate = float64(b.Success) / float64(b.Count)
		}
		if len(qs) == 3 {
			b.P50Ms, b.P95Ms, b.P99Ms = qs[0]/1000, qs[1]/1000, qs[2]/1000
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// sentOutcomes are the outcome classes of attempts whose request was made: only these held one of
// the endpoint's concurrency slots. Circuit open, webhook disabled, invalid request, blocked
// destination and erased attempts are recorded without a request, with the limit of the moment.
var sentOutcomes = []string{
	OutcomeName(pb.OutcomeClass_OUTCOME_CLASS_SUCCESS),
	OutcomeName(pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE),
	OutcomeName(pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT),
	OutcomeName(pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT),
	OutcomeName(pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR),
	OutcomeName(pb.OutcomeClass_OUTCOME_CLASS_GONE),
}

// ConcurrencyLimits is what one webhook's sent attempts of a range say of its endpoint's adaptive
// concurrency limit. All zero when none was sent in the range (or none recorded the limit).
type ConcurrencyLimits struct {
	Latest   int       // the limit of the latest sent attempt
	LatestAt time.Time // when that attempt started
	Min      int       // the lowest limit of the range's sent attempts; 0 for ranges over MinLimitRange
}

// MinLimitRange is the longest range whose lowest concurrency limit ConcurrencyLimits reads: the
// minimum reads every attempt of the range (the hourly rollup does not hold limits), the latest
// only the range's end.
const MinLimitRange = 7 * 24 * time.Hour

// ConcurrencyLimits reads the limits of the webhook's sent attempts in [q.From, q.To) (q.Step is
// not used): only the webhook's rows of the range (the primary key's prefix), the latest first,
// which a current server reads from the range's end (the key's order); attempts of the same
// millisecond are ordered by attempt id.
func (s *Store) ConcurrencyLimits(ctx context.Context, q StatsQuery) (ConcurrencyLimits, error) {
	if q.ProjectID == "" || q.WebhookID == "" {
		return ConcurrencyLimits{}, errors.New("ConcurrencyLimits: ProjectID and WebhookID are required")
	}
	where := `project_id = ? AND webhook_id = ? AND started_at >= ? AND started_at <= ? AND started_ms >= ?
		AND started_ms < ? AND concurrency_limit > 0 AND has(?, outcome)`
	args := []any{q.ProjectID, q.WebhookID, q.From.UTC().Truncate(time.Second), q.To.UTC().Truncate(time.Second),
		uint64(max(q.From.UnixMilli(), 0)), uint64(max(q.To.UnixMilli(), 0)), sentOutcomes}
	var latest uint16
	var latestMs uint64
	err := queryRow(ctx, s.conn, "SELECT concurrency_limit, started_ms FROM "+s.db+".delivery_attempts WHERE "+where+
		" ORDER BY started_at DESC, started_ms DESC, attempt_id DESC LIMIT 1", args, &latest, &latestMs)
	if errors.Is(err, ErrNotFound) {
		return ConcurrencyLimits{}, nil
	}
	if err != nil {
		return ConcurrencyLimits{}, fmt.Errorf("reading the latest concurrency limit: %w", err)
	}
	out := ConcurrencyLimits{Latest: int(latest), LatestAt: time.UnixMilli(int64(latestMs)).UTC()}
	if q.To.Sub(q.From) > MinLimitRange {
		return out, nil
	}
	var low uint16
	if err := queryRow(ctx, s.conn, "SELECT min(concurrency_limit) FROM "+s.db+".delivery_attempts WHERE "+where, args, &low); err != nil {
		return ConcurrencyLimits{}, fmt.Errorf("reading the lowest concurrency limit: %w", err)
	}
	out.Min = int(low)
	return out, nil
}

// DeadLetterQuery selects dead letters of one project, newest first.
type DeadLetterQuery struct {
	ProjectID, WebhookID, EventID, EventType string
	Outcome                                  string // the last attempt's outcome, as OutcomeName spells it
	StatusCode                               int    // the last attempt's status code; 0: any
	From, To                                 time.Time
	IncludeReplayed                          bool
	Limit                                    int
	Cursor                                   string
}

// DeadLetter is a delivery that exhausted its retries or failed permanently.
type DeadLetter struct {
	ID         string    `json:"id"`
	DeliveryID string    `json:"delivery_id"`
	EventID    string    `json:"event_id"`
	WebhookID  string    `json:"webhook_id"`
	EventType  string    `json:"event_type"`
	Outcome    string    `json:"outcome"`
	Error      string    `json:"error,omitempty"`
	Attempt    int       `json:"attempts"`
	StatusCode int       `json:"status_code"`
	DeadAt     time.Time `json:"dead_at"`
	Replayed   bool      `json:"replayed"`
}

const deadSummary = "id, delivery_id, event_id, webhook_id, event_type, outcome, error, attempt, status_code, dead_ms, replayed"

func scanDead(sc interface{ Scan(...any) error }, raw *string) (*DeadLetter, error) {
	var d DeadLetter
	var attempt, status uint16
	var ms uint64
	var replayed uint8
	dest := []any{&d.ID, &d.DeliveryID, &d.EventID, &d.WebhookID, &d.EventType, &d.Outcome, &d.Error, &attempt, &status, &ms, &replayed}
	if raw != nil {
		dest = append(dest, raw)
	}
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	d.Attempt, d.StatusCode, d.Replayed = int(attempt), int(status), replayed == 1
	d.DeadAt = time.UnixMilli(int64(ms)).UTC()
	return &d, nil
}

// ListDeadLetters returns one page of dead letters and the next page's cursor.
func (s *Store) ListDeadLetters(ctx context.Context, q DeadLetterQuery) ([]DeadLetter, string, error) {
	where := []string{"project_id = ?"}
	args := []any{q.ProjectID}
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if q.WebhookID != "" {
		add("webhook_id = ?", q.WebhookID)
	}
	if q.EventID != "" {
		add("event_id = ?", q.EventID)
	}
	if q.EventType != "" {
		add("event_type = ?", q.EventType)
	}
	if q.Outcome != "" {
		add("outcome = ?", q.Outcome)
	}
	if q.StatusCode != 0 {
		add("status_code = ?", uint16(q.StatusCode))
	}
	if !q.From.IsZero() {
		add("dead_ms >= ?", uint64(q.From.UnixMilli()))
	}
	if !q.To.IsZero() {
		add("dead_ms < ?", uint64(q.To.UnixMilli()))
	}
	if !q.IncludeReplayed {
		where = append(where, "replayed = 0")
	}
	if q.Cursor != "" {
		ms, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(dead_ms < ? OR (dead_ms = ? AND id < ?))")
		args = append(args, ms, ms, id)
	}
	n := limit(q.Limit)
	rows, err := s.conn.Query(ctx, fmt.Sprintf("SELECT %s FROM %s.dead_letters FINAL WHERE %s ORDER BY dead_ms DESC, id DESC LIMIT %d",
		deadSummary, s.db, strings.Join(where, " AND "), n+1), args...)
	if err != nil {
		return nil, "", fmt.Errorf("listing dead letters: %w", err)
	}
	defer rows.Close()
	out := []DeadLetter{}
	for rows.Next() {
		d, err := scanDead(rows, nil)
		if err != nil {
			return nil, "", fmt.Errorf("reading dead letters: %w", err)
		}
		if len(out) == n {
			l := out[len(out)-1]
			return out, encodeCursor(uint64(l.DeadAt.UnixMilli()), l.ID), nil
		}
		out = append(out, *d)
	}
	return out, "", rows.Err()
}

// GetDeadLetter returns a dead letter of the project and the delivery to replay.
func (s *Store) GetDeadLetter(ctx context.Context, projectID, id string) (*DeadLetter, *pb.Delivery, error) {
	var raw string
	rows, err := s.conn.Query(ctx, "SELECT "+deadSummary+", delivery FROM "+s.db+".dead_letters FINAL WHERE project_id = ? AND id = ? LIMIT 1", projectID, id)
	if err != nil {
		return nil, nil, fmt.Errorf("reading dead letter %s: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("reading dead letter %s: %w", id, err)
		}
		return nil, nil, ErrNotFound
	}
	d, err := scanDead(rows, &raw)
	if err != nil {
		return nil, nil, fmt.Errorf("reading dead letter %s: %w", id, err)
	}
	del := &pb.Delivery{}
	if err := proto.Unmarshal([]byte(raw), del); err != nil {
		return nil, nil, fmt.Errorf("decoding dead letter %s: %w", id, err)
	}
	return d, del, nil
}

// MarkReplayed records that the dead letters were replayed (a newer row version).
func (s *Store) MarkReplayed(ctx context.Context, projectID string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.conn.Query(ctx, "SELECT "+deadColumns+" FROM "+s.db+".dead_letters FINAL WHERE project_id = ? AND has(?, id)", projectID, ids)
	if err != nil {
		return fmt.Errorf("reading dead letters to mark: %w", err)
	}
	defer rows.Close()
	var marked [][]any
	for rows.Next() {
		var id, del, ev, wh, pr, et, oc, er, raw string
		var attempt, status, days uint16
		var at time.Time
		var ms, version uint64
		var replayed uint8
		var part int32
		var off int64
		if err := rows.Scan(&id, &del, &ev, &wh, &pr, &et, &attempt, &oc, &status, &er, &at, &ms, &raw, &replayed, &version, &part, &off, &days); err != nil {
			return fmt.Errorf("reading dead letters to mark: %w", err)
		}
		marked = append(marked, []any{id, del, ev, wh, pr, et, attempt, oc, status, er, at, ms, raw, uint8(1), version + 1, part, off, days})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading dead letters to mark: %w", err)
	}
	if len(marked) == 0 {
		return nil
	}
	if err := s.conn.Insert(ctx, "INSERT INTO "+s.db+".dead_letters ("+deadColumns+")", marked); err != nil {
		return fmt.Errorf("marking dead letters replayed: %w", err)
	}
	return nil
}
