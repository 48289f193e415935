package api

import (
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"

	"encoding/base64"
	"errors"

	"github.com/surveyhooks/surveyhooks/pkg/masking"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func maskingIn(in []apiv1.MaskingRule) []*pb.MaskingRule {
	if len(in) == 0 {
		return nil
	}
	out := make([]*pb.MaskingRule, len(in))
	for i, r := range in {
		out[i] = &pb.MaskingRule{Path: r.Path, Action: r.Action, Keep: r.Keep}
	}
	return out
}

func maskingOut(in []*pb.MaskingRule) []apiv1.MaskingRule {
	out := make([]apiv1.MaskingRule, len(in))
	for i, r := range in {
		out[i] = apiv1.MaskingRule{Path: r.Path, Action: r.Action, Keep: r.Keep}
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
