package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
)

const (
	maxPageSize = 500
	maxSteps    = 2000
	// reconnectAfter keeps a down ClickHouse from costing every query a dial timeout.
	reconnectAfter = 2 * time.Second
)

// logStore opens the ClickHouse delivery log lazily and answers 503 while it is unreachable, so
// the management endpoints, which need only Kafka, keep working without it.
type logStore struct {
	addr, database string
	log            *slog.Logger

	mu       sync.Mutex
	store    *attemptlog.Store
	failedAt time.Time
	lastErr  error
}

func (l *logStore) unavailable(err error) error {
	return httpapi.Errorf(http.StatusServiceUnavailable, "log_unavailable", "",
		"the delivery log (ClickHouse at %s) is not reachable: %v", l.addr, err)
}

func (l *logStore) get(ctx context.Context) (*attemptlog.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.store != nil {
		return l.store, nil
	}
	if time.Since(l.failedAt) < reconnectAfter {
		return nil, l.unavailable(l.lastErr)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := attemptlog.Open(ctx, l.addr, l.database)
	if err == nil {
		if err = s.Migrate(ctx); err != nil { // the sink applies it too; both are idempotent
			s.Close()
		}
	}
	if err != nil {
		l.failedAt, l.lastErr = time.Now(), err
		l.log.Warn("delivery log unavailable", "addr", l.addr, "err", err)
		return nil, l.unavailable(err)
	}
	l.store = s
	return s, nil
}

// failed classifies a query error: a server that does not answer is a 503, anything else a 500.
func (l *logStore) failed(ctx context.Context, st *attemptlog.Store, err error) error {
	if ctx.Err() != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if perr := st.Ping(pctx); perr != nil {
		return l.unavailable(perr)
	}
	return err
}

// logged reads one record the attempt log keeps for a project: get is called with the store; a
// record it does not have is a 404 naming kind and id, a server that does not answer a 503. The
// store is returned for further reads.
func logged[T any](ctx context.Context, l *logStore, kind, id string, get func(*attemptlog.Store) (T, error)) (T, *attemptlog.Store, error) {
	var zero T
	st, err := l.get(ctx)
	if err != nil {
		return zero, nil, err
	}
	v, err := get(st)
	if errors.Is(err, attemptlog.ErrNotFound) {
		return zero, nil, notFound(kind, id)
	}
	if err != nil {
		return zero, nil, l.failed(ctx, st, err)
	}
	return v, st, nil
}

func (l *logStore) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.store != nil {
		_ = l.store.Close()
	}
}

// onlyParams rejects query parameters the endpoint does not know, and repeated ones: a misspelt
// filter must not silently widen a search.
func onlyParams(r *http.Request, allowed ...string) error {
	q := r.URL.Query()
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return badParam(k, "unknown query parameter %q; this endpoint takes none", k)
			}
			return badParam(k, "unknown query parameter %q; known: %s", k, strings.Join(allowed, ", "))
		}
		if len(q[k]) > 1 {
			return badParam(k, "query parameter %q is given %d times", k, len(q[k]))
		}
	}
	return nil
}

// filters are the search criteria shared by the attempt and dead-letter endpoints, from query
// parameters or from a bulk-replay body; errors name the parameter (or field).
type filters struct {
	WebhookID  string `json:"webhook_id"`
	EventID    string `json:"event_id"`
	EventType  string `json:"event_type"`
	Outcome    string `json:"outcome"`
	StatusCode int    `json:"status_code"`
	From       string `json:"from"`
	To         string `json:"to"`
	Limit      *int   `json:"limit"` // bulk replay only (nil: absent); query strings use their own limit
	from, to   time.Time
}

