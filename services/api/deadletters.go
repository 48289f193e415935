package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
)

// replayPage is how many dead letters a bulk replay reads, sends and marks at a time.
const replayPage = 100

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	f, limit, cursor, err := queryFilters(r, filterParams, "include_replayed")
	if err != nil {
		return err
	}
	q := f.deadQuery(p.Id, limit, cursor)
	switch v := r.URL.Query().Get("include_replayed"); v {
	case "", "false":
	case "true":
		q.IncludeReplayed = true
	default:
		return badParam("include_replayed", "include_replayed must be true or false, got %q", v)
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	items, next, err := st.ListDeadLetters(r.Context(), q)
	if errors.Is(err, attemptlog.ErrBadCursor) {
		return badParam("cursor", "cursor is not one this API returned")
	}
	if err != nil {
		return s.logs.failed(r.Context(), st, err)
	}
	httpapi.WriteJSON(w, http.StatusOK, apiv1.List[attemptlog.DeadLetter]{Data: items, NextCursor: next})
	return nil
}

// replayOf is the delivery a replay of dead letter id sends: the same delivery id (the webhook-id
// header, so receivers de-duplicate) and event id, the same rendered body, a fresh retry budget.
// When the project's storage masking rules masked the stored body, the unmasked body the sink
// sealed is opened and sent: the webhook gets what it was entitled to, not the stored copy.
func (s *Server) replayOf(d *pb.Delivery, id string) (*pb.Delivery, error) {
	out := proto.Clone(d).(*pb.Delivery)
	out.Attempt, out.Tier, out.NotBeforeMs, out.LastOutcome, out.ReplayOf = 1, 0, 0, nil, id
	// A replay is sent on its own, outside its respondent's order (docs/ordering.md): its key's
	// later events went on without it long ago.
	out.OrderingKey, out.SkippedEventId = "", ""
	if d.StorageMasked {
		body, err := s.box.Open(d.SealedBody)
		if err != nil {
			return nil, fmt.Errorf("opening the sealed body of dead letter %s: %w", id, err)
		}
		out.Body, out.SealedBody, out.StorageMasked = []byte(body), nil, false
	}
	return out, nil
}

// replayable says why a dead letter cannot be sent now, or nil: a replay to a deleted or disabled
// webhook would only be dropped or dead-lettered again.
func (s *Server) replayable(d *pb.Delivery, p *pb.Project) error {
	wh := s.reg.Webhook(d.WebhookId)
	switch {
	case wh == nil || wh.ProjectId != p.Id:
		return httpapi.Errorf(http.StatusConflict, "webhook_deleted", "", "webhook %s was deleted; its dead letters cannot be replayed", d.WebhookId)
	case !wh.Enabled:
		reason := ""
		if wh.DisabledReason != "" {
			reason = " (" + wh.DisabledReason + ")"
		}
		return httpapi.Errorf(http.StatusConflict, "webhook_disabled", "", "webhook %s is disabled%s; enable it, then replay", d.WebhookId, reason)
	case erasedBy(s.reg, d) != "":
		return httpapi.Errorf(http.StatusConflict, "respondent_erased", "",
			"the respondent of this dead letter was erased (%s): it cannot be replayed", erasedBy(s.reg, d))
	case d.StorageMasked && len(d.SealedBody) == 0:
		return httpapi.Errorf(http.StatusConflict, "body_not_kept", "",
			"the project's storage masking rules masked this dead letter and the sink had no SURVEYHOOKS_ENCRYPTION_KEY to keep its body sealed: it cannot be replayed")
	}
	return nil
}

// send produces the replays and waits for Kafka to have them all.
func (s *Server) send(ctx context.Context, ds []*pb.Delivery) error {
	recs := make([]*kgo.Record, 0, len(ds))
	for _, d := range ds {
		v, err := proto.Marshal(d)
		if err != nil {
			return fmt.Errorf("encoding replay of %s: %w", d.DeliveryId, err)
		}
		recs = append(recs, &kgo.Record{Topic: s.cfg.Kafka.Topics.Deliveries, Key: []byte(d.WebhookId), Value: v})
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := s.kcl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("queueing replays: %w", err)
	}
	return nil
}

