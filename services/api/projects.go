package api

import (
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"

	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	"github.com/surveyhooks/surveyhooks/pkg/ids"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// maxBody bounds every request body.
const maxBody = 256 << 10

type projectOut struct {
	ID           string    `json:"id"`
	UUID         string    `json:"uuid"`
	Name         string    `json:"name"`
	APIKey       string    `json:"api_key,omitempty"` // only in the answer to the creation
	APIKeyPrefix string    `json:"api_key_prefix"`
	CreatedAt    time.Time `json:"created_at"`
	// StorageMasking is what the sink applies to bodies before storing them (docs/privacy.md).
	StorageMasking []apiv1.MaskingRule `json:"storage_masking"`
	// DeliveryWeight is the project's share of a busy delivery worker relative to other projects
	// (docs/architecture.md, "Fair share between projects").
	DeliveryWeight int32 `json:"delivery_weight"`
}

func viewProject(p *pb.Project) projectOut {
	return projectOut{ID: p.Id, UUID: envelope.ProjectUUID(p.Id), Name: p.Name, APIKeyPrefix: p.ApiKeyPrefix,
		CreatedAt: time.UnixMilli(p.CreatedAtMs).UTC(), StorageMasking: maskingOut(p.StorageMasking),
		DeliveryWeight: max(1, p.DeliveryWeight)}
}

// maxDeliveryWeight bounds delivery_weight: one project at most 100 times another's share.
const maxDeliveryWeight = 100

// patchProject changes the project's settings given (PATCH with {"delivery_weight": n}).
func (s *Server) patchProject(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var in struct {
		DeliveryWeight *int64 `json:"delivery_weight"`
	}
	if err := httpapi.DecodeStrict(body, &in); err != nil {
		return err
	}
	if in.DeliveryWeight == nil {
		return invalid("delivery_weight", "delivery_weight is required")
	}
	if *in.DeliveryWeight < 1 || *in.DeliveryWeight > maxDeliveryWeight {
		return invalid("delivery_weight", "delivery_weight must be between 1 and %d", maxDeliveryWeight)
	}
	id := r.PathValue("id")
	unlock := s.locks.lock(id)
	defer unlock()
	cur := s.reg.Project(id)
	if cur == nil {
		return notFound("project", id)
	}
	p := proto.Clone(cur).(*pb.Project)
	p.DeliveryWeight = int32(*in.DeliveryWeight)
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Projects, p.Id, p); err != nil {
		return err
	}
	s.log.Info("project delivery weight set", "project_id", p.Id, "delivery_weight", p.DeliveryWeight)
	httpapi.WriteJSON(w, http.StatusOK, viewProject(p))
	return nil
}

func (s *Server) createProject(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	body, err := httpapi.ReadJSONBody(r, maxBody)
	if err != nil {
		return err
	}
	var in struct {
		Name           string              `json:"name"`
		StorageMasking []apiv1.MaskingRule `json:"storage_masking"`
	}
	if err := httpapi.DecodeStrict(body, &in); err != nil {
		return err
	}
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || len(in.Name) > 200 {
		return invalid("name", "name is required, at most 200 characters")
	}
	rules := maskingIn(in.StorageMasking)
	if err := validateMasking("storage_masking", rules); err != nil {
		return err
	}
	key := secrets.NewAPIKey()
	p := &pb.Project{Id: ids.New("prj_"), Name: in.Name, ApiKeyHash: secrets.HashAPIKey(key),
		ApiKeyPrefix: key[:10], CreatedAtMs: time.Now().UnixMilli(), StorageMasking: rules}
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Projects, p.Id, p); err != nil {
		return err
	}
	s.log.Info("project created", "project_id", p.Id, "api_key_prefix", p.ApiKeyPrefix)
	out := viewProject(p)
	out.APIKey = key
	httpapi.WriteJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	p := s.reg.Project(r.PathValue("id"))
	if p == nil {
		return notFound("project", r.PathValue("id"))
	}
	httpapi.WriteJSON(w, http.StatusOK, viewProject(p))
	return nil
}

// setStorageMasking replaces the project's storage masking rules (PUT with
// {"storage_masking": [...]}; an empty list removes them). Rows already stored keep what they were
// stored with.
func (s *Server) setStorageMasking(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	body, err := readObject(r)
	if err != nil {
		return err
	}
	var in struct {
		StorageMasking *[]apiv1.MaskingRule `json:"storage_masking"`
	}
	if err := httpapi.DecodeStrict(body, &in); err != nil {
		return err
	}
	if in.StorageMasking == nil {
		return invalid("storage_masking", "storage_masking is required: a list of rules, [] for none")
	}
	rules := maskingIn(*in.StorageMasking)
	if err := validateMasking("storage_masking", rules); err != nil {
		return err
	}
	id := r.PathValue("id")
	unlock := s.locks.lock(id)
	defer unlock()
	cur := s.reg.Project(id)
	if cur == nil {
		return notFound("project", id)
	}
	p := proto.Clone(cur).(*pb.Project)
	p.StorageMasking = rules
	if err := s.write(r.Context(), s.cfg.Kafka.Topics.Projects, p.Id, p); err != nil {
		return err
	}
	s.log.Info("project storage masking set", "project_id", p.Id, "rules", len(rules))
	httpapi.WriteJSON(w, http.StatusOK, viewProject(p))
	return nil
}

// write produces a record (nil m: a tombstone) and waits until this process's registry has applied
// it, so the caller's next read sees it. Fan-out and delivery read the same partition, so a
// delivery rendered after this returns uses the new configuration.
func (s *Server) write(ctx context.Context, topic, key string, m proto.Message) error {
	rec := &kgo.Record{Topic: topic, Key: []byte(key)}
	if m != nil {
		v, err := proto.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding %s record: %w", topic, err)
		}
		rec.Value = v
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := s.kcl.ProduceSync(ctx, rec).First()
	if err != nil {
		return fmt.Errorf("writing to %s: %w", topic, err)
	}
	if err := s.reg.WaitFor(ctx, out.Topic, out.Partition, out.Offset); err != nil {
		return fmt.Errorf("waiting for %s to apply: %w", topic, err)
	}
	return nil
}

// stripedLocks serialises read-modify-write of one webhook within this process, so two PATCHes
// at once cannot lose one another's change. A fixed set of mutexes keeps memory bounded.
type stripedLocks [64]sync.Mutex

func (l *stripedLocks) lock(id string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}
