package api

import (
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"

	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/ids"
	"github.com/surveyhooks/surveyhooks/pkg/operational"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Operational webhooks are the platform's own endpoints: they hear that a customer's webhook is
// failing, was disabled, recovered, or dead-lettered a delivery (operational.Catalogue).
// They are webhooks of the reserved project operational.PlatformProject, managed with the admin token
// only, so they travel the `webhooks` topic and are delivered — signed, retried, logged — by the
// same worker as every other webhook; the delivery service makes their deliveries (health.go).

// platform is the reserved project the handlers below act for.
var platform = &pb.Project{Id: operational.PlatformProject, Name: "operational webhooks"}

// operationalSpec is the body of POST /v1/operational-webhooks.
type operationalSpec struct {
	Name    string            `json:"name"`
	URL     string            `json:"url"`
	Events  []string          `json:"events"`
	Headers map[string]string `json:"headers"`
	Secret  *string           `json:"secret,omitempty"`
}

// operationalOut is what the admin sees of an operational webhook; the secret only at creation.
type operationalOut struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	URL            string            `json:"url"`
	Events         []string          `json:"events"`
	Enabled        bool              `json:"enabled"`
	DisabledReason string            `json:"disabled_reason,omitempty"`
	Headers        map[string]string `json:"headers"`
	Secret         string            `json:"secret,omitempty"`
	Secrets        []apiv1.Secret    `json:"secrets"`
	Revision       int64             `json:"revision"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
}

func (s *Server) operationalView(wh *pb.Webhook) operationalOut {
	v := s.view(wh)
	return operationalOut{ID: v.ID, Name: v.Name, URL: v.URL, Events: v.Events, Enabled: v.Enabled,
		DisabledReason: v.DisabledReason, Headers: v.Headers, Secrets: v.Secrets, Revision: v.Revision,
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt}
}

func (s *Server) createOperationalWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var in operationalSpec
	if err := httpapi.DecodeStrict(body, &in); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	wh := &pb.Webhook{Id: ids.New("wh_"), ProjectId: operational.PlatformProject, Enabled: true, PayloadVersion: envelope.DefaultVersion,
		RetryPolicy: "default", SignatureScheme: schemeV1, CreatedAtMs: now, UpdatedAtMs: now, Revision: 1}
	if err := applyOperational(wh, operationalEditable{Name: in.Name, URL: in.URL, Events: in.Events, Headers: in.Headers, Enabled: true}); err != nil {
		return err
	}
	secret, shown, err := newSigningSecret(schemeV1, in.Secret)
	if err != nil {
		return err
	}
	wh.Secrets = []*pb.Secret{{Sealed: s.box.Seal(secret), CreatedAtMs: now}}
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Webhooks, wh.Id, wh); err != nil {
		return err
	}
	s.log.Info("operational webhook created", "webhook_id", wh.Id)
	out := s.operationalView(wh)
	out.Secret = shown
	w.Header().Set("Location", "/v1/operational-webhooks/"+wh.Id)
	httpapi.WriteJSON(w, http.StatusCreated, out)
	return nil
}

// operationalEditable is what PATCH /v1/operational-webhooks/{id} merges into (RFC 7386); the
// secret changes through POST /v1/operational-webhooks/{id}/secrets/rotate.
type operationalEditable struct {
	Name    string            `json:"name"`
	URL     string            `json:"url"`
	Events  []string          `json:"events"`
	Headers map[string]string `json:"headers"`
	Enabled bool              `json:"enabled"`
}

// applyOperational validates e and sets it on wh, naming the first field that is wrong.
func applyOperational(wh *pb.Webhook, e operationalEditable) error {
	wh.Name, wh.Url = strings.TrimSpace(e.Name), strings.TrimSpace(e.URL)
	if wh.Name == "" {
		wh.Name = "operational webhook"
	}
	if len(wh.Name) > 200 {
		return invalid("name", "name is at most 200 characters")
	}
	if err := validateURL(wh.Url); err != nil {
		return err
	}
	if len(e.Events) == 0 {
		return invalid("events", "events must name at least one operational event type, or \"*\" for all; known: %s",
			strings.Join(operational.Types(), ", "))
	}
	wh.EventTypes = nil
	for i, t := range e.Events {
		t = strings.TrimSpace(t)
		if t != "*" && !operational.Known(t) {
			return invalid("events["+strconv.Itoa(i)+"]", "unknown operational event type %q; known: %s, or \"*\"",
				t, strings.Join(operational.Types(), ", "))
		}
		wh.EventTypes = append(wh.EventTypes, t)
	}
	wh.EventTypes = normaliseEvents(wh.EventTypes)
	wh.Headers = nil
	if len(e.Headers) > 0 {
		wh.Headers = map[string]string{}
		for k, v := range e.Headers {
			wh.Headers[http.CanonicalHeaderKey(strings.TrimSpace(k))] = v
		}
		if err := validateHeaders(wh.Headers); err != nil {
			return err
		}
	}
	wasEnabled := wh.Enabled
	wh.Enabled = e.Enabled
	if wh.Enabled || wasEnabled {
		wh.DisabledReason = "" // re-enabled, or switched off by hand: no reason
	}
	if wh.Enabled && !wasEnabled {
		wh.FailingSinceMs, wh.ConsecutiveFailures, wh.DisabledAtMs = 0, 0, 0 // the streak that disabled it is over
	}
	return nil
}

// patchOperationalWebhook merges the body into an operational webhook (JSON merge patch: members
// not given stay; headers merge by name, a header set to null is removed).
func (s *Server) patchOperationalWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var probe struct {
		operationalEditable
		Secret *string `json:"secret"`
	}
	if err := httpapi.DecodeStrict(body, &probe); err != nil { // names and types, before anything merges
		return err
	}
	if probe.Secret != nil {
		return invalid("secret", "secrets change through POST /v1/operational-webhooks/{id}/secrets/rotate")
	}
	editable := func(wh *pb.Webhook) any {
		return operationalEditable{Name: wh.Name, URL: wh.Url, Events: wh.EventTypes, Headers: wh.Headers, Enabled: wh.Enabled}
	}
	wh, err := s.mergePatch(r, platform, body, editable, func(wh *pb.Webhook, merged []byte) error {
		var e operationalEditable
		if err := httpapi.DecodeStrict(merged, &e); err != nil {
			return err
		}
		return applyOperational(wh, e)
	})
	if err != nil {
		return err
	}
	s.log.Info("operational webhook updated", "webhook_id", wh.Id, "revision", wh.Revision)
	httpapi.WriteJSON(w, http.StatusOK, s.operationalView(wh))
	return nil
}

// rotateOperationalSecret adds a new signing secret to an operational webhook; the previous ones
// keep signing beside it until they expire (expire_previous_in_s, 24 h by default), as for a
// customer's webhook.
func (s *Server) rotateOperationalSecret(w http.ResponseWriter, r *http.Request) error {
	wh, shown, err := s.rotate(r, platform)
	if err != nil {
		return err
	}
	out := s.operationalView(wh)
	if wh.SignatureScheme != schemeV1a { // an asymmetric key's public half is in secrets
		out.Secret = shown
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listOperationalWebhooks(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	whs := slices.Clone(s.reg.Webhooks(operational.PlatformProject))
	slices.SortFunc(whs, func(a, b *pb.Webhook) int {
		return cmp.Or(cmp.Compare(a.CreatedAtMs, b.CreatedAtMs), strings.Compare(a.Id, b.Id))
	})
	out := make([]operationalOut, 0, len(whs))
	for _, wh := range whs {
		out = append(out, s.operationalView(wh))
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"data": out})
	return nil
}

func (s *Server) getOperationalWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	wh, err := s.owned(r.PathValue("id"), platform)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, s.operationalView(wh))
	return nil
}

func (s *Server) deleteOperationalWebhook(w http.ResponseWriter, r *http.Request) error {
	return s.deleteWebhook(w, r, platform)
}
