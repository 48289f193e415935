package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Headers ingest reads on `survey-events` and writes on `survey-events-rejected`.
const (
	hdrContentType     = "content-type"
	hdrProjectID       = "project-id"
	hdrRejectionReason = "rejection-reason" // the message an HTTP client would get
	hdrRejectionField  = "rejection-field"  // the field path, when one is at fault
	hdrRejectionCode   = "rejection-code"   // the error code an HTTP client would get
	hdrSourcePartition = "source-partition"
	hdrSourceOffset    = "source-offset"
	hdrValueDropped    = "rejection-value-dropped" // set when the original value was too large to keep
)

// consume reads `survey-events`: each record becomes an Event on `events`, a counted preview, or
// a record on `survey-events-rejected`. No transaction: a polled batch's outputs are written and
// acknowledged first, then its offsets marked; marked offsets are committed in the background
// every commitInterval, and at every rebalance and shutdown (franz-go's autocommit of marks) — a
// synchronous commit per batch held the next poll back by a round trip (≈ 20 ms of the p99 at
// half load, `make bench`'s latency by stage). A crash before the commit writes those batches again on
// restart — the same event ids (recordEventID for records without one), which fan-out forwards
// once — and may repeat a rejected record on `survey-events-rejected`. Rebalances wait for the
// batch in hand (BlockRebalanceOnPoll), so two processes never handle one record at once.
func (in *Ingest) consume(ctx context.Context) error {
	group, topic := in.cfg.Group, in.cfg.Kafka.Topics.SurveyEvents
	cl, err := kafka.NewClient(in.cfg.Kafka, append([]kgo.Opt{
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.AutoCommitMarks(), kgo.AutoCommitInterval(commitInterval), kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitCallback(func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				in.log.Warn("committing survey-events offsets failed; written batches may be handled again", "err", err)
			}
		}),
		// A record wakes the waiting fetch at once; the wait only bounds how often an idle
		// consumer asks (HTTP-only deployments leave survey-events idle).
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(producerBatchBytes),
	}, in.deps.Telemetry.KafkaHooks()...)...)
	if err != nil {
		return fmt.Errorf("creating the %s consumer: %w", topic, err)
	}
	defer cl.Close()
	defer in.deps.Telemetry.ObserveConsumerLag(cl, group)()
	defer cl.AllowRebalance()
	for {
		fetches := cl.PollRecords(ctx, 10_000)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			in.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		if recs := fetches.Records(); len(recs) > 0 {
			// A failure (the registry cannot catch up while the broker restarts) never stops the
			// service: the batch is handled again — written twice at worst, same event ids.
			for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
				err := in.handleBatch(ctx, cl, recs)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return nil // not committed: the next owner handles the batch again
				}
				in.log.Warn("handling survey-events records failed; retrying", "records", len(recs), "err", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
			}
		}
		cl.AllowRebalance()
	}
}

// batchCounts are a batch's counters, added to Stats once its offsets are committed.
type batchCounts struct {
	records, previews, rejected, forwarded int
	reasons                                map[string]int // rejected records by error code, for the metric
}

// commitInterval is how often the offsets of written batches are committed: what a kill -9
// makes the next owner write again (the same event ids, forwarded once by fan-out).
const commitInterval = 200 * time.Millisecond

