package ingest

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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

// consume runs the transactional consumer of `survey-events`: each record becomes a claim on
// `ingest-accepted`, a counted preview, or a record on `survey-events-rejected` — together with
// its offset commit, so none is lost or handled twice.
func (in *Ingest) consume(ctx context.Context) error {
	var pending struct {
		records, previews, rejected int64
		reasons                     map[string]int // rejected records by error code, for the metric
	}
	loop := &kafka.TxnLoop{
		Config: in.cfg.Kafka, Group: in.cfg.Group, Topics: []string{in.cfg.Kafka.Topics.SurveyEvents}, Logger: in.log,
		Opts: []kgo.Opt{kgo.ProducerBatchMaxBytes(producerBatchBytes)}, Telemetry: in.deps.Telemetry,
		Handler: func(ctx context.Context, recs []*kgo.Record, produce func(*kgo.Record)) error {
			pending.records, pending.previews, pending.rejected = 0, 0, 0
			clear(pending.reasons)
			now := time.Now().UnixMilli()
			caughtUp := false
			for _, r := range recs {
				ev, herr := in.fromRecord(r, now)
				if herr != nil && herr.Code == codeUnknownProject && !caughtUp {
					// The project may be a moment old: catch up once per batch, then decide.
					if err := in.reg.WaitFresh(ctx); err != nil {
						return err
					}
					caughtUp = true
					ev, herr = in.fromRecord(r, now)
				}
				var claim *kgo.Record
				if herr == nil && !ev.Preview {
					claim, herr = in.claimRecord(ev, "", traceOf(r))
				}
				switch {
				case herr != nil:
					pending.rejected++
					if pending.reasons == nil {
						pending.reasons = map[string]int{}
					}
					pending.reasons[herr.Code]++
					produce(in.rejected(r, herr))
				case ev.Preview:
					pending.records++
					pending.previews++
				default:
					pending.records++
					telemetry.Continue(claim, r)
					produce(claim)
				}
			}
			return nil
		},
		Ended: func(committed bool) {
			if committed {
				in.stats.KafkaRecords.Add(pending.records)
				in.stats.Previews.Add(pending.previews)
				in.stats.Rejected.Add(pending.rejected)
				m := in.deps.Telemetry.Metrics()
				m.IngestEvents(context.Background(), int(pending.previews), "preview", "")
				for code, n := range pending.reasons {
					m.IngestEvents(context.Background(), n, "rejected", code)
				}
			}
		},
	}
	return loop.Run(ctx)
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
		ev.EventId = newEventID()
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
