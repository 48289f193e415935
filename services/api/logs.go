package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// logStore opens the ClickHouse log lazily, so management keeps working while ClickHouse is down.
type logStore struct {
	addr, database string
	mu             sync.Mutex
	store          *attemptlog.Store
}

func (l *logStore) get(ctx context.Context) (*attemptlog.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.store != nil {
		return l.store, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := attemptlog.Open(ctx, l.addr, l.database)
	if err == nil {
		err = s.Migrate(ctx) // the sink applies it too; both are idempotent
	}
	if err != nil {
		return nil, httpapi.Errorf(http.StatusServiceUnavailable, "log_unavailable", "", "the delivery log (ClickHouse at %s) is not reachable: %v", l.addr, err)
	}
	l.store = s
	return s, nil
}

func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, httpapi.Errorf(http.StatusBadRequest, "invalid_parameter", name, "%s must be an RFC 3339 time, got %q", name, v)
	}
	return t, nil
}

func queryInt(r *http.Request, name string) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, httpapi.Errorf(http.StatusBadRequest, "invalid_parameter", name, "%s must be a non-negative integer, got %q", name, v)
	}
	return n, nil
}

func attemptQuery(r *http.Request, p *pb.Project) (attemptlog.AttemptQuery, error) {
	q := attemptlog.AttemptQuery{ProjectID: p.Id, EventType: r.URL.Query().Get("event_type"),
		EventID: r.URL.Query().Get("event_id"), Cursor: r.URL.Query().Get("cursor")}
	var err error
	if o := r.URL.Query().Get("outcome"); o != "" {
		if _, ok := attemptlog.ParseOutcome(o); !ok {
			return q, httpapi.Errorf(http.StatusBadRequest, "invalid_parameter", "outcome", "unknown outcome %q; one of %v", o, attemptlog.OutcomeNames())
		}
		q.Outcome = o
	}
	if q.StatusCode, err = queryInt(r, "status_code"); err != nil {
		return q, err
	}
	if q.Limit, err = queryInt(r, "limit"); err != nil {
		return q, err
	}
	if q.From, err = queryTime(r, "from"); err != nil {
		return q, err
	}
	if q.To, err = queryTime(r, "to"); err != nil {
		return q, err
	}
	return q, nil
}

func (s *Server) listAttempts(w http.ResponseWriter, r *http.Request, q attemptlog.AttemptQuery) error {
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	items, next, err := st.ListAttempts(r.Context(), q)
	if errors.Is(err, attemptlog.ErrBadCursor) {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_parameter", "cursor", "cursor is not valid")
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"data": items, "next_cursor": next})
	return nil
}

func (s *Server) listWebhookAttempts(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	wh, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	q, err := attemptQuery(r, p)
	if err != nil {
		return err
	}
	q.WebhookID = wh.Id
	return s.listAttempts(w, r, q)
}

func (s *Server) listEventAttempts(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	q, err := attemptQuery(r, p)
	if err != nil {
		return err
	}
	q.EventID = r.PathValue("event_id")
	return s.listAttempts(w, r, q)
}