func (s *Server) replayDeadLetter(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	d, st, err := logged(r.Context(), s.logs, "dead letter", id, func(st *attemptlog.Store) (*pb.Delivery, error) {
		_, d, err := st.GetDeadLetter(r.Context(), p.Id, id)
		return d, err
	})
	if err != nil {
		return err
	}
	if err := s.replayable(d, p); err != nil {
		return err
	}
	rd, err := s.replayOf(d, id)
	if err != nil {
		return err
	}
	if err := s.send(r.Context(), []*pb.Delivery{rd}); err != nil {
		return err
	}
	if err := st.MarkReplayed(r.Context(), p.Id, []string{id}); err != nil {
		// Sent, but still listed as not replayed: say so rather than pretend.
		return fmt.Errorf("dead letter %s was replayed but could not be marked: %w", id, err)
	}
	s.log.Info("dead letter replayed", "project_id", p.Id, "dead_letter_id", id, "delivery_id", d.DeliveryId)
	httpapi.WriteJSON(w, http.StatusAccepted, apiv1.DeadLetterReplay{Replayed: 1, DeliveryID: d.DeliveryId, EventID: d.EventId, WebhookID: d.WebhookId})
	return nil
}

// replayDeadLetters replays every unreplayed dead letter matching the body's filters, newest
// first, up to limit (at most API_MAX_REPLAY) per call; "more" says whether others still match.
func (s *Server) replayDeadLetters(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var in filters
	if len(body) > 0 {
		if err := httpapi.DecodeStrict(body, &in); err != nil {
			return err
		}
	}
	if err := in.check(invalid); err != nil {
		return err
	}
	limit := s.cfg.MaxReplay // absent: as many as one call may replay
	if in.Limit != nil {
		limit = *in.Limit // 0 is refused, not taken as "the maximum" (the OpenAPI minimum is 1)
	}
	if limit < 1 || limit > s.cfg.MaxReplay {
		return invalid("limit", "limit must be between 1 and %d, got %d", s.cfg.MaxReplay, limit)
	}
	if in.WebhookID != "" {
		if _, err := s.owned(in.WebhookID, p); err != nil {
			return err
		}
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	out := apiv1.DeadLetterReplay{}
	q := in.deadQuery(p.Id, min(replayPage, limit), "")
	for {
		items, next, err := st.ListDeadLetters(r.Context(), q)
		if err != nil {
			return s.logs.failed(r.Context(), st, err)
		}
		var ids []string
		var ds []*pb.Delivery
		for i, it := range items {
			if out.Replayed+len(ds) == limit {
				out.More = true
				items = items[:i]
				break
			}
			_, d, err := st.GetDeadLetter(r.Context(), p.Id, it.ID)
			if err != nil {
				return s.logs.failed(r.Context(), st, err)
			}
			if s.replayable(d, p) != nil {
				out.Skipped++
				continue
			}
			rd, err := s.replayOf(d, it.ID)
			if err != nil {
				return err
			}
			ids = append(ids, it.ID)
			ds = append(ds, rd)
		}
		if len(ds) > 0 {
			if err := s.send(r.Context(), ds); err != nil {
				return err
			}
			if err := st.MarkReplayed(r.Context(), p.Id, ids); err != nil {
				return fmt.Errorf("%d dead letters were replayed but could not be marked: %w", len(ids), err)
			}
			out.Replayed += len(ds)
		}
		if out.More || next == "" {
			break
		}
		if out.Replayed == limit {
			out.More = true
			break
		}
		q.Cursor = next
	}
	s.log.Info("dead letters replayed", "project_id", p.Id, "replayed", out.Replayed, "skipped", out.Skipped)
	httpapi.WriteJSON(w, http.StatusAccepted, out)
	return nil
}
