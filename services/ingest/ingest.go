// Package ingest accepts survey events — over HTTP (`POST /v1/events`, authenticated with the
// project's API key) and from the `survey-events` topic — validates them per event type, assigns
// event ids, and writes the canonical Event to `events`. An HTTP caller gets 202 only once Kafka
// has the events; bad HTTP input gets a 4xx naming the field; a bad Kafka record goes to
// `survey-events-rejected` with the reason, in the same transaction as its offset. Preview events
// are validated and counted but never forwarded. Nothing is dropped silently.
package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Config is the ingest service's configuration.
type Config struct {
	Kafka kafka.Config
	// Addr is the HTTP listen address.
	Addr string `env:"INGEST_ADDR" envDefault:"127.0.0.1:8080"`
	// Group is the consumer group reading `survey-events`.
	Group string `env:"INGEST_GROUP" envDefault:"surveyhooks-ingest"`
	// MaxBodyBytes bounds one HTTP request body.
	MaxBodyBytes int64 `env:"INGEST_MAX_BODY_BYTES" envDefault:"1048576"`
	// MaxBatch bounds the events of one `{"events":[…]}` request.
	MaxBatch int `env:"INGEST_MAX_BATCH" envDefault:"500"`
}

// Validate reports the first configuration error, naming the variable.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("INGEST_ADDR: %w", err)
	}
	switch {
	case c.Group == "":
		return errors.New("INGEST_GROUP: must not be empty")
	case c.MaxBodyBytes < 1024:
		return errors.New("INGEST_MAX_BODY_BYTES: must be at least 1024")
	case c.MaxBatch < 1:
		return errors.New("INGEST_MAX_BATCH: must be at least 1")
	}
	return c.Kafka.Validate()
}

// Stats counts what ingest did since start.
type Stats struct {
	Accepted atomic.Int64 // events written to `events`
	Previews atomic.Int64 // preview events counted and not forwarded
	Rejected atomic.Int64 // events or records refused
}

// Ingest is one ingest process.
type Ingest struct {
	cfg   Config
	log   *slog.Logger
	reg   *registry.Registry
	kcl   *kgo.Client
	Stats Stats
}

// Run serves HTTP and consumes `survey-events` until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if err := kafka.EnsureTopics(ctx, cfg.Kafka); err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	reg, err := registry.New(cfg.Kafka, log)
	if err != nil {
		return err
	}
	kcl, err := kafka.NewClient(cfg.Kafka)
	if err != nil {
		return err
	}
	defer kcl.Close()
	in := &Ingest{cfg: cfg, log: log, reg: reg, kcl: kcl}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reg.Run(ctx) })
	g.Go(func() error {
		if err := reg.WaitFresh(ctx); err != nil {
			return nil
		}
		loop := &kafka.TxnLoop{Config: cfg.Kafka, Group: cfg.Group, Topics: []string{cfg.Kafka.Topics.SurveyEvents},
			Logger: log, Handler: in.handleRecords}
		return loop.Run(ctx)
	})
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("INGEST_ADDR %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{Handler: in.Handler(), ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	log.Info("ingest listening", "addr", cfg.Addr, "topic", cfg.Kafka.Topics.SurveyEvents)
	return g.Wait()
}

// Handler is ingest's HTTP API.
func (in *Ingest) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /v1/events", in.postEvents)
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]int64{"accepted": in.Stats.Accepted.Load(),
			"previews": in.Stats.Previews.Load(), "rejected": in.Stats.Rejected.Load()})
	})
	return mux
}

func newEventID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "evt_" + hex.EncodeToString(b)
}

func (in *Ingest) postEvents(w http.ResponseWriter, r *http.Request) {
	err := in.accept(w, r)
	if err != nil {
		in.Stats.Rejected.Add(1)
		httpapi.WriteError(w, err)
	}
}

