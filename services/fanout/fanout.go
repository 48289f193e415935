// Package fanout turns each event on `events` into one Delivery per matching webhook on
// `deliveries`: it materialises the project's webhooks, matches (enabled, event type, per-event
// toggle, filter), renders the body once per webhook (its format or pinned payload version, chosen
// properties, transform), and produces the deliveries and commits the input offsets in one Kafka
// transaction, so an event is fanned out exactly once even when the process dies mid-batch. It is
// also where events are de-duplicated: within SURVEYHOOKS_DEDUP_WINDOW, only the first record of a
// (project, event_id) on its `events` partition is fanned out, decided inside the same transaction
// (dedup.go; docs/architecture.md explains the design). For projects with a Refiner-format webhook
// it remembers every answer received for each user (respondents.go), on the compacted
// `respondents` topic written in the same transaction, for Refiner's `attributes`. Filters,
// transforms and masking rules are compiled once per webhook revision (renderers.go), never per
// event; masking (pkg/masking) is applied last, to the body as queued. It never
// sends HTTP and never drops an event without counting it.
package fanout

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/masking"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Config is the fan-out service's configuration.
type Config struct {
	Kafka kafka.Config
	// Group is the consumer group of the fan-out processes.
	Group string `env:"FANOUT_GROUP" envDefault:"surveyhooks-fanout"`
	// DedupWindow is how long a (project, event_id) is remembered: a repeat within it is not
	// fanned out again. Ingest reads the same variable for its best-effort duplicate answer.
	DedupWindow time.Duration `env:"SURVEYHOOKS_DEDUP_WINDOW" envDefault:"24h"`
	// DedupMaxIDs bounds the ids remembered per `events` partition (about 80 bytes each); past it
	// the oldest are forgotten early, counted as dedup_evicted_early.
	DedupMaxIDs int `env:"FANOUT_DEDUP_MAX_IDS" envDefault:"2000000"`
	// EncryptionKey (32 bytes, standard base64; the key api and delivery seal secrets with) is
	// the material each project's masking key is derived from (masking.ProjectKey). Optional:
	// without it, a webhook with a "hash" masking rule gets nothing (counted as bad_config).
	EncryptionKey string `env:"SURVEYHOOKS_ENCRYPTION_KEY"`
}

// Validate reports the first configuration error, naming the variable.
func (c Config) Validate() error {
	switch {
	case c.Group == "":
		return errors.New("FANOUT_GROUP: must not be empty")
	case c.DedupWindow < time.Second || c.DedupWindow > 7*24*time.Hour:
		return fmt.Errorf("SURVEYHOOKS_DEDUP_WINDOW: must be between 1s and 168h (the events topic keeps 7 days), got %v", c.DedupWindow)
	case c.DedupMaxIDs < 1000:
		return errors.New("FANOUT_DEDUP_MAX_IDS: must be at least 1000")
	}
	if c.EncryptionKey != "" {
		if _, err := maskingMaterial(c.EncryptionKey); err != nil {
			return fmt.Errorf("SURVEYHOOKS_ENCRYPTION_KEY: %w", err)
		}
	}
	return c.Kafka.Validate()
}

// Stats counts what the fan-out did since start.
type Stats struct {
	Events     atomic.Int64 // events read
	Deliveries atomic.Int64 // deliveries produced
	Unmatched  atomic.Int64 // events no webhook wanted
	Previews   atomic.Int64 // preview events dropped
	Filtered   atomic.Int64 // (event, webhook) pairs a filter rejected, including FilterErrs
	FilterErrs atomic.Int64 // (event, webhook) pairs whose filter failed to evaluate: no match
	BadConfig  atomic.Int64 // (event, webhook) pairs skipped: the webhook's filter, transform or format is invalid
	Unreadable atomic.Int64 // records that are not an Event
	RenderErrs atomic.Int64 // (event, webhook) pairs whose body could not be rendered (transform included)
	Duplicates atomic.Int64 // repeats of a (project, event_id) within the window, not fanned out (committed batches)
	// EvictedEarly counts ids forgotten before the window ended (FANOUT_DEDUP_MAX_IDS).
	EvictedEarly atomic.Int64
	// RespondentRecords counts records produced to `respondents` (a user's answers changed, or
	// an erasure), in committed and aborted batches alike.
	RespondentRecords atomic.Int64
	// RespondentAnswersSkipped counts answers too long to remember (maxAnswerBytes).
	RespondentAnswersSkipped atomic.Int64
	Erasures                 atomic.Int64 // erasure requests handled
	// Skipped counts (event, webhook) pairs recorded as skipped attempts: the webhook was disabled
	// automatically (skip.go).
	Skipped atomic.Int64
}

