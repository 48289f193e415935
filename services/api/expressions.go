package api

import pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"

// validateExpressions checks the webhook's filter, transform and format.
func validateExpressions(wh *pb.Webhook) error {
	if wh.Filter != "" {
		return invalid("filter", "filters are not available yet")
	}
	if wh.Transform != "" {
		return invalid("transform", "transforms are not available yet")
	}
	if wh.Format != "" {
		return invalid("format", "only the surveyhooks envelope format (\"\") is available yet")
	}
	return nil
}
