package delivery

import (
	"net/http"
	"time"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Retry policy presets, chosen per webhook (Webhook.retry_policy): each is the rule the named
// platform's webhook document states, so a receiver written against that document sees the
// retries it expects. Every preset keeps surveyhooks' own rules for what the documents do not
// mention: 410 disables the webhook, refused destinations are not retried, Retry-After is
// honoured, and delays are served by the fixed retry tiers (the nearest tier at least as long).
const (
	PolicyDefault  = "default"  // DESIGN §1: 4xx permanent except 408, 409, 425, 429; all tiers
	PolicyScreeb   = "screeb"   // 4xx/5xx: one resend after 60 s; 429: many resends, growing delays
	PolicyAskUsers = "askusers" // 4xx never retried (409 and 429 included); 5xx at every tier
	PolicySegmanta = "segmanta" // 4xx and 5xx retried periodically (every tier)
)

// Policies lists the presets a webhook may name ("" means default).
var Policies = []string{PolicyDefault, PolicyScreeb, PolicyAskUsers, PolicySegmanta}

// screebResendAfter is Screeb's "sends a new request after 60s (once)".
const screebResendAfter = 60 * time.Second

// retryPolicy is one webhook's retry rule.
type retryPolicy struct {
	name              string
	retryClientErrors bool // the default policy's per-webhook switch (Segmanta's rule before presets)
}

func policyFor(wh *pb.Webhook) retryPolicy {
	if wh == nil {
		return retryPolicy{name: PolicyDefault}
	}
	p := retryPolicy{name: wh.RetryPolicy, retryClientErrors: wh.RetryClientErrors}
	if p.name == "" {
		p.name = PolicyDefault
	}
	return p
}

// httpError reports whether the endpoint answered with a 4xx or 5xx other than 410 (which always
// disables the webhook).
func httpError(out *pb.Outcome) bool {
	c := out.StatusCode
	return c >= 400 && c < 600 && c != http.StatusGone
}

// retries reports whether an attempt with this outcome (as classify judged it) is tried again.
func (p retryPolicy) retries(out *pb.Outcome) bool {
	switch out.Class {
	case pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, pb.OutcomeClass_OUTCOME_CLASS_GONE:
		return false
	}
	byDefault := out.Disposition == pb.Disposition_DISPOSITION_RETRY
	switch p.name {
	case PolicyAskUsers:
		// "4xx for client errors (which won't be retried), 5xx for server errors (which will
		// trigger retries)"; no 2xx within 30 s is retried too ("If we don't receive a successful
		// response, we'll automatically retry").
		if out.StatusCode >= 400 && out.StatusCode < 500 {
			return false
		}
		return byDefault
	case PolicyScreeb, PolicySegmanta:
		// Screeb: "replies with a 4xx or 5xx status code, Screeb platform sends a new request";
		// Segmanta: "an error HTTP response code (4xx/5xx) … we retry periodically".
		return byDefault || httpError(out)
	default:
		return byDefault || (p.retryClientErrors && out.Class == pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT)
	}
}

// maxAttempts bounds the attempts of a retried outcome; 0: one per retry tier plus the first.
func (p retryPolicy) maxAttempts(out *pb.Outcome) int {
	if p.name == PolicyScreeb && out.StatusCode != http.StatusTooManyRequests {
		return 2 // "sends a new request after 60s (once)"
	}
	return 0 // Screeb's 429: "resend these messages many times, with exponential delay"
}

// minDelay is the shortest wait before the retry the policy asks for.
func (p retryPolicy) minDelay(out *pb.Outcome) time.Duration {
	if p.name == PolicyScreeb && out.StatusCode != http.StatusTooManyRequests {
		return screebResendAfter
	}
	return 0
}
