package api

import (
	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// validateExpressions checks the webhook's format, filter and transform the way fan-out will use
// them: the filter and transform are compiled here with the same CEL environment, so a bad
// expression is refused at the API (400 naming the field, with CEL's message and position) and
// never reaches fan-out.
func validateExpressions(wh *pb.Webhook) error {
	if err := envelope.ValidateFormat(wh.Format); err != nil {
		return invalid("format", "%v", err)
	}
	if err := envelope.ValidateFilter(wh.Filter); err != nil {
		return invalid("filter", "invalid filter: %v", err)
	}
	if err := envelope.ValidateTransform(wh.Transform); err != nil {
		return invalid("transform", "invalid transform: %v", err)
	}
	return nil
}
