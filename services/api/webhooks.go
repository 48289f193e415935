package api

import (
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"

	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/ids"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

const (
	// maxSecrets is how many secrets a webhook holds during rotations; the oldest go first.
	maxSecrets = 3
	// defaultExpirePrevious is how long the previous secrets keep signing after a rotation.
	defaultExpirePrevious = 24 * time.Hour
	maxExpirePrevious     = 30 * 24 * time.Hour
	maxURLLength          = 2048
	maxHeaders            = 20
)

// retryPolicies are the delivery worker's retry presets (services/delivery/policy.go).
var retryPolicies = []string{"default", "screeb", "askusers", "segmanta"}

// webhookSpec is what a webhook's owner edits: the body of a creation, and — as a JSON document —
// what a PATCH is merged into (RFC 7386: a member set to null returns to its default).
type webhookSpec struct {
	Name              string              `json:"name"`
	Description       string              `json:"description"`
	URL               string              `json:"url"`
	Events            []string            `json:"events"`
	EventToggles      map[string]bool     `json:"event_toggles"`
	Enabled           *bool               `json:"enabled"` // default true
	UserProperties    []string            `json:"user_properties"`
	CompanyProperties []string            `json:"company_properties"`
	PayloadVersion    string              `json:"payload_version"`
	Filter            string              `json:"filter"`
	Transform         string              `json:"transform"`
	Format            string              `json:"format"`
	RateLimitPerS     float64             `json:"rate_limit_per_s"`
	RetryClientErrors bool                `json:"retry_client_errors"`
	RetryPolicy       string              `json:"retry_policy"`
	Headers           map[string]string   `json:"headers"`
	Masking           []apiv1.MaskingRule `json:"masking"`
	// SignatureScheme is "v1" (HMAC, the default) or "v1a" (ed25519); it is chosen at creation and
	// changed only by a rotation, which makes the new scheme's key.
	SignatureScheme string `json:"signature_scheme"`
	// ClientCertificate (PEM) is presented to receivers that ask for one (mTLS); ClientKey, its PEM
	// private key, is taken with it and sealed — never part of a stored spec, never shown.
	ClientCertificate string  `json:"client_certificate"`
	ClientKey         *string `json:"client_key,omitempty"`
	// Secret is taken on creation only (rotation has its own endpoint); never part of a stored spec.
	Secret *string `json:"secret,omitempty"`

	// Ordering is "" (none) or "respondent": one respondent's deliveries arrive in order
	// (docs/ordering.md).
	Ordering string `json:"ordering"`
}

func specOf(wh *pb.Webhook) webhookSpec {
	enabled := wh.Enabled
	return webhookSpec{Name: wh.Name, Description: wh.Description, URL: wh.Url, Events: wh.EventTypes,
		EventToggles: wh.EventToggles, Enabled: &enabled, UserProperties: wh.UserProperties,
		CompanyProperties: wh.CompanyProperties, PayloadVersion: wh.PayloadVersion, Filter: wh.Filter,
		Transform: wh.Transform, Format: wh.Format, RateLimitPerS: wh.RateLimitPerS, Headers: wh.Headers,
		RetryClientErrors: wh.RetryClientErrors, RetryPolicy: wh.RetryPolicy, Ordering: wh.Ordering,
		SignatureScheme: cmp.Or(wh.SignatureScheme, schemeV1), ClientCertificate: wh.ClientCertificate, Masking: maskingOut(wh.Masking)}
}

// Bounds of an mTLS client certificate (a chain) and its key, in PEM.
const (
	maxClientCertificate = 16 << 10
	maxClientKey         = 8 << 10
)

// applyClientCertificate sets, keeps or removes the webhook's client certificate. A new
// certificate needs its key; the key is checked against it and sealed.
func (s *Server) applyClientCertificate(wh *pb.Webhook, spec webhookSpec) error {
	cert := strings.TrimSpace(spec.ClientCertificate)
	switch {
	case cert == "":
		if spec.ClientKey != nil && *spec.ClientKey != "" {
			return invalid("client_key", "client_key is given only with client_certificate")
		}
		wh.ClientCertificate, wh.ClientKeySealed = "", nil
		return nil
	case spec.ClientKey == nil:
		if cert != wh.ClientCertificate {
			return invalid("client_key", "client_key (PEM private key) must be given with a new client_certificate")
		}
		return nil
	}
	if len(cert) > maxClientCertificate {
		return invalid("client_certificate", "client_certificate must be at most %d bytes", maxClientCertificate)
	}
	if _, err := clientCertificateExpiry(cert); err != nil {
		return invalid("client_certificate", "client_certificate must be a PEM certificate: %v", err)
	}
	key := *spec.ClientKey
	if len(key) > maxClientKey {
		return invalid("client_key", "client_key must be at most %d bytes", maxClientKey)
	}
	if _, err := tls.X509KeyPair([]byte(cert), []byte(key)); err != nil {
		// Never echo the key: say what is wrong, not what was given.
		return invalid("client_key", "client_key must be the PEM private key of client_certificate")
	}
	wh.ClientCertificate, wh.ClientKeySealed = cert, s.box.Seal(key)
	return nil
}

// clientCertificateExpiry is the NotAfter of the first certificate in a PEM chain.
func clientCertificateExpiry(certPEM string) (time.Time, error) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil || block.Type != "CERTIFICATE" {
		return time.Time{}, errors.New("no CERTIFICATE block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter.UTC(), nil
}

// Signature schemes (Standard Webhooks): v1 signs with an HMAC secret, v1a with an ed25519 key.
const (
	schemeV1  = "v1"
	schemeV1a = "v1a"
)

// newSigningSecret makes what a new or rotated secret of the scheme seals: a "whsec_…" secret
// (or the one given) for v1, a "whsk_…" private key for v1a. shown is what the answer may
// carry: the secret for v1, the "whpk_…" public key for v1a — never the private key.
func newSigningSecret(scheme string, given *string) (sealed, shown string, err error) {
	if scheme == schemeV1a {
		if given != nil {
			return "", "", invalid("secret", "a v1a webhook's ed25519 key pair is generated: secret applies to v1 only")
		}
		private, public := secrets.NewSigningKey()
		return private, public, nil
	}
	secret := secrets.NewWebhookSecret()
	if given != nil {
		if err := secrets.ValidateWebhookSecret(*given); err != nil {
			return "", "", invalid("secret", "secret %v", err)
		}
		secret = *given
	}
	return secret, secret, nil
}

func validScheme(scheme string) (string, error) {
	switch scheme {
	case "", schemeV1:
		return "", nil // stored as the default
	case schemeV1a:
		return schemeV1a, nil
	}
	return "", invalid("signature_scheme", "signature_scheme must be %q (HMAC-SHA256) or %q (ed25519)", schemeV1, schemeV1a)
}

// view is what a client sees of a webhook: never a secret, only each unexpired secret's metadata.
func (s *Server) view(wh *pb.Webhook) apiv1.Webhook {
	out := apiv1.Webhook{ID: wh.Id, ProjectID: wh.ProjectId, Name: wh.Name, Description: wh.Description, URL: wh.Url,
		Events: nonNil(wh.EventTypes), EventToggles: wh.EventToggles, Enabled: wh.Enabled,
		DisabledReason: wh.DisabledReason, Secrets: []apiv1.Secret{}, UserProperties: nonNil(wh.UserProperties),
		CompanyProperties: nonNil(wh.CompanyProperties), PayloadVersion: wh.PayloadVersion, Filter: wh.Filter,
		Transform: wh.Transform, Format: wh.Format, RateLimitPerS: wh.RateLimitPerS, Headers: wh.Headers,
		RetryClientErrors: wh.RetryClientErrors, RetryPolicy: cmp.Or(wh.RetryPolicy, "default"), Ordering: wh.Ordering, SignatureScheme: cmp.Or(wh.SignatureScheme, schemeV1), Revision: wh.Revision, CreatedAt: time.UnixMilli(wh.CreatedAtMs).UTC(), UpdatedAt: time.UnixMilli(wh.UpdatedAtMs).UTC()}
	if out.EventToggles == nil {
		out.EventToggles = map[string]bool{}
	}
	if out.Headers == nil {
		out.Headers = map[string]string{}
	}
	out.Masking = maskingOut(wh.Masking)
	if wh.FailingSinceMs != 0 {
		since := time.UnixMilli(wh.FailingSinceMs).UTC()
		out.FailingSince, out.ConsecutiveFailures = &since, wh.ConsecutiveFailures
	}
	if wh.ClientCertificate != "" {
		out.ClientCertificate = wh.ClientCertificate
		if exp, err := clientCertificateExpiry(wh.ClientCertificate); err == nil {
			out.ClientCertificateExpiresAt = &exp
		}
	}
	now := time.Now().UnixMilli()
	for _, sc := range wh.Secrets {
		if sc.ExpiresAtMs != 0 && sc.ExpiresAtMs <= now {
			continue // no longer signs
		}
		fp, public := s.fingerprint(sc.Sealed)
		so := apiv1.Secret{Fingerprint: fp, PublicKey: public, CreatedAt: time.UnixMilli(sc.CreatedAtMs).UTC()}
		if out.PublicKey == "" {
			out.PublicKey = public
		}
		if sc.ExpiresAtMs > 0 {
			t := time.UnixMilli(sc.ExpiresAtMs).UTC()
			so.ExpiresAt = &t
		}
		out.Secrets = append(out.Secrets, so)
	}
	return out
}

// fingerprint tells secrets apart without revealing them: the first 6 bytes of the SHA-256 of
// what the subscriber holds — the secret, or for a v1a key the "whpk_…" public key, which is
// returned too.
func (s *Server) fingerprint(sealed []byte) (fingerprint, public string) {
	secret, err := s.box.Open(sealed)
	if err != nil {
		return "unreadable", ""
	}
	if strings.HasPrefix(secret, secrets.SigningKeyPrefix) {
		if public, err = secrets.PublicKeyOf(secret); err != nil {
			return "unreadable", ""
		}
		secret = public
	}
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:6]), public
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// readObject reads a request body that must be one JSON object.
func readObject(r *http.Request) ([]byte, error) {
	body, err := httpapi.ReadJSONBody(r, maxBody)
	if err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] != '{' {
		return nil, httpapi.Errorf(http.StatusBadRequest, "invalid_json", "", "the request body must be a JSON object")
	}
	return body, nil
}

