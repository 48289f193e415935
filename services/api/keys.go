package api

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/ids"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// ProjectHeader names the project the admin token acts for on the project endpoints.
const ProjectHeader = "X-Surveyhooks-Project"

const (
	// maxKeys bounds a project's keys that are still usable (its first key included).
	maxKeys = 20
	// keptRevoked is how long a revoked or expired key stays listed before a write drops it.
	keptRevoked = 30 * 24 * time.Hour
)

func (s *Server) isAdmin(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) == 1
}

// scopeFor is the scope a project-endpoint call needs: reading needs `read`, anything else
// (webhook writes, Send Test, replays, keys) needs `manage`.
func scopeFor(r *http.Request) string {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return registry.ScopeRead
	}
	return registry.ScopeManage
}

// authProject finds the project a project-endpoint call acts for: a portal page's, the one the
// admin token names in X-Surveyhooks-Project, or the API key's, when the key is valid (not
// revoked, not expired) and holds the scope the call needs.
func (s *Server) authProject(r *http.Request) (*pb.Project, error) {
	if p := portalProjectOf(r); p != nil {
		return p, nil
	}
	tok := httpapi.BearerToken(r)
	named := r.Header.Get(ProjectHeader)
	if s.isAdmin(tok) {
		if named == "" {
			return nil, httpapi.Errorf(http.StatusBadRequest, "invalid_header", ProjectHeader,
				"the admin token acts for one project: name it in the %s header", ProjectHeader)
		}
		p := s.reg.Project(named)
		if p == nil {
			if err := s.reg.WaitFresh(r.Context()); err != nil {
				return nil, err
			}
			if p = s.reg.Project(named); p == nil {
				return nil, httpapi.Errorf(http.StatusBadRequest, "invalid_header", ProjectHeader, "project %q does not exist", named)
			}
		}
		return p, nil
	}
	var (
		p *pb.Project
		k *pb.ApiKey
	)
	if tok != "" {
		p, k = s.reg.APIKey(tok, time.Now())
	}
	if p == nil {
		return nil, httpapi.Errorf(http.StatusUnauthorized, "unauthorized", "",
			"a valid project API key is required (revoked and expired keys are refused): Authorization: Bearer <api_key>")
	}
	if named != "" && named != p.Id {
		return nil, httpapi.Errorf(http.StatusForbidden, "forbidden", ProjectHeader,
			"a project API key acts only for its own project; %s is for the admin token", ProjectHeader)
	}
	if scope := scopeFor(r); !slices.Contains(k.Scopes, scope) {
		return nil, httpapi.Errorf(http.StatusForbidden, "forbidden", "",
			"this API key (%s) lacks the %q scope this call needs", k.Prefix, scope)
	}
	return p, nil
}

// projectAdmin authorises the key endpoints of /v1/projects/{id}: the admin token, or a valid
// `manage` (writes) or `read` (list) key of that project. Another project's key gets 404.
func (s *Server) projectAdmin(h projectHandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var p *pb.Project
		tok := httpapi.BearerToken(r)
		if s.isAdmin(tok) {
			if p = s.reg.Project(id); p == nil {
				httpapi.WriteError(w, notFound("project", id))
				return
			}
		} else {
			kp, k := (*pb.Project)(nil), (*pb.ApiKey)(nil)
			if tok != "" {
				kp, k = s.reg.APIKey(tok, time.Now())
			}
			switch {
			case kp == nil:
				httpapi.WriteError(w, httpapi.Errorf(http.StatusUnauthorized, "unauthorized", "",
					"the admin token or a valid project API key with the manage scope is required"))
				return
			case kp.Id != id:
				httpapi.WriteError(w, notFound("project", id))
				return
			case !slices.Contains(k.Scopes, scopeFor(r)):
				httpapi.WriteError(w, httpapi.Errorf(http.StatusForbidden, "forbidden", "",
					"this API key (%s) lacks the %q scope this call needs", k.Prefix, scopeFor(r)))
				return
			}
			p = kp
		}
		s.idempotent(w, r, p.Id, func(w http.ResponseWriter, r *http.Request) {
			s.serve(w, r, func(w http.ResponseWriter, r *http.Request) error { return h(w, r, p) })
		})
	}
}

