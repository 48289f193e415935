// Package sink moves `delivery-attempts` and `deliveries-dead` into ClickHouse. It batches by size
// and by time, inserts through pkg/attemptlog, and commits Kafka offsets only after ClickHouse
// acknowledged the batch. While ClickHouse is down it stops consuming and retries the batch it
// holds, then resumes: nothing is lost. When it gets a partition (at start, after a crash, on a
// rebalance) it reads the highest offset ClickHouse already holds for that partition and skips up
// to it, so rows inserted before a crash but not committed are not read again. Whatever reaches it
// twice anyway — the same attempt produced twice at two offsets by a worker that retried its
// produce, or read again after a rebalance — is stored once: attempt_id is the identity, and
// attempts whose id ClickHouse (or the batch) already holds are dropped before the insert, so
// neither the rows nor the rollup count an attempt twice. It never drops a record silently:
// unreadable ones are counted and logged. A project's storage masking rules (storagemask.go)
// apply to the bodies before they are stored; a masked dead letter keeps its body sealed for
// replay.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Config is the sink's configuration.
type Config struct {
	Kafka kafka.Config
	// ClickHouseAddr is the native-protocol address of ClickHouse.
	ClickHouseAddr string `env:"CLICKHOUSE_ADDR" envDefault:"127.0.0.1:9000"`
	// Database is created when missing; the schema is applied at start.
	Database string `env:"SINK_CLICKHOUSE_DATABASE" envDefault:"surveyhooks"`
	// BatchSize and FlushInterval bound a batch by rows and by age.
	BatchSize     int           `env:"SINK_BATCH_SIZE" envDefault:"10000"`
	FlushInterval time.Duration `env:"SINK_FLUSH_INTERVAL" envDefault:"1s"`
	// RetentionDays is how long a project's attempts and dead letters are kept unless
	// ProjectRetention names it; MaxRetentionDays bounds every project (the platform maximum).
	RetentionDays    int `env:"SINK_RETENTION_DAYS" envDefault:"30"`
	MaxRetentionDays int `env:"SINK_MAX_RETENTION_DAYS" envDefault:"90"`
	// ProjectRetention is days per project: "proj_a=7,proj_b=60".
	ProjectRetention map[string]int `env:"SINK_PROJECT_RETENTION" envSeparator:"," envKeyValSeparator:"="`
	// Group is the consumer group of the sink processes.
	Group string `env:"SINK_GROUP" envDefault:"surveyhooks-sink"`
	// EncryptionKey (32 bytes, standard base64; api's and delivery's key) keys the "hash"
	// storage masking rules per project and seals dead letters' unmasked bodies for replay.
	// Optional: without it a project's hash rule stores no body at all, and its dead letters
	// cannot be replayed.
	EncryptionKey string `env:"SURVEYHOOKS_ENCRYPTION_KEY"`
}

// Validate reports the first configuration error, naming the variable.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 1:
		return errors.New("SINK_BATCH_SIZE: must be at least 1")
	case c.FlushInterval <= 0:
		return errors.New("SINK_FLUSH_INTERVAL: must be positive")
	case c.MaxRetentionDays < 1 || c.MaxRetentionDays > 3650:
		return errors.New("SINK_MAX_RETENTION_DAYS: must be within 1–3650")
	case c.RetentionDays < 1 || c.RetentionDays > c.MaxRetentionDays:
		return errors.New("SINK_RETENTION_DAYS: must be within 1 and SINK_MAX_RETENTION_DAYS")
	case c.retention().Validate() != nil:
		return fmt.Errorf("SINK_PROJECT_RETENTION: %w", c.retention().Validate())
	case c.Database == "":
		return errors.New("SINK_CLICKHOUSE_DATABASE: must not be empty")
	}
	if c.EncryptionKey != "" {
		if _, err := secrets.NewBox(c.EncryptionKey); err != nil {
			return fmt.Errorf("SURVEYHOOKS_ENCRYPTION_KEY: %w", err)
		}
	}
	return c.Kafka.Validate()
}

func (c Config) retention() attemptlog.Retention {
	return attemptlog.Retention{DefaultDays: c.RetentionDays, MaxDays: c.MaxRetentionDays, Projects: c.ProjectRetention}
}