func (s *Server) getAttempt(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	a, err := st.GetAttempt(r.Context(), p.Id, r.PathValue("id"))
	if errors.Is(err, attemptlog.ErrNotFound) {
		return notFound("attempt", r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) webhookStats(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	wh, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	q := attemptlog.StatsQuery{ProjectID: p.Id, WebhookID: wh.Id, Step: time.Hour}
	if q.From, err = queryTime(r, "from"); err != nil {
		return err
	}
	if q.To, err = queryTime(r, "to"); err != nil {
		return err
	}
	if q.To.IsZero() {
		q.To = time.Now()
	}
	if q.From.IsZero() {
		q.From = q.To.Add(-24 * time.Hour)
	}
	if !q.From.Before(q.To) {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_parameter", "from", "from must be before to")
	}
	if v := r.URL.Query().Get("step"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Hour || d%time.Hour != 0 {
			return httpapi.Errorf(http.StatusBadRequest, "invalid_parameter", "step", "step must be a whole number of hours such as 1h or 24h, got %q", v)
		}
		q.Step = d
	}
	if q.To.Sub(q.From)/q.Step > 2000 {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_parameter", "step", "at most 2000 steps per query; use a larger step")
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	buckets, err := st.Stats(r.Context(), q)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"webhook_id": wh.Id, "from": q.From.UTC(), "to": q.To.UTC(),
		"step": q.Step.String(), "data": buckets})
	return nil
}

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	q, err := deadQuery(r, p)
	if err != nil {
		return err
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	items, next, err := st.ListDeadLetters(r.Context(), q)
	if errors.Is(err, attemptlog.ErrBadCursor) {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_parameter", "cursor", "cursor is not valid")
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"data": items, "next_cursor": next})
	return nil
}

func deadQuery(r *http.Request, p *pb.Project) (attemptlog.DeadLetterQuery, error) {
	v := r.URL.Query()
	q := attemptlog.DeadLetterQuery{ProjectID: p.Id, WebhookID: v.Get("webhook_id"), EventID: v.Get("event_id"),
		EventType: v.Get("event_type"), Cursor: v.Get("cursor"), IncludeReplayed: v.Get("include_replayed") == "true"}
	var err error
	if q.Limit, err = queryInt(r, "limit"); err != nil {
		return q, err
	}
	if q.From, err = queryTime(r, "from"); err != nil {
		return q, err
	}
	q.To, err = queryTime(r, "to")
	return q, err
}

// replay sends a dead letter again as a fresh delivery with the same event id and webhook-id.
func (s *Server) replay(ctx context.Context, st *attemptlog.Store, p *pb.Project, id string) error {
	_, d, err := st.GetDeadLetter(ctx, p.Id, id)
	if errors.Is(err, attemptlog.ErrNotFound) {
		return notFound("dead letter", id)
	}
	if err != nil {
		return err
	}
	d.Attempt, d.Tier, d.NotBeforeMs, d.LastOutcome, d.ReplayOf = 1, 0, 0, nil, id
	d.CreatedAtMs = time.Now().UnixMilli()
	v, _ := proto.Marshal(d)
	if err := s.kcl.ProduceSync(ctx, &kgo.Record{Topic: s.cfg.Kafka.Topics.Deliveries, Key: []byte(d.WebhookId), Value: v}).FirstErr(); err != nil {
		return err
	}
	return st.MarkReplayed(ctx, p.Id, []string{id})
}

func (s *Server) replayDeadLetter(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	if err := s.replay(r.Context(), st, p, r.PathValue("id")); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"replayed": 1})
	return nil
}

func (s *Server) replayDeadLetters(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	body, err := httpapi.ReadJSONBody(r, maxBody)
	if err != nil {
		return err
	}
	var in struct {
		WebhookID string    `json:"webhook_id"`
		EventType string    `json:"event_type"`
		From      time.Time `json:"from"`
		To        time.Time `json:"to"`
		Max       int       `json:"max"`
	}
	if len(body) > 0 {
		if err := httpapi.DecodeStrict(body, &in); err != nil {
			return err
		}
	}
	if in.Max <= 0 || in.Max > 10000 {
		in.Max = 1000
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	q := attemptlog.DeadLetterQuery{ProjectID: p.Id, WebhookID: in.WebhookID, EventType: in.EventType, From: in.From, To: in.To, Limit: 500}
	n := 0
	for n < in.Max {
		items, next, err := st.ListDeadLetters(r.Context(), q)
		if err != nil {
			return err
		}
		for _, it := range items {
			if n == in.Max {
				break
			}
			if err := s.replay(r.Context(), st, p, it.ID); err != nil {
				return err
			}
			n++
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"replayed": n})
	return nil
}
