package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
)

// IdempotencyHeader makes an API write safe to retry (Stripe's and Svix's semantics): the first
// answer (any status below 500) to a key is stored, and a repeat of the same request with the
// same key gets that answer again, marked Idempotent-Replayed: true, without acting twice. The
// same key with another method, path or body is refused with 422; a repeat while the first is
// still running gets 409.
//
// Keys are kept per project (the admin token's own endpoints have their own space) for
// idempotencyTTL, at most idempotencyMax per project, oldest first out. Every stored answer is
// also written, sealed (it may hold a secret shown once), to the `idempotency-keys` topic
// (compacted, deleted after 25 h), which every API process reads: a retry that reaches another
// process, or this one after a restart, gets the same answer. A key this process does not know
// is looked up after catching up with that topic. Two first attempts running at the same moment
// on two processes both run (the topic is not a lock); on one process the second gets 409.
const IdempotencyHeader = "Idempotency-Key"

const (
	idempotencyTTL = 24 * time.Hour
	idempotencyMax = 1000
	// idempotencyMaxBody bounds a stored answer; a larger one is not stored (a repeat runs again).
	idempotencyMaxBody = 64 << 10
)

type idemEntry struct {
	key         string
	fingerprint [32]byte
	at          time.Time
	done        bool
	status      int
	header      http.Header
	body        []byte
}

// idempotency is the per-process store: for each project, its keys in the order they were first
// used, so expiry and the bound both drop from the front.
type idempotency struct {
	mu     sync.Mutex
	spaces map[string]*idemSpace

	// The shared copy: cl reads the topic from its start; consumed and progress let a lookup
	// wait until everything written before it has been read.
	topic    string
	box      *secrets.Box
	cl       *kgo.Client
	adm      *kadm.Client
	log      *slog.Logger
	consumed map[int32]int64
	progress chan struct{}
}

// storedAnswer is the sealed value of an `idempotency-keys` record.
type storedAnswer struct {
	Fingerprint []byte            `json:"fp"`
	Status      int               `json:"status"`
	Header      map[string]string `json:"header"`
	Body        []byte            `json:"body"`
	AtMs        int64             `json:"at_ms"`
}

func newIdempotency(cfg kafka.Config, box *secrets.Box, log *slog.Logger) (*idempotency, error) {
	cl, err := kafka.NewClient(cfg, kgo.ConsumeTopics(cfg.Topics.Idempotency),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, err
	}
	return &idempotency{spaces: map[string]*idemSpace{}, topic: cfg.Topics.Idempotency, box: box, cl: cl,
		adm: kadm.NewClient(cl), log: log, consumed: map[int32]int64{}, progress: make(chan struct{})}, nil
}

// run reads the topic until ctx is done, then closes the client.
func (st *idempotency) run(ctx context.Context) error {
	defer st.cl.Close()
	for {
		fs := st.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			st.log.Warn("idempotency keys fetch error", "topic", t, "partition", p, "err", err)
		})
		st.mu.Lock()
		fs.EachRecord(st.apply)
		close(st.progress)
		st.progress = make(chan struct{})
		st.mu.Unlock()
	}
}

// apply takes in one record; st.mu is held.
func (st *idempotency) apply(rec *kgo.Record) {
	st.consumed[rec.Partition] = rec.Offset + 1
	space, key, ok := strings.Cut(string(rec.Key), "\x00")
	if !ok || rec.Value == nil || time.Since(rec.Timestamp) >= idempotencyTTL {
		return
	}
	plain, err := st.box.Open(rec.Value)
	var a storedAnswer
	if err == nil {
		err = json.Unmarshal([]byte(plain), &a)
	}
	if err != nil || len(a.Fingerprint) != 32 {
		st.log.Warn("unreadable idempotency record skipped", "offset", rec.Offset, "partition", rec.Partition, "err", err)
		return
	}
	sp := st.space(space)
	if e := sp.byKey[key]; e != nil && e.done {
		return // answered here already
	}
	e := &idemEntry{key: key, at: time.UnixMilli(a.AtMs), done: true, status: a.Status, body: a.Body, header: http.Header{}}
	copy(e.fingerprint[:], a.Fingerprint)
	for k, v := range a.Header {
		e.header.Set(k, v)
	}
	sp.prune(time.Now())
	sp.byKey[key] = e
	sp.order = append(sp.order, e)
}

// space returns the store of one project; st.mu is held.
func (st *idempotency) space(name string) *idemSpace {
	sp := st.spaces[name]
	if sp == nil {
		sp = &idemSpace{byKey: map[string]*idemEntry{}}
		st.spaces[name] = sp
	}
	return sp
}

// waitFresh returns once every record written to the topic before the call has been read. A
// partition whose records have all expired (its start offset is its end) has nothing to wait for.
func (st *idempotency) waitFresh(ctx context.Context) error {
	ends, err := st.adm.ListEndOffsets(ctx, st.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("listing end offsets of %s: %w", st.topic, err)
	}
	starts, err := st.adm.ListStartOffsets(ctx, st.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("listing start offsets of %s: %w", st.topic, err)
	}
	var want []kadm.ListedOffset
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(o.Topic, o.Partition); !ok || s.Offset < o.Offset {
			want = append(want, o)
		}
	})
	for _, o := range want {
		for {
			st.mu.Lock()
			done := st.consumed[o.Partition] >= o.Offset
			ch := st.progress
			st.mu.Unlock()
			if done {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-ch:
			}
		}
	}
	return nil
}

