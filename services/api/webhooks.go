package api

import (
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// maxSecrets is how many secrets a webhook holds during rotations.
const maxSecrets = 3

// webhookIn is a create or PATCH body; nil fields are left as they are.
type webhookIn struct {
	Name              *string            `json:"name"`
	Description       *string            `json:"description"`
	URL               *string            `json:"url"`
	Events            *[]string          `json:"events"`
	EventToggles      map[string]bool    `json:"event_toggles"`
	Enabled           *bool              `json:"enabled"`
	Secret            *string            `json:"secret"`
	UserProperties    *[]string          `json:"user_properties"`
	CompanyProperties *[]string          `json:"company_properties"`
	PayloadVersion    *string            `json:"payload_version"`
	Filter            *string            `json:"filter"`
	Transform         *string            `json:"transform"`
	Format            *string            `json:"format"`
	RateLimitPerS     *float64           `json:"rate_limit_per_s"`
	Headers           map[string]*string `json:"headers"`
}

type secretOut struct {
	Fingerprint string     `json:"fingerprint"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

type webhookOut struct {
	ID                string            `json:"id"`
	ProjectID         string            `json:"project_id"`
	Name              string            `json:"name"`
	Description       string            `json:"description,omitempty"`
	URL               string            `json:"url"`
	Events            []string          `json:"events"`
	EventToggles      map[string]bool   `json:"event_toggles,omitempty"`
	Enabled           bool              `json:"enabled"`
	DisabledReason    string            `json:"disabled_reason,omitempty"`
	Secret            string            `json:"secret,omitempty"` // only right after it was generated or rotated
	Secrets           []secretOut       `json:"secrets"`
	UserProperties    []string          `json:"user_properties"`
	CompanyProperties []string          `json:"company_properties"`
	PayloadVersion    string            `json:"payload_version"`
	Filter            string            `json:"filter,omitempty"`
	Transform         string            `json:"transform,omitempty"`
	Format            string            `json:"format,omitempty"`
	RateLimitPerS     float64           `json:"rate_limit_per_s"`
	Headers           map[string]string `json:"headers,omitempty"`
	Revision          int64             `json:"revision"`
	CreatedAt         time.Time         `json:"created_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
}

func viewWebhook(wh *pb.Webhook) webhookOut {
	out := webhookOut{ID: wh.Id, ProjectID: wh.ProjectId, Name: wh.Name, Description: wh.Description, URL: wh.Url,
		Events: wh.EventTypes, EventToggles: wh.EventToggles, Enabled: wh.Enabled, DisabledReason: wh.DisabledReason,
		Secrets: []secretOut{}, UserProperties: nonNil(wh.UserProperties), CompanyProperties: nonNil(wh.CompanyProperties),
		PayloadVersion: wh.PayloadVersion, Filter: wh.Filter, Transform: wh.Transform, Format: wh.Format,
		RateLimitPerS: wh.RateLimitPerS, Headers: wh.Headers, Revision: wh.Revision,
		CreatedAt: time.UnixMilli(wh.CreatedAtMs).UTC(), UpdatedAt: time.UnixMilli(wh.UpdatedAtMs).UTC()}
	for _, sc := range wh.Secrets {
		so := secretOut{Fingerprint: fingerprint(sc.Sealed), CreatedAt: time.UnixMilli(sc.CreatedAtMs).UTC()}
		if sc.ExpiresAtMs > 0 {
			t := time.UnixMilli(sc.ExpiresAtMs).UTC()
			so.ExpiresAt = &t
		}
		out.Secrets = append(out.Secrets, so)
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) decodeWebhook(r *http.Request) (*webhookIn, error) {
	body, err := httpapi.ReadJSONBody(r, maxBody)
	if err != nil {
		return nil, err
	}
	in := &webhookIn{}
	if err := httpapi.DecodeStrict(body, in); err != nil {
		return nil, err
	}
	return in, nil
}

func invalid(field, format string, args ...any) error {
	return httpapi.Errorf(http.StatusBadRequest, "invalid_field", field, format, args...)
}

// apply copies in's set fields onto wh and validates the result; it returns the new secret when
// one was given or must be generated.
func (s *Server) apply(wh *pb.Webhook, in *webhookIn, creating bool) (newSecret string, err error) {
	if in.Name != nil {
		wh.Name = strings.TrimSpace(*in.Name)
	}
	if in.Description != nil {
		wh.Description = *in.Description
	}
	if in.URL != nil {
		wh.Url = strings.TrimSpace(*in.URL)
	}
	if in.Events != nil {
		wh.EventTypes = slices.Compact(slices.Sorted(slices.Values(*in.Events)))
	}
	if in.EventToggles != nil {
		if wh.EventToggles == nil {
			wh.EventToggles = map[string]bool{}
		}
		for k, v := range in.EventToggles {
			wh.EventToggles[k] = v
		}
	}
	if in.Enabled != nil {
		wh.Enabled = *in.Enabled
		if wh.Enabled {
			wh.DisabledReason = ""
		}
	}
	if in.UserProperties != nil {
		wh.UserProperties = *in.UserProperties
	}
	if in.CompanyProperties != nil {
		wh.CompanyProperties = *in.CompanyProperties
	}
	if in.PayloadVersion != nil {
		wh.PayloadVersion = *in.PayloadVersion
	}
	if in.Filter != nil {
		wh.Filter = strings.TrimSpace(*in.Filter)
	}
	if in.Transform != nil {
		wh.Transform = strings.TrimSpace(*in.Transform)
	}
	if in.Format != nil {
		wh.Format = *in.Format
	}
	if in.RateLimitPerS != nil {
		wh.RateLimitPerS = *in.RateLimitPerS
	}
	if in.Headers != nil {
		if wh.Headers == nil {
			wh.Headers = map[string]string{}
		}
		for k, v := range in.Headers {
			if v == nil {
				delete(wh.Headers, k)
			} else {
				wh.Headers[textproto.CanonicalMIMEHeaderKey(k)] = *v
			}
		}
	}
	if in.Secret != nil {
		if err := secrets.ValidateWebhookSecret(*in.Secret); err != nil {
			return "", invalid("secret", "secret %v", err)
		}
		newSecret = *in.Secret
	} else if creating {
		newSecret = secrets.NewWebhookSecret()
	}
	return newSecret, validateWebhook(wh)
}

func validateWebhook(wh *pb.Webhook) error {
	if wh.Name == "" || len(wh.Name) > 200 {
		return invalid("name", "name is required, at most 200 characters")
	}
	if len(wh.Description) > 2000 {
		return invalid("description", "description is at most 2000 characters")
	}
	u, err := url.Parse(wh.Url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(wh.Url) > 2048 {
		return invalid("url", "url must be an absolute http or https URL of at most 2048 characters, got %q", wh.Url)
	}
	if u.User != nil {
		return invalid("url", "url must not carry credentials; use headers instead")
	}
	if len(wh.EventTypes) == 0 {
		return invalid("events", "events must name at least one event type, or \"*\"")
	}
	for i, t := range wh.EventTypes {
		if t != "*" && !envelope.KnownEventType(t) {
			return invalid(fmt.Sprintf("events[%d]", i), "unknown event type %q; known: %s", t, strings.Join(envelope.EventTypes, ", "))
		}
	}
	for t := range wh.EventToggles {
		if !envelope.KnownEventType(t) {
			return invalid("event_toggles."+t, "unknown event type %q", t)
		}
	}
	if n := len(wh.UserProperties) + len(wh.CompanyProperties); n > envelope.MaxProperties {
		return invalid("user_properties", "at most %d user and company properties in total, got %d", envelope.MaxProperties, n)
	}
	for i, p := range append(slices.Clone(wh.UserProperties), wh.CompanyProperties...) {
		if strings.TrimSpace(p) == "" || len(p) > 200 {
			return invalid(fmt.Sprintf("properties[%d]", i), "property names must be 1 to 200 characters")
		}
	}
	if wh.PayloadVersion == "" {
		wh.PayloadVersion = envelope.DefaultVersion
	}
	if !slices.Contains(envelope.Versions, wh.PayloadVersion) {
		return invalid("payload_version", "unknown payload version %q; available: %s", wh.PayloadVersion, strings.Join(envelope.Versions, ", "))
	}
	if err := validateExpressions(wh); err != nil {
		return err
	}
	if wh.RateLimitPerS < 0 || wh.RateLimitPerS > 100000 {
		return invalid("rate_limit_per_s", "rate_limit_per_s must be between 0 (unlimited) and 100000")
	}
	for k := range wh.Headers {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "webhook-") || slices.Contains([]string{"x-webhook-signature", "content-type", "content-length",
			"host", "connection", "transfer-encoding", "te", "upgrade", "keep-alive", "proxy-authorization", "trailer"}, lk) {
			return invalid("headers."+k, "header %q is set by surveyhooks and cannot be overridden", k)
		}
	}
	return nil
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	in, err := s.decodeWebhook(r)
	if err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	wh := &pb.Webhook{Id: newID("wh_"), ProjectId: p.Id, Enabled: true, CreatedAtMs: now, UpdatedAtMs: now, Revision: 1}
	if in.URL == nil {
		return invalid("url", "url is required")
	}
	if in.Events == nil {
		return invalid("events", "events is required")
	}
	secret, err := s.apply(wh, in, true)
	if err != nil {
		return err
	}
	wh.Secrets = []*pb.Secret{{Sealed: s.box.Seal(secret), CreatedAtMs: now}}
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Webhooks, wh.Id, wh); err != nil {
		return err
	}
	out := viewWebhook(wh)
	out.Secret = secret
	httpapi.WriteJSON(w, http.StatusCreated, out)
	return nil
}

// owned returns the project's webhook id, or a 404 — also for another project's webhook.
func (s *Server) owned(id string, p *pb.Project) (*pb.Webhook, error) {
	wh := s.reg.Webhook(id)
	if wh == nil || wh.ProjectId != p.Id {
		return nil, notFound("webhook", id)
	}
	return wh, nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	out := []webhookOut{}
	for _, wh := range s.reg.Webhooks(p.Id) {
		out = append(out, viewWebhook(wh))
	}
	slices.SortFunc(out, func(a, b webhookOut) int { return a.CreatedAt.Compare(b.CreatedAt) })
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"data": out})
	return nil
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	wh, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, viewWebhook(wh))
	return nil
}