// Stats counts what the sink did since start.
type Stats struct {
	Attempts    atomic.Int64 // attempt rows inserted
	DeadLetters atomic.Int64 // dead letter rows inserted
	Skipped     atomic.Int64 // records ClickHouse already held (by offset)
	Duplicates  atomic.Int64 // attempts whose attempt_id was already stored or in the batch
	Unreadable  atomic.Int64 // records that did not decode
	InsertFails atomic.Int64 // failed inserts (retried)
}

// Sink is one sink process.
type Sink struct {
	cfg   Config
	log   *slog.Logger
	Stats Stats
	// afterInsert, when set (tests), runs after a batch is in ClickHouse and before its offsets are
	// committed: returning an error simulates a crash at that point.
	afterInsert func() error

	mu     sync.Mutex
	stored map[string]map[int32]int64 // topic → partition → highest offset in ClickHouse
	deps   service.Deps
	reg    *registry.Registry // projects' storage masking rules
	masks  *storageMasker
	met    *Metrics
}

// Run runs the sink until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger, opts ...service.Option) error {
	return New(cfg, log, opts...).Run(ctx)
}

// New returns a sink; Run starts it.
func New(cfg Config, log *slog.Logger, opts ...service.Option) *Sink {
	if log == nil {
		log = slog.Default()
	}
	return &Sink{cfg: cfg, log: log, stored: map[string]map[int32]int64{}, deps: service.Apply(opts),
		masks: newStorageMasker(cfg.EncryptionKey, log)}
}

type batch struct {
	attempts []*pb.Attempt
	asrc     []attemptlog.Source
	dead     []*pb.Delivery
	draw     [][]byte
	dsrc     []attemptlog.Source
	day      string
	started  time.Time
}

func (b *batch) len() int { return len(b.attempts) + len(b.dead) }

// Run consumes until ctx is done.
// fetchMinBytes is what a fetch of `delivery-attempts` waits for, up to fetchMaxWait: about a
// hundred attempt records.
const fetchMinBytes = 256 << 10

// fetchMaxWait bounds how long a fetch waits for fetchMinBytes: half the flush interval (so a
// row reaches ClickHouse at most 1.5 flush intervals after its attempt), at most 500 ms.
func fetchMaxWait(flush time.Duration) time.Duration {
	return min(max(flush/2, 10*time.Millisecond), 500*time.Millisecond)
}

