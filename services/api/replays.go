package api

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
)

// Replay jobs (Svix's "recover", Convoy's batch replay): POST /v1/webhooks/{id}/replays sends
// again every delivery of a webhook in a time range whose latest attempt matches a filter, into
// the same webhook or another of the project, as a job that runs in the background; GET
// /v1/replays/{id} reads its progress. A job reads the attempt log a page at a time (a cursor over
// delivery ids, saved after each page), so it is bounded in memory and resumable: a job whose API
// process stopped is taken over by the next process that looks (at start, then every
// replayCheckEvery), from its last saved page. A page sent again after a takeover carries the same
// delivery ids, so receivers de-duplicate it.

const (
	// replayJobPage is how many deliveries one step of a job reads, sends and records.
	replayJobPage = 200
	// replayBodyChunk is how many bodies it holds at once.
	replayBodyChunk = 25
	// replayLease: a running job whose heartbeat (saved with every page) is older than this lost
	// its process. A page takes seconds; the lease leaves ample room.
	replayLease = 2 * time.Minute
	// replayCheckEvery is how often each API process looks for such jobs.
	replayCheckEvery = 30 * time.Second
	// ReplayHeader is the header the delivery service adds to a replayed delivery, naming the
	// replay job (or the dead letter) it comes from.
	ReplayHeader = "surveyhooks-replay"
)

// replayRunner runs this process's replay jobs; jobs stop with ctx and are waited for.
type replayRunner struct {
	owner string // this process, in the jobs it runs
	ctx   context.Context
	wg    sync.WaitGroup
	mu    sync.Mutex
	mine  map[string]bool // jobs running here
}

// retention is the delivery log's retention, as the sink applies it (the same variables).
func (c Config) retention() attemptlog.Retention {
	return attemptlog.Retention{DefaultDays: c.RetentionDays, MaxDays: c.MaxRetentionDays, Projects: c.ProjectRetention}
}

func (c Config) validateRetention() error {
	switch {
	case c.MaxRetentionDays < 1 || c.MaxRetentionDays > 3650:
		return errors.New("SINK_MAX_RETENTION_DAYS: must be within 1–3650")
	case c.RetentionDays < 1 || c.RetentionDays > c.MaxRetentionDays:
		return errors.New("SINK_RETENTION_DAYS: must be within 1 and SINK_MAX_RETENTION_DAYS")
	}
	if err := c.retention().Validate(); err != nil {
		return fmt.Errorf("SINK_PROJECT_RETENTION: %w", err)
	}
	return nil
}

// replayIn is the body of POST /v1/webhooks/{id}/replays.
type replayIn struct {
	Since           string   `json:"since"`
	Until           string   `json:"until"`
	Outcome         string   `json:"outcome"`
	StatusClass     string   `json:"status_class"`
	EventTypes      []string `json:"event_types"`
	TargetWebhookID string   `json:"target_webhook_id"`
}