// apply sets wh's editable fields from spec, normalised, and validates the result.
func (s *Server) apply(wh *pb.Webhook, spec webhookSpec) error {
	wasEnabled := wh.Enabled
	wh.Name = strings.TrimSpace(spec.Name)
	wh.Description = spec.Description
	wh.Url = strings.TrimSpace(spec.URL)
	wh.EventTypes = normaliseEvents(spec.Events)
	wh.EventToggles = spec.EventToggles
	wh.Enabled = spec.Enabled == nil || *spec.Enabled
	if wh.Enabled || wasEnabled {
		// Re-enabling clears why it was switched off (e.g. "gone" after a 410); a manual disable has no reason.
		wh.DisabledReason = ""
	}
	if wh.Enabled && !wasEnabled {
		// Re-enabled: the failing streak that disabled it is over (services/delivery/health.go).
		wh.FailingSinceMs, wh.ConsecutiveFailures, wh.DisabledAtMs = 0, 0, 0
	}
	wh.UserProperties = spec.UserProperties
	wh.CompanyProperties = spec.CompanyProperties
	wh.PayloadVersion = spec.PayloadVersion
	if wh.PayloadVersion == "" {
		wh.PayloadVersion = envelope.DefaultVersion
	}
	wh.Filter = strings.TrimSpace(spec.Filter)
	wh.Transform = strings.TrimSpace(spec.Transform)
	wh.Format = spec.Format
	wh.RateLimitPerS = spec.RateLimitPerS
	wh.RetryClientErrors = spec.RetryClientErrors
	wh.RetryPolicy = spec.RetryPolicy
	if wh.RetryPolicy == "" {
		wh.RetryPolicy = "default"
	}
	wh.Ordering = strings.TrimSpace(spec.Ordering)
	wh.Masking = maskingIn(spec.Masking)
	wh.Headers = nil
	if len(spec.Headers) > 0 {
		wh.Headers = make(map[string]string, len(spec.Headers))
		for k, v := range spec.Headers {
			ck := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))
			if _, dup := wh.Headers[ck]; dup {
				return invalid("headers."+ck, "header %q is given twice (names are case-insensitive)", ck)
			}
			wh.Headers[ck] = v
		}
	}
	if err := s.applyClientCertificate(wh, spec); err != nil {
		return err
	}
	return validateWebhook(wh)
}

