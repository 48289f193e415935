package sender

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Classify decides what one attempt ended in: the single place where status codes and errors
// become outcome classes (DESIGN §1, Standard Webhooks):
//   - 2xx: success.
//   - 410: gone — permanent, and the webhook gets disabled.
//   - 408, 409, 425, 429: retried; 429 (and 503) honour Retry-After.
//   - other 4xx: permanent.
//   - 3xx (redirects are not followed), 5xx, anything else: retried.
//   - refused destination or unbuildable request: permanent; timeout or connection error: retried.
//
// The disposition is RETRY or DEAD as the rules say; whether a retry tier is left is decided by
// the caller.
func Classify(res Result, now time.Time) *pb.Outcome {
	o := &pb.Outcome{StatusCode: int32(res.StatusCode), AtMs: now.UnixMilli()}
	set := func(c pb.OutcomeClass, d pb.Disposition) *pb.Outcome {
		o.Class, o.Disposition = c, d
		return o
	}
	if res.Err != nil {
		o.Error = ErrorText(res.Err)
		switch {
		case errors.Is(res.Err, ErrBlockedDestination):
			return set(pb.OutcomeClass_OUTCOME_CLASS_BLOCKED_DESTINATION, pb.Disposition_DISPOSITION_DEAD)
		case errors.Is(res.Err, ErrInvalidRequest):
			return set(pb.OutcomeClass_OUTCOME_CLASS_INVALID_REQUEST, pb.Disposition_DISPOSITION_DEAD)
		case IsTimeout(res.Err):
			return set(pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, pb.Disposition_DISPOSITION_RETRY)
		default:
			return set(pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR, pb.Disposition_DISPOSITION_RETRY)
		}
	}
	code := res.StatusCode
	switch {
	case code >= 200 && code < 300:
		return set(pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, pb.Disposition_DISPOSITION_DELIVERED)
	case code == http.StatusGone:
		o.Error = "410 Gone: the webhook is disabled"
		return set(pb.OutcomeClass_OUTCOME_CLASS_GONE, pb.Disposition_DISPOSITION_DEAD)
	case code == http.StatusRequestTimeout, code == http.StatusConflict, code == http.StatusTooEarly,
		code == http.StatusTooManyRequests:
		if code == http.StatusTooManyRequests {
			o.RetryAfterMs = retryAfter(res.ResponseHeaders, now)
		}
		o.Error = "HTTP " + strconv.Itoa(code)
		return set(pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, pb.Disposition_DISPOSITION_RETRY)
	case code >= 400 && code < 500:
		o.Error = "HTTP " + strconv.Itoa(code)
		return set(pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, pb.Disposition_DISPOSITION_DEAD)
	default:
		if code == http.StatusServiceUnavailable {
			o.RetryAfterMs = retryAfter(res.ResponseHeaders, now)
		}
		o.Error = "HTTP " + strconv.Itoa(code)
		return set(pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, pb.Disposition_DISPOSITION_RETRY)
	}
}

// retryAfter reads Retry-After as seconds or an HTTP date; 0 when absent or unreadable.
func retryAfter(h http.Header, now time.Time) int64 {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0
		}
		return s * 1000
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d.Milliseconds()
		}
	}
	return 0
}
