package api

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/operational"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
	"github.com/surveyhooks/surveyhooks/services/api/portal"
)

const (
	defaultPortalSession = time.Hour
	maxPortalSession     = 7 * 24 * time.Hour
)

// portalProject carries, in a request's context, the project an in-process portal call acts for.
// Only this package can set it: a request from the network never carries it.
type portalProject struct{}

// newPortal builds the pages over this server. Its session key is derived from the encryption
// key, so sessions survive restarts and every API process reads them, without reusing that key.
func (s *Server) newPortal() (*portal.Portal, error) {
	raw, err := base64.StdEncoding.DecodeString(s.cfg.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("SURVEYHOOKS_ENCRYPTION_KEY: %w", err)
	}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte("surveyhooks portal sessions v1"))
	return portal.New(portal.Config{Backend: portalBackend{s}, SessionKey: mac.Sum(nil), Log: s.log,
		FrameAncestors: s.cfg.PortalFrameAncestors})
}

type portalSessionIn struct {
	WebhookIDs []string `json:"webhook_ids"`
	ExpiresIn  *int64   `json:"expires_in"`
	ReadOnly   bool     `json:"read_only"`
}

type portalSessionOut struct {
	URL        string    `json:"url"`
	ProjectID  string    `json:"project_id"`
	WebhookIDs []string  `json:"webhook_ids"`
	ReadOnly   bool      `json:"read_only"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// createPortalSession mints a one-time portal link for a project: opened once, it becomes a
// session cookie that lasts until expires_at.
func (s *Server) createPortalSession(w http.ResponseWriter, r *http.Request) error {
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
	var in portalSessionIn
	if len(bytes.TrimSpace(body)) > 0 {
		if err := httpapi.DecodeStrict(body, &in); err != nil {
			return err
		}
	}
	life := defaultPortalSession
	if in.ExpiresIn != nil {
		if *in.ExpiresIn < 1 || *in.ExpiresIn > int64(maxPortalSession/time.Second) {
			return invalid("expires_in", "expires_in must be between 1 and %d seconds (7 days)", int64(maxPortalSession/time.Second))
		}
		life = time.Duration(*in.ExpiresIn) * time.Second
	}
	ids := slices.Compact(slices.Sorted(slices.Values(in.WebhookIDs)))
	for i, id := range ids {
		if _, err := s.owned(id, p); err != nil {
			return invalid(fmt.Sprintf("webhook_ids[%d]", i), "webhook %q is not one of this project's webhooks", id)
		}
	}
	g := portal.Grant{ProjectID: p.Id, WebhookIDs: ids, ReadOnly: in.ReadOnly, Expires: time.Now().Add(life).UTC().Truncate(time.Second)}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	s.log.Info("portal session created", "project_id", p.Id, "webhooks", len(ids), "read_only", in.ReadOnly)
	httpapi.WriteJSON(w, http.StatusCreated, portalSessionOut{URL: scheme + "://" + r.Host + "/portal/s/" + s.portal.Link(g),
		ProjectID: p.Id, WebhookIDs: nonNil(ids), ReadOnly: in.ReadOnly, ExpiresAt: g.Expires})
	return nil
}

// portalBackend is the pages' way into this server: the JSON API's handlers, run in process.
type portalBackend struct{ s *Server }

// bufferedResponse collects an in-process call's answer.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b portalBackend) Do(ctx context.Context, projectID, method, target string, body []byte) (int, []byte) {
	p := b.s.reg.Project(projectID)
	if p == nil {
		return http.StatusNotFound, []byte(`{"error":{"code":"not_found","message":"project not found"}}`)
	}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, portalProject{}, p), method, target, bytes.NewReader(body))
	if err != nil {
		return http.StatusBadRequest, []byte(`{"error":{"code":"invalid_request","message":"bad request"}}`)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp := &bufferedResponse{header: http.Header{}}
	b.s.inproc.ServeHTTP(resp, req)
	if resp.status == 0 {
		resp.status = http.StatusOK
	}
	return resp.status, resp.body.Bytes()
}

func (b portalBackend) ProjectName(id string) (string, bool) {
	p := b.s.reg.Project(id)
	if p == nil {
		return "", false
	}
	return p.Name, true
}

func (b portalBackend) StorageMasking(projectID string) []apiv1.MaskingRule {
	var out []apiv1.MaskingRule
	for _, r := range b.s.reg.Project(projectID).GetStorageMasking() {
		out = append(out, apiv1.MaskingRule{Path: r.Path, Action: r.Action, Keep: r.Keep})
	}
	return out
}

func (b portalBackend) AdminToken(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(b.s.cfg.AdminToken)) == 1
}

// RevealSecret opens the newest secret that still signs.
func (b portalBackend) RevealSecret(projectID, webhookID string) (string, error) {
	wh := b.s.reg.Webhook(webhookID)
	if wh == nil || wh.ProjectId != projectID {
		return "", notFound("webhook", webhookID)
	}
	now := time.Now().UnixMilli()
	for _, sc := range wh.Secrets { // newest first
		if sc.ExpiresAtMs == 0 || sc.ExpiresAtMs > now {
			secret, err := b.s.box.Open(sc.Sealed)
			if err != nil {
				return "", fmt.Errorf("opening the secret of webhook %s: %w", webhookID, err)
			}
			if strings.HasPrefix(secret, secrets.SigningKeyPrefix) { // v1a: only the public key is ever shown
				return secrets.PublicKeyOf(secret)
			}
			b.s.log.Info("webhook secret revealed in the portal", "project_id", projectID, "webhook_id", webhookID)
			return secret, nil
		}
	}
	return "", httpapi.Errorf(http.StatusConflict, "no_secret", "", "webhook %s has no secret that still signs; rotate it", webhookID)
}

// Overview gathers the console's figures: projects and webhooks from the registry, 24-hour totals
// and open dead letters from ClickHouse, tier depth and lag from Kafka. A part that cannot be read
// is named in Problems and the rest is still shown.
func (b portalBackend) Overview(ctx context.Context) (*portal.Overview, error) {
	s := b.s
	o := &portal.Overview{}
	projects := s.reg.Projects()
	byProject := map[string]*portal.ProjectStats{}
	names := map[string]string{}
	for _, p := range projects {
		names[p.Id] = p.Name
		byProject[p.Id] = &portal.ProjectStats{ID: p.Id, Name: p.Name, Webhooks: len(s.reg.Webhooks(p.Id))}
	}
	var endpoints []portal.EndpointStats
	if st, err := s.logs.get(ctx); err != nil {
		o.Problems = append(o.Problems, errText(err))
	} else {
		totals, err := st.EndpointTotals(ctx, time.Now().Add(-24*time.Hour))
		if err != nil {
			o.Problems = append(o.Problems, "delivery log: "+err.Error())
		}
		for _, t := range totals {
			ps := byProject[t.ProjectID]
			wh := s.reg.Webhook(t.WebhookID)
			if ps == nil || wh == nil {
				continue // deleted since
			}
			failed := t.Attempts - min(t.Success, t.Attempts)
			ps.Attempts += t.Attempts
			ps.Failed += failed
			endpoints = append(endpoints, portal.EndpointStats{ProjectID: t.ProjectID, ProjectName: names[t.ProjectID],
				WebhookID: t.WebhookID, Name: wh.Name, Attempts: t.Attempts, Failed: failed, P99Ms: t.P99Ms})
		}
		dead, err := st.OpenDeadLetters(ctx)
		if err != nil {
			o.Problems = append(o.Problems, "dead letters: "+err.Error())
		}
		for p, n := range dead {
			if ps := byProject[p]; ps != nil {
				ps.DeadLetters = n
			}
		}
	}
	for _, ps := range byProject {
		o.Projects = append(o.Projects, *ps)
	}
	slices.SortFunc(o.Projects, func(a, b portal.ProjectStats) int {
		return cmp.Or(cmp.Compare(b.Attempts, a.Attempts), strings.Compare(a.Name, b.Name))
	})
	const top = 10
	o.Slowest = slices.Clone(endpoints)
	slices.SortFunc(o.Slowest, func(a, b portal.EndpointStats) int { return cmp.Compare(b.P99Ms, a.P99Ms) })
	o.Slowest = o.Slowest[:min(top, len(o.Slowest))]
	for _, e := range endpoints {
		if e.Failed > 0 {
			o.Failing = append(o.Failing, e)
		}
	}
	slices.SortFunc(o.Failing, func(a, b portal.EndpointStats) int {
		return cmp.Compare(float64(b.Failed)/float64(b.Attempts), float64(a.Failed)/float64(a.Attempts))
	})
	o.Failing = o.Failing[:min(top, len(o.Failing))]
	for _, wh := range s.reg.Webhooks(operational.PlatformProject) {
		oh := portal.OperationalHook{ID: wh.Id, Name: wh.Name, URL: wh.Url, Events: wh.EventTypes, Enabled: wh.Enabled,
			DisabledReason: wh.DisabledReason, Failures: wh.ConsecutiveFailures}
		if wh.FailingSinceMs > 0 {
			oh.FailingSince = time.UnixMilli(wh.FailingSinceMs)
		}
		o.Operational = append(o.Operational, oh)
	}
	slices.SortFunc(o.Operational, func(a, b portal.OperationalHook) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
	})
	if err := b.kafkaFigures(ctx, o); err != nil {
		o.Problems = append(o.Problems, "Kafka: "+err.Error())
	}
	return o, nil
}

// kafkaFigures fills the retry tiers' depth (what their consumer group has yet to read) and every
// consumer group's lag.
func (b portalBackend) kafkaFigures(ctx context.Context, o *portal.Overview) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	adm := kadm.NewClient(b.s.kcl)
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("listing groups: %w", err)
	}
	tiers := map[string]*portal.TierStats{}
	for _, d := range b.s.cfg.Kafka.RetrySchedule {
		t := b.s.cfg.Kafka.Topics.Retry(d)
		tiers[t] = &portal.TierStats{Topic: t}
		o.Tiers = append(o.Tiers, portal.TierStats{Topic: t})
	}
	if len(groups.Groups()) > 0 {
		lags, err := adm.Lag(ctx, groups.Groups()...)
		if err != nil {
			return fmt.Errorf("reading lag: %w", err)
		}
		heads := map[string]map[int32]kgo.Offset{} // the first record each tier's releaser has yet to release
		lags.Each(func(g kadm.DescribedGroupLag) {
			for topic, parts := range g.Lag {
				var sum int64
				for p, l := range parts {
					if l.Lag > 0 {
						sum += l.Lag
						if tiers[topic] != nil {
							at := l.Commit.At
							if at < 0 {
								at = l.Start.Offset
							}
							if heads[topic] == nil {
								heads[topic] = map[int32]kgo.Offset{}
							}
							heads[topic][p] = kgo.NewOffset().At(at)
						}
					}
				}
				o.Lag = append(o.Lag, portal.GroupLag{Group: g.Group, Topic: topic, Lag: sum})
				if t := tiers[topic]; t != nil {
					t.Depth += sum
				}
			}
		})
		if len(heads) > 0 {
			now := time.Now()
			for topic, at := range b.oldest(ctx, heads) {
				tiers[topic].OldestAge = now.Sub(at)
			}
		}
	}
	for i := range o.Tiers {
		o.Tiers[i] = *tiers[o.Tiers[i].Topic]
	}
	slices.SortFunc(o.Lag, func(a, b portal.GroupLag) int {
		return cmp.Or(strings.Compare(a.Group, b.Group), strings.Compare(a.Topic, b.Topic))
	})
	return nil
}

// oldest reads the record at each head and returns, per topic, the oldest one's timestamp (when
// the delivery service wrote it to the tier). What cannot be read in time is left out.
func (b portalBackend) oldest(ctx context.Context, heads map[string]map[int32]kgo.Offset) map[string]time.Time {
	want := 0
	for _, ps := range heads {
		want += len(ps)
	}
	cl, err := kafka.NewClient(b.s.cfg.Kafka, kgo.ConsumePartitions(heads))
	if err != nil {
		return nil
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := map[string]time.Time{}
	seen := map[string]map[int32]bool{}
	for got := 0; got < want && ctx.Err() == nil; {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if seen[r.Topic] == nil {
				seen[r.Topic] = map[int32]bool{}
			}
			if seen[r.Topic][r.Partition] {
				return
			}
			seen[r.Topic][r.Partition] = true
			got++
			if t, ok := out[r.Topic]; !ok || r.Timestamp.Before(t) {
				out[r.Topic] = r.Timestamp
			}
		})
	}
	return out
}

func errText(err error) string {
	var e *httpapi.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// portalProjectOf returns the project an in-process portal call acts for, or nil.
func portalProjectOf(r *http.Request) *pb.Project {
	p, _ := r.Context().Value(portalProject{}).(*pb.Project)
	return p
}
