package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/masking"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

// erasureTimeout bounds one erasure job: on 18.16 it waits for ClickHouse mutations.
const erasureTimeout = time.Hour

// createErasure starts erasing a respondent (runErasure: pending deliveries, fan-out's state, the
// delivery log's attempts and dead letters) and answers 202 with the job, whose state
// GET …/erasures/{id} reads. The job's record and log lines hold the project and counts, never
// the identifiers (the record holds them sealed while the job runs, to resume it after a
// restart). An erasure is idempotent: posting it again, or resuming it, is safe.
func (s *Server) createErasure(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	p := s.reg.Project(r.PathValue("id"))
	if p == nil {
		return notFound("project", r.PathValue("id"))
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var in attemptlog.Respondent
	if err := httpapi.DecodeStrict(body, &in); err != nil {
		return err
	}
	for field, v := range map[string]string{"user_id": in.UserID, "anonymous_id": in.AnonymousID, "email": in.Email} {
		if v != "" && strings.TrimSpace(v) == "" {
			return invalid(field, "%s must not be blank", field)
		}
		if len(v) > 512 {
			return invalid(field, "%s is longer than 512 bytes", field)
		}
	}
	if in.UserID == "" && in.AnonymousID == "" && in.Email == "" {
		return invalid("user_id", "give at least one of user_id, anonymous_id, email")
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	sealed, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encoding the respondent: %w", err)
	}
	job := attemptlog.ErasureJob{ID: "er_" + uuid.NewString(), ProjectID: p.Id, Status: "running",
		RequestedAt: time.Now().UTC().Truncate(time.Millisecond), Sealed: s.box.Seal(string(sealed))}
	if err := st.SaveErasure(r.Context(), job); err != nil {
		return s.logs.failed(r.Context(), st, err)
	}
	s.log.Info("erasure requested", "project_id", p.Id, "erasure_id", job.ID)
	s.startErasure(st, job, in)
	job.Sealed = nil
	httpapi.WriteJSON(w, http.StatusAccepted, job)
	return nil
}

// startErasure runs a job in the background, until it ends or the API stops: a job the API
// stops in the middle stays "running" and is resumed at the next start (resumeErasures).
func (s *Server) startErasure(st *attemptlog.Store, job attemptlog.ErasureJob, who attemptlog.Respondent) {
	s.jobs.Add(1)
	go func() {
		defer s.jobs.Done()
		s.runErasure(st, job, who)
	}()
}

// runErasure erases a respondent everywhere surveyhooks keeps them, in this order, each step
// idempotent: (1) the `erasures` topic gets the respondent's keyed hashes, so the delivery
// workers drop their pending retries and replays from then on; (2) fan-out forgets their
// remembered answers (`respondents`); (3) their attempts and dead letters go from ClickHouse,
// and again after API_ERASURE_SECOND_PASS, for those that were still on their way there.
func (s *Server) runErasure(st *attemptlog.Store, job attemptlog.ErasureJob, who attemptlog.Respondent) {
	ctx, cancel := context.WithTimeout(s.jobCtx, erasureTimeout)
	defer cancel()
	err := s.stopPending(ctx, job, who)
	who.Also = s.maskedIdentifiers(job.ProjectID, who)
	erased := job.Erased // what a run interrupted by a restart removed and recorded
	pass := func() {
		var n attemptlog.Erased
		n, err = st.Erase(ctx, job.ProjectID, who)
		erased.Attempts, erased.DeadLetters = erased.Attempts+n.Attempts, erased.DeadLetters+n.DeadLetters
	}
	if err == nil {
		pass()
	}
	if err == nil && s.cfg.ErasureSecondPass > 0 {
		// Recorded, so that a restart during the wait does not lose the first pass's count.
		job.Erased = erased
		if err := st.SaveErasure(ctx, job); err != nil {
			s.log.Warn("recording erasure", "project_id", job.ProjectID, "erasure_id", job.ID, "err", err)
		}
		select {
		case <-time.After(s.cfg.ErasureSecondPass):
			pass()
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if s.jobCtx.Err() != nil {
		s.log.Info("erasure interrupted by the API stopping; it resumes at the next start",
			"project_id", job.ProjectID, "erasure_id", job.ID)
		return
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	job.Erased, job.FinishedAt, job.Status = erased, &now, "done"
	if err != nil {
		// A ClickHouse error may quote the statement, which holds the identifiers.
		job.Status, job.Error = "failed", redact(err.Error(), who)
		s.log.Warn("erasure failed", "project_id", job.ProjectID, "erasure_id", job.ID, "err", job.Error)
	} else {
		s.log.Info("erasure done", "project_id", job.ProjectID, "erasure_id", job.ID,
			"attempts", erased.Attempts, "dead_letters", erased.DeadLetters)
	}
	if err := st.SaveErasure(ctx, job); err != nil {
		s.log.Warn("recording erasure", "project_id", job.ProjectID, "erasure_id", job.ID, "err", err)
	}
}

// stopPending publishes the respondent's keyed hashes on the compacted `erasures` topic (as of the
// job's request time: their later events are delivered again) and asks fan-out to forget what it
// remembers of them. Neither record holds an identifier in clear except the `events` request
// (fanout.EraseRespondent), which carries the user's id as every event of theirs does.
func (s *Server) stopPending(ctx context.Context, job attemptlog.ErasureJob, who attemptlog.Respondent) error {
	var recs []*kgo.Record
	for _, h := range masking.RespondentHashes(s.maskingKey(job.ProjectID), who.UserID, who.AnonymousID, who.Email) {
		v, err := proto.Marshal(&pb.Erasure{ProjectId: job.ProjectID, Hash: h, ErasureId: job.ID, AtMs: job.RequestedAt.UnixMilli()})
		if err != nil {
			return fmt.Errorf("encoding the erasure: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: s.cfg.Kafka.Topics.Erasures, Key: []byte(registry.ErasureKey(job.ProjectID, h)), Value: v})
	}
	if err := s.kcl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("publishing the erasure on %s: %w", s.cfg.Kafka.Topics.Erasures, err)
	}
	for _, user := range slices.Compact([]string{who.UserID, who.AnonymousID}) {
		if user == "" {
			continue
		}
		if err := fanout.EraseRespondent(ctx, s.kcl, s.cfg.Kafka.Topics, job.ProjectID, user); err != nil {
			// The error names the user: keep it out of the job record and the log.
			return errors.New("asking fan-out to forget the respondent's answers failed")
		}
	}
	return nil
}

// resumeErasures runs again every job still "running" (left by an API that stopped or died in
// the middle): erasing is idempotent. It waits for ClickHouse as long as the API runs.
func (s *Server) resumeErasures(ctx context.Context) {
	var st *attemptlog.Store
	for {
		var err error
		if st, err = s.logs.get(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(reconnectAfter):
		}
	}
	jobs, err := st.RunningErasures(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("listing erasures to resume", "err", err)
		}
		return
	}
	for _, job := range jobs {
		var who attemptlog.Respondent
		plain, err := s.box.Open(job.Sealed)
		if err == nil {
			err = json.Unmarshal([]byte(plain), &who)
		}
		if err != nil {
			now := time.Now().UTC().Truncate(time.Millisecond)
			job.Status, job.FinishedAt = "failed", &now
			job.Error = "cannot resume: the respondent's sealed identifiers do not open with SURVEYHOOKS_ENCRYPTION_KEY; post the erasure again"
			s.log.Warn("erasure cannot be resumed", "project_id", job.ProjectID, "erasure_id", job.ID, "err", err)
			if err := st.SaveErasure(ctx, job); err != nil {
				s.log.Warn("recording erasure", "project_id", job.ProjectID, "erasure_id", job.ID, "err", err)
			}
			continue
		}
		s.log.Info("resuming erasure", "project_id", job.ProjectID, "erasure_id", job.ID)
		s.startErasure(st, job, who)
	}
}

// redact replaces in msg every identifier of who (and their hashes), in any case, by
// "[identifier]".
func redact(msg string, who attemptlog.Respondent) string {
	for _, v := range append([]string{who.UserID, who.AnonymousID, who.Email}, who.Also...) {
		if strings.TrimSpace(v) != "" {
			msg = regexp.MustCompile("(?i)"+regexp.QuoteMeta(v)).ReplaceAllLiteralString(msg, "[identifier]")
		}
	}
	return msg
}

// erasedBy names the erasure of d's respondent, or "": such a dead letter is not replayed.
func erasedBy(reg *registry.Registry, d *pb.Delivery) string {
	id, _ := reg.Erased(d)
	return id
}

// getErasure answers an erasure job's state, what it removed once done, and how many pending
// deliveries it stopped so far.
func (s *Server) getErasure(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	p := s.reg.Project(r.PathValue("id"))
	if p == nil {
		return notFound("project", r.PathValue("id"))
	}
	id := r.PathValue("erasure_id")
	job, st, err := logged(r.Context(), s.logs, "erasure", id, func(st *attemptlog.Store) (*attemptlog.ErasureJob, error) {
		return st.GetErasure(r.Context(), p.Id, id)
	})
	if err != nil {
		return err
	}
	if job.PendingStopped, err = st.StoppedByErasure(r.Context(), p.Id, job.ID); err != nil {
		return s.logs.failed(r.Context(), st, err)
	}
	httpapi.WriteJSON(w, http.StatusOK, job)
	return nil
}

// maskedIdentifiers are the respondent's identifiers as a "hash" masking rule of this project
// writes them (a webhook's rule in what it was sent, a storage rule in what was stored), so that
// erasure finds rows where an identifier is stored only hashed. E-mail addresses are hashed as
// given and in lower case (a hash, unlike the clear address, is matched exactly).
func (s *Server) maskedIdentifiers(projectID string, who attemptlog.Respondent) []string {
	key := s.maskingKey(projectID)
	if key == nil {
		return nil
	}
	var out []string
	for _, v := range []string{who.UserID, who.AnonymousID, who.Email, strings.ToLower(who.Email)} {
		if v != "" {
			out = append(out, masking.HashValue(key, v))
		}
	}
	return slices.Compact(out)
}