// normaliseEvents sorts and de-duplicates; "*" subsumes every other type.
func normaliseEvents(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, 0, len(in))
	for _, t := range in {
		t = strings.TrimSpace(t)
		if t == "*" {
			return []string{"*"}
		}
		out = append(out, t)
	}
	return slices.Compact(slices.Sorted(slices.Values(out)))
}

// orderingRespondent is the one ordering a webhook may ask for: each respondent's deliveries in
// the order ingest accepted the events (docs/ordering.md).
const orderingRespondent = "respondent"

// validateWebhook checks a normalised webhook; the error names the offending field.
func validateWebhook(wh *pb.Webhook) error {
	if wh.Name == "" || len(wh.Name) > 200 {
		return invalid("name", "name is required, at most 200 characters")
	}
	if len(wh.Description) > 2000 {
		return invalid("description", "description is at most 2000 characters")
	}
	if err := validateURL(wh.Url); err != nil {
		return err
	}
	if len(wh.EventTypes) == 0 {
		return invalid("events", "events must name at least one event type, or \"*\" for all; known: %s",
			strings.Join(envelope.EventTypes, ", "))
	}
	for i, t := range wh.EventTypes {
		if t != "*" && !envelope.KnownEventType(t) {
			return invalid(fmt.Sprintf("events[%d]", i), "unknown event type %q; known: %s, or \"*\"",
				t, strings.Join(envelope.EventTypes, ", "))
		}
	}
	for t := range wh.EventToggles {
		if !envelope.KnownEventType(t) {
			return invalid("event_toggles."+t, "unknown event type %q", t)
		}
	}
	if err := validateProperties(wh); err != nil {
		return err
	}
	if !slices.Contains(envelope.Versions, wh.PayloadVersion) {
		return invalid("payload_version", "unknown payload version %q; available: %s",
			wh.PayloadVersion, strings.Join(envelope.Versions, ", "))
	}
	if err := validateExpressions(wh); err != nil {
		return err
	}
	if err := validateMasking("masking", wh.Masking); err != nil {
		return err
	}
	if wh.RateLimitPerS < 0 || wh.RateLimitPerS > 100000 {
		return invalid("rate_limit_per_s", "rate_limit_per_s must be between 0 (unlimited) and 100000, got %v", wh.RateLimitPerS)
	}
	if !slices.Contains(retryPolicies, wh.RetryPolicy) {
		return invalid("retry_policy", "unknown retry policy %q; available: %s", wh.RetryPolicy, strings.Join(retryPolicies, ", "))
	}
	if wh.Ordering != "" && wh.Ordering != orderingRespondent {
		return invalid("ordering", "unknown ordering %q; available: \"\" (none), %q", wh.Ordering, orderingRespondent)
	}
	return validateHeaders(wh.Headers)
}

