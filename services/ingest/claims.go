package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Record headers ingest writes on `ingest-accepted` and `event-ids`.
const (
	hdrEventsKey = "events-key"    // the `events` key of a claim: project/user
	hdrClaim     = "ingest-claim"  // instance/request/index of an HTTP claim waiting for its verdict
	hdrVerdict   = "dedup-verdict" // on `event-ids`: verdictAccepted or verdictDuplicate
)

const (
	verdictAccepted  = "accepted"
	verdictDuplicate = "duplicate"
)

// traceHeaders are carried from the input (HTTP request or `survey-events` record) to `events`,
// so that a trace can follow one event through ingest.
var traceHeaders = []string{"traceparent", "tracestate", "baggage"}

// maxRecordBytes keeps one claim under Kafka's default max.message.bytes (1 000 012) with room
// for the batch and headers; producerBatchBytes keeps a produced batch under it too.
const (
	maxRecordBytes     = 900_000
	producerBatchBytes = 1_000_000
)

func newEventID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "evt_" + hex.EncodeToString(b)
}

// eventsKey is the key of ev on `events`: project id + "/" + user id (or anonymous id, or the
// event id when neither), so one user's events stay in order.
func eventsKey(ev *pb.Event) string {
	who := ev.GetUser().GetId()
	if who == "" {
		who = ev.GetUser().GetAnonymousId()
	}
	if who == "" {
		who = ev.EventId
	}
	return ev.ProjectId + "/" + who
}

// claimRecord is ev on its way to de-duplication: keyed by project/event_id on `ingest-accepted`,
// stamped with its receive time (the de-duplication clock).
func (in *Ingest) claimRecord(ev *pb.Event, field string, headers []kgo.RecordHeader) (*kgo.Record, *httpapi.Error) {
	v, err := proto.Marshal(ev)
	if err != nil {
		return nil, httpapi.Errorf(http.StatusBadRequest, "invalid_event", field, "the event cannot be encoded: %v", err)
	}
	if len(v) > maxRecordBytes {
		return nil, httpapi.Errorf(http.StatusRequestEntityTooLarge, "event_too_large", field,
			"one event may encode to at most %d bytes, this one is %d", maxRecordBytes, len(v))
	}
	hs := make([]kgo.RecordHeader, 0, len(headers)+2) // room for the HTTP claim header
	hs = append(append(hs, headers...), kgo.RecordHeader{Key: hdrEventsKey, Value: []byte(eventsKey(ev))})
	return &kgo.Record{Topic: in.cfg.Kafka.Topics.IngestAccepted, Key: []byte(ev.ProjectId + "/" + ev.EventId),
		Value: v, Timestamp: time.UnixMilli(ev.ReceivedAtMs), Headers: hs}, nil
}

// committer writes HTTP claims in Kafka transactions. Requests that arrive while a transaction is
// being committed are grouped into the next one, so one request's batch is all or nothing and
// many concurrent requests cost few transactions.
type committer struct {
	cfg   kafka.Config
	txnID string
	log   *slog.Logger
	reqs  chan *commitReq
	done  chan struct{}
	cl    *kgo.Client
	opts  []kgo.Opt // tracing hooks
}

type commitReq struct {
	recs []*kgo.Record
	err  chan error
}

// maxTxnRecords bounds the records grouped into one transaction.
const maxTxnRecords = 20_000

var errStopping = errors.New("ingest is shutting down")

func newCommitter(cfg kafka.Config, txnID string, log *slog.Logger, opts ...kgo.Opt) *committer {
	return &committer{cfg: cfg, txnID: txnID, log: log, reqs: make(chan *commitReq, 1024), done: make(chan struct{}), opts: opts}
}

// submit returns once recs are committed to Kafka, or with the reason they are not.
func (c *committer) submit(ctx context.Context, recs []*kgo.Record) error {
	req := &commitReq{recs: recs, err: make(chan error, 1)}
	select {
	case c.reqs <- req:
	case <-c.done:
		return errStopping
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.err:
		return err
	case <-ctx.Done():
		return ctx.Err() // the transaction may still commit: de-duplication covers a retry
	}
}

func (c *committer) run(ctx context.Context) error {
	defer func() {
		close(c.done)
		if c.cl != nil {
			c.cl.Close()
		}
		for {
			select {
			case r := <-c.reqs:
				r.err <- errStopping
			default:
				return
			}
		}
	}()
	for {
		var batch []*commitReq
		select {
		case r := <-c.reqs:
			batch = append(batch, r)
		case <-ctx.Done():
			return nil
		}
		n := len(batch[0].recs)
	more:
		for n < maxTxnRecords {
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
				n += len(r.recs)
			default:
				break more
			}
		}
		err := c.commit(ctx, batch)
		if err != nil {
			c.log.Error("writing accepted events failed", "events", n, "err", err)
		}
		for _, r := range batch {
			r.err <- err
		}
	}
}

func (c *committer) commit(ctx context.Context, batch []*commitReq) error {
	if c.cl == nil {
		cl, err := kafka.NewClient(c.cfg, append([]kgo.Opt{kgo.TransactionalID(c.txnID), kgo.TransactionTimeout(10 * time.Second),
			kgo.ProducerBatchMaxBytes(producerBatchBytes), kgo.ProducerLinger(0)}, c.opts...)...)
		if err != nil {
			return err
		}
		c.cl = cl
	}
	// Detached from shutdown: a transaction left open would hold back every read_committed
	// consumer of its partitions until the transaction timeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	if err := c.cl.BeginTransaction(); err != nil {
		c.reset()
		return fmt.Errorf("beginning transaction: %w", err)
	}
	var (
		mu   sync.Mutex
		perr error
	)
	for _, r := range batch {
		for _, rec := range r.recs {
			c.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					perr = errors.Join(perr, err)
					mu.Unlock()
				}
			})
		}
	}
	if err := c.cl.Flush(ctx); err != nil {
		perr = errors.Join(perr, err)
	}
	end := kgo.TryCommit
	if perr != nil {
		end = kgo.TryAbort
		_ = c.cl.AbortBufferedRecords(ctx)
	}
	if err := c.cl.EndTransaction(ctx, end); err != nil {
		c.reset() // a fresh producer id: the old one may be fenced or mid-abort
		return errors.Join(perr, fmt.Errorf("ending transaction: %w", err))
	}
	return perr
}

func (c *committer) reset() {
	if c.cl != nil {
		c.cl.Close()
		c.cl = nil
	}
}
