package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// BatchHandler processes one polled batch inside a transaction. It hands every output record to
// produce; it returns an error only for a failure that should abort and retry the whole batch
// (bad input is the handler's to route, never a reason to fail).
type BatchHandler func(ctx context.Context, records []*kgo.Record, produce func(*kgo.Record)) error

// TxnLoop is a consume→produce→commit loop: every polled batch's output records and its input
// offsets are committed in one Kafka transaction, so each input is processed exactly once into
// the output topics, across crashes and rebalances.
type TxnLoop struct {
	Config  Config
	Group   string   // consumer group
	Topics  []string // input topics
	Handler BatchHandler
	Logger  *slog.Logger
	Opts    []kgo.Opt // extra client options
	// Ended, when set, is called after every batch's transaction ended, with whether the batch's
	// output and offsets were committed. A handler that keeps state derived from its input applies
	// a batch's changes only once committed: an aborted batch is polled again.
	Ended func(committed bool)
	// Assigned, when set, is called after every group (re)assignment, also when this member got
	// no partitions: the loop has joined its group (readiness).
	Assigned func()
	// Telemetry, when set, traces the loop's records (kotel: a receive span per fetched record,
	// stored in its Context, a publish span per produced one) and reports its group's lag.
	Telemetry *telemetry.Telemetry
}

// txnTimeout bounds how long a transaction may stay open (kgo.TransactionTimeout).
const txnTimeout = 15 * time.Second

// Run polls and processes until ctx is done. A failure of the cluster (a broker restart, a
// transaction the broker aborted) never ends it: the session that failed is closed and a new one
// takes its place, under the same transactional id so that the broker aborts whatever the old one
// left open at once instead of after the transaction timeout.
func (l *TxnLoop) Run(ctx context.Context) error {
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	// A static member's transactional id is as stable as its group instance id: the restarted
	// process fences its crashed predecessor and aborts the transaction that one left open at
	// once, instead of every read_committed reader of those partitions waiting out the timeout.
	txnID := l.Group + "-" + InstanceID()
	if id := l.Config.Group.InstanceID; id != "" {
		txnID = l.Group + "-" + id
	}
	backoff := 100 * time.Millisecond
	for {
		began := time.Now()
		err := l.session(ctx, log, txnID)
		if ctx.Err() != nil {
			return nil
		}
		var cfgErr *configError
		if errors.As(err, &cfgErr) {
			return cfgErr.err
		}
		log.Warn("transactional session failed; starting a new one", "group", l.Group, "err", err)
		if time.Since(began) > time.Minute {
			backoff = 100 * time.Millisecond // it had been working: this is a new failure
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// configError is a session failure that a new session cannot cure.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }

// session runs one transactional session until ctx is done (nil) or the session is unusable: franz-go
// documents that no error of End (nor of Begin) is retryable on the same session.
func (l *TxnLoop) session(ctx context.Context, log *slog.Logger, txnID string) error {
	opts := append(baseOpts(l.Config),
		kgo.TransactionalID(txnID),
		// A crashed process's open transaction holds back read_committed readers of its
		// partitions until the broker aborts it: keep that short, and far above a batch's time.
		kgo.TransactionTimeout(txnTimeout),
		kgo.ConsumerGroup(l.Group),
		kgo.ConsumeTopics(l.Topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.FetchMaxWait(50*time.Millisecond),
	)
	opts = append(opts, l.Opts...)
	if l.Assigned != nil {
		opts = append(opts, kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { l.Assigned() }))
	}
	opts = append(opts, l.Telemetry.KafkaHooks()...)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return &configError{fmt.Errorf("creating transactional session for group %q: %w", l.Group, err)}
	}
	defer sess.Close()
	defer l.Telemetry.ObserveConsumerLag(sess.Client(), l.Group)()

	var (
		mu         sync.Mutex
		produceErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			produceErr = errors.Join(produceErr, err)
			mu.Unlock()
		}
	}
	backoff := 100 * time.Millisecond
	for {
		fetches := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("beginning transaction: %w", err)
		}
		mu.Lock()
		produceErr = nil
		mu.Unlock()
		herr := l.Handler(ctx, records, func(r *kgo.Record) { sess.Produce(ctx, r, promise) })
		// Flush and End on a context that outlives a shutdown: a transaction left open would hold
		// back every read_committed consumer of its partitions until the transaction timeout.
		endCtx, endCancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		// Every promise has run once Flush returns: a record that failed while being flushed must
		// turn the commit into an abort (End would commit the offsets without it).
		flushErr := sess.Client().Flush(endCtx)
		mu.Lock()
		failed := errors.Join(herr, produceErr, flushErr)
		mu.Unlock()
		commit := kgo.TryCommit
		if failed != nil {
			commit = kgo.TryAbort
		}
		committed, err := sess.End(endCtx, commit)
		endCancel()
		if l.Ended != nil {
			l.Ended(committed && err == nil && failed == nil)
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			// The batch will be processed again by whoever owns its partitions next.
			return fmt.Errorf("ending transaction: %w", err)
		case failed != nil:
			log.Warn("batch aborted; it will be processed again", "group", l.Group, "err", failed)
		case !committed:
			log.Info("transaction not committed (rebalance); the batch will be processed again", "group", l.Group)
		}
		if failed != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}