type keyOut struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Key       string     `json:"key,omitempty"` // only in the answer to the creation
	Prefix    string     `json:"prefix"`
	Scopes    []string   `json:"scopes"`
	Status    string     `json:"status"` // active, expired, revoked
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func msTime(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

func viewKey(k *pb.ApiKey, now time.Time) keyOut {
	status := "active"
	switch {
	case k.RevokedAtMs != 0:
		status = "revoked"
	case !registry.KeyValid(k, now):
		status = "expired"
	}
	return keyOut{ID: k.Id, Name: k.Name, Prefix: k.Prefix, Scopes: k.Scopes, Status: status,
		CreatedAt: time.UnixMilli(k.CreatedAtMs).UTC(), ExpiresAt: msTime(k.ExpiresAtMs), RevokedAt: msTime(k.RevokedAtMs)}
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	now := time.Now()
	out := []keyOut{}
	for _, k := range s.reg.Keys(p.Id) {
		out = append(out, viewKey(k, now))
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"data": out})
	return nil
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	body, err := httpapi.ReadJSONBody(r, maxBody)
	if err != nil {
		return err
	}
	var in struct {
		Name      string     `json:"name"`
		Scopes    []string   `json:"scopes"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if err := httpapi.DecodeStrict(body, &in); err != nil {
		return err
	}
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || len(in.Name) > 200 {
		return invalid("name", "name is required, at most 200 characters")
	}
	if len(in.Scopes) == 0 {
		return invalid("scopes", "scopes is required: one or more of %s", strings.Join(registry.AllScopes, ", "))
	}
	var scopes []string
	for i, sc := range in.Scopes {
		if !slices.Contains(registry.AllScopes, sc) {
			return invalid(fmt.Sprintf("scopes[%d]", i), "unknown scope %q; known: %s", sc, strings.Join(registry.AllScopes, ", "))
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	now := time.Now()
	var expires int64
	if in.ExpiresAt != nil {
		if !in.ExpiresAt.After(now) {
			return invalid("expires_at", "expires_at must be in the future")
		}
		expires = in.ExpiresAt.UnixMilli()
	}
	secret := secrets.NewAPIKey()
	k := &pb.ApiKey{Id: ids.New("key_"), Name: in.Name, Hash: secrets.HashAPIKey(secret), Prefix: secret[:10],
		Scopes: scopes, CreatedAtMs: now.UnixMilli(), ExpiresAtMs: expires}
	usable := 0
	for _, old := range s.reg.Keys(p.Id) {
		switch {
		case registry.KeyValid(old, now):
			usable++
		case old.Id != registry.PrimaryKeyID && stale(old, now):
			// Revoked or expired long ago: its record goes, so rotations do not pile up.
			if err := s.write(r.Context(), s.cfg.Kafka.Topics.Projects, registry.KeyRecord(p.Id, old.Id), nil); err != nil {
				return err
			}
		}
	}
	if usable >= maxKeys {
		return httpapi.Errorf(http.StatusConflict, "too_many_keys", "",
			"a project holds at most %d usable keys; revoke one first", maxKeys)
	}
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Projects, registry.KeyRecord(p.Id, k.Id), k); err != nil {
		return err
	}
	s.log.Info("api key created", "project_id", p.Id, "key_id", k.Id, "prefix", k.Prefix, "scopes", scopes)
	out := viewKey(k, now)
	out.Key = secret
	httpapi.WriteJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	id := r.PathValue("key_id")
	now := time.Now()
	unlock := s.locks.lock(registry.KeyRecord(p.Id, id))
	defer unlock()
	var cur *pb.ApiKey
	for _, k := range s.reg.Keys(p.Id) {
		if k.Id == id {
			cur = k
		}
	}
	if cur == nil {
		return notFound("key", id)
	}
	if cur.RevokedAtMs == 0 {
		// The record of a key is the key with its revocation time; the first key's record carries
		// only that (its hash lives in the project's own record).
		next := &pb.ApiKey{RevokedAtMs: now.UnixMilli()}
		if id != registry.PrimaryKeyID {
			next = proto.Clone(cur).(*pb.ApiKey)
			next.RevokedAtMs = now.UnixMilli()
		}
		if err := s.write(r.Context(), s.cfg.Kafka.Topics.Projects, registry.KeyRecord(p.Id, id), next); err != nil {
			return err
		}
		s.log.Info("api key revoked", "project_id", p.Id, "key_id", id)
		cur = proto.Clone(cur).(*pb.ApiKey)
		cur.RevokedAtMs = next.RevokedAtMs
	}
	httpapi.WriteJSON(w, http.StatusOK, viewKey(cur, now))
	return nil
}

// stale reports whether k was revoked or expired more than keptRevoked ago.
func stale(k *pb.ApiKey, now time.Time) bool {
	cut := now.Add(-keptRevoked).UnixMilli()
	return (k.RevokedAtMs != 0 && k.RevokedAtMs < cut) || (k.ExpiresAtMs != 0 && k.ExpiresAtMs < cut)
}
