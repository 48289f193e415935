// Package attemptlog is the delivery log in ClickHouse: the schema (schema.sql, embedded), the
// batch writer the sink uses and the queries the API serves. Writes go only through batches with
// explicit column lists (the one insert form clickhouse-go/v2 runs against every ClickHouse from
// Debian's 18.16 on). An attempt's identity is its attempt_id: the sink stores each attempt_id once
// (StoredAttemptIDs), whether the same attempt reached Kafka twice or a restarted sink reads it again,
// so rows and rollups never count an attempt twice. Every row also carries the Kafka partition and
// offset it came from, which lets a restarted sink skip what ClickHouse already holds without asking.
//
// The schema has two forms with the same columns (schema_current.sql for 24.x and later,
// schema.sql for 18.16), chosen at start; every query runs unchanged on both, through Conn, and
// the conformance suite (conformance_test.go) runs them on both engines. Each row carries its
// project's retention (retention.go); erasure.go removes a respondent's rows.
package attemptlog

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Schema is the 18.16-compatible schema (Debian's server): DateTime plus milliseconds, no TTL,
// no Map, no LowCardinality. SchemaCurrent is the same tables for a current server (24.x on):
// LowCardinality, codecs, DateTime64, a Map view of the headers and TTL for retention. Both have the
// same column names, so every query runs unchanged on either.
var (
	//go:embed schema.sql
	Schema string
	//go:embed schema_current.sql
	SchemaCurrent string
)

// ErrNotFound is returned for an id the project does not have.
var ErrNotFound = errors.New("not found")

// Form is the schema a store uses, chosen at start.
type Form string

const (
	// Legacy is schema.sql: retention by deleting rows and dropping daily partitions.
	Legacy Form = "18.16-compatible"
	// Current is schema_current.sql: retention by TTL.
	Current Form = "current"
)

// Store is a connection to the delivery log database.
type Store struct {
	conn      Conn
	db        string
	form      Form
	version   string
	retention Retention
	log       *slog.Logger
}

// Option configures a Store.
type Option func(*Store)

// WithRetention sets how long each project's rows are kept (default: DefaultRetention).
func WithRetention(r Retention) Option { return func(s *Store) { s.retention = r } }

// WithLogger sets where the store says which schema it chose and what retention removed.
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// Open connects to a ClickHouse server at addr (native protocol) and creates database when missing.
func Open(ctx context.Context, addr, database string, opts ...Option) (*Store, error) {
	boot, err := dial(ctx, addr, "default")
	if err != nil {
		return nil, err
	}
	err = boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+database)
	boot.Close()
	if err != nil {
		return nil, fmt.Errorf("creating database %s: %w", database, err)
	}
	conn, err := dial(ctx, addr, database)
	if err != nil {
		return nil, err
	}
	s, err := New(ctx, native{conn}, database, opts...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// New is a store on conn, whose default database must be database. It chooses the schema's form:
// the form of the tables already there, else Current on a server of 24.x or later, else Legacy;
// the choice is logged.
func New(ctx context.Context, conn Conn, database string, opts ...Option) (*Store, error) {
	s := &Store{conn: conn, db: database, retention: DefaultRetention, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	if err := s.retention.Validate(); err != nil {
		return nil, err
	}
	if err := queryRow(ctx, conn, "SELECT version()", nil, &s.version); err != nil {
		return nil, fmt.Errorf("reading the server's version: %w", err)
	}
	var startedType string
	err := queryRow(ctx, conn, `SELECT type FROM system.columns WHERE database = ? AND table = 'delivery_attempts'
		AND name = 'started_at'`, []any{database}, &startedType)
	reason := ""
	switch {
	case err == nil:
		s.form, reason = Legacy, "existing tables use the 18.16-compatible form"
		if strings.HasPrefix(startedType, "DateTime64") {
			s.form, reason = Current, "existing tables use the current form"
		}
	case errors.Is(err, ErrNotFound):
		s.form, reason = Legacy, "server older than 24.1"
		if major(s.version) >= 24 {
			s.form, reason = Current, "server 24.1 or later"
		}
	default:
		return nil, fmt.Errorf("reading the existing schema: %w", err)
	}
	s.log.Info("attempt log schema chosen", "form", string(s.form), "server_version", s.version, "reason", reason,
		"database", database)
	return s, nil
}

func major(version string) int {
	m, _, _ := strings.Cut(version, ".")
	n, _ := strconv.Atoi(m)
	return n
}

// Form says which schema the store uses.
func (s *Store) Form() Form { return s.form }

// ServerVersion is the server's version() string.
func (s *Store) ServerVersion() string { return s.version }

func dial(ctx context.Context, addr, database string) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: database},
		DialTimeout: 5 * time.Second, MaxOpenConns: 8, ReadTimeout: 60 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("connecting to ClickHouse at %s: %w", addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connecting to ClickHouse at %s: %w", addr, err)
	}
	return conn, nil
}

// Close closes the connection.
func (s *Store) Close() error { return s.conn.Close() }

// Ping checks the server answers.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Migrate applies the embedded schema of the store's form to its database (the connection's
// default, so the schema names no database); every statement is idempotent. A table made before
// a column existed gets it: retention_days filled with the default retention, storage_masked 2
// (unknown: the body may be masked, without a seal), sealed_body empty and concurrency_limit 0
// (not recorded).
func (s *Store) Migrate(ctx context.Context) error {
	schema, limitDecl := Schema, "UInt16"
	if s.form == Current {
		schema, limitDecl = SchemaCurrent, "UInt16 CODEC(T64, ZSTD(1))"
	}
	for _, stmt := range strings.Split(schema, "\n;\n") {
		var lines []string
		for _, l := range strings.Split(stmt, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		q := strings.TrimSpace(strings.Join(lines, "\n"))
		if q == "" {
			continue
		}
		if err := s.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("applying schema statement %.60q: %w", q, err)
		}
	}
	for _, c := range []struct{ table, column, decl string }{
		{"delivery_attempts", "retention_days", fmt.Sprintf("UInt16 DEFAULT %d", s.retention.DefaultDays)},
		{"dead_letters", "retention_days", fmt.Sprintf("UInt16 DEFAULT %d", s.retention.DefaultDays)},
		// 2: stored before attempts said whether storage masking applied (unknown).
		{"delivery_attempts", "storage_masked", "UInt8 DEFAULT 2"},
		{"delivery_attempts", "sealed_body", "String"},
		{"delivery_attempts", "concurrency_limit", limitDecl},
	} {
		var n uint64
		if err := queryRow(ctx, s.conn, `SELECT count() FROM system.columns WHERE database = ? AND table = ?
			AND name = ?`, []any{s.db, c.table, c.column}, &n); err != nil {
			return fmt.Errorf("checking %s for %s: %w", c.table, c.column, err)
		}
		if n == 0 {
			if err := s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN %s %s", s.db, c.table, c.column, c.decl)); err != nil {
				return fmt.Errorf("adding %s to %s: %w", c.column, c.table, err)
			}
		}
	}
	// Erasure jobs made before jobs could be resumed lack the sealed identifiers' column.
	var n uint64
	if err := queryRow(ctx, s.conn, `SELECT count() FROM system.columns WHERE database = ? AND table = 'erasures'
		AND name = 'sealed_respondent'`, []any{s.db}, &n); err != nil {
		return fmt.Errorf("checking erasures for sealed_respondent: %w", err)
	}
	if n == 0 {
		if err := s.conn.Exec(ctx, "ALTER TABLE "+s.db+".erasures ADD COLUMN sealed_respondent String"); err != nil {
			return fmt.Errorf("adding sealed_respondent to erasures: %w", err)
		}
	}
	return nil
}