func (s *Server) patchWebhook(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	cur, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	in, err := s.decodeWebhook(r)
	if err != nil {
		return err
	}
	if in.Secret != nil {
		return invalid("secret", "secrets change through POST /v1/webhooks/{id}/secrets/rotate")
	}
	wh := proto.Clone(cur).(*pb.Webhook)
	if _, err := s.apply(wh, in, false); err != nil {
		return err
	}
	wh.Revision++
	wh.UpdatedAtMs = time.Now().UnixMilli()
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Webhooks, wh.Id, wh); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, viewWebhook(wh))
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	wh, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Webhooks, wh.Id, nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	cur, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	var in struct {
		Secret            *string `json:"secret"`
		ExpirePreviousInS *int64  `json:"expire_previous_in_s"`
	}
	if body, err := httpapi.ReadJSONBody(r, maxBody); err != nil {
		return err
	} else if len(strings.TrimSpace(string(body))) > 0 {
		if err := httpapi.DecodeStrict(body, &in); err != nil {
			return err
		}
	}
	secret := secrets.NewWebhookSecret()
	if in.Secret != nil {
		if err := secrets.ValidateWebhookSecret(*in.Secret); err != nil {
			return invalid("secret", "secret %v", err)
		}
		secret = *in.Secret
	}
	expireIn := int64(24 * 3600)
	if in.ExpirePreviousInS != nil {
		if *in.ExpirePreviousInS < 0 || *in.ExpirePreviousInS > 30*24*3600 {
			return invalid("expire_previous_in_s", "expire_previous_in_s must be between 0 and 2592000 (30 days)")
		}
		expireIn = *in.ExpirePreviousInS
	}
	now := time.Now().UnixMilli()
	wh := proto.Clone(cur).(*pb.Webhook)
	for _, sc := range wh.Secrets {
		if sc.ExpiresAtMs == 0 || sc.ExpiresAtMs > now+expireIn*1000 {
			sc.ExpiresAtMs = now + expireIn*1000
		}
	}
	wh.Secrets = append([]*pb.Secret{{Sealed: s.box.Seal(secret), CreatedAtMs: now}}, wh.Secrets...)
	wh.Secrets = slices.DeleteFunc(wh.Secrets, func(sc *pb.Secret) bool { return sc.ExpiresAtMs != 0 && sc.ExpiresAtMs <= now })
	if len(wh.Secrets) > maxSecrets {
		wh.Secrets = wh.Secrets[:maxSecrets]
	}
	wh.Revision++
	wh.UpdatedAtMs = now
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Webhooks, wh.Id, wh); err != nil {
		return err
	}
	out := viewWebhook(wh)
	out.Secret = secret
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}