func (s *Sink) Run(ctx context.Context) error {
	schemaReady := s.deps.Ready.Wait("ClickHouse schema")
	joined := s.deps.Ready.Wait("group " + s.cfg.Group + " joined")
	if err := kafka.EnsureTopics(ctx, s.cfg.Kafka); err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	met, err := NewMetrics(s.deps.Telemetry)
	if err != nil {
		return err
	}
	s.met = met
	reg, err := registry.New(s.cfg.Kafka, s.log)
	if err != nil {
		return err
	}
	rctx, stopRegistry := context.WithCancel(ctx)
	running := registry.Start(rctx, reg, nil)
	defer func() { stopRegistry(); _ = running.Wait() }()
	s.reg = reg
	store, err := s.openStore(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	defer store.Close()
	schemaReady()
	topics := s.cfg.Kafka.Topics
	cl, err := kafka.NewClient(s.cfg.Kafka,
		kgo.ConsumerGroup(s.cfg.Group), kgo.ConsumeTopics(topics.Attempts, topics.Dead),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
		// A fetch waits for a batch's worth of attempts (or fetchMaxWait) instead of returning
		// each record as it arrives: the rows wait for the flush anyway, and at a low steady rate
		// a fetch per attempt cost the broker and this process more than the inserts.
		kgo.FetchMinBytes(fetchMinBytes), kgo.FetchMaxWait(fetchMaxWait(s.cfg.FlushInterval)),
		kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, _ map[string][]int32) {
			s.loadStored(ctx, store)
			joined()
		}),
	)
	if err != nil {
		return err
	}
	// With BlockRebalanceOnPoll, Close would wait forever in LeaveGroup unless rebalancing is allowed.
	defer func() { cl.AllowRebalance(); cl.Close() }()
	defer s.deps.Telemetry.ObserveConsumerLag(cl, s.cfg.Group)()
	go s.retention(ctx, store)
	s.log.Info("sink running", "clickhouse", s.cfg.ClickHouseAddr, "database", s.cfg.Database)

	b := &batch{}
	for {
		wait := s.cfg.FlushInterval
		if b.len() > 0 {
			wait = max(time.Until(b.started.Add(s.cfg.FlushInterval)), time.Millisecond)
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		fs := cl.PollRecords(pctx, s.cfg.BatchSize-b.len())
		cancel()
		if ctx.Err() != nil {
			return nil // what is not committed is read again by the next owner
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		if fs.NumRecords() > 0 {
			// Read-your-writes: a storage rule set before these records were fetched applies.
			if err := reg.WaitFresh(ctx); err != nil {
				return nil // ctx done
			}
		}
		var split bool
		fs.EachRecord(func(r *kgo.Record) { split = s.add(b, r) || split })
		if b.len() > 0 && (split || b.len() >= s.cfg.BatchSize || time.Since(b.started) >= s.cfg.FlushInterval) {
			if err := s.flush(ctx, store, b); err != nil {
				return nil // ctx done
			}
			if s.afterInsert != nil {
				if err := s.afterInsert(); err != nil {
					return err
				}
			}
			if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("committing offsets failed; rows will be skipped on re-read", "err", err)
			}
			b = &batch{}
		} else if fs.NumRecords() > 0 && b.len() == 0 {
			// Everything polled was skipped: commit so the group moves on.
			_ = cl.CommitUncommittedOffsets(ctx)
		}
		cl.AllowRebalance()
	}
}