func validateURL(raw string) error {
	if raw == "" {
		return invalid("url", "url is required")
	}
	if len(raw) > maxURLLength {
		return invalid("url", "url is at most %d characters, got %d", maxURLLength, len(raw))
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Opaque != "" {
		return invalid("url", "url must be an absolute http or https URL, got %q", raw)
	}
	if u.User != nil {
		return invalid("url", "url must not carry credentials; put them in headers instead")
	}
	// url.Parse only checks that a port is digits; an impossible one would fail only at delivery.
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return invalid("url", "url port must be between 1 and 65535, got %s", port)
		}
	}
	return nil
}

func validateProperties(wh *pb.Webhook) error {
	if n := len(wh.UserProperties) + len(wh.CompanyProperties); n > envelope.MaxProperties {
		return invalid("user_properties", "at most %d user_properties and company_properties in total, got %d",
			envelope.MaxProperties, n)
	}
	for _, list := range []struct {
		field string
		names []string
	}{{"user_properties", wh.UserProperties}, {"company_properties", wh.CompanyProperties}} {
		field, names := list.field, list.names
		for i, p := range names {
			if strings.TrimSpace(p) == "" || len(p) > 200 {
				return invalid(fmt.Sprintf("%s[%d]", field, i), "property names are 1 to 200 characters")
			}
			if slices.Index(names, p) != i {
				return invalid(fmt.Sprintf("%s[%d]", field, i), "property %q is listed twice", p)
			}
		}
	}
	return nil
}

