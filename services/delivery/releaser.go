package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Releaser moves retries from the tier topics back to `deliveries` when they are due. Every
// record in one tier has the same delay, so a tier partition is in due order: the releaser holds
// a partition's not-yet-due head, pauses fetching that partition, and wakes when the earliest held
// head is due — one wake-up for the whole process, no timer per record, no polling. The due time
// travels in the record, so a restart keeps the schedule. A released record's offset is committed
// only after `deliveries` acknowledged it.
type Releaser struct {
	cfg  Config
	log  *slog.Logger
	cl   *kgo.Client
	deps service.Deps

	mu   sync.Mutex
	held map[tp][]*kgo.Record // per tier partition, in offset order
}

type tp struct {
	topic     string
	partition int32
}

// NewReleaser connects the releaser's Kafka client; Run starts it.
func NewReleaser(cfg Config, log *slog.Logger, opts ...service.Option) (*Releaser, error) {
	r := &Releaser{cfg: cfg, log: log, held: map[tp][]*kgo.Record{}, deps: service.Apply(opts)}
	joined := r.deps.Ready.Wait("group " + cfg.ReleaserGroup + " joined")
	var topics []string
	for _, d := range cfg.Kafka.RetrySchedule {
		topics = append(topics, cfg.Kafka.Topics.Retry(d))
	}
	forget := func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for t, ps := range m {
			for _, p := range ps {
				delete(r.held, tp{t, p})
			}
		}
		cl.ResumeFetchPartitions(m)
	}
	cl, err := kafka.NewClient(cfg.Kafka, append(r.deps.Telemetry.KafkaHooks(),
		kgo.ConsumerGroup(cfg.ReleaserGroup), kgo.ConsumeTopics(topics...), kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.OnPartitionsRevoked(forget), kgo.OnPartitionsLost(forget),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { joined() }))...)
	if err != nil {
		return nil, err
	}
	r.cl = cl
	return r, nil
}

func dueMs(rec *kgo.Record) (int64, bool) {
	d := &pb.Delivery{}
	if err := proto.Unmarshal(rec.Value, d); err != nil || d.DeliveryId == "" {
		return 0, false
	}
	return d.NotBeforeMs, true
}

// Run releases until ctx is done.
func (r *Releaser) Run(ctx context.Context) error {
	// With BlockRebalanceOnPoll, Close would wait forever in LeaveGroup unless rebalancing is allowed.
	defer func() { r.cl.AllowRebalance(); r.cl.Close() }()
	for ctx.Err() == nil {
		next, err := r.release(ctx)
		if err != nil {
			r.log.Warn("releasing retries failed; will try again", "err", err)
			next = time.Now().Add(time.Second)
		}
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if !next.IsZero() {
			pctx, cancel = context.WithDeadline(ctx, next)
		}
		fs := r.cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded {
				r.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		r.mu.Lock()
		pause := map[string][]int32{}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			k := tp{p.Topic, p.Partition}
			r.held[k] = append(r.held[k], p.Records...)
			pause[p.Topic] = append(pause[p.Topic], p.Partition)
		})
		r.mu.Unlock()
		if len(pause) > 0 {
			// Hold what we have; fetch no more of these partitions until their heads are released.
			r.cl.PauseFetchPartitions(pause)
		}
		r.cl.AllowRebalance()
	}
	return nil
}

// release produces every due held record to `deliveries`, commits them, resumes emptied
// partitions, and returns when the next held record is due (zero: nothing held).
func (r *Releaser) release(ctx context.Context) (time.Time, error) {
	now := time.Now().UnixMilli()
	var out, commit []*kgo.Record
	var next int64
	emptied := map[string][]int32{}
	r.mu.Lock()
	for k, recs := range r.held {
		i := 0
		for ; i < len(recs); i++ {
			due, ok := dueMs(recs[i])
			if !ok {
				r.log.Error("unreadable retry record skipped", "topic", k.topic, "partition", k.partition, "offset", recs[i].Offset)
				continue
			}
			if due > now {
				if next == 0 || due < next {
					next = due
				}
				break
			}
			rec := &kgo.Record{Topic: r.cfg.Kafka.Topics.Deliveries, Key: recs[i].Key, Value: recs[i].Value,
				Headers: slices.Clone(recs[i].Headers)}
			telemetry.Continue(rec, recs[i])
			out = append(out, rec)
		}
		if i > 0 {
			commit = append(commit, recs[i-1])
		}
		if i == len(recs) {
			emptied[k.topic] = append(emptied[k.topic], k.partition)
		}
	}
	r.mu.Unlock()
	// Produce and commit outlive a shutdown that starts meanwhile: released but uncommitted
	// records would be released again by the next owner.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if len(out) > 0 {
		if err := r.cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
			return time.Time{}, fmt.Errorf("producing %d due retries: %w", len(out), err)
		}
	}
	if len(commit) > 0 {
		if err := r.cl.CommitRecords(ctx, commit...); err != nil {
			return time.Time{}, fmt.Errorf("committing released retries: %w", err)
		}
	}
	// Only now drop what was released: a failure above leaves it held and retried.
	r.mu.Lock()
	for k, recs := range r.held {
		i := 0
		for ; i < len(recs); i++ {
			if due, ok := dueMs(recs[i]); ok && due > now {
				break
			}
		}
		if i == len(recs) {
			delete(r.held, k)
		} else {
			r.held[k] = recs[i:]
		}
	}
	r.mu.Unlock()
	if len(emptied) > 0 {
		r.cl.ResumeFetchPartitions(emptied)
	}
	if next == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(next), nil
}

// tierStates reports each retry tier's backlog for the metrics: depth is the releaser group's lag
// on the tier topic (held and not yet fetched records alike), oldest age the time since the
// oldest held record entered the tier (a tier partition's head is always held while it has one).
func (r *Releaser) tierStates() []TierState {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	depth := map[string]int64{}
	if lags, err := kadm.NewClient(r.cl).Lag(ctx, r.cfg.ReleaserGroup); err == nil {
		for _, g := range lags {
			for topic, parts := range g.Lag {
				for _, l := range parts {
					if l.Err == nil && l.Lag > 0 {
						depth[topic] += l.Lag
					}
				}
			}
		}
	}
	now := time.Now()
	oldest := map[string]time.Time{}
	r.mu.Lock()
	for k, recs := range r.held {
		if len(recs) > 0 {
			if o, ok := oldest[k.topic]; !ok || recs[0].Timestamp.Before(o) {
				oldest[k.topic] = recs[0].Timestamp
			}
		}
	}
	r.mu.Unlock()
	out := make([]TierState, 0, len(r.cfg.Kafka.RetrySchedule))
	for _, d := range r.cfg.Kafka.RetrySchedule {
		topic := r.cfg.Kafka.Topics.Retry(d)
		s := TierState{Tier: kafka.DurationName(d), Depth: depth[topic]}
		if o, ok := oldest[topic]; ok {
			s.OldestAge = now.Sub(o)
		}
		out = append(out, s)
	}
	return out
}
