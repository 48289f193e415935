package portal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Grant is what a portal session may do: one project, optionally only some of its webhooks,
// optionally read-only, until it expires.
type Grant struct {
	ProjectID  string    `json:"p"`
	WebhookIDs []string  `json:"w,omitempty"` // empty: every webhook of the project
	ReadOnly   bool      `json:"ro,omitempty"`
	Expires    time.Time `json:"exp"`
}

// Scoped reports whether the grant names the webhooks it may see.
func (g Grant) Scoped() bool { return len(g.WebhookIDs) > 0 }

// Allows reports whether the grant covers webhook id (which must already belong to its project).
func (g Grant) Allows(id string) bool { return !g.Scoped() || slices.Contains(g.WebhookIDs, id) }

// sealed is what a link token and a session cookie carry, sealed with AES-GCM, so no server-side
// table holds sessions and any API process can read them. Kind tells the three apart, so a
// cookie can never be used as a link nor a portal session as a console one.
type sealed struct {
	Kind  string `json:"k"` // "link", "portal" or "console"
	Nonce string `json:"n"`
	CSRF  string `json:"c,omitempty"`
	Grant
}

const (
	kindLink    = "link"
	kindPortal  = "portal"
	kindConsole = "console"
)

var (
	errExpired = errors.New("expired")
	errSpent   = errors.New("already used")
	errInvalid = errors.New("not valid")
)

// sessions seals and opens tokens and remembers which links were spent and which sessions signed
// out. Both sets are this process's memory, pruned as they expire: with several API processes
// behind a balancer, send the /portal/ and /console/ paths of one client to one process (or accept
// that a link could be opened once per process, and a signed-out cookie still work on another).
type sessions struct {
	aead cipher.AEAD
	now  func() time.Time

	mu    sync.Mutex
	spent map[string]time.Time // link nonce → when it would have expired
	ended map[string]time.Time // signed-out session nonce → when it would have expired
}

func newSessions(key []byte, now func() time.Time) (*sessions, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("session key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("session cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session cipher: %w", err)
	}
	return &sessions{aead: aead, now: now, spent: map[string]time.Time{}, ended: map[string]time.Time{}}, nil
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) seal(v sealed) string {
	plain, _ := json.Marshal(v) // a struct of strings, bools and a time: cannot fail
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	// The kind is also the additional data, so a token of one kind cannot even open as another.
	out := s.aead.Seal(nonce, nonce, plain, []byte(v.Kind))
	return base64.RawURLEncoding.EncodeToString(out)
}

func (s *sessions) open(token, kind string) (sealed, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return sealed{}, errInvalid
	}
	plain, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte(kind))
	if err != nil {
		return sealed{}, errInvalid
	}
	var v sealed
	if err := json.Unmarshal(plain, &v); err != nil || v.Kind != kind {
		return sealed{}, errInvalid
	}
	if !s.now().Before(v.Expires) {
		return v, errExpired
	}
	if kind != kindLink {
		s.mu.Lock()
		_, ended := s.ended[v.Nonce]
		s.mu.Unlock()
		if ended {
			return v, errInvalid
		}
	}
	return v, nil
}

// end signs a session out: this process refuses its cookie from now on, even a copy of it.
func (s *sessions) end(v sealed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prune(s.ended, s.now())
	s.ended[v.Nonce] = v.Expires
}

// prune forgets what has expired anyway.
func prune(m map[string]time.Time, now time.Time) {
	for n, exp := range m {
		if !now.Before(exp) {
			delete(m, n)
		}
	}
}

// link mints a one-time sign-in token for g.
func (s *sessions) link(g Grant) string {
	return s.seal(sealed{Kind: kindLink, Nonce: randomString(16), Grant: g})
}

// exchange spends a link token and returns the portal session cookie value it becomes.
func (s *sessions) exchange(token string) (string, Grant, error) {
	v, err := s.open(token, kindLink)
	if err != nil {
		return "", Grant{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prune(s.spent, s.now())
	if _, used := s.spent[v.Nonce]; used {
		return "", Grant{}, errSpent
	}
	s.spent[v.Nonce] = v.Expires
	return s.session(kindPortal, v.Grant), v.Grant, nil
}

// session seals a session of kind for g, with its own CSRF token.
func (s *sessions) session(kind string, g Grant) string {
	return s.seal(sealed{Kind: kind, Nonce: randomString(12), CSRF: randomString(18), Grant: g})
}

// validCSRF compares a form's token with the session's in constant time.
func validCSRF(v sealed, got string) bool {
	return v.CSRF != "" && subtle.ConstantTimeCompare([]byte(v.CSRF), []byte(got)) == 1
}
