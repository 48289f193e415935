package registry

import (
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// erasedAt is one erased identifier (by its keyed hash): which erasure, and when it was asked.
type erasedAt struct {
	id   string
	atMs int64
}

// ErasureKey is an `erasures` record's key: the project and the identifier's keyed hash.
func ErasureKey(projectID, hash string) string { return projectID + "/" + hash }

// applyErasure takes in an `erasures` record; r.mu is held. A tombstone forgets the erasure.
func (r *Registry) applyErasure(key string, rec *kgo.Record) {
	if rec.Value == nil {
		delete(r.erased, key)
		return
	}
	e := &pb.Erasure{}
	if err := proto.Unmarshal(rec.Value, e); err != nil || e.ProjectId == "" || e.Hash == "" {
		r.log.Error("unreadable erasure record skipped", "offset", rec.Offset, "err", err)
		return
	}
	k := ErasureKey(e.ProjectId, e.Hash)
	// The newest erasure of the same identifier covers what the older ones did.
	if old, ok := r.erased[k]; !ok || e.AtMs >= old.atMs {
		r.erased[k] = erasedAt{id: e.ErasureId, atMs: e.AtMs}
	}
}

// Erased says whether d belongs to a respondent erased after d was created: one of its
// respondent hashes (Delivery.respondent_hashes) is on the `erasures` topic for its project
// with an erasure requested at or after d.created_at_ms. It returns that erasure's id. A
// delivery created after the erasure (the person answered again) is not erased.
func (r *Registry) Erased(d *pb.Delivery) (erasureID string, ok bool) {
	if len(d.GetRespondentHashes()) == 0 {
		return "", false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.erased) == 0 {
		return "", false
	}
	var b strings.Builder
	for _, h := range d.RespondentHashes {
		b.Reset()
		b.WriteString(d.ProjectId)
		b.WriteByte('/')
		b.WriteString(h)
		if e, found := r.erased[b.String()]; found && d.CreatedAtMs <= e.atMs {
			return e.id, true
		}
	}
	return "", false
}
