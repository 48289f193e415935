package api

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
)

// IdempotencyHeader makes an API write safe to retry (Stripe's and Svix's semantics): the first
// answer (any status below 500) to a key is stored, and a repeat of the same request with the
// same key gets that answer again, marked Idempotent-Replayed: true, without acting twice. The
// same key with another method, path or body is refused with 422; a repeat while the first is
// still running gets 409.
//
// Keys are kept per project (the admin token's own endpoints have their own space) for
// idempotencyTTL, at most idempotencyMax per project, oldest first out. They are kept in the
// memory of the API process that answered: a retry that reaches another API process, or this
// one after a restart, is executed again. Run one API process, or route a project's writes to
// one process, where replays must be exact across processes.
const IdempotencyHeader = "Idempotency-Key"

const (
	idempotencyTTL = 24 * time.Hour
	idempotencyMax = 1000
	// idempotencyMaxBody bounds a stored answer; a larger one is not stored (a repeat runs again).
	idempotencyMaxBody = 1 << 20
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

	now := time.Now()
	st := &s.idem
	st.mu.Lock()
	if st.spaces == nil {
		st.spaces = map[string]*idemSpace{}
	}
	sp := st.spaces[space]
	if sp == nil {
		sp = &idemSpace{byKey: map[string]*idemEntry{}}
		st.spaces[space] = sp
	}
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
	defer st.mu.Unlock()
	if rec.status >= 500 || rec.status == 0 || rec.overflow {
		if sp.byKey[key] == e {
			delete(sp.byKey, key) // not stored: a repeat runs again
		}
		return
	}
	e.status, e.body, e.done = rec.status, rec.buf.Bytes(), true
	e.header = http.Header{}
	for _, k := range []string{"Content-Type", "Location"} {
		if v := rec.Header().Get(k); v != "" {
			e.header.Set(k, v)
		}
	}
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