// byResult is Stats as the fan-out metric's series.
func (s *Stats) byResult() map[string]int64 {
	return map[string]int64{
		"events": s.Events.Load(), "deliveries": s.Deliveries.Load(), "unmatched": s.Unmatched.Load(),
		"preview": s.Previews.Load(), "filtered": s.Filtered.Load() - s.FilterErrs.Load(), "filter_error": s.FilterErrs.Load(),
		"bad_config": s.BadConfig.Load(), "render_error": s.RenderErrs.Load(), "unreadable": s.Unreadable.Load(),
		"duplicate": s.Duplicates.Load(), "dedup_evicted_early": s.EvictedEarly.Load(),
		"respondent_records": s.RespondentRecords.Load(), "respondent_answer_skipped": s.RespondentAnswersSkipped.Load(),
		"erasure": s.Erasures.Load(), "skipped": s.Skipped.Load(),
	}
}

// Run fans out until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger, opts ...service.Option) error {
	return New(cfg, log, opts...).Run(ctx)
}

// FanOut is one fan-out process.
type FanOut struct {
	cfg       Config
	log       *slog.Logger
	renderers *renderers
	material  []byte // masking key material, decoded EncryptionKey; nil when unset
	deps      service.Deps
	Stats     Stats
}

// New returns a fan-out process; Run starts it.
func New(cfg Config, log *slog.Logger, opts ...service.Option) *FanOut {
	if log == nil {
		log = slog.Default()
	}
	// A Config built in code (tests, the all-in-one) may leave the de-duplication settings out.
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = 24 * time.Hour
	}
	if cfg.DedupMaxIDs == 0 {
		cfg.DedupMaxIDs = 2_000_000
	}
	material, _ := maskingMaterial(cfg.EncryptionKey) // Validate reports a bad key
	return &FanOut{cfg: cfg, log: log, renderers: newRenderers(), material: material, deps: service.Apply(opts)}
}

// maskingMaterial decodes the encryption key: 32 bytes, standard base64; nil when unset.
func maskingMaterial(keyB64 string) ([]byte, error) {
	if keyB64 == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil {
		return nil, errors.New("must be standard base64")
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("must decode to 32 bytes, got %d", len(k))
	}
	return k, nil
}

// fetchMinBytes is how much a fetch of `events` waits for (up to the loop's FetchMaxWait, 50 ms):
// a few dozen events, so it fills within milliseconds at thousands of events per second.
const fetchMinBytes = 8 << 10

// Run consumes `events` until ctx is done.
func (f *FanOut) Run(ctx context.Context) error {
	caughtUp := f.deps.Ready.Wait("webhooks caught up")
	joined := f.deps.Ready.Wait("group " + f.cfg.Group + " joined")
	if err := kafka.EnsureTopics(ctx, f.cfg.Kafka); err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	reg, err := registry.New(f.cfg.Kafka, f.log)
	if err != nil {
		return err
	}
	reg.OnWebhookChange(f.renderers.forget)
	admCl, err := kafka.NewClient(f.cfg.Kafka)
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if err := checkRespondentPartitions(ctx, adm, f.cfg.Kafka.Topics); err != nil {
		return err
	}
	dd := newDeduper(f.cfg, f.log, &f.Stats, adm)
	rs := newRespondents(f.cfg.Kafka, f.log, &f.Stats, adm)
	lost := func(ctx context.Context, cl *kgo.Client, ps map[string][]int32) {
		dd.drop(ctx, cl, ps)
		rs.drop(ctx, cl, ps)
	}
	met, err := NewMetrics(f.deps.Telemetry)
	if err != nil {
		return err
	}
	unregister, err := met.ObserveTotals(f.Stats.byResult)
	if err != nil {
		return err
	}
	defer func() { _ = unregister() }()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(registry.Start(ctx, reg, caughtUp).Wait)
	g.Go(func() error {
		loop := &kafka.TxnLoop{
			Config: f.cfg.Kafka, Group: f.cfg.Group, Topics: []string{f.cfg.Kafka.Topics.Events}, Logger: f.log,
			Assigned: joined, Telemetry: f.deps.Telemetry,
			Ended: func(committed bool) { dd.ended(committed); rs.ended(committed) },
			Opts: []kgo.Opt{kgo.OnPartitionsRevoked(lost), kgo.OnPartitionsLost(lost),
				// A user's state goes to the partition number of their `events` partition.
				kafka.SamePartition(f.cfg.Kafka.Topics.Respondents),
				// Every polled batch is a transaction (several round trips, a marker per
				// partition) and a registry freshness check: at low rates, wait up to the loop's
				// FetchMaxWait for a fuller batch instead of committing one event at a time.
				kgo.FetchMinBytes(fetchMinBytes)},
			Handler: func(ctx context.Context, recs []*kgo.Record, produce func(*kgo.Record)) error {
				windows, err := dd.prepare(ctx, recs)
				if err != nil {
					return err
				}
				// Read-your-writes: a webhook whose creation was acknowledged before these events
				// were fetched must be seen by them.
				if err := reg.WaitFresh(ctx); err != nil {
					return fmt.Errorf("catching up on webhooks: %w", err)
				}
				// Only partitions holding events of projects with a Refiner-format webhook need
				// their users' state: every other project pays nothing for it.
				need := map[int32]bool{}
				for _, r := range recs {
					if !need[r.Partition] && hasRefinerWebhook(reg, eventProject(r.Value)) {
						need[r.Partition] = true
					}
				}
				if err := rs.prepare(ctx, need); err != nil {
					return err
				}
				now := time.Now().UnixMilli()
				for _, r := range recs {
					if dd.first(windows[r.Partition], r) {
						f.fanOut(r, reg, rs, need[r.Partition], now, produce)
					}
				}
				return rs.flush(produce)
			},
		}
		return loop.Run(ctx)
	})
	f.log.Info("fan-out running", "group", f.cfg.Group, "events", f.cfg.Kafka.Topics.Events)
	return g.Wait()
}

