package api

import (
	"slices"
	"strings"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// maxExpression bounds a filter or transform expression.
const maxExpression = 4096

// formats are the body formats a webhook can ask for besides the surveyhooks envelope (""): the
// shapes receivers written for those platforms' webhooks expect.
var formats = []string{"refiner", "screeb", "userpilot", "askusers", "segmanta"}

// validateExpressions checks the webhook's filter, transform and format.
//
// The filter and transform are compiled by fan-out; here they are only bounded and stored. When
// pkg/envelope offers ValidateFilter/ValidateTransform, they belong here so that a bad expression
// is refused at the API (400 with the parser's message) instead of failing in fan-out.
func validateExpressions(wh *pb.Webhook) error {
	if len(wh.Filter) > maxExpression {
		return invalid("filter", "filter is at most %d characters", maxExpression)
	}
	if len(wh.Transform) > maxExpression {
		return invalid("transform", "transform is at most %d characters", maxExpression)
	}
	if wh.Format != "" && !slices.Contains(formats, wh.Format) {
		return invalid("format", "unknown format %q; one of \"\" (the surveyhooks envelope), %s", wh.Format,
			`"`+strings.Join(formats, `", "`)+`"`)
	}
	return nil
}
