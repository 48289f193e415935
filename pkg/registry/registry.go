// Package registry materialises the compacted `projects`, `webhooks` and `erasures` topics into memory: every
// service that needs to know which projects, API keys and webhooks exist reads them here, and
// every API key check (revocation, expiry, scopes) is answered from it. It offers
// read-your-writes through WaitFresh (catch up to the topics' end offsets as of now) and
// WaitFor (catch up to one produced record). It never writes to Kafka.
package registry

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

type tp struct {
	topic     string
	partition int32
}

// Registry is the in-memory view of projects and webhooks. Values handed out are shared and must
// not be modified.
type Registry struct {
	cfg kafka.Config
	log *slog.Logger
	cl  *kgo.Client
	adm *kadm.Client

	mu        sync.RWMutex
	projects  map[string]*pb.Project
	byKeyHash map[string]keyRef
	keys      map[string]map[string]*pb.ApiKey // project id → key id → key record
	webhooks  map[string]*pb.Webhook
	byProject map[string][]*pb.Webhook
	erased    map[string]erasedAt // "<project>/<hash>" → the erasure (erasures.go)
	consumed  map[tp]int64        // next offset to read per partition
	partsMu   sync.Mutex
	parts     map[string][]int32 // the registry topics' partitions (endOffsets), listed at partsAt
	partsAt   time.Time
	progress  chan struct{}
	listeners []func(old, cur *pb.Webhook)
}

// New connects to the cluster; Run must be called to consume.
func New(cfg kafka.Config, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.Default()
	}
	cl, err := kafka.NewClient(cfg,
		kgo.ConsumeTopics(cfg.Topics.Projects, cfg.Topics.Webhooks, cfg.Topics.Erasures),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// A change wakes the waiting fetch at once; the wait only bounds how often an idle
		// registry asks (every service runs one).
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if err != nil {
		return nil, err
	}
	return &Registry{
		cfg: cfg, log: log, cl: cl, adm: kadm.NewClient(cl),
		projects: map[string]*pb.Project{}, byKeyHash: map[string]keyRef{}, keys: map[string]map[string]*pb.ApiKey{},
		webhooks: map[string]*pb.Webhook{}, byProject: map[string][]*pb.Webhook{}, erased: map[string]erasedAt{},
		consumed: map[tp]int64{}, progress: make(chan struct{}),
	}, nil
}

// OnWebhookChange registers fn, called (from the consuming goroutine) for every change with the
// previous and the new value; either may be nil. Register before Run.
func (r *Registry) OnWebhookChange(fn func(old, cur *pb.Webhook)) {
	r.mu.Lock()
	r.listeners = append(r.listeners, fn)
	r.mu.Unlock()
}

// Run consumes until ctx is done, then closes the client.
func (r *Registry) Run(ctx context.Context) error {
	defer r.cl.Close()
	for {
		fetches := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.log.Warn("registry fetch error", "topic", t, "partition", p, "err", err)
		})
		fetches.EachRecord(r.apply)
		r.mu.Lock()
		close(r.progress)
		r.progress = make(chan struct{})
		r.mu.Unlock()
	}
}

func (r *Registry) apply(rec *kgo.Record) {
	key := string(rec.Key)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.consumed[tp{rec.Topic, rec.Partition}] = rec.Offset + 1
	switch rec.Topic {
	case r.cfg.Topics.Projects:
		if projectID, keyID, ok := strings.Cut(key, "/"); ok {
			r.applyKey(projectID, keyID, rec)
			return
		}
		if old := r.projects[key]; old != nil {
			delete(r.byKeyHash, hex.EncodeToString(old.ApiKeyHash))
		}
		if rec.Value == nil {
			delete(r.projects, key)
			return
		}
		p := &pb.Project{}
		if err := proto.Unmarshal(rec.Value, p); err != nil {
			r.log.Error("unreadable project record skipped", "key", key, "offset", rec.Offset, "err", err)
			return
		}
		r.projects[key] = p
		if len(p.ApiKeyHash) > 0 {
			r.byKeyHash[hex.EncodeToString(p.ApiKeyHash)] = keyRef{projectID: p.Id}
		}
	case r.cfg.Topics.Webhooks:
		old := r.webhooks[key]
		var cur *pb.Webhook
		if rec.Value != nil {
			cur = &pb.Webhook{}
			if err := proto.Unmarshal(rec.Value, cur); err != nil {
				r.log.Error("unreadable webhook record skipped", "key", key, "offset", rec.Offset, "err", err)
				return
			}
			r.webhooks[key] = cur
		} else {
			delete(r.webhooks, key)
		}
		if old != nil {
			r.byProject[old.ProjectId] = slices.DeleteFunc(slices.Clone(r.byProject[old.ProjectId]),
				func(w *pb.Webhook) bool { return w.Id == key })
		}
		if cur != nil {
			r.byProject[cur.ProjectId] = append(slices.Clone(r.byProject[cur.ProjectId]), cur)
		}
		for _, fn := range r.listeners {
			fn(old, cur)
		}
	case r.cfg.Topics.Erasures:
		r.applyErasure(key, rec)
	}
}

