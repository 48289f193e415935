package sink

import (
	"encoding/base64"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/masking"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// storageMasker applies each project's storage_masking rules to what the sink stores: attempt
// request bodies and dead letters' bodies. Both keep the unmasked body sealed (sealed_body) so
// that a replay sends what the webhook is entitled to; the clear body is never
// written to ClickHouse when a rule applies. Rules are compiled once per project revision (the
// registry replaces a project's record on every change).
type storageMasker struct {
	material []byte       // decoded SURVEYHOOKS_ENCRYPTION_KEY; nil when unset
	box      *secrets.Box // seals dead letters' unmasked bodies; nil when unset
	log      *slog.Logger

	mu sync.Mutex
	m  map[string]compiledRules // by project id
}

type compiledRules struct {
	src    *pb.Project
	m      *masking.Masker
	err    error
	warned bool
}

func newStorageMasker(keyB64 string, log *slog.Logger) *storageMasker {
	s := &storageMasker{log: log, m: map[string]compiledRules{}}
	if keyB64 != "" {
		s.material, _ = base64.StdEncoding.DecodeString(keyB64) // Validate checked it
		s.box, _ = secrets.NewBox(keyB64)
	}
	return s
}

// rules returns p's compiled rules, nil when it has none; warn is true the first time a broken
// rule list is seen for this revision.
func (s *storageMasker) rules(p *pb.Project) (m *masking.Masker, err error, warn bool) {
	if p == nil || len(p.StorageMasking) == 0 {
		return nil, nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[p.Id]
	if !ok || c.src != p {
		c = compiledRules{src: p}
		c.m, c.err = masking.Compile("storage_masking", p.StorageMasking)
	}
	if c.err != nil && !c.warned {
		warn, c.warned = true, true
	}
	s.m[p.Id] = c
	return c.m, c.err, warn
}

// body returns what is stored of body under p's rules; ok is false when the rules apply but
// could not (no key for a hash rule, a body that is not JSON): then nothing of body is stored.
func (s *storageMasker) body(p *pb.Project, body []byte) (out []byte, masked, ok bool) {
	m, err, warn := s.rules(p)
	if m == nil && err == nil {
		return body, false, true
	}
	if err == nil {
		var key []byte
		if m.NeedsKey() && s.material != nil {
			key = masking.ProjectKey(s.material, p.Id)
		}
		if out, err = m.Apply(body, key); err == nil {
			return out, true, true
		}
	}
	if warn || err != nil {
		s.log.Error("storage masking failed: the body is not stored", "project_id", p.Id, "err", err)
	}
	return nil, true, false
}

// attempt masks a's request body in place and, like a dead letter's, keeps the unmasked body
// sealed for a replay job.
func (s *storageMasker) attempt(p *pb.Project, a *pb.Attempt) {
	clear := a.RequestBody
	if out, masked, ok := s.body(p, a.RequestBody); masked {
		a.RequestBody, a.StorageMasked = out, true
		if ok && s.box != nil {
			a.SealedBody = s.box.Seal(string(clear))
		}
	}
}

// deadLetter returns the bytes to store for dead letter d (raw as read from Kafka): raw itself
// when p has no rule; else d with its body masked and the unmasked body sealed.
func (s *storageMasker) deadLetter(p *pb.Project, d *pb.Delivery, raw []byte) []byte {
	out, masked, ok := s.body(p, d.Body)
	if !masked {
		return raw
	}
	c := proto.Clone(d).(*pb.Delivery)
	c.Body, c.StorageMasked = out, true
	if ok && s.box != nil {
		c.SealedBody = s.box.Seal(string(d.Body))
	}
	v, _ := proto.Marshal(c)
	return v
}
