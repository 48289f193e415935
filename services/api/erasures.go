package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/masking"
)

// erasureTimeout bounds one erasure job: on 18.16 it waits for ClickHouse mutations.
const erasureTimeout = time.Hour

// createErasure starts erasing a respondent from the project's delivery log (attempts with their
// bodies, dead letters) and answers 202 with the job, whose state GET …/erasures/{id} reads. The
// job's record and log lines hold the project and counts, never the identifiers. An erasure
// matches every identifier given, so posting it again after an interruption is safe.
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
	job := attemptlog.ErasureJob{ID: "er_" + uuid.NewString(), ProjectID: p.Id, Status: "running",
		RequestedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := st.SaveErasure(r.Context(), job); err != nil {
		return s.logs.failed(r.Context(), st, err)
	}
	s.log.Info("erasure requested", "project_id", p.Id, "erasure_id", job.ID)
	in.Also = s.maskedIdentifiers(p.Id, in)
	go s.runErasure(st, job, in)
	httpapi.WriteJSON(w, http.StatusAccepted, job)
	return nil
}

func (s *Server) runErasure(st *attemptlog.Store, job attemptlog.ErasureJob, who attemptlog.Respondent) {
	ctx, cancel := context.WithTimeout(context.Background(), erasureTimeout)
	defer cancel()
	erased, err := st.Erase(ctx, job.ProjectID, who)
	now := time.Now().UTC().Truncate(time.Millisecond)
	job.Erased, job.FinishedAt, job.Status = erased, &now, "done"
	if err != nil {
		job.Status, job.Error = "failed", err.Error()
		s.log.Warn("erasure failed", "project_id", job.ProjectID, "erasure_id", job.ID, "err", err)
	}
	if err := st.SaveErasure(ctx, job); err != nil {
		s.log.Warn("recording erasure", "project_id", job.ProjectID, "erasure_id", job.ID, "err", err)
	}
}

// getErasure answers an erasure job's state and, once done, what it removed.
func (s *Server) getErasure(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	p := s.reg.Project(r.PathValue("id"))
	if p == nil {
		return notFound("project", r.PathValue("id"))
	}
	st, err := s.logs.get(r.Context())
	if err != nil {
		return err
	}
	job, err := st.GetErasure(r.Context(), p.Id, r.PathValue("erasure_id"))
	if errors.Is(err, attemptlog.ErrNotFound) {
		return notFound("erasure", r.PathValue("erasure_id"))
	}
	if err != nil {
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