// applyKey takes in a key record ("<project>/<key>" on the projects topic); r.mu is held.
func (r *Registry) applyKey(projectID, keyID string, rec *kgo.Record) {
	byID := r.keys[projectID]
	if old := byID[keyID]; old != nil && len(old.Hash) > 0 {
		delete(r.byKeyHash, hex.EncodeToString(old.Hash))
	}
	if rec.Value == nil {
		delete(byID, keyID)
		return
	}
	k := &pb.ApiKey{}
	if err := proto.Unmarshal(rec.Value, k); err != nil {
		r.log.Error("unreadable key record skipped", "key", string(rec.Key), "offset", rec.Offset, "err", err)
		return
	}
	k.Id = keyID
	if byID == nil {
		byID = map[string]*pb.ApiKey{}
		r.keys[projectID] = byID
	}
	byID[keyID] = k
	if keyID != PrimaryKeyID && len(k.Hash) > 0 {
		r.byKeyHash[hex.EncodeToString(k.Hash)] = keyRef{projectID: projectID, key: k}
	}
}

// WaitFresh returns once everything written to the projects, webhooks and erasures topics before
// the call is visible here. It costs one ListOffsets request: fan-out asks once per batch, so the
// topics' partitions are listed at most every partitionsTTL instead of with every call (kadm's
// ListEndOffsets asks for metadata first: two round trips).
func (r *Registry) WaitFresh(ctx context.Context) error {
	ends, err := r.endOffsets(ctx)
	if err != nil {
		return err
	}
	for p, end := range ends {
		if end > 0 {
			if err := r.WaitFor(ctx, p.topic, p.partition, end-1); err != nil {
				return err
			}
		}
	}
	return nil
}

// partitionsTTL is how long the registry topics' partition lists are trusted. Partitions added to
// them (an operator's change, never the services') are waited for from the next listing on; any
// error lists them again.
const partitionsTTL = time.Minute

// endOffsets lists the end offset of every partition of the registry's topics.
func (r *Registry) endOffsets(ctx context.Context) (map[tp]int64, error) {
	topics := []string{r.cfg.Topics.Projects, r.cfg.Topics.Webhooks, r.cfg.Topics.Erasures}
	fail := func(err error) (map[tp]int64, error) {
		r.partsMu.Lock()
		r.parts = nil
		r.partsMu.Unlock()
		return nil, fmt.Errorf("listing end offsets of %s: %w", strings.Join(topics, ", "), err)
	}
	r.partsMu.Lock()
	parts, at := r.parts, r.partsAt
	r.partsMu.Unlock()
	if parts == nil || time.Since(at) > partitionsTTL {
		tds, err := r.adm.ListTopics(ctx, topics...)
		if err == nil {
			err = tds.Error()
		}
		if err != nil {
			return fail(err)
		}
		parts = map[string][]int32{}
		for _, td := range tds {
			parts[td.Topic] = td.Partitions.Numbers()
		}
		r.partsMu.Lock()
		r.parts, r.partsAt = parts, time.Now()
		r.partsMu.Unlock()
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	for topic, ps := range parts {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for _, p := range ps {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = p, -1, -1 // -1: the end
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	ends := map[tp]int64{}
	for _, sh := range r.cl.RequestSharded(ctx, req) {
		if sh.Err != nil {
			return fail(sh.Err)
		}
		for _, t := range sh.Resp.(*kmsg.ListOffsetsResponse).Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return fail(fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err))
				}
				ends[tp{t.Topic, p.Partition}] = p.Offset
			}
		}
	}
	return ends, nil
}

// WaitFor returns once the record at offset of topic/partition has been applied.
func (r *Registry) WaitFor(ctx context.Context, topic string, partition int32, offset int64) error {
	for {
		r.mu.RLock()
		done := r.consumed[tp{topic, partition}] > offset
		ch := r.progress
		r.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s/%d offset %d: %w", topic, partition, offset, ctx.Err())
		case <-ch:
		}
	}
}

