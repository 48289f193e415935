package ingest

import (
	"context"
	"crypto/subtle"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/surveyhooks/surveyhooks/pkg/dedup"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Handler is ingest's HTTP API: POST /v1/events, GET /v1/stats, GET /healthz.
func (in *Ingest) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /v1/events", in.postEvents)
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, in.stats.snapshot())
	})
	return mux
}

// accepted is the answer to POST /v1/events.
type accepted struct {
	EventIDs []string `json:"event_ids"`
	// Previews counts the preview events: validated, counted, never forwarded.
	Previews int `json:"previews,omitempty"`
	// Duplicates counts the events this process recognised as repeats of a (project, event_id)
	// it accepted within the de-duplication window (best effort: a repeat it does not know is
	// counted as accepted, and still delivered once); DuplicateIDs names them.
	Duplicates   int      `json:"duplicates,omitempty"`
	DuplicateIDs []string `json:"duplicate_event_ids,omitempty"`
	// Duplicate is true when every (non-preview) event of the request was a repeat: status 200.
	Duplicate bool `json:"duplicate,omitempty"`
}

func (in *Ingest) postEvents(w http.ResponseWriter, r *http.Request) {
	in.stats.HTTPRequests.Add(1)
	status, body, err := in.accept(r)
	if err != nil {
		if e := (*httpapi.Error)(nil); errors.As(err, &e) && e.Status < 500 {
			in.stats.Rejected.Add(1)
			in.met.Events(r.Context(), 1, "rejected", e.Code)
		}
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, status, body)
}

func unauthorized() *httpapi.Error {
	return httpapi.Errorf(http.StatusUnauthorized, "unauthorized", "", "a valid project API key is required: Authorization: Bearer <api key>")
}

func unavailable() *httpapi.Error {
	return httpapi.Errorf(http.StatusServiceUnavailable, "unavailable", "", "the events could not be stored; retry the request (with the same event_ids, repeats are recognised)")
}

