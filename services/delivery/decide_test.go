package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// TestDecisionIsTheRetryPolicy reads as the README's "Delivery" bullet and the retry policy
// presets, row by row: what one attempt ends in and where the delivery goes next.
func TestDecisionIsTheRetryPolicy(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	schedule := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour}
	type next int
	const (
		delivered next = iota
		retried
		dead
		dropped
		send
	)
	status := func(code int, hdr ...string) *sender.Result {
		r := &sender.Result{StatusCode: code, ResponseHeaders: http.Header{}}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.ResponseHeaders.Set(hdr[i], hdr[i+1])
		}
		return r
	}
	failed := func(err error) *sender.Result { return &sender.Result{Err: err} }
	wh := func(mut ...func(*pb.Webhook)) *pb.Webhook {
		w := &pb.Webhook{Id: "wh_1", Enabled: true, Revision: 3, Url: "https://example.com/h"}
		for _, m := range mut {
			m(w)
		}
		return w
	}
	policy := func(p string) func(*pb.Webhook) { return func(w *pb.Webhook) { w.RetryPolicy = p } }
	for _, c := range []struct {
		rule    string
		attempt int32
		test    bool
		webhook *pb.Webhook
		open    bool
		sent    *sender.Result
		class   pb.OutcomeClass
		then    next
		tier    int // the retry's tier (1-based), when retried
		disable bool
		breaker breakerFeedback
	}{
		// What is sent at all.
		{rule: "an enabled webhook's delivery is sent", attempt: 1, webhook: wh(), then: send},
		{rule: "a deleted webhook's delivery is dropped, not sent", attempt: 1, class: pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, then: dropped},
		{rule: "a disabled webhook's delivery is dead-lettered, not sent", attempt: 1, webhook: wh(func(w *pb.Webhook) { w.Enabled = false }),
			class: pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, then: dead},
		{rule: "Send Test reaches a disabled webhook", attempt: 1, test: true, webhook: wh(func(w *pb.Webhook) { w.Enabled = false }), then: send},
		{rule: "an open circuit: not sent, retried at the next tier", attempt: 1, webhook: wh(), open: true,
			class: pb.OutcomeClass_OUTCOME_CLASS_CIRCUIT_OPEN, then: retried, tier: 1},
		{rule: "Send Test ignores an open circuit", attempt: 1, test: true, webhook: wh(), open: true, then: send},

		// default: a 2xx within 30 s is success.
		{rule: "200 is delivered", attempt: 1, webhook: wh(), sent: status(200), class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, then: delivered, breaker: breakerSuccess},
		{rule: "204 is delivered", attempt: 1, webhook: wh(), sent: status(204), class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, then: delivered, breaker: breakerSuccess},
		// 4xx is permanent except 408, 409, 425 and 429.
		{rule: "400 is permanent", attempt: 1, webhook: wh(), sent: status(400), class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, then: dead, breaker: breakerSuccess},
		{rule: "404 is permanent", attempt: 1, webhook: wh(), sent: status(404), class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, then: dead, breaker: breakerSuccess},
		{rule: "408 is retried", attempt: 1, webhook: wh(), sent: status(408), class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 1, breaker: breakerFailure},
		{rule: "409 is retried", attempt: 2, webhook: wh(), sent: status(409), class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 2, breaker: breakerFailure},
		{rule: "425 is retried", attempt: 1, webhook: wh(), sent: status(425), class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 1, breaker: breakerFailure},
		{rule: "429 is retried", attempt: 1, webhook: wh(), sent: status(429), class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 1, breaker: breakerFailure},
		// ... or every 4xx is retried with the webhook's retry_client_errors.
		{rule: "retry_client_errors: 400 is retried", attempt: 1, webhook: wh(func(w *pb.Webhook) { w.RetryClientErrors = true }), sent: status(400),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, then: retried, tier: 1, breaker: breakerFailure},
		// 5xx, timeouts and connection errors are retried at 1m, 5m, 15m, 1h, 6h (6 attempts).
		{rule: "500 is retried at 1m", attempt: 1, webhook: wh(), sent: status(500), class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 1, breaker: breakerFailure},
		{rule: "3xx (not followed) is retried", attempt: 1, webhook: wh(), sent: status(302), class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 1, breaker: breakerFailure},
		{rule: "a timeout is retried at 5m after attempt 2", attempt: 2, webhook: wh(), sent: failed(context.DeadlineExceeded),
			class: pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, then: retried, tier: 2, breaker: breakerFailure},
		{rule: "a connection error is retried at 6h after attempt 5", attempt: 5, webhook: wh(), sent: failed(errors.New("connection reset")),
			class: pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR, then: retried, tier: 5, breaker: breakerFailure},
		{rule: "after the last tier (attempt 6), dead-lettered", attempt: 6, webhook: wh(), sent: status(500),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: dead, breaker: breakerFailure},
		// 429/503 honour Retry-After: the nearest tier at least that long.
		{rule: "429 Retry-After 120 s: tier 5m", attempt: 1, webhook: wh(), sent: status(429, "Retry-After", "120"),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 2, breaker: breakerFailure},
		{rule: "503 Retry-After as a date 10 min ahead: tier 15m", attempt: 1, webhook: wh(),
			sent: status(503, "Retry-After", now.Add(10*time.Minute).Format(http.TimeFormat)), class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 3, breaker: breakerFailure},
		{rule: "Retry-After longer than every tier: the last", attempt: 1, webhook: wh(), sent: status(429, "Retry-After", "86400"),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 5, breaker: breakerFailure},
		{rule: "Retry-After never shortens the schedule", attempt: 3, webhook: wh(), sent: status(429, "Retry-After", "1"),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 3, breaker: breakerFailure},
		{rule: "502 ignores Retry-After", attempt: 1, webhook: wh(), sent: status(502, "Retry-After", "3600"),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 1, breaker: breakerFailure},
		// 410 disables the webhook.
		{rule: "410 is dead-lettered and disables the webhook", attempt: 1, webhook: wh(), sent: status(410),
			class: pb.OutcomeClass_OUTCOME_CLASS_GONE, then: dead, disable: true, breaker: breakerSuccess},
		{rule: "410 even with retry_client_errors", attempt: 1, webhook: wh(func(w *pb.Webhook) { w.RetryClientErrors = true }), sent: status(410),
			class: pb.OutcomeClass_OUTCOME_CLASS_GONE, then: dead, disable: true, breaker: breakerSuccess},
		// Outbound requests never reach private or loopback addresses unless allow-listed.
		{rule: "a blocked destination is permanent", attempt: 1, webhook: wh(), sent: failed(fmt.Errorf("x: %w", sender.ErrBlockedDestination)),
			class: pb.OutcomeClass_OUTCOME_CLASS_BLOCKED_DESTINATION, then: dead, breaker: breakerSuccess},
		{rule: "an unbuildable request is permanent", attempt: 1, webhook: wh(), sent: failed(sender.ErrInvalidRequest),
			class: pb.OutcomeClass_OUTCOME_CLASS_INVALID_REQUEST, then: dead, breaker: breakerSuccess},
		{rule: "an unreadable secret is retried (a fix can come), the breaker learns nothing", attempt: 1, webhook: wh(),
			sent: failed(fmt.Errorf("%w: bad key", errSecret)), class: pb.OutcomeClass_OUTCOME_CLASS_INVALID_REQUEST, then: retried, tier: 1},
		// Send Test: one attempt, shown to the caller.
		{rule: "Send Test: a 500 is dropped, not retried", attempt: 1, test: true, webhook: wh(), sent: status(500),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: dropped},
		{rule: "Send Test: a 410 does not disable", attempt: 1, test: true, webhook: wh(), sent: status(410),
			class: pb.OutcomeClass_OUTCOME_CLASS_GONE, then: dropped},
		{rule: "Send Test: a 200 is delivered", attempt: 1, test: true, webhook: wh(), sent: status(200),
			class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, then: delivered},

		// askusers: "Return appropriate HTTP status codes: 200-299 for success, 4xx for client
		// errors (which won't be retried), 5xx for server errors (which will trigger retries)."
		{rule: "askusers: 4xx won't be retried (400)", attempt: 1, webhook: wh(policy("askusers")), sent: status(400),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, then: dead, breaker: breakerSuccess},
		{rule: "askusers: 4xx won't be retried (409)", attempt: 1, webhook: wh(policy("askusers")), sent: status(409),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: dead, breaker: breakerSuccess},
		{rule: "askusers: 4xx won't be retried (429)", attempt: 1, webhook: wh(policy("askusers")), sent: status(429, "Retry-After", "60"),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: dead, breaker: breakerSuccess},
		{rule: "askusers: 5xx will trigger retries — Attempt 2: 1 minute later", attempt: 1, webhook: wh(policy("askusers")), sent: status(500),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 1, breaker: breakerFailure},
		{rule: "askusers: Attempt 6: 6 hours later", attempt: 5, webhook: wh(policy("askusers")), sent: status(503),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 5, breaker: breakerFailure},
		{rule: "askusers: up to 5 retries, then dead", attempt: 6, webhook: wh(policy("askusers")), sent: status(500),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: dead, breaker: breakerFailure},
		{rule: "askusers: no 2xx within 30 seconds is retried", attempt: 1, webhook: wh(policy("askusers")), sent: failed(context.DeadlineExceeded),
			class: pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, then: retried, tier: 1, breaker: breakerFailure},

		// screeb: "When the destination server replies with a 4xx or 5xx status code, Screeb
		// platform sends a new request after 60s (once)."
		{rule: "screeb: 4xx — a new request after 60s", attempt: 1, webhook: wh(policy("screeb")), sent: status(400),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, then: retried, tier: 1, breaker: breakerFailure},
		{rule: "screeb: 5xx — a new request after 60s", attempt: 1, webhook: wh(policy("screeb")), sent: status(500),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 1, breaker: breakerFailure},
		{rule: "screeb: (once) — the second failure is dead", attempt: 2, webhook: wh(policy("screeb")), sent: status(500),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: dead, breaker: breakerFailure},
		// "the webhook destination may reply to Screeb with a 429 HTTP error (rate limiting).
		// Screeb will resend these messages many times, with exponential delay."
		{rule: "screeb: 429 — resent many times", attempt: 2, webhook: wh(policy("screeb")), sent: status(429),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 2, breaker: breakerFailure},
		{rule: "screeb: 429 — with exponential delay, up to the last tier", attempt: 5, webhook: wh(policy("screeb")), sent: status(429),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 5, breaker: breakerFailure},
		{rule: "screeb: 410 still disables the webhook", attempt: 1, webhook: wh(policy("screeb")), sent: status(410),
			class: pb.OutcomeClass_OUTCOME_CLASS_GONE, then: dead, disable: true, breaker: breakerSuccess},

		// segmanta: "in the case of an error and you'd like to retry later, an error HTTP response
		// code (4xx/5xx)" … "we retry periodically to try and deliver your system the data."
		{rule: "segmanta: 4xx is retried periodically", attempt: 1, webhook: wh(policy("segmanta")), sent: status(404),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, then: retried, tier: 1, breaker: breakerFailure},
		{rule: "segmanta: 5xx is retried periodically", attempt: 3, webhook: wh(policy("segmanta")), sent: status(500),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, then: retried, tier: 3, breaker: breakerFailure},
		{rule: "segmanta: after the last tier, dead", attempt: 6, webhook: wh(policy("segmanta")), sent: status(400),
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, then: dead, breaker: breakerFailure},
		{rule: "segmanta: 410 still disables the webhook", attempt: 1, webhook: wh(policy("segmanta")), sent: status(410),
			class: pb.OutcomeClass_OUTCOME_CLASS_GONE, then: dead, disable: true, breaker: breakerSuccess},
	} {
		t.Run(c.rule, func(t *testing.T) {
			d := &pb.Delivery{DeliveryId: "d1", WebhookId: "wh_1", Attempt: c.attempt, Tier: max(0, c.attempt-1), Test: c.test}
			dec := decide(input{Delivery: d, Webhook: c.webhook, BreakerOpen: c.open, BreakerThreshold: 20, Sent: c.sent,
				Schedule: schedule, Now: now})
			if c.then == send {
				require.True(t, dec.Send)
				require.Nil(t, dec.Outcome)
				return
			}
			require.False(t, dec.Send)
			require.Equal(t, c.class, dec.Outcome.Class)
			require.Equal(t, c.breaker, dec.Breaker, "what the circuit breaker learns")
			require.Equal(t, c.disable, dec.Disable != nil, "webhook disabled")
			if c.disable {
				require.False(t, dec.Disable.Enabled)
				require.Equal(t, "gone", dec.Disable.DisabledReason)
				require.EqualValues(t, 4, dec.Disable.Revision)
			}
			switch c.then {
			case delivered:
				require.Equal(t, pb.Disposition_DISPOSITION_DELIVERED, dec.Outcome.Disposition)
				require.Nil(t, dec.Retry)
				require.Nil(t, dec.Dead)
			case dropped:
				require.Equal(t, pb.Disposition_DISPOSITION_DROPPED, dec.Outcome.Disposition)
				require.Nil(t, dec.Retry)
				require.Nil(t, dec.Dead)
			case dead:
				require.Equal(t, pb.Disposition_DISPOSITION_DEAD, dec.Outcome.Disposition)
				require.Nil(t, dec.Retry)
				require.NotNil(t, dec.Dead)
				require.Equal(t, dec.Outcome, dec.Dead.LastOutcome)
				require.Equal(t, c.attempt, dec.Dead.Attempt, "the dead letter names the last attempt")
			case retried:
				require.Equal(t, pb.Disposition_DISPOSITION_RETRY, dec.Outcome.Disposition)
				require.Nil(t, dec.Dead)
				require.NotNil(t, dec.Retry)
				require.Equal(t, c.attempt+1, dec.Retry.Attempt)
				require.EqualValues(t, c.tier, dec.Retry.Tier)
				require.Equal(t, schedule[c.tier-1], dec.RetryDelay)
				// Delays count from the end of the failed attempt (now), not its start.
				require.Equal(t, now.Add(schedule[c.tier-1]).UnixMilli(), dec.Retry.NotBeforeMs)
				require.Equal(t, "d1", dec.Retry.DeliveryId, "the same webhook-id on every retry")
			}
		})
	}
}

func TestTierForIsTheNearestTierAtLeastThatLong(t *testing.T) {
	schedule := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour}
	for _, c := range []struct {
		wait time.Duration
		tier int
	}{
		{0, 0}, {time.Second, 1}, {time.Minute, 1}, {time.Minute + time.Millisecond, 2}, {5 * time.Minute, 2},
		{2 * time.Hour, 5}, {48 * time.Hour, 5},
	} {
		require.Equal(t, c.tier, tierFor(schedule, c.wait.Milliseconds()), "wait %s", c.wait)
	}
}