// share writes a stored answer to the topic, for the other processes.
func (st *idempotency) share(ctx context.Context, kcl *kgo.Client, space string, e *idemEntry) {
	a := storedAnswer{Fingerprint: e.fingerprint[:], Status: e.status, Body: e.body, AtMs: e.at.UnixMilli(), Header: map[string]string{}}
	for k := range e.header {
		a.Header[k] = e.header.Get(k)
	}
	plain, err := json.Marshal(a)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err = kcl.ProduceSync(ctx, &kgo.Record{Topic: st.topic, Key: []byte(space + "\x00" + e.key),
			Value: st.box.Seal(string(plain))}).FirstErr()
	}
	if err != nil {
		st.log.Warn("idempotency key kept in this process only", "project_id", space, "err", err)
	}
}

type idemSpace struct {
	byKey map[string]*idemEntry
	order []*idemEntry
}

func (s *idemSpace) prune(now time.Time) {
	for len(s.order) > 0 {
		e := s.order[0]
		if s.byKey[e.key] != e { // forgotten (a 5xx) or replaced
			s.order = s.order[1:]
			continue
		}
		if now.Sub(e.at) < idempotencyTTL && len(s.byKey) < idempotencyMax {
			return
		}
		delete(s.byKey, e.key)
		s.order = s.order[1:]
	}
}

// idempotent runs next unless r repeats a write already answered under its Idempotency-Key in
// space (a project id, or "admin").
func (s *Server) idempotent(w http.ResponseWriter, r *http.Request, space string, next http.HandlerFunc) {
	key := r.Header.Get(IdempotencyHeader)
	if key == "" || r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
		next(w, r)
		return
	}
	if len(key) > 255 {
		httpapi.WriteError(w, httpapi.Errorf(http.StatusBadRequest, "invalid_header", IdempotencyHeader,
			"%s is at most 255 characters", IdempotencyHeader))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		httpapi.WriteError(w, httpapi.Errorf(http.StatusBadRequest, "invalid_body", "", "reading the body: %v", err))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h := sha256.New()
	_, _ = io.WriteString(h, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+"\n")
	_, _ = h.Write(body)
	var fp [32]byte
	h.Sum(fp[:0])

	st := s.idem
	st.mu.Lock()
	known := st.space(space).byKey[key] != nil
	st.mu.Unlock()
	if !known {
		// Another process may have answered it: read what the topic holds so far.
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		err := st.waitFresh(ctx)
		cancel()
		if err != nil { // answer from what this process knows rather than not at all
			s.log.Warn("idempotency keys not caught up; using this process's", "project_id", space, "err", err)
		}
	}
	now := time.Now()
	st.mu.Lock()
	sp := st.space(space)
	sp.prune(now)
	if e := sp.byKey[key]; e != nil {
		st.mu.Unlock()
		switch {
		case e.fingerprint != fp:
			httpapi.WriteError(w, httpapi.Errorf(http.StatusUnprocessableEntity, "idempotency_key_reused", IdempotencyHeader,
				"%s %q was used with another request (method, path or body) in the last 24 hours; use a new key", IdempotencyHeader, key))
		case !e.done:
			httpapi.WriteError(w, httpapi.Errorf(http.StatusConflict, "idempotency_key_in_use", IdempotencyHeader,
				"a request with %s %q is still being processed; retry later", IdempotencyHeader, key))
		default:
			for k, v := range e.header {
				w.Header()[k] = v
			}
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(e.status)
			_, _ = w.Write(e.body)
		}
		return
	}
	e := &idemEntry{key: key, fingerprint: fp, at: now}
	sp.byKey[key] = e
	sp.order = append(sp.order, e)
	st.mu.Unlock()

	rec := &teeWriter{ResponseWriter: w}
	next(rec, r)

	st.mu.Lock()
	if rec.status >= 500 || rec.status == 0 || rec.overflow {
		if sp.byKey[key] == e {
			delete(sp.byKey, key) // not stored: a repeat runs again
		}
		st.mu.Unlock()
		return
	}
	e.status, e.body, e.done = rec.status, rec.buf.Bytes(), true
	e.header = http.Header{}
	for _, k := range []string{"Content-Type", "Location"} {
		if v := rec.Header().Get(k); v != "" {
			e.header.Set(k, v)
		}
	}
	st.mu.Unlock()
	st.share(r.Context(), s.kcl, space, e)
}

// teeWriter passes the answer through and keeps a copy of it.
type teeWriter struct {
	http.ResponseWriter
	status   int
	buf      bytes.Buffer
	overflow bool
}

func (t *teeWriter) WriteHeader(status int) {
	if t.status == 0 {
		t.status = status
	}
	t.ResponseWriter.WriteHeader(status)
}

func (t *teeWriter) Write(b []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
	}
	if t.buf.Len()+len(b) > idempotencyMaxBody {
		t.overflow = true
	} else {
		t.buf.Write(b)
	}
	return t.ResponseWriter.Write(b)
}