// OutcomeName is the log's name of an outcome class: "success", "http_retryable", ….
func OutcomeName(c pb.OutcomeClass) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "OUTCOME_CLASS_"))
}

// ParseOutcome is OutcomeName's inverse.
func ParseOutcome(name string) (pb.OutcomeClass, bool) {
	v, ok := pb.OutcomeClass_value["OUTCOME_CLASS_"+strings.ToUpper(name)]
	return pb.OutcomeClass(v), ok && v != 0
}

// OutcomeNames lists every valid outcome name.
func OutcomeNames() []string {
	var out []string
	for v := range pb.OutcomeClass_name {
		if v != 0 {
			out = append(out, OutcomeName(pb.OutcomeClass(v)))
		}
	}
	slices.Sort(out)
	return out
}

// DispositionName is the log's name of a disposition: "delivered", "retry", "dead", "dropped",
// "skipped".
func DispositionName(d pb.Disposition) string {
	return strings.ToLower(strings.TrimPrefix(d.String(), "DISPOSITION_"))
}

// Source is where a row came from in Kafka.
type Source struct {
	Partition int32
	Offset    int64
}

// MaxOffsets returns, per Kafka partition, the highest offset table holds (table is
// "delivery_attempts" or "dead_letters").
func (s *Store) MaxOffsets(ctx context.Context, table string) (map[int32]int64, error) {
	rows, err := s.conn.Query(ctx, fmt.Sprintf("SELECT kafka_partition, max(kafka_offset) FROM %s.%s GROUP BY kafka_partition", s.db, table))
	if err != nil {
		return nil, fmt.Errorf("reading stored offsets of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var p int32
		var o int64
		if err := rows.Scan(&p, &o); err != nil {
			return nil, err
		}
		out[p] = o
	}
	return out, rows.Err()
}

const attemptColumns = `attempt_id, delivery_id, event_id, webhook_id, project_id, event_type, attempt, tier, outcome,
disposition, status_code, error, retry_after_ms, started_at, started_ms, latency_us, request_url, request_header_names,
request_header_values, request_body, response_header_names, response_header_values, response_body, response_truncated,
worker, trace_id, next_attempt_ms, test, kafka_partition, kafka_offset, retention_days, storage_masked, sealed_body,
concurrency_limit`

// InsertAttempts writes attempts in one batch (one block: atomic for rows of one day). Each row
// carries its project's retention in days, which the current schema's TTL and the legacy form's
// retention job both read.
func (s *Store) InsertAttempts(ctx context.Context, attempts []*pb.Attempt, src []Source) error {
	rows := make([][]any, 0, len(attempts))
	for i, a := range attempts {
		o := a.GetOutcome()
		qn, qv := splitHeaders(a.RequestHeaders)
		rn, rv := splitHeaders(a.ResponseHeaders)
		rows = append(rows, []any{a.AttemptId, a.DeliveryId, a.EventId, a.WebhookId, a.ProjectId, a.EventType,
			uint16(a.Attempt), uint8(a.Tier), OutcomeName(o.GetClass()), DispositionName(o.GetDisposition()),
			uint16(o.GetStatusCode()), o.GetError(), uint64(max(o.GetRetryAfterMs(), 0)),
			time.UnixMilli(a.StartedAtMs), uint64(a.StartedAtMs), uint64(max(a.LatencyUs, 0)), a.RequestUrl, qn, qv,
			string(a.RequestBody), rn, rv, string(a.ResponseBody), b2u(a.ResponseTruncated), a.Worker, a.TraceId,
			uint64(max(a.NextAttemptAtMs, 0)), b2u(a.Test), src[i].Partition, src[i].Offset, s.retention.Days(a.ProjectId),
			b2u(a.StorageMasked), string(a.SealedBody), uint16(min(max(a.ConcurrencyLimit, 0), math.MaxUint16))})
	}
	if err := s.conn.Insert(ctx, "INSERT INTO "+s.db+".delivery_attempts ("+attemptColumns+")", rows); err != nil {
		return fmt.Errorf("inserting %d attempts: %w", len(attempts), err)
	}
	return nil
}

// storedIDsChunk bounds the ids of one StoredAttemptIDs query: clickhouse-go binds arguments into
// the query text, and ClickHouse refuses a query longer than max_query_size (256 KiB by default).
const storedIDsChunk = 2000

// StoredAttemptIDs returns which of the attempts' ids the log already holds. It looks only at the
// seconds the attempts started in (an attempt's started_at is part of its identity too: every copy
// of an attempt carries the same one), so it reads a few parts, not the whole table.
func (s *Store) StoredAttemptIDs(ctx context.Context, attempts []*pb.Attempt) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(attempts); start += storedIDsChunk {
		if err := s.storedAttemptIDs(ctx, attempts[start:min(start+storedIDsChunk, len(attempts))], out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) storedAttemptIDs(ctx context.Context, attempts []*pb.Attempt, out map[string]bool) error {
	ids := make([]string, 0, len(attempts))
	var projects, webhooks []string
	seenP, seenW := map[string]bool{}, map[string]bool{}
	lo, hi := attempts[0].StartedAtMs, attempts[0].StartedAtMs
	for _, a := range attempts {
		ids = append(ids, a.AttemptId)
		lo, hi = min(lo, a.StartedAtMs), max(hi, a.StartedAtMs)
		if !seenP[a.ProjectId] {
			seenP[a.ProjectId] = true
			projects = append(projects, a.ProjectId)
		}
		if !seenW[a.WebhookId] {
			seenW[a.WebhookId] = true
			webhooks = append(webhooks, a.WebhookId)
		}
	}
	// The table is ordered by (project_id, webhook_id, started_at, …): naming the batch's projects
	// and webhooks lets the primary key skip to their rows of those seconds, instead of reading every
	// row of the day's partition once per batch.
	rows, err := s.conn.Query(ctx, "SELECT attempt_id FROM "+s.db+`.delivery_attempts
		WHERE project_id IN (SELECT arrayJoin(?)) AND webhook_id IN (SELECT arrayJoin(?)) AND started_at >= ? AND started_at <= ? AND has(?, attempt_id)`,
		projects, webhooks, time.UnixMilli(lo).Truncate(time.Second), time.UnixMilli(hi).Truncate(time.Second).Add(time.Second), ids)
	if err != nil {
		return fmt.Errorf("reading stored attempt ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("reading stored attempt ids: %w", err)
		}
		out[id] = true
	}
	return rows.Err()
}

const deadColumns = `id, delivery_id, event_id, webhook_id, project_id, event_type, attempt, outcome, status_code, error,
dead_at, dead_ms, delivery, replayed, version, kafka_partition, kafka_offset, retention_days`

// DeadLetterID names a dead letter: the delivery and the number of its last attempt.
func DeadLetterID(d *pb.Delivery) string { return fmt.Sprintf("%s.%d", d.DeliveryId, d.Attempt) }

// InsertDeadLetters writes dead-lettered deliveries (value bytes as read from Kafka).
func (s *Store) InsertDeadLetters(ctx context.Context, ds []*pb.Delivery, raw [][]byte, src []Source) error {
	rows := make([][]any, 0, len(ds))
	for i, d := range ds {
		o := d.GetLastOutcome()
		at := o.GetAtMs()
		if at == 0 {
			at = time.Now().UnixMilli()
		}
		rows = append(rows, []any{DeadLetterID(d), d.DeliveryId, d.EventId, d.WebhookId, d.ProjectId, d.EventType,
			uint16(d.Attempt), OutcomeName(o.GetClass()), uint16(o.GetStatusCode()), o.GetError(),
			time.UnixMilli(at), uint64(at), string(raw[i]), uint8(0), uint64(1), src[i].Partition, src[i].Offset,
			s.retention.Days(d.ProjectId)})
	}
	if err := s.conn.Insert(ctx, "INSERT INTO "+s.db+".dead_letters ("+deadColumns+")", rows); err != nil {
		return fmt.Errorf("inserting %d dead letters: %w", len(ds), err)
	}
	return nil
}

// DropPartitionsBefore drops the daily partitions of the log tables older than cutoff.
func (s *Store) DropPartitionsBefore(ctx context.Context, cutoff time.Time) (int, error) {
	day := cutoff.UTC().Format("20060102")
	rows, err := s.conn.Query(ctx, `SELECT DISTINCT table, partition FROM system.parts
		WHERE database = ? AND active AND (table IN ('delivery_attempts', 'dead_letters') OR table LIKE '.inner%')`, s.db)
	if err != nil {
		return 0, fmt.Errorf("listing partitions: %w", err)
	}
	type part struct{ table, partition string }
	var old []part
	for rows.Next() {
		var p part
		if err := rows.Scan(&p.table, &p.partition); err != nil {
			rows.Close()
			return 0, err
		}
		if len(p.partition) == 8 && p.partition < day {
			old = append(old, p)
		}
	}
	rows.Close()
	for _, p := range old {
		if err := s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.`%s` DROP PARTITION %s", s.db, p.table, p.partition)); err != nil {
			return 0, fmt.Errorf("dropping partition %s of %s: %w", p.partition, p.table, err)
		}
	}
	return len(old), nil
}

func splitHeaders(h map[string]string) (names, values []string) {
	names = make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	values = make([]string, len(names))
	for i, k := range names {
		values[i] = h[k]
	}
	return names, values
}

func joinHeaders(names, values []string) map[string]string {
	out := make(map[string]string, len(names))
	for i, k := range names {
		if i < len(values) {
			out[k] = values[i]
		}
	}
	return out
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