// reservedHeaders are set by surveyhooks or by HTTP itself (hop-by-hop): a webhook cannot set them.
var reservedHeaders = []string{"x-webhook-signature", "content-type", "content-length", "host", "connection",
	"keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer", "trailers",
	"transfer-encoding", "upgrade"}

func validateHeaders(h map[string]string) error {
	if len(h) > maxHeaders {
		return invalid("headers", "at most %d headers, got %d", maxHeaders, len(h))
	}
	for k, v := range h {
		lk := strings.ToLower(k)
		switch {
		case !httpguts.ValidHeaderFieldName(k):
			return invalid("headers."+k, "%q is not a valid header name", k)
		case strings.HasPrefix(lk, "webhook-") || slices.Contains(reservedHeaders, lk):
			return invalid("headers."+k, "header %q is set by surveyhooks or by HTTP and cannot be configured", k)
		case len(v) > 4096:
			return invalid("headers."+k, "header values are at most 4096 characters")
		case !httpguts.ValidHeaderFieldValue(v):
			return invalid("headers."+k, "header values must not contain control characters")
		}
	}
	return nil
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var in webhookSpec
	if err := httpapi.DecodeStrict(body, &in); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	wh := &pb.Webhook{Id: ids.New("wh_"), ProjectId: p.Id, CreatedAtMs: now, UpdatedAtMs: now, Revision: 1}
	if wh.SignatureScheme, err = validScheme(in.SignatureScheme); err != nil {
		return err
	}
	secret, shown, err := newSigningSecret(wh.SignatureScheme, in.Secret)
	if err != nil {
		return err
	}
	if err := s.apply(wh, in); err != nil {
		return err
	}
	wh.Secrets = []*pb.Secret{{Sealed: s.box.Seal(secret), CreatedAtMs: now}}
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Webhooks, wh.Id, wh); err != nil {
		return err
	}
	s.log.Info("webhook created", "project_id", p.Id, "webhook_id", wh.Id)
	out := s.view(wh)
	if wh.SignatureScheme != schemeV1a {
		out.Secret = shown
	}
	w.Header().Set("Location", "/v1/webhooks/"+wh.Id)
	httpapi.WriteJSON(w, http.StatusCreated, out)
	return nil
}