// check validates and parses f; fail builds the error for a named parameter or field.
func (f *filters) check(fail func(name, format string, args ...any) error) error {
	if f.EventType != "" && f.EventType != envelope.TestEventType && !envelope.KnownEventType(f.EventType) {
		return fail("event_type", "unknown event type %q; known: %s, %s", f.EventType,
			strings.Join(envelope.EventTypes, ", "), envelope.TestEventType)
	}
	if f.Outcome != "" {
		if _, ok := attemptlog.ParseOutcome(f.Outcome); !ok {
			return fail("outcome", "unknown outcome %q; one of %s", f.Outcome, strings.Join(attemptlog.OutcomeNames(), ", "))
		}
	}
	if f.StatusCode != 0 && (f.StatusCode < 100 || f.StatusCode > 599) {
		return fail("status_code", "status_code must be an HTTP status between 100 and 599, got %d", f.StatusCode)
	}
	var err error
	for _, t := range []struct {
		name string
		in   string
		out  *time.Time
	}{{"from", f.From, &f.from}, {"to", f.To, &f.to}} {
		if t.in == "" {
			continue
		}
		if *t.out, err = time.Parse(time.RFC3339Nano, t.in); err != nil {
			return fail(t.name, "%s must be an RFC 3339 time such as 2026-01-31T12:00:00Z, got %q", t.name, t.in)
		}
	}
	if !f.from.IsZero() && !f.to.IsZero() && !f.from.Before(f.to) {
		return fail("to", "to must be after from")
	}
	return nil
}

var filterParams = []string{"webhook_id", "event_id", "event_type", "outcome", "status_code", "from", "to"}

// queryFilters reads the filters from the query string; only the named ones are accepted, plus
// limit and cursor (and extra).
func queryFilters(r *http.Request, accepted []string, extra ...string) (filters, int, string, error) {
	if err := onlyParams(r, append(append(slices.Clone(accepted), "limit", "cursor"), extra...)...); err != nil {
		return filters{}, 0, "", err
	}
	v := r.URL.Query()
	f := filters{WebhookID: v.Get("webhook_id"), EventID: v.Get("event_id"), EventType: v.Get("event_type"),
		Outcome: v.Get("outcome"), From: v.Get("from"), To: v.Get("to")}
	var err error
	if f.StatusCode, err = intParam(v, "status_code", 100, 599); err != nil {
		return f, 0, "", err
	}
	limit, err := intParam(v, "limit", 1, maxPageSize)
	if err != nil {
		return f, 0, "", err
	}
	if err := f.check(badParam); err != nil {
		return f, 0, "", err
	}
	return f, limit, v.Get("cursor"), nil
}

func intParam(v url.Values, name string, lo, hi int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, badParam(name, "%s must be a whole number from %d to %d, got %q", name, lo, hi, s)
	}
	return n, nil
}

func (f filters) attemptQuery(projectID string, limit int, cursor string) attemptlog.AttemptQuery {
	return attemptlog.AttemptQuery{ProjectID: projectID, WebhookID: f.WebhookID, EventID: f.EventID,
		EventType: f.EventType, Outcome: f.Outcome, StatusCode: f.StatusCode, From: f.from, To: f.to,
		Limit: limit, Cursor: cursor}
}

func (f filters) deadQuery(projectID string, limit int, cursor string) attemptlog.DeadLetterQuery {
	return attemptlog.DeadLetterQuery{ProjectID: projectID, WebhookID: f.WebhookID, EventID: f.EventID,
		EventType: f.EventType, Outcome: f.Outcome, StatusCode: f.StatusCode, From: f.from, To: f.to,
		Limit: limit, Cursor: cursor}
}

// attempts answers one page of attempts; the project in q is the caller's.
func (s *Server) attempts(w http.ResponseWriter, r *http.Request, q attemptlog.AttemptQuery) ([]attemptlog.AttemptSummary, error) {
	st, err := s.logs.get(r.Context())
	if err != nil {
		return nil, err
	}
	items, next, err := st.ListAttempts(r.Context(), q)
	if errors.Is(err, attemptlog.ErrBadCursor) {
		return nil, badParam("cursor", "cursor is not one this API returned")
	}
	if err != nil {
		return nil, s.logs.failed(r.Context(), st, err)
	}
	httpapi.WriteJSON(w, http.StatusOK, apiv1.List[attemptlog.AttemptSummary]{Data: items, NextCursor: next})
	return items, nil
}

// listProjectAttempts searches every attempt of the project.
func (s *Server) listProjectAttempts(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	f, limit, cursor, err := queryFilters(r, filterParams)
	if err != nil {
		return err
	}
	_, err = s.attempts(w, r, f.attemptQuery(p.Id, limit, cursor))
	return err
}

func (s *Server) listWebhookAttempts(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	wh, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	f, limit, cursor, err := queryFilters(r, slices.DeleteFunc(slices.Clone(filterParams), func(n string) bool { return n == "webhook_id" }))
	if err != nil {
		return err
	}
	f.WebhookID = wh.Id
	_, err = s.attempts(w, r, f.attemptQuery(p.Id, limit, cursor))
	return err
}