// replayJob checks the request and returns the job it asks for (not yet saved).
func (s *Server) replayJob(in replayIn, source *pb.Webhook, p *pb.Project, now time.Time) (attemptlog.ReplayJob, error) {
	job := attemptlog.ReplayJob{ID: "rp_" + uuid.NewString(), ProjectID: p.Id, WebhookID: source.Id, TargetWebhookID: source.Id,
		Outcome: attemptlog.ReplayFailed, StatusClass: in.StatusClass, EventTypes: []string{}, Status: attemptlog.JobRunning,
		RequestedAt: now}
	days := int(s.cfg.retention().Days(p.Id))
	oldest := now.AddDate(0, 0, -days)
	if in.Since == "" {
		return job, invalid("since", "since is required: the start of the time range, RFC 3339 (e.g. %s)", now.Add(-time.Hour).Format(time.RFC3339))
	}
	since, err := time.Parse(time.RFC3339Nano, in.Since)
	if err != nil {
		return job, invalid("since", "since must be an RFC 3339 time such as %s, got %q", now.Format(time.RFC3339), in.Since)
	}
	if since.Before(oldest) {
		return job, invalid("since", "since %s is older than the project's retention of %d days: the log holds nothing before %s",
			in.Since, days, oldest.Format(time.RFC3339))
	}
	if since.After(now) {
		return job, invalid("since", "since %s is in the future", in.Since)
	}
	until := now
	if in.Until != "" {
		if until, err = time.Parse(time.RFC3339Nano, in.Until); err != nil {
			return job, invalid("until", "until must be an RFC 3339 time such as %s, got %q", now.Format(time.RFC3339), in.Until)
		}
	}
	if !until.After(since) {
		return job, invalid("until", "until (%s) must be after since (%s)", until.Format(time.RFC3339Nano), since.Format(time.RFC3339Nano))
	}
	// A range that reaches into the future ends now: the job replays what had happened when asked.
	if until.After(now) {
		until = now
	}
	job.Since, job.Until = since.UTC().Truncate(time.Millisecond), until.UTC().Truncate(time.Millisecond)
	if in.Outcome != "" {
		job.Outcome = in.Outcome
	}
	if !slices.Contains(attemptlog.ReplayOutcomes, job.Outcome) {
		return job, invalid("outcome", "outcome must be one of %s, got %q", strings.Join(attemptlog.ReplayOutcomes, ", "), in.Outcome)
	}
	if in.StatusClass != "" && !slices.Contains(attemptlog.ReplayStatusClasses, in.StatusClass) {
		return job, invalid("status_class", "status_class must be one of %s, got %q", strings.Join(attemptlog.ReplayStatusClasses, ", "), in.StatusClass)
	}
	if len(in.EventTypes) > len(envelope.EventTypes) {
		return job, invalid("event_types", "event_types names %d types; there are %d", len(in.EventTypes), len(envelope.EventTypes))
	}
	for i, t := range in.EventTypes {
		if !envelope.KnownEventType(t) {
			return job, invalid(fmt.Sprintf("event_types[%d]", i), "unknown event type %q; known: %s", t, strings.Join(envelope.EventTypes, ", "))
		}
		if !slices.Contains(job.EventTypes, t) {
			job.EventTypes = append(job.EventTypes, t)
		}
	}
	target := source
	if in.TargetWebhookID != "" {
		target = s.reg.Webhook(in.TargetWebhookID)
		if target == nil || target.ProjectId != p.Id {
			// The same answer for another project's webhook as for none: ids do not leak.
			return job, invalid("target_webhook_id", "target_webhook_id %q is not a webhook of this project", in.TargetWebhookID)
		}
		job.TargetWebhookID = target.Id
		// A replay sends the bodies the source received, rendered and masked for it: into a
		// webhook that shapes or masks them otherwise they would arrive in the wrong shape, or
		// with fields its masking rules hide sent in clear.
		if differ := bodySettingsDiffer(source, target); len(differ) > 0 {
			return job, httpapi.Errorf(http.StatusUnprocessableEntity, "target_renders_differently", "target_webhook_id",
				"webhook %s renders bodies differently from %s (%s): a replay sends the bodies %s received; replay into a webhook with the same format, payload_version, transform and masking",
				target.Id, source.Id, strings.Join(differ, ", "), source.Id)
		}
	}
	if !target.Enabled {
		return job, httpapi.Errorf(http.StatusConflict, "webhook_disabled", "target_webhook_id",
			"webhook %s is disabled; enable it, then replay into it", target.Id)
	}
	return job, nil
}

// bodySettingsDiffer names the settings that shape a webhook's bodies (fan-out renders and masks
// them before they are queued and logged) in which a and b differ.
func bodySettingsDiffer(a, b *pb.Webhook) []string {
	var differ []string
	if a.Format != b.Format {
		differ = append(differ, "format")
	}
	if a.PayloadVersion != b.PayloadVersion {
		differ = append(differ, "payload_version")
	}
	if a.Transform != b.Transform {
		differ = append(differ, "transform")
	}
	if !slices.EqualFunc(a.Masking, b.Masking, func(x, y *pb.MaskingRule) bool { return proto.Equal(x, y) }) {
		differ = append(differ, "masking")
	}
	return differ
}