// owned returns the project's webhook, or a 404 — the same 404 for another project's webhook, so
// ids do not leak across projects.
func (s *Server) owned(id string, p *pb.Project) (*pb.Webhook, error) {
	wh := s.reg.Webhook(id)
	if wh == nil || wh.ProjectId != p.Id {
		return nil, notFound("webhook", id)
	}
	return wh, nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	whs := slices.Clone(s.reg.Webhooks(p.Id))
	slices.SortFunc(whs, func(a, b *pb.Webhook) int {
		return cmp.Or(cmp.Compare(a.CreatedAtMs, b.CreatedAtMs), strings.Compare(a.Id, b.Id))
	})
	out := make([]apiv1.Webhook, 0, len(whs))
	for _, wh := range whs {
		out = append(out, s.view(wh))
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"data": out})
	return nil
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	wh, err := s.owned(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, s.view(wh))
	return nil
}

// modify runs a read-modify-write of one webhook: serialised with other changes to it in this
// process, on the latest record in the topic (the delivery service writes too: a 410 disables).
func (s *Server) modify(r *http.Request, p *pb.Project, change func(wh *pb.Webhook) error) (*pb.Webhook, error) {
	id := r.PathValue("id")
	unlock := s.locks.lock(id)
	defer unlock()
	if err := s.reg.WaitFresh(r.Context()); err != nil {
		return nil, fmt.Errorf("reading the latest webhooks: %w", err)
	}
	cur, err := s.owned(id, p)
	if err != nil {
		return nil, err
	}
	wh := proto.Clone(cur).(*pb.Webhook)
	if err := change(wh); err != nil {
		return nil, err
	}
	if proto.Equal(wh, cur) {
		return cur, nil // nothing changed: no new revision for fan-out and delivery to apply
	}
	wh.Revision = cur.Revision + 1
	wh.UpdatedAtMs = max(time.Now().UnixMilli(), cur.UpdatedAtMs)
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Webhooks, wh.Id, wh); err != nil {
		return nil, err
	}
	return wh, nil
}

// patchWebhook merges the body into the webhook (JSON merge patch: members not given stay, members
// set to null return to their defaults, objects such as headers and event_toggles merge by key).
func (s *Server) patchWebhook(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var typed webhookSpec // checks names and types before anything merges
	if err := httpapi.DecodeStrict(body, &typed); err != nil {
		return err
	}
	if typed.Secret != nil {
		return invalid("secret", "secrets change through POST /v1/webhooks/{id}/secrets/rotate")
	}
	wh, err := s.mergePatch(r, p, body, func(wh *pb.Webhook) any { return specOf(wh) }, func(wh *pb.Webhook, merged []byte) error {
		var spec webhookSpec
		if err := httpapi.DecodeStrict(merged, &spec); err != nil {
			return err
		}
		if scheme, err := validScheme(spec.SignatureScheme); err != nil {
			return err
		} else if scheme != wh.SignatureScheme {
			return invalid("signature_scheme", "signature_scheme changes through POST /v1/webhooks/{id}/secrets/rotate, which makes the new scheme's key")
		}
		return s.apply(wh, spec)
	})
	if err != nil {
		return err
	}
	s.log.Info("webhook updated", "project_id", p.Id, "webhook_id", wh.Id, "revision", wh.Revision)
	httpapi.WriteJSON(w, http.StatusOK, s.view(wh))
	return nil
}