// Project returns the project with id, or nil.
func (r *Registry) Project(id string) *pb.Project {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.projects[id]
}

// ProjectByAPIKey returns the project whose API key is key, or nil: an unknown, revoked or
// expired key has none.
func (r *Registry) ProjectByAPIKey(key string) *pb.Project {
	p, _ := r.APIKey(key, time.Now())
	return p
}

// ProjectForScope returns the project whose valid API key is key when that key has scope, or nil.
func (r *Registry) ProjectForScope(key, scope string) *pb.Project {
	p, k := r.APIKey(key, time.Now())
	if p == nil || !slices.Contains(k.Scopes, scope) {
		return nil
	}
	return p
}

// APIKey returns key's project and its record when the key is valid at now (known, not revoked,
// not expired, of a known project), or nils.
func (r *Registry) APIKey(key string, now time.Time) (*pb.Project, *pb.ApiKey) {
	h := hex.EncodeToString(secrets.HashAPIKey(key))
	r.mu.RLock()
	defer r.mu.RUnlock()
	ref, ok := r.byKeyHash[h]
	if !ok {
		return nil, nil
	}
	p, k := r.projects[ref.projectID], ref.key
	if p == nil {
		return nil, nil
	}
	if k == nil {
		k = r.primary(p)
	}
	if !KeyValid(k, now) {
		return nil, nil
	}
	return p, k
}

// Keys returns every key of the project, its first key (listed as PrimaryKeyID, with every
// scope) first, the others by creation. The values are shared and must not be modified.
func (r *Registry) Keys(projectID string) []*pb.ApiKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*pb.ApiKey
	if p := r.projects[projectID]; p != nil && len(p.ApiKeyHash) > 0 {
		out = append(out, r.primary(p))
	}
	var rest []*pb.ApiKey
	for id, k := range r.keys[projectID] {
		if id != PrimaryKeyID {
			rest = append(rest, k)
		}
	}
	slices.SortFunc(rest, func(a, b *pb.ApiKey) int {
		if a.CreatedAtMs != b.CreatedAtMs {
			return cmp.Compare(a.CreatedAtMs, b.CreatedAtMs)
		}
		return strings.Compare(a.Id, b.Id)
	})
	return append(out, rest...)
}

// primary is p's first key, with its revocation record applied; r.mu is held.
func (r *Registry) primary(p *pb.Project) *pb.ApiKey {
	k := &pb.ApiKey{Id: PrimaryKeyID, Name: "primary", Hash: p.ApiKeyHash, Prefix: p.ApiKeyPrefix,
		Scopes: AllScopes, CreatedAtMs: p.CreatedAtMs}
	if rev := r.keys[p.Id][PrimaryKeyID]; rev != nil {
		k.RevokedAtMs = rev.RevokedAtMs
	}
	return k
}

// KeyRecord is the key of an API key's record on the projects topic.
func KeyRecord(projectID, keyID string) string { return projectID + "/" + keyID }

// Webhook returns the webhook with id, or nil.
func (r *Registry) Webhook(id string) *pb.Webhook {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.webhooks[id]
}

// Webhooks returns the project's webhooks; the slice is a snapshot that is never modified.
func (r *Registry) Webhooks(projectID string) []*pb.Webhook {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byProject[projectID]
}

// Projects returns every project, in no particular order.
func (r *Registry) Projects() []*pb.Project {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*pb.Project, 0, len(r.projects))
	for _, p := range r.projects {
		out = append(out, p)
	}
	return out
}

// keyRef is what a key hash finds: its project, and its record (nil: the project's first key).
type keyRef struct {
	projectID string
	key       *pb.ApiKey
}

// The scopes a key may hold.
const (
	ScopeIngest = "ingest" // POST /v1/events
	ScopeRead   = "read"   // GET on the API
	ScopeManage = "manage" // every other API call, keys included
)

// AllScopes are the scopes of a project's first key.
var AllScopes = []string{ScopeIngest, ScopeRead, ScopeManage}

// PrimaryKeyID is the id under which a project's first key (the one returned at its creation) is
// listed.
const PrimaryKeyID = "key_primary"

// KeyValid reports whether k may be used at now.
func KeyValid(k *pb.ApiKey, now time.Time) bool {
	if k.RevokedAtMs != 0 {
		return false
	}
	return k.ExpiresAtMs == 0 || now.UnixMilli() < k.ExpiresAtMs
}