// fanOut produces ev's deliveries. remember says whether r's partition has its users' state at
// hand (some project on it has a Refiner-format webhook).
func (f *FanOut) fanOut(r *kgo.Record, reg *registry.Registry, rs *respondents, remember bool, now int64, produce func(*kgo.Record)) {
	ev := &pb.Event{}
	err := proto.Unmarshal(r.Value, ev)
	if err == nil && ev.EventType == EraseEventType {
		// Not an event of the catalogue: nothing is delivered, and it is not counted as one.
		f.Stats.Erasures.Add(1)
		rs.erase(r.Partition, ev)
		return
	}
	f.Stats.Events.Add(1)
	if err != nil || ev.EventId == "" {
		f.Stats.Unreadable.Add(1)
		f.log.Error("unreadable event skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	if ev.Preview {
		f.Stats.Previews.Add(1)
		return
	}
	opts := []envelope.Option{envelope.WithProject(reg.Project(ev.ProjectId))} // formats that show its name (Screeb)
	if remember && hasRefinerWebhook(reg, ev.ProjectId) {
		// Before rendering: Refiner's attributes carry this event's answers too.
		opts = append(opts, envelope.WithRespondent(rs.update(r.Partition, ev)))
	}
	matched := 0
	var hashes []string // the event's respondent hashes, computed once (erasure.go)
	// Taken before reading the webhooks: a renderer compiled from a configuration that changes
	// meanwhile is used for this event but not cached (renderers.get).
	gen := f.renderers.generation()
	for _, wh := range reg.Webhooks(ev.ProjectId) {
		skip := false
		if !Matches(wh, ev.EventType) {
			if skip = Skips(wh, ev.EventType); !skip {
				continue
			}
		}
		body, ok := f.render(ev, wh, gen, opts)
		if !ok {
			continue
		}
		if skip { // disabled automatically: recorded, with its body, for a replay (skip.go)
			produce(f.skipped(r, ev, wh, body, now))
			continue
		}
		d := &pb.Delivery{
			DeliveryId: DeliveryID(ev.EventId, wh.Id), EventId: ev.EventId, WebhookId: wh.Id,
			ProjectId: ev.ProjectId, EventType: ev.EventType, Body: body, Attempt: 1,
			CreatedAtMs: now, EventTimeMs: ev.TimeMs, WebhookRevision: wh.Revision, RespondentHashes: f.respondentHashes(ev, &hashes),
			OrderingKey: OrderingKey(ev, wh),
		}
		v, _ := proto.Marshal(d)
		// Each delivery continues the event's trace: its own copy of the headers (the tracer
		// rewrites traceparent in place) and the event's receive span as parent.
		out := &kgo.Record{Topic: f.cfg.Kafka.Topics.Deliveries, Key: []byte(wh.Id), Value: v, Headers: slices.Clone(r.Headers)}
		telemetry.Continue(out, r)
		produce(out)
		matched++
	}
	if matched == 0 {
		f.Stats.Unmatched.Add(1)
	}
	f.Stats.Deliveries.Add(int64(matched))
}

// render applies wh's filter and renders ev's body for it; false when the webhook does not get
// the event (filtered out, or counted as an error).
func (f *FanOut) render(ev *pb.Event, wh *pb.Webhook, gen uint64, opts []envelope.Option) ([]byte, bool) {
	if wh.Filter == "" && wh.Transform == "" && len(wh.Masking) == 0 {
		// The common case: no expression or rule, nothing compiled, nothing cached.
		body, err := envelope.Render(ev, wh, opts...)
		if err != nil {
			f.Stats.RenderErrs.Add(1)
			f.log.Error("rendering body failed", "event_id", ev.EventId, "webhook_id", wh.Id, "err", err)
			return nil, false
		}
		return body, true
	}
	c := f.renderers.get(wh, gen)
	if c.err != nil {
		f.Stats.BadConfig.Add(1)
		if c.warnOnce() {
			f.log.Error("webhook configuration does not compile: its events are skipped until it is fixed",
				"webhook_id", wh.Id, "revision", wh.Revision, "err", c.err)
		}
		return nil, false
	}
	ok, err := c.r.Match(ev)
	if err != nil {
		f.Stats.FilterErrs.Add(1)
		if c.warnOnce() {
			f.log.Warn("filter failed to evaluate: counted as no match (logged once per webhook revision)",
				"event_id", ev.EventId, "webhook_id", wh.Id, "revision", wh.Revision, "err", err)
		}
	}
	if !ok {
		f.Stats.Filtered.Add(1)
		return nil, false
	}
	body, err := c.r.Render(ev, opts...)
	if err != nil {
		f.Stats.RenderErrs.Add(1)
		if c.warnOnce() {
			f.log.Error("rendering body failed: nothing sent (logged once per webhook revision)",
				"event_id", ev.EventId, "webhook_id", wh.Id, "revision", wh.Revision, "err", err)
		}
		return nil, false
	}
	if c.mask == nil {
		return body, true
	}
	var key []byte
	if c.mask.NeedsKey() && f.material != nil {
		key = masking.ProjectKey(f.material, ev.ProjectId)
	}
	masked, err := c.mask.Apply(body, key)
	if err != nil {
		// Never send in clear what a rule says to hide.
		if errors.Is(err, masking.ErrNoKey) {
			f.Stats.BadConfig.Add(1)
		} else {
			f.Stats.RenderErrs.Add(1)
		}
		if c.warnOnce() {
			f.log.Error("masking the body failed: nothing sent (logged once per webhook revision)",
				"event_id", ev.EventId, "webhook_id", wh.Id, "revision", wh.Revision, "err", err)
		}
		return nil, false
	}
	return masked, true
}

// Matches reports whether webhook wh wants events of eventType: it is enabled, subscribes to the
// type (or to "*"), and the type's toggle is not switched off. "webhook.test" is never fanned out:
// only Send Test makes it.
func Matches(wh *pb.Webhook, eventType string) bool {
	return wh.Enabled && subscribes(wh, eventType)
}

// subscribes reports whether wh, enabled or not, wants events of eventType.
func subscribes(wh *pb.Webhook, eventType string) bool {
	if eventType == envelope.TestEventType {
		return false
	}
	if on, ok := wh.EventToggles[eventType]; ok && !on {
		return false
	}
	return slices.Contains(wh.EventTypes, eventType) || slices.Contains(wh.EventTypes, "*")
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// DeliveryID is the stable id of (event, webhook): the `webhook-id` header on every attempt and
// every replay, so receivers can de-duplicate.
func DeliveryID(eventID, webhookID string) string {
	h := sha256.Sum256([]byte(eventID + "\x00" + webhookID))
	return "msg_" + idEncoding.EncodeToString(h[:16])
}

// hasRefinerWebhook reports whether the project has a webhook in the Refiner format, enabled or
// not (a webhook switched off and on again should find its users' answers): only then does fan-out
// remember its users' answers.
func hasRefinerWebhook(reg *registry.Registry, projectID string) bool {
	if projectID == "" {
		return false
	}
	return slices.ContainsFunc(reg.Webhooks(projectID), func(wh *pb.Webhook) bool { return wh.Format == envelope.FormatRefiner })
}

// checkRespondentPartitions refuses to start when `respondents` has fewer partitions than
// `events`: the users of `events` partition p are kept on `respondents` partition p.
func checkRespondentPartitions(ctx context.Context, adm *kadm.Client, t kafka.Topics) error {
	ds, err := adm.ListTopics(ctx, t.Events, t.Respondents)
	if err == nil {
		err = ds.Error()
	}
	if err != nil {
		return fmt.Errorf("describing %s and %s: %w", t.Events, t.Respondents, err)
	}
	if e, r := len(ds[t.Events].Partitions), len(ds[t.Respondents].Partitions); r < e {
		return fmt.Errorf("topic %s has %d partitions, fewer than %s (%d): give it as many (its partition p holds the users of %s partition p)",
			t.Respondents, r, t.Events, e, t.Events)
	}
	return nil
}