// mergePatch merges body, a JSON merge patch (RFC 7386), into the webhook the request names, in
// one read-modify-write (modify): editable is the document the patch merges into, apply decodes
// the merged document and sets it on the webhook. Header names in the patch are made canonical
// first, so that they merge with the stored ones.
func (s *Server) mergePatch(r *http.Request, p *pb.Project, body []byte, editable func(*pb.Webhook) any,
	apply func(wh *pb.Webhook, merged []byte) error) (*pb.Webhook, error) {
	var patch map[string]any
	if err := json.Unmarshal(body, &patch); err != nil {
		return nil, httpapi.JSONError(err)
	}
	if h, ok := patch["headers"].(map[string]any); ok {
		canon := make(map[string]any, len(h))
		for k, v := range h {
			canon[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))] = v
		}
		patch["headers"] = canon
	}
	patchJSON, err := json.Marshal(patch)
	if err != nil {
		return nil, fmt.Errorf("encoding patch: %w", err)
	}
	return s.modify(r, p, func(wh *pb.Webhook) error {
		cur, err := json.Marshal(editable(wh))
		if err != nil {
			return fmt.Errorf("encoding webhook: %w", err)
		}
		merged, err := jsonpatch.MergePatch(cur, patchJSON)
		if err != nil {
			return fmt.Errorf("merging patch: %w", err)
		}
		return apply(wh, merged)
	})
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	unlock := s.locks.lock(id)
	defer unlock()
	wh, err := s.owned(id, p)
	if err != nil {
		return err
	}
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Webhooks, wh.Id, nil); err != nil {
		return err
	}
	s.log.Info("webhook deleted", "project_id", p.Id, "webhook_id", wh.Id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rotateSecret adds a new secret (given or generated) that signs from now on; the previous ones
// keep signing too until they expire (default 24 h), so receivers can switch without a gap.
func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request, p *pb.Project) error {
	wh, shown, err := s.rotate(r, p)
	if err != nil {
		return err
	}
	out := s.view(wh)
	if wh.SignatureScheme != schemeV1a {
		out.Secret = shown
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// rotate adds the request's new secret to the webhook and returns it, with the secret to show.
func (s *Server) rotate(r *http.Request, p *pb.Project) (*pb.Webhook, string, error) {
	if err := onlyParams(r); err != nil {
		return nil, "", err
	}
	body, err := readObject(r)
	if err != nil {
		return nil, "", err
	}
	var in struct {
		Secret            *string `json:"secret"`
		ExpirePreviousInS *int64  `json:"expire_previous_in_s"`
		SignatureScheme   *string `json:"signature_scheme"` // default: the webhook's current scheme
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := httpapi.DecodeStrict(body, &in); err != nil {
			return nil, "", err
		}
	}
	expireIn := defaultExpirePrevious
	if in.ExpirePreviousInS != nil {
		if *in.ExpirePreviousInS < 0 || *in.ExpirePreviousInS > int64(maxExpirePrevious/time.Second) {
			return nil, "", invalid("expire_previous_in_s", "expire_previous_in_s must be between 0 (now) and %d (30 days)",
				int64(maxExpirePrevious/time.Second))
		}
		expireIn = time.Duration(*in.ExpirePreviousInS) * time.Second
	}
	var shown string
	wh, err := s.modify(r, p, func(wh *pb.Webhook) error {
		if in.SignatureScheme != nil {
			scheme, err := validScheme(*in.SignatureScheme)
			if err != nil {
				return err
			}
			wh.SignatureScheme = scheme // the previous secrets keep signing in their scheme until they expire
		}
		var secret string
		var err error
		if secret, shown, err = newSigningSecret(wh.SignatureScheme, in.Secret); err != nil {
			return err
		}
		now := time.Now().UnixMilli()
		until := now + expireIn.Milliseconds()
		kept := []*pb.Secret{{Sealed: s.box.Seal(secret), CreatedAtMs: now}}
		for _, sc := range wh.Secrets {
			if sc.ExpiresAtMs == 0 || sc.ExpiresAtMs > until {
				sc.ExpiresAtMs = until
			}
			if sc.ExpiresAtMs > now && len(kept) < maxSecrets { // newest first: the oldest are dropped
				kept = append(kept, sc)
			}
		}
		wh.Secrets = kept
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	s.log.Info("webhook secret rotated", "project_id", p.Id, "webhook_id", wh.Id, "secrets", len(wh.Secrets))
	return wh, shown, nil
}