func (in *Ingest) accept(w http.ResponseWriter, r *http.Request) error {
	key := httpapi.BearerToken(r)
	project := in.reg.ProjectByAPIKey(key)
	if key == "" || project == nil {
		return httpapi.Errorf(http.StatusUnauthorized, "unauthorized", "", "a valid project API key is required: Authorization: Bearer <api_key>")
	}
	if r.Header.Get("Content-Type") == "" {
		return httpapi.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "", "Content-Type must be application/json")
	}
	body, err := httpapi.ReadJSONBody(r, in.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	raws := []json.RawMessage{body}
	prefix := func(int) string { return "" }
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '{' && bytes.Contains(trimmed[:min(len(trimmed), 64)], []byte(`"events"`)) {
		var batch struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := httpapi.DecodeStrict(body, &batch); err != nil {
			return err
		}
		if len(batch.Events) == 0 {
			return httpapi.Errorf(http.StatusBadRequest, "invalid_field", "events", "events must hold at least one event")
		}
		if len(batch.Events) > in.cfg.MaxBatch {
			return httpapi.Errorf(http.StatusRequestEntityTooLarge, "batch_too_large", "events", "at most %d events per request, got %d", in.cfg.MaxBatch, len(batch.Events))
		}
		raws = batch.Events
		prefix = func(i int) string { return fmt.Sprintf("events[%d].", i) }
	}
	now := time.Now()
	ids := make([]string, len(raws))
	var recs []*kgo.Record
	previews := 0
	for i, raw := range raws {
		ev, pid, herr := decodeEvent(raw, prefix(i), now)
		if herr != nil {
			return herr // one bad event rejects the batch: nothing is produced
		}
		if pid != "" && pid != project.Id {
			return httpapi.Errorf(http.StatusBadRequest, "invalid_field", prefix(i)+"project_id", "project_id does not match the API key's project")
		}
		ev.ProjectId, ev.Source = project.Id, "http"
		if ev.EventId == "" {
			ev.EventId = newEventID()
		}
		ids[i] = ev.EventId
		if ev.Preview {
			previews++
			continue
		}
		recs = append(recs, in.eventRecord(ev, nil))
	}
	if len(recs) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		if err := in.kcl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			in.log.Error("writing events failed", "events", len(recs), "err", err)
			return httpapi.Errorf(http.StatusServiceUnavailable, "unavailable", "", "events could not be stored; retry the request")
		}
	}
	in.Stats.Accepted.Add(int64(len(recs)))
	in.Stats.Previews.Add(int64(previews))
	out := map[string]any{"event_ids": ids}
	if previews > 0 {
		out["previews"] = previews
	}
	httpapi.WriteJSON(w, http.StatusAccepted, out)
	return nil
}

func (in *Ingest) eventRecord(ev *pb.Event, headers []kgo.RecordHeader) *kgo.Record {
	v, _ := proto.Marshal(ev)
	who := ev.GetUser().GetId()
	if who == "" {
		who = ev.GetUser().GetAnonymousId()
	}
	return &kgo.Record{Topic: in.cfg.Kafka.Topics.Events, Key: []byte(ev.ProjectId + "/" + who), Value: v, Headers: headers}
}

// handleRecords validates a batch of `survey-events` records inside the loop's transaction.
func (in *Ingest) handleRecords(ctx context.Context, recs []*kgo.Record, produce func(*kgo.Record)) error {
	if err := in.reg.WaitFresh(ctx); err != nil {
		return err
	}
	now := time.Now()
	for _, r := range recs {
		ev, herr := in.fromRecord(r, now)
		if herr != nil {
			in.Stats.Rejected.Add(1)
			headers := append(append([]kgo.RecordHeader{}, r.Headers...),
				kgo.RecordHeader{Key: "rejection-reason", Value: []byte(herr.Message)},
				kgo.RecordHeader{Key: "rejection-code", Value: []byte(herr.Code)},
				kgo.RecordHeader{Key: "rejection-field", Value: []byte(herr.Field)},
				kgo.RecordHeader{Key: "source-partition", Value: []byte(fmt.Sprint(r.Partition))},
				kgo.RecordHeader{Key: "source-offset", Value: []byte(fmt.Sprint(r.Offset))})
			produce(&kgo.Record{Topic: in.cfg.Kafka.Topics.SurveyEventsRejected, Key: r.Key, Value: r.Value, Headers: headers})
			continue
		}
		if ev.Preview {
			in.Stats.Previews.Add(1)
			continue
		}
		in.Stats.Accepted.Add(1)
		produce(in.eventRecord(ev, nil))
	}
	return nil
}

func (in *Ingest) fromRecord(r *kgo.Record, now time.Time) (*pb.Event, *httpapi.Error) {
	var ev *pb.Event
	var pid string
	switch ct := string(kafka.Header(r, "content-type")); ct {
	case "", "application/json":
		var herr *httpapi.Error
		ev, pid, herr = decodeEvent(r.Value, "", now)
		if herr != nil {
			return nil, herr
		}
	case "application/x-protobuf", "application/protobuf":
		ev = &pb.Event{}
		if err := proto.Unmarshal(r.Value, ev); err != nil {
			return nil, bad("", "record is not a valid surveyhooks.v1.Event: %v", err)
		}
		if _, ok := EventTypes[ev.EventType]; !ok {
			return nil, bad("event_type", "unknown event_type %q", ev.EventType)
		}
		pid = ev.ProjectId
		ev.ReceivedAtMs = now.UnixMilli()
	default:
		return nil, httpapi.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "", "content-type %q is not application/json or application/x-protobuf", ct)
	}
	if h := string(kafka.Header(r, "project-id")); pid == "" {
		pid = h
	}
	if pid == "" {
		return nil, bad("project_id", "project_id is required (JSON field or record header project-id)")
	}
	if in.reg.Project(pid) == nil {
		return nil, bad("project_id", "unknown project %q", pid)
	}
	ev.ProjectId, ev.Source = pid, "kafka"
	if ev.EventId == "" {
		ev.EventId = newEventID()
	}
	return ev, nil
}