func (in *Ingest) accept(r *http.Request) (int, *accepted, error) {
	key := httpapi.BearerToken(r)
	if key == "" {
		return 0, nil, unauthorized()
	}
	// The admin token acts for any project: each event names its project_id.
	admin := in.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(key), []byte(in.cfg.AdminToken)) == 1
	var project *pb.Project
	if !admin {
		var k *pb.ApiKey
		if project, k = in.projectByKey(r.Context(), key); project == nil {
			return 0, nil, unauthorized()
		}
		if !slices.Contains(k.Scopes, registry.ScopeIngest) {
			return 0, nil, httpapi.Errorf(http.StatusForbidden, "forbidden", "", "this API key (%s) lacks the %q scope", k.Prefix, registry.ScopeIngest)
		}
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return 0, nil, httpapi.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "", "Content-Type must be application/json, got %q", ct)
	}
	if r.ContentLength > in.cfg.MaxBodyBytes {
		return 0, nil, httpapi.Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "", "request body exceeds %d bytes", in.cfg.MaxBodyBytes)
	}
	body, err := httpapi.ReadJSONBody(r, in.cfg.MaxBodyBytes)
	if err != nil {
		return 0, nil, err
	}
	now := time.Now().UnixMilli()
	evs, batch, herr := decodeEvents(body, in.cfg.MaxBatch, now)
	if herr != nil {
		return 0, nil, herr
	}
	traceHdrs := requestTrace(r)
	out := &accepted{EventIDs: make([]string, len(evs))}
	var (
		recs  []*kgo.Record
		keys  []dedup.Key // of recs
		inReq = map[dedup.Key]bool{}
		real  int // non-preview events
	)
	for i, d := range evs {
		p := ""
		if batch {
			p = "events[" + strconv.Itoa(i) + "]."
		}
		ev := d.ev
		switch {
		case admin && d.projectID == "":
			return 0, nil, bad(p+"project_id", "project_id is required with the admin token")
		case admin:
			if in.projectByID(r.Context(), d.projectID) == nil {
				return 0, nil, bad(p+"project_id", "project %q does not exist", d.projectID)
			}
			ev.ProjectId = d.projectID
		case d.projectID != "" && d.projectID != project.Id:
			return 0, nil, bad(p+"project_id", "project_id %q is not the project of the API key; leave it out", d.projectID)
		default:
			ev.ProjectId = project.Id
		}
		ev.Source = "http"
		if ev.EventId == "" {
			ev.EventId = newEventID()
		}
		out.EventIDs[i] = ev.EventId
		if ev.Preview {
			out.Previews++
			continue
		}
		real++
		rec, herr := in.eventRecord(ev, strings.TrimSuffix(p, "."), traceHdrs)
		if herr != nil {
			return 0, nil, herr
		}
		// A repeat this process knows (or a second copy in the same request) is answered at once
		// and not written again; anything else is written, and fan-out drops it if it is a repeat.
		k := idKey(ev.ProjectId, ev.EventId)
		if inReq[k] || in.recent.contains(k, now) {
			out.Duplicates++
			out.DuplicateIDs = append(out.DuplicateIDs, ev.EventId)
			continue
		}
		inReq[k] = true
		recs = append(recs, rec)
		keys = append(keys, k)
	}
	// Everything is valid: from here on the request is accepted or unavailable, never a 4xx.
	counted := func() {
		m := in.met
		in.stats.HTTPEvents.Add(int64(len(evs)))
		in.stats.Previews.Add(int64(out.Previews))
		in.stats.Duplicates.Add(int64(out.Duplicates))
		in.stats.Forwarded.Add(int64(len(recs)))
		m.Events(r.Context(), out.Previews, "preview", "")
		m.Events(r.Context(), out.Duplicates, "duplicate", "duplicate_event_id")
		m.Events(r.Context(), len(recs), "accepted", "")
	}
	if len(recs) > 0 {
		// The records continue the request's trace (the server span, when tracing is set up). Not
		// the request's context itself: a client that leaves must not cancel a half-written batch.
		parent := trace.ContextWithSpan(context.Background(), trace.SpanFromContext(r.Context()))
		for _, rec := range recs {
			rec.Context = parent
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), produceTimeout)
		err := produceAll(ctx, in.events, recs)
		cancel()
		if err != nil {
			in.log.Error("writing events failed", "events", len(recs), "err", err)
			return 0, nil, unavailable()
		}
		in.recent.add(keys, now)
	}
	counted()
	if real > 0 && out.Duplicates == real {
		out.Duplicate = true
		return http.StatusOK, out, nil
	}
	return http.StatusAccepted, out, nil
}

// produceTimeout bounds how long a request waits for Kafka before it is answered 503.
const produceTimeout = 10 * time.Second

// projectByKey finds the key's project and the key, when it is valid (not revoked, not expired).
// A key unknown here may belong to a project created a moment ago: the registry catches up once
// (shared by concurrent requests) before the answer is 401.
func (in *Ingest) projectByKey(ctx context.Context, key string) (*pb.Project, *pb.ApiKey) {
	if p, k := in.reg.APIKey(key, time.Now()); p != nil {
		return p, k
	}
	in.catchUp(ctx)
	return in.reg.APIKey(key, time.Now())
}

// projectByID is the project with id, catching up once as projectByKey does.
func (in *Ingest) projectByID(ctx context.Context, id string) *pb.Project {
	if p := in.reg.Project(id); p != nil {
		return p
	}
	in.catchUp(ctx)
	return in.reg.Project(id)
}

// catchUp waits (bounded) until the registry has read everything written before the call.
func (in *Ingest) catchUp(ctx context.Context) {
	ch := in.fresh.DoChan("fresh", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		return nil, in.reg.WaitFresh(ctx)
	})
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// requestTrace is the trace context the request's events carry on: the server span's when the
// handler is traced (the records' own publish spans then replace it when kotel traces records),
// else whatever trace headers the caller sent.
func requestTrace(r *http.Request) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	if trace.SpanContextFromContext(r.Context()).IsValid() {
		c := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(r.Context(), c)
		for k, v := range c {
			out = append(out, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		return out
	}
	for _, h := range traceHeaders {
		if v := r.Header.Get(h); v != "" {
			out = append(out, kgo.RecordHeader{Key: h, Value: []byte(v)})
		}
	}
	return out
}