func (s *Sink) openStore(ctx context.Context) (*attemptlog.Store, error) {
	backoff := 200 * time.Millisecond
	for {
		store, err := attemptlog.Open(ctx, s.cfg.ClickHouseAddr, s.cfg.Database,
			attemptlog.WithRetention(s.cfg.retention()), attemptlog.WithLogger(s.log))
		if err == nil {
			if err = store.Migrate(ctx); err == nil {
				return store, nil
			}
			store.Close()
			return nil, err // a schema error does not heal by waiting
		}
		s.log.Warn("ClickHouse not reachable yet", "addr", s.cfg.ClickHouseAddr, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// loadStored reads, per partition, the highest offset ClickHouse holds; it retries until it can.
func (s *Sink) loadStored(ctx context.Context, store *attemptlog.Store) {
	for ctx.Err() == nil {
		a, err1 := store.MaxOffsets(ctx, "delivery_attempts")
		d, err2 := store.MaxOffsets(ctx, "dead_letters")
		if err := errors.Join(err1, err2); err != nil {
			s.log.Warn("reading stored offsets from ClickHouse; retrying", "err", err)
			time.Sleep(time.Second)
			continue
		}
		s.mu.Lock()
		s.stored[s.cfg.Kafka.Topics.Attempts] = a
		s.stored[s.cfg.Kafka.Topics.Dead] = d
		s.mu.Unlock()
		return
	}
}

// add puts r into b; it reports whether b must be flushed first because r starts a new day (a
// batch stays within one daily partition so that its insert is one atomic part).
func (s *Sink) add(b *batch, r *kgo.Record) (flushFirst bool) {
	s.mu.Lock()
	stored, ok := s.stored[r.Topic][r.Partition]
	s.mu.Unlock()
	if ok && r.Offset <= stored {
		s.Stats.Skipped.Add(1)
		return false
	}
	if b.len() == 0 {
		b.started = time.Now()
	}
	src := attemptlog.Source{Partition: r.Partition, Offset: r.Offset}
	switch r.Topic {
	case s.cfg.Kafka.Topics.Attempts:
		a := &pb.Attempt{}
		if err := proto.Unmarshal(r.Value, a); err != nil || a.AttemptId == "" {
			s.Stats.Unreadable.Add(1)
			s.log.Error("unreadable attempt skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
			return false
		}
		s.masks.attempt(s.reg.Project(a.ProjectId), a)
		b.attempts, b.asrc = append(b.attempts, a), append(b.asrc, src)
		day := time.UnixMilli(a.StartedAtMs).UTC().Format("20060102")
		if b.day == "" {
			b.day = day
		}
		return day != b.day
	case s.cfg.Kafka.Topics.Dead:
		d := &pb.Delivery{}
		if err := proto.Unmarshal(r.Value, d); err != nil || d.DeliveryId == "" {
			s.Stats.Unreadable.Add(1)
			s.log.Error("unreadable dead letter skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
			return false
		}
		raw := s.masks.deadLetter(s.reg.Project(d.ProjectId), d, r.Value)
		b.dead, b.draw, b.dsrc = append(b.dead, d), append(b.draw, raw), append(b.dsrc, src)
	}
	return false
}

// flush inserts b, retrying until ClickHouse takes it or ctx is done.
func (s *Sink) flush(ctx context.Context, store *attemptlog.Store, b *batch) error {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := s.insert(ctx, store, b)
		if err == nil {
			s.met.Batch(ctx, b.len(), time.Since(start))
			return nil
		}
		s.Stats.InsertFails.Add(1)
		s.log.Warn("inserting into ClickHouse failed; holding the batch and retrying", "rows", b.len(), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Sink) insert(ctx context.Context, store *attemptlog.Store, b *batch) error {
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// A batch may span midnight (see add): insert each day as its own block.
	for start := 0; start < len(b.attempts); {
		day := time.UnixMilli(b.attempts[start].StartedAtMs).UTC().Format("20060102")
		end := start + 1
		for end < len(b.attempts) && time.UnixMilli(b.attempts[end].StartedAtMs).UTC().Format("20060102") == day {
			end++
		}
		as, src, err := s.newAttempts(ictx, store, b.attempts[start:end], b.asrc[start:end])
		if err != nil {
			return err
		}
		if len(as) > 0 {
			if err := store.InsertAttempts(ictx, as, src); err != nil {
				return err
			}
		}
		s.Stats.Attempts.Add(int64(len(as)))
		s.markStored(s.cfg.Kafka.Topics.Attempts, b.asrc[start:end])
		b.attempts, b.asrc = b.attempts[end:], b.asrc[end:]
	}
	if len(b.dead) > 0 {
		if err := store.InsertDeadLetters(ictx, b.dead, b.draw, b.dsrc); err != nil {
			return err
		}
		s.Stats.DeadLetters.Add(int64(len(b.dead)))
		s.markStored(s.cfg.Kafka.Topics.Dead, b.dsrc)
		b.dead, b.draw, b.dsrc = nil, nil, nil
	}
	return nil
}

// newAttempts keeps the attempts whose attempt_id is neither in ClickHouse nor earlier in the batch.
func (s *Sink) newAttempts(ctx context.Context, store *attemptlog.Store, as []*pb.Attempt, src []attemptlog.Source) ([]*pb.Attempt, []attemptlog.Source, error) {
	stored, err := store.StoredAttemptIDs(ctx, as)
	if err != nil {
		return nil, nil, err
	}
	keep, keepSrc := make([]*pb.Attempt, 0, len(as)), make([]attemptlog.Source, 0, len(as))
	for i, a := range as {
		if stored[a.AttemptId] {
			s.Stats.Duplicates.Add(1)
			continue
		}
		stored[a.AttemptId] = true
		keep, keepSrc = append(keep, a), append(keepSrc, src[i])
	}
	return keep, keepSrc, nil
}

func (s *Sink) markStored(topic string, src []attemptlog.Source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.stored[topic]
	if m == nil {
		m = map[int32]int64{}
		s.stored[topic] = m
	}
	for _, x := range src {
		if cur, ok := m[x.Partition]; !ok || x.Offset > cur {
			m[x.Partition] = x.Offset
		}
	}
}

// retention removes rows past their project's retention, at start and then hourly (see
// attemptlog.Store.EnforceRetention: TTL on a current server, deletes and dropped partitions on 18.16).
func (s *Sink) retention(ctx context.Context, store *attemptlog.Store) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := store.EnforceRetention(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
