package api

import (
	"encoding/base64"
	"errors"

	"github.com/surveyhooks/surveyhooks/pkg/masking"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// maskingRule is a masking rule as the API shows and takes it: a webhook's `masking` (what it
// receives) and a project's `storage_masking` (what the attempt log stores).
type maskingRule struct {
	Path   string `json:"path"`
	Action string `json:"action"`
	Keep   int32  `json:"keep,omitempty"`
}

func maskingIn(in []maskingRule) []*pb.MaskingRule {
	if len(in) == 0 {
		return nil
	}
	out := make([]*pb.MaskingRule, len(in))
	for i, r := range in {
		out[i] = &pb.MaskingRule{Path: r.Path, Action: r.Action, Keep: r.Keep}
	}
	return out
}

func maskingOut(in []*pb.MaskingRule) []maskingRule {
	out := make([]maskingRule, len(in))
	for i, r := range in {
		out[i] = maskingRule{Path: r.Path, Action: r.Action, Keep: r.Keep}
	}
	return out
}

// validateMasking compiles rules as fan-out and the sink will: a bad rule is a 400 naming it
// ("masking[1].path").
func validateMasking(field string, rules []*pb.MaskingRule) error {
	_, err := masking.Compile(field, rules)
	if fe := (*masking.FieldError)(nil); errors.As(err, &fe) {
		return invalid(fe.Field, "%s", fe.Msg)
	}
	return err
}

// maskingKey is the project's key for "hash" rules, as fan-out and the sink derive it; nil when
// the key material does not decode (Validate refuses that at start).
func (s *Server) maskingKey(projectID string) []byte {
	material, err := base64.StdEncoding.DecodeString(s.cfg.EncryptionKey)
	if err != nil || len(material) == 0 {
		return nil
	}
	return masking.ProjectKey(material, projectID)
}
