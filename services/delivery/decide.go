package delivery

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// errSecret marks a send that never happened because the webhook's secret could not be opened:
// retried, since a key rotation or a fixed webhook can make it work.
var errSecret = errors.New("webhook secret unreadable")

// input is everything the decision about one delivery depends on. It holds no clients and no
// clocks: the same input always gives the same decision.
type input struct {
	Delivery *pb.Delivery
	Webhook  *pb.Webhook // nil: the webhook was deleted
	// BreakerOpen says the endpoint's circuit refused the request (ignored for Send Test).
	BreakerOpen      bool
	BreakerThreshold int            // for the outcome's message only
	Sent             *sender.Result // nil: not sent (yet)
	Schedule         []time.Duration
	Now              time.Time // when the attempt ended: retry delays count from here
	// ErasedBy is the erasure of the delivery's respondent, if any (erased.go): never sent.
	ErasedBy string
}

// breakerFeedback is what an attempt tells the endpoint's circuit breaker.
type breakerFeedback int

const (
	breakerNone    breakerFeedback = iota // no request went out (or a Send Test): nothing to learn
	breakerSuccess                        // the endpoint answered in a way that will not be retried
	breakerFailure                        // it failed in a way that is retried
)

// verdict is the feedback as the breaker's callback takes it: nil is a success.
func (f breakerFeedback) verdict() error {
	switch f {
	case breakerSuccess:
		return nil
	case breakerFailure:
		return errEndpointFailed
	}
	return errNotJudged
}

// decision is what to do with a delivery: send it first, or the outcome and what to emit.
type decision struct {
	// Send: nothing is decided yet; make the request, then decide again with its result.
	Send    bool
	Outcome *pb.Outcome
	// Retry is the next attempt, to be produced to the tier topic of RetryDelay; its NotBeforeMs
	// is when it is due.
	Retry      *pb.Delivery
	RetryDelay time.Duration
	Dead       *pb.Delivery // for the dead-letter topic, with the last outcome
	Disable    *pb.Webhook  // the webhook's next revision, disabled (410 Gone)
	Breaker    breakerFeedback
}

// decide is the delivery policy (README, "Delivery"), in one place: whether a delivery is sent,
// what its attempt ended in, and where the delivery goes next. The worker applies it.
func decide(in input) decision {
	d, wh := in.Delivery, in.Webhook
	at := in.Now.UnixMilli()
	switch {
	case in.ErasedBy != "":
		return erasedDecision(in)
	case wh == nil:
		return decision{Outcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED,
			Disposition: pb.Disposition_DISPOSITION_DROPPED, Error: "webhook was deleted", AtMs: at}}
	case !wh.Enabled && !d.Test: // a disabled webhook can still be tested (Userpilot)
		reason := "webhook is disabled"
		if wh.DisabledReason != "" {
			reason += " (" + wh.DisabledReason + ")"
		}
		return route(in, &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED,
			Disposition: pb.Disposition_DISPOSITION_DEAD, Error: reason, AtMs: at}, breakerNone)
	case in.BreakerOpen && !d.Test:
		return route(in, &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_CIRCUIT_OPEN, Disposition: pb.Disposition_DISPOSITION_RETRY,
			Error: fmt.Sprintf("not sent: circuit open after %d consecutive failures", in.BreakerThreshold), AtMs: at}, breakerNone)
	case in.Sent == nil:
		return decision{Send: true}
	}
	out := classify(*in.Sent, in.Now)
	fb := breakerNone
	if !d.Test && !errors.Is(in.Sent.Err, errSecret) {
		fb = breakerSuccess
		if policyFor(wh).retries(out) {
			fb = breakerFailure
		}
	}
	return route(in, out, fb)
}