// createReplay starts a replay job and answers 202 with it; GET /v1/replays/{id} follows it.
// The Idempotency-Key middleware makes a repeated request answer the same job.
func (s *Server) createReplay(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	source, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var in replayIn
	if len(body) > 0 {
		if err := httpapi.DecodeStrict(body, &in); err != nil {
			return err
		}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	job, err := s.replayJob(in, source, p, now)
	if err != nil {
		return err
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	job.Owner, job.Heartbeat = s.replays.owner, now
	if err := st.SaveReplay(r.Context(), job); err != nil {
		return s.logs.failed(r.Context(), st, err)
	}
	s.log.Info("replay requested", "project_id", p.Id, "replay_id", job.ID, "webhook_id", job.WebhookID,
		"target_webhook_id", job.TargetWebhookID, "outcome", job.Outcome)
	s.startReplay(st, job)
	w.Header().Set("Location", "/v1/replays/"+job.ID)
	httpapi.WriteJSON(w, http.StatusAccepted, job)
	return nil
}

func (s *Server) getReplay(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	job, _, err := logged(r.Context(), s.logs, "replay", id, func(st *attemptlog.Store) (*attemptlog.ReplayJob, error) {
		return st.GetReplay(r.Context(), p.Id, id)
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, job)
	return nil
}

// listReplays answers the project's latest replay jobs, newest first (limit: 1–500, default 50).
func (s *Server) listReplays(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r, "limit"); err != nil {
		return err
	}
	n := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 500 {
			return badParam("limit", "limit must be a whole number from 1 to 500, got %q", v)
		}
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	jobs, err := st.ListReplays(r.Context(), p.Id, n)
	if err != nil {
		return s.logs.failed(r.Context(), st, err)
	}
	httpapi.WriteJSON(w, http.StatusOK, apiv1.List[attemptlog.ReplayJob]{Data: jobs})
	return nil
}

// startReplay runs job in the background unless this process already runs it.
func (s *Server) startReplay(st *attemptlog.Store, job attemptlog.ReplayJob) {
	rr := s.replays
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.mine[job.ID] || rr.ctx.Err() != nil {
		return
	}
	rr.mine[job.ID] = true
	rr.wg.Add(1)
	go func() {
		defer rr.wg.Done()
		s.runReplay(rr.ctx, st, job)
		rr.mu.Lock()
		delete(rr.mine, job.ID)
		rr.mu.Unlock()
	}()
}

// runReplay sends job's deliveries page by page from its cursor, saving progress after each page,
// until the last page (done), an error (failed) or ctx ends (left running with no heartbeat, for
// the next process to take over at once).
func (s *Server) runReplay(ctx context.Context, st *attemptlog.Store, job attemptlog.ReplayJob) {
	finish := func(err error) {
		now := time.Now().UTC().Truncate(time.Millisecond)
		job.Status, job.FinishedAt, job.Heartbeat = attemptlog.JobDone, &now, now
		if err != nil {
			job.Status, job.Error = attemptlog.JobFailed, err.Error()
			s.log.Warn("replay failed", "project_id", job.ProjectID, "replay_id", job.ID, "err", err)
		} else {
			s.log.Info("replay done", "project_id", job.ProjectID, "replay_id", job.ID, "matched", job.Matched,
				"replayed", job.Replayed, "skipped", job.Skipped)
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		if err := st.SaveReplay(sctx, job); err != nil {
			s.log.Warn("recording replay", "project_id", job.ProjectID, "replay_id", job.ID, "err", err)
		}
	}
	for {
		last, err := s.replayPage(ctx, st, &job)
		if errors.Is(err, errTakenOver) {
			s.log.Warn("replay job taken over by another process", "project_id", job.ProjectID, "replay_id", job.ID)
			return
		}
		if ctx.Err() != nil {
			// Stopping: hand the job over now rather than after the lease.
			job.Owner, job.Heartbeat = "", time.Time{}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = st.SaveReplay(sctx, job)
			cancel()
			return
		}
		if err != nil || last {
			finish(err)
			return
		}
	}
}

// errTakenOver: another process claimed the job (this one was too slow to keep its heartbeat).
var errTakenOver = errors.New("replay job taken over")

// replayPage reads, sends and records one page of job; last says it was the final one.
func (s *Server) replayPage(ctx context.Context, st *attemptlog.Store, job *attemptlog.ReplayJob) (last bool, err error) {
	qctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if saved, err := st.GetReplay(qctx, job.ProjectID, job.ID); err != nil {
		return false, err
	} else if saved.Owner != job.Owner {
		return false, errTakenOver
	}
	page, err := st.ReplayCandidates(qctx, job.Query(replayJobPage))
	if err != nil {
		return false, err
	}
	target := s.reg.Webhook(job.TargetWebhookID)
	switch {
	case target == nil || target.ProjectId != job.ProjectID:
		return false, fmt.Errorf("webhook %s was deleted", job.TargetWebhookID)
	case !target.Enabled:
		return false, fmt.Errorf("webhook %s was disabled", job.TargetWebhookID)
	}
	project := s.reg.Project(job.ProjectID)
	var replayed, skipped uint64
	// Bodies are read and sent a chunk at a time: a body may be near Kafka's 1 MiB record limit,
	// so a chunk, not a page, bounds what the job holds in memory.
	for chunk := range slices.Chunk(page, replayBodyChunk) {
		ids := make([]string, len(chunk))
		for i, c := range chunk {
			ids[i] = c.AttemptID
		}
		bodies, err := st.ReplayBodies(qctx, job.ProjectID, job.WebhookID, job.Since, ids)
		if err != nil {
			return false, err
		}
		now := time.Now()
		var ds []*pb.Delivery
		for _, c := range chunk {
			body, why := s.replayBody(bodies[c.AttemptID], project)
			if why != "" {
				skipped++
				s.log.Warn("replay skips a delivery", "project_id", job.ProjectID, "replay_id", job.ID, "delivery_id", c.DeliveryID, "reason", why)
				continue
			}
			ds = append(ds, &pb.Delivery{DeliveryId: replayDeliveryID(*job, c.DeliveryID), EventId: c.EventID, WebhookId: target.Id,
				ProjectId: job.ProjectID, EventType: c.EventType, Body: body, Attempt: 1, CreatedAtMs: now.UnixMilli(),
				WebhookRevision: target.Revision, ReplayJobId: job.ID})
		}
		if len(ds) > 0 {
			if err := s.send(ctx, ds); err != nil {
				return false, err
			}
		}
		replayed += uint64(len(ds))
	}
	job.Matched += uint64(len(page))
	job.Replayed += replayed
	job.Skipped += skipped
	if len(page) > 0 {
		job.Cursor = page[len(page)-1].DeliveryID
	}
	job.Heartbeat = time.Now().UTC().Truncate(time.Millisecond)
	last = len(page) < replayJobPage
	if !last {
		if err := st.SaveReplay(qctx, *job); err != nil {
			return false, err
		}
	}
	return last, nil
}

// replayBody is the body to send again, or why there is none: the unmasked body when the
// project's storage masking masked the stored copy (as a dead-letter replay does), never the
// masked copy, and never a body the delivery service cut short or one that may be masked.
func (s *Server) replayBody(b attemptlog.ReplayBody, p *pb.Project) (body []byte, why string) {
	switch {
	case b.Body == nil && !b.StorageMasked:
		return nil, "the attempt is no longer in the log"
	case b.Unmarked && (p == nil || len(p.StorageMasking) > 0):
		return nil, "stored before the log marked masked bodies, in a project with storage masking rules: it may be masked"
	case b.Truncated:
		return nil, "the log kept only part of the body (the record was too large)"
	case b.StorageMasked && len(b.SealedBody) == 0:
		return nil, "storage masking masked the body and the sink had no SURVEYHOOKS_ENCRYPTION_KEY to keep it sealed"
	case b.StorageMasked:
		plain, err := s.box.Open(b.SealedBody)
		if err != nil {
			return nil, "the sealed body could not be opened with this SURVEYHOOKS_ENCRYPTION_KEY"
		}
		return []byte(plain), ""
	}
	return b.Body, ""
}

var replayIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// replayDeliveryID is the delivery id of a replay: the original one (the `webhook-id` receivers
// de-duplicate on) into the same webhook; into another, one derived from the job and the original,
// so a page sent again after a takeover repeats the same ids rather than new ones.
func replayDeliveryID(job attemptlog.ReplayJob, deliveryID string) string {
	if job.TargetWebhookID == job.WebhookID {
		return deliveryID
	}
	h := sha256.Sum256([]byte(job.ID + "\x00" + deliveryID))
	return "msg_" + replayIDEncoding.EncodeToString(h[:16])
}

// keepReplays takes over running jobs whose process stopped: at start, then every
// replayCheckEvery, until ctx ends; then it waits for this process's jobs to stop.
func (s *Server) keepReplays(ctx context.Context) error {
	t := time.NewTicker(replayCheckEvery)
	defer t.Stop()
	for {
		s.takeOverReplays(ctx)
		select {
		case <-ctx.Done():
			s.replays.wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

func (s *Server) takeOverReplays(ctx context.Context) {
	st, err := s.logs.get(ctx)
	if err != nil {
		return // logged by get; the next check tries again
	}
	stale, err := st.StaleReplays(ctx, time.Now().Add(-replayLease))
	if err != nil {
		s.log.Warn("looking for replay jobs to take over", "err", err)
		return
	}
	for _, job := range stale {
		prev := job.Owner
		job.Owner, job.Heartbeat = s.replays.owner, time.Now().UTC().Truncate(time.Millisecond)
		if err := st.SaveReplay(ctx, job); err != nil {
			s.log.Warn("taking over a replay job", "replay_id", job.ID, "err", err)
			continue
		}
		// Two processes may claim the same job at once: the later row wins, and only its owner runs it.
		got, err := st.GetReplay(ctx, job.ProjectID, job.ID)
		if err != nil || got.Owner != s.replays.owner {
			continue
		}
		s.log.Info("replay job taken over", "project_id", job.ProjectID, "replay_id", job.ID, "previous_owner", prev,
			"replayed", job.Replayed)
		s.startReplay(st, *got)
	}
}
