package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/dedup"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/ids"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// traceHeaders are carried from the input (HTTP request or `survey-events` record) to `events`,
// so that a trace can follow one event through ingest.
var traceHeaders = []string{"traceparent", "tracestate", "baggage"}

// maxRecordBytes keeps one event under Kafka's default max.message.bytes (1 000 012) with room
// for the batch and headers; producerBatchBytes keeps a produced batch under it too.
const (
	maxRecordBytes     = 900_000
	producerBatchBytes = 1_000_000
)

// newEventID is the id of an HTTP event sent without one: a random UUID, so a retried request
// without ids cannot be recognised as a repeat (the producer should send its own ids).
func newEventID() string { return ids.UUID() }

// recordEventID is the id of a `survey-events` record without one: derived from the record's
// position, so reprocessing the record after a crash gives the same id and fan-out recognises
// the second copy as a repeat.
func recordEventID(r *kgo.Record) string {
	return ids.NameUUID(ids.Namespace, fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset))
}

// eventsKey is the key of ev on `events`: project id + "/" + user id (or anonymous id, or the
// response id, or the event id when none), so one user's events stay in order on one partition —
// and so do the copies of one event a producer retries, which fan-out's per-partition
// de-duplication relies on. The response id comes before the event id so that the events of a
// response without a user stay together and in order too: per-respondent ordering
// (docs/ordering.md) orders deliveries by response id, else user id, else anonymous id.
func eventsKey(ev *pb.Event) string {
	who := ev.GetUser().GetId()
	if who == "" {
		who = ev.GetUser().GetAnonymousId()
	}
	if who == "" {
		who = ev.GetResponse().GetId()
	}
	if who == "" {
		who = ev.EventId
	}
	return ev.ProjectId + "/" + who
}

// eventRecord is ev on `events`, stamped with its receive time (the de-duplication clock).
func (in *Ingest) eventRecord(ev *pb.Event, field string, headers []kgo.RecordHeader) (*kgo.Record, *httpapi.Error) {
	v, err := proto.Marshal(ev)
	if err != nil {
		return nil, httpapi.Errorf(http.StatusBadRequest, "invalid_event", field, "the event cannot be encoded: %v", err)
	}
	if len(v) > maxRecordBytes {
		return nil, httpapi.Errorf(http.StatusRequestEntityTooLarge, "event_too_large", field,
			"one event may encode to at most %d bytes, this one is %d", maxRecordBytes, len(v))
	}
	return &kgo.Record{Topic: in.cfg.Kafka.Topics.Events, Key: []byte(eventsKey(ev)), Value: v,
		Timestamp: time.UnixMilli(ev.ReceivedAtMs), Headers: headers}, nil
}

// produceAll writes recs and returns once Kafka acknowledged every one (acks=all, idempotent
// producer), or with the errors. On error some may be written: harmless, since a retry carries
// the same event ids and fan-out forwards each id once.
func produceAll(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	var errs error
	for _, f := range produceFailed(ctx, cl, recs) {
		errs = errors.Join(errs, f.err)
	}
	return errs
}

// recent is this process's memory of the event ids it wrote lately, for the synchronous
// "duplicate" answer: best effort (another process's ids, or ids older than what it holds, are
// not known here; fan-out still forwards each id once).
type recent struct {
	mu sync.Mutex
	w  *dedup.Window
}

func newRecent(span time.Duration, max int) *recent {
	if max <= 0 {
		return nil
	}
	return &recent{w: dedup.NewWindow(span, max, nil)}
}

func (c *recent) contains(k dedup.Key, ms int64) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Contains(k, ms)
}

func (c *recent) add(ks []dedup.Key, ms int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range ks {
		c.w.Add(k, ms)
	}
}

func idKey(project, eventID string) dedup.Key { return dedup.KeyOf([]byte(project + "/" + eventID)) }