// route settles the disposition of an outcome under the webhook's retry policy and builds the
// records that carry the delivery on: nowhere (delivered, dropped, a test), its next retry tier,
// or the dead letters (and, after a 410, the webhook's disabled revision).
func route(in input, out *pb.Outcome, fb breakerFeedback) decision {
	d, wh := in.Delivery, in.Webhook
	dec := decision{Outcome: out, Breaker: fb}
	if out.Disposition == pb.Disposition_DISPOSITION_DELIVERED {
		return dec
	}
	if d.Test {
		out.Disposition = pb.Disposition_DISPOSITION_DROPPED // a test gets one attempt, shown to the caller
		return dec
	}
	pol := policyFor(wh)
	if out.Class != pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED && out.Class != pb.OutcomeClass_OUTCOME_CLASS_CIRCUIT_OPEN {
		retry := pol.retries(out) // judged on classify's disposition, before it is settled here
		out.Disposition = pb.Disposition_DISPOSITION_DEAD
		if retry {
			out.Disposition = pb.Disposition_DISPOSITION_RETRY
		}
	}
	if out.Disposition == pb.Disposition_DISPOSITION_RETRY {
		last := len(in.Schedule) + 1 // one attempt, then one per tier
		if m := pol.maxAttempts(out); m > 0 {
			last = min(last, m)
		}
		if int(d.Attempt) >= last {
			out.Disposition = pb.Disposition_DISPOSITION_DEAD
			out.Error += fmt.Sprintf(" (after %d attempts)", d.Attempt)
		} else {
			// After attempt n comes tier n (1-based), or a later one when the endpoint or the
			// policy asks for a longer wait: tiers are fixed topics, so the nearest one at least
			// that long.
			wait := max(out.RetryAfterMs, pol.minDelay(out).Milliseconds())
			tier := max(int(d.Attempt), tierFor(in.Schedule, wait))
			dec.RetryDelay = in.Schedule[tier-1]
			next := proto.Clone(d).(*pb.Delivery)
			next.Attempt, next.Tier, next.LastOutcome = d.Attempt+1, int32(tier), out
			next.NotBeforeMs = in.Now.Add(dec.RetryDelay).UnixMilli()
			dec.Retry = next
			return dec
		}
	}
	dead := proto.Clone(d).(*pb.Delivery)
	dead.LastOutcome = out
	dec.Dead = dead
	if out.Class == pb.OutcomeClass_OUTCOME_CLASS_GONE && wh != nil && wh.Enabled {
		off := proto.Clone(wh).(*pb.Webhook)
		off.Enabled, off.DisabledReason, off.Revision, off.UpdatedAtMs = false, "gone", wh.Revision+1, in.Now.UnixMilli()
		dec.Disable = off
	}
	return dec
}

// classify turns what one request ended in into an outcome class, with the disposition the
// default policy gives it (DESIGN §1, Standard Webhooks):
//   - 2xx: success.
//   - 410: gone — permanent, and the webhook gets disabled.
//   - 408, 409, 425, 429: retried; 429 (and 503) honour Retry-After.
//   - other 4xx: permanent.
//   - 3xx (redirects are not followed), 5xx, anything else: retried.
//   - refused destination or unbuildable request: permanent; timeout or connection error: retried.
func classify(res sender.Result, now time.Time) *pb.Outcome {
	o := &pb.Outcome{StatusCode: int32(res.StatusCode), AtMs: now.UnixMilli()}
	set := func(c pb.OutcomeClass, d pb.Disposition) *pb.Outcome {
		o.Class, o.Disposition = c, d
		return o
	}
	if res.Err != nil {
		o.Error = sender.ErrorText(res.Err)
		switch {
		case errors.Is(res.Err, errSecret):
			o.Error = res.Err.Error()
			return set(pb.OutcomeClass_OUTCOME_CLASS_INVALID_REQUEST, pb.Disposition_DISPOSITION_RETRY)
		case errors.Is(res.Err, sender.ErrBlockedDestination):
			return set(pb.OutcomeClass_OUTCOME_CLASS_BLOCKED_DESTINATION, pb.Disposition_DISPOSITION_DEAD)
		case errors.Is(res.Err, sender.ErrInvalidRequest):
			return set(pb.OutcomeClass_OUTCOME_CLASS_INVALID_REQUEST, pb.Disposition_DISPOSITION_DEAD)
		case sender.IsTimeout(res.Err):
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

// tierFor is the smallest tier (1-based) whose delay is at least waitMs; 0 without a wait; the
// last tier when none is that long.
func tierFor(schedule []time.Duration, waitMs int64) int {
	if waitMs <= 0 {
		return 0
	}
	for i, d := range schedule {
		if d.Milliseconds() >= waitMs {
			return i + 1
		}
	}
	return len(schedule)
}