// listEventAttempts answers every attempt made for one event (to every webhook), or 404 when the
// project has none for it.
func (s *Server) listEventAttempts(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	f, limit, cursor, err := queryFilters(r, []string{"webhook_id", "outcome", "status_code", "from", "to"})
	if err != nil {
		return err
	}
	f.EventID = r.PathValue("event_id")
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	if cursor == "" {
		// Only the project's own attempts count, so another project's event id is a 404 too.
		any, _, err := st.ListAttempts(r.Context(), attemptlog.AttemptQuery{ProjectID: p.Id, EventID: f.EventID, Limit: 1})
		if err != nil {
			return s.logs.failed(r.Context(), st, err)
		}
		if len(any) == 0 {
			return httpapi.Errorf(http.StatusNotFound, "not_found", "", "no attempts for event %q", f.EventID)
		}
	}
	_, err = s.attempts(w, r, f.attemptQuery(p.Id, limit, cursor))
	return err
}

func (s *Server) getAttempt(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	a, _, err := logged(r.Context(), s.logs, "attempt", id, func(st *attemptlog.Store) (*attemptlog.AttemptDetail, error) {
		return st.GetAttempt(r.Context(), p.Id, id)
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, a)
	return nil
}

// parseStep reads a step of whole hours: "1h", "6h", "24h" or days such as "1d", "7d".
func parseStep(v string) (time.Duration, bool) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		return time.Duration(n) * 24 * time.Hour, err == nil && n > 0
	}
	d, err := time.ParseDuration(v)
	return d, err == nil && d >= time.Hour && d%time.Hour == 0
}

// webhookStats answers per-step statistics of one webhook from the hourly rollup: every step of the
// range is present, empty ones with zero counts. The endpoint's concurrency limit comes from the
// range's sent attempts (the webhook's rows of the range only).
func (s *Server) webhookStats(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	wh, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	if err := onlyParams(r, "from", "to", "step"); err != nil {
		return err
	}
	f := filters{From: r.URL.Query().Get("from"), To: r.URL.Query().Get("to")}
	if err := f.check(badParam); err != nil {
		return err
	}
	q := attemptlog.StatsQuery{ProjectID: p.Id, WebhookID: wh.Id, From: f.from, To: f.to, Step: time.Hour}
	if v := r.URL.Query().Get("step"); v != "" {
		d, ok := parseStep(v)
		if !ok {
			return badParam("step", "step must be a whole number of hours or days, such as 1h, 6h or 1d; got %q", v)
		}
		q.Step = d
	}
	if q.To.IsZero() {
		q.To = time.Now()
	}
	if q.From.IsZero() {
		q.From = q.To.Add(-24 * time.Hour)
	}
	if !q.From.Before(q.To) {
		return badParam("from", "from must be before to")
	}
	// Steps are aligned to multiples of step since the Unix epoch, as the rollup groups them; the
	// first step is whole.
	stepS := int64(q.Step / time.Second)
	first := time.Unix(q.From.Unix()/stepS*stepS, 0).UTC()
	q.From = first
	if n := (q.To.Sub(first) + q.Step - 1) / q.Step; n > maxSteps {
		return badParam("step", "%d steps asked; at most %d per query: use a larger step or a shorter range", n, maxSteps)
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	got, err := st.Stats(r.Context(), q)
	if err != nil {
		return s.logs.failed(r.Context(), st, err)
	}
	limits, err := st.ConcurrencyLimits(r.Context(), q)
	if err != nil {
		return s.logs.failed(r.Context(), st, err)
	}
	byStart := make(map[int64]attemptlog.StatsBucket, len(got))
	for _, b := range got {
		byStart[b.Start.Unix()] = b
	}
	out := apiv1.Stats{WebhookID: wh.Id, From: q.From.UTC(), To: q.To.UTC(), Step: stepName(q.Step), Data: []attemptlog.StatsBucket{}}
	if limits.Latest > 0 {
		out.ConcurrencyLimit, out.ConcurrencyLimitAt, out.ConcurrencyLimitMin = limits.Latest, &limits.LatestAt, limits.Min
	}
	for t := first; t.Before(q.To); t = t.Add(q.Step) {
		b, ok := byStart[t.Unix()]
		if !ok {
			b = attemptlog.StatsBucket{Start: t}
		}
		out.Data = append(out.Data, b)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

func stepName(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return fmt.Sprintf("%dh", d/time.Hour)
}