// handleBatch turns recs into output records, writes them until Kafka acknowledged every one
// (retrying what failed: a broker restart must not lose the batch), then marks recs' offsets
// for the next commit.
func (in *Ingest) handleBatch(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	var c batchCounts
	out := make([]*kgo.Record, 0, len(recs))
	now := time.Now().UnixMilli()
	caughtUp := false
	for _, r := range recs {
		ev, herr := in.fromRecord(r, now)
		if herr != nil && herr.Code == codeUnknownProject && !caughtUp {
			// The project may be a moment old: catch up once per batch, then decide.
			if err := in.reg.WaitFresh(ctx); err != nil {
				return fmt.Errorf("catching up on projects: %w", err)
			}
			caughtUp = true
			ev, herr = in.fromRecord(r, now)
		}
		var rec *kgo.Record
		if herr == nil && !ev.Preview {
			rec, herr = in.eventRecord(ev, "", traceOf(r))
		}
		switch {
		case herr != nil:
			c.rejected++
			if c.reasons == nil {
				c.reasons = map[string]int{}
			}
			c.reasons[herr.Code]++
			out = append(out, in.rejected(r, herr))
		case ev.Preview:
			c.records++
			c.previews++
		default:
			c.records++
			c.forwarded++
			telemetry.Continue(rec, r)
			out = append(out, rec)
		}
	}
	for backoff := 100 * time.Millisecond; len(out) > 0; backoff = min(2*backoff, 5*time.Second) {
		failed := produceFailed(ctx, cl, out)
		if len(failed) == 0 {
			break
		}
		in.log.Warn("writing events failed; retrying", "records", len(failed), "err", failed[0].err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		out = out[:0]
		for _, f := range failed {
			out = append(out, f.rec)
		}
	}
	// Written: its offsets may be committed (a failed commit is not fatal: the batch is handled
	// again by this group, same event ids, de-duplicated downstream).
	cl.MarkCommitRecords(recs...)
	in.stats.KafkaRecords.Add(int64(c.records))
	in.stats.Previews.Add(int64(c.previews))
	in.stats.Rejected.Add(int64(c.rejected))
	in.stats.Forwarded.Add(int64(c.forwarded))
	m := in.met
	m.Events(context.Background(), c.previews, "preview", "")
	m.Events(context.Background(), c.forwarded, "accepted", "")
	for code, n := range c.reasons {
		m.Events(context.Background(), n, "rejected", code)
	}
	return nil
}

type failedRecord struct {
	rec *kgo.Record
	err error
}

// produceFailed writes recs and returns those Kafka did not acknowledge.
func produceFailed(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) []failedRecord {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []failedRecord
	)
	wg.Add(len(recs))
	for _, r := range recs {
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				failed = append(failed, failedRecord{r, err})
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	return failed
}

const codeUnknownProject = "unknown_project"

// fromRecord decodes and validates one `survey-events` record: JSON (content-type
// application/json or none) or a protobuf Event (application/x-protobuf).
func (in *Ingest) fromRecord(r *kgo.Record, now int64) (*pb.Event, *httpapi.Error) {
	var (
		ev  *pb.Event
		pid string
	)
	ct := string(kafka.Header(r, hdrContentType))
	mt := ct
	if ct != "" && ct != "application/json" {
		mt, _, _ = mime.ParseMediaType(ct)
	}
	switch mt {
	case "", "application/json":
		if !json.Valid(r.Value) {
			return nil, syntaxError(r.Value)
		}
		d, herr := decodeEvent(r.Value, "", now)
		if herr != nil {
			return nil, herr
		}
		ev, pid = d.ev, d.projectID
	case "application/x-protobuf", "application/protobuf", "application/vnd.google.protobuf":
		ev = &pb.Event{}
		if err := proto.Unmarshal(r.Value, ev); err != nil {
			return nil, httpapi.Errorf(http.StatusBadRequest, "invalid_protobuf", "", "the record is not a surveyhooks.v1.Event: %v", err)
		}
		pid = ev.ProjectId
		ev.ReceivedAtMs = now
		if herr := Validate(ev, ""); herr != nil {
			return nil, herr
		}
	default:
		return nil, httpapi.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", hdrContentType,
			"content-type %q is neither application/json nor application/x-protobuf", ct)
	}
	if h := string(kafka.Header(r, hdrProjectID)); h != "" {
		if pid != "" && pid != h {
			return nil, bad("project_id", "project_id %q and the record header project-id %q disagree", pid, h)
		}
		pid = h
	}
	if pid == "" {
		return nil, missing("project_id", "project_id is required (the JSON field project_id or the record header project-id)")
	}
	if in.reg.Project(pid) == nil {
		return nil, httpapi.Errorf(http.StatusBadRequest, codeUnknownProject, "project_id", "unknown project %q", pid)
	}
	ev.ProjectId, ev.Source = pid, "kafka"
	if ev.EventId == "" {
		ev.EventId = recordEventID(r)
	}
	return ev, nil
}

// rejected is the copy of r kept for operators on `survey-events-rejected`: the original key,
// value and headers, plus why.
func (in *Ingest) rejected(r *kgo.Record, herr *httpapi.Error) *kgo.Record {
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+6)
	hs = append(hs, r.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: hdrRejectionReason, Value: []byte(herr.Message)},
		kgo.RecordHeader{Key: hdrRejectionField, Value: []byte(herr.Field)},
		kgo.RecordHeader{Key: hdrRejectionCode, Value: []byte(herr.Code)},
		kgo.RecordHeader{Key: hdrSourcePartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: hdrSourceOffset, Value: strconv.AppendInt(nil, r.Offset, 10)})
	value := r.Value
	if len(value)+len(r.Key) > maxRecordBytes {
		// It fitted on survey-events but may not with the headers added: keep the reason, say so.
		hs = append(hs, kgo.RecordHeader{Key: hdrValueDropped, Value: strconv.AppendInt(nil, int64(len(value)), 10)})
		value = nil
	}
	return &kgo.Record{Topic: in.cfg.Kafka.Topics.SurveyEventsRejected, Key: r.Key, Value: value, Headers: hs}
}

func traceOf(r *kgo.Record) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for _, h := range r.Headers {
		for _, t := range traceHeaders {
			if h.Key == t {
				out = append(out, h)
			}
		}
	}
	return out
}
