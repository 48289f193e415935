// Package apiv1 holds the JSON API's v1 wire types that more than one package reads: the API
// (services/api) writes them, and the portal (services/api/portal), which reaches the API only
// through its handlers, decodes the same types rather than a copy of them. Types the attempt log
// answers with (attempts, dead letters, statistics, replay jobs) are pkg/attemptlog's own.
package apiv1

import (
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
)

// Secret is one of a webhook's signing secrets as clients see it: never the secret itself.
type Secret struct {
	Fingerprint string     `json:"fingerprint"`
	PublicKey   string     `json:"public_key,omitempty"` // v1a: the "whpk_…" key receivers verify with
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// Webhook is a webhook as the API answers it (GET /v1/webhooks/{id} and the list): every
// setting, each unexpired secret's metadata, and the failing streak the delivery service recorded.
type Webhook struct {
	ID              string          `json:"id"`
	ProjectID       string          `json:"project_id"`
	Name            string          `json:"name"`
	Description     string          `json:"description"`
	URL             string          `json:"url"`
	Events          []string        `json:"events"`
	EventToggles    map[string]bool `json:"event_toggles"`
	Enabled         bool            `json:"enabled"`
	DisabledReason  string          `json:"disabled_reason,omitempty"`
	Secret          string          `json:"secret,omitempty"` // only right after it was created or rotated
	SignatureScheme string          `json:"signature_scheme"`
	PublicKey       string          `json:"public_key,omitempty"` // v1a: the newest key's "whpk_…"
	// ClientCertificate is public (the key never leaves the box); with its expiry.
	ClientCertificate          string            `json:"client_certificate,omitempty"`
	ClientCertificateExpiresAt *time.Time        `json:"client_certificate_expires_at,omitempty"`
	Secrets                    []Secret          `json:"secrets"`
	UserProperties             []string          `json:"user_properties"`
	CompanyProperties          []string          `json:"company_properties"`
	PayloadVersion             string            `json:"payload_version"`
	Filter                     string            `json:"filter"`
	Transform                  string            `json:"transform"`
	Format                     string            `json:"format"`
	RateLimitPerS              float64           `json:"rate_limit_per_s"`
	RetryClientErrors          bool              `json:"retry_client_errors"`
	RetryPolicy                string            `json:"retry_policy"`
	Headers                    map[string]string `json:"headers"`
	Masking                    []MaskingRule     `json:"masking"`
	Revision                   int64             `json:"revision"`
	CreatedAt                  time.Time         `json:"created_at"`
	UpdatedAt                  time.Time         `json:"updated_at"`
	// FailingSince and ConsecutiveFailures show a failing streak once the delivery service
	// recorded it (at DELIVERY_FAILING_NOTIFY_AFTER failures, and at the disable).
	FailingSince        *time.Time `json:"failing_since,omitempty"`
	ConsecutiveFailures int32      `json:"consecutive_failures,omitempty"`

	Ordering string `json:"ordering"` // "" or "respondent" (docs/ordering.md)
}

// MaskingRule is a masking rule as the API shows and takes it: a webhook's `masking` (what it
// receives) and a project's `storage_masking` (what the attempt log stores).
type MaskingRule struct {
	Path   string `json:"path"`
	Action string `json:"action"`
	Keep   int32  `json:"keep,omitempty"`
}

// TestResult answers Send Test: the attempt the delivery service made, with its request body and
// the response.
type TestResult struct {
	DeliveryID      string            `json:"delivery_id"`
	EventID         string            `json:"event_id"`
	AttemptID       string            `json:"attempt_id"`
	Outcome         string            `json:"outcome"`
	Success         bool              `json:"success"`
	StatusCode      int32             `json:"status_code"`
	LatencyMs       float64           `json:"latency_ms"`
	Error           string            `json:"error,omitempty"`
	RequestBody     string            `json:"request_body"`
	ResponseHeaders map[string]string `json:"response_headers"`
	ResponseBody    string            `json:"response_body"`
}

// DeadLetterReplay answers a dead-letter replay: how many were queued again and skipped, whether
// more match (call again), and for one dead letter its ids.
type DeadLetterReplay struct {
	Replayed   int    `json:"replayed"`
	Skipped    int    `json:"skipped"`
	More       bool   `json:"more"`
	DeliveryID string `json:"delivery_id,omitempty"`
	EventID    string `json:"event_id,omitempty"`
	WebhookID  string `json:"webhook_id,omitempty"`
}

// Stats is one webhook's statistics over a range (GET /v1/webhooks/{id}/stats).
type Stats struct {
	WebhookID string    `json:"webhook_id"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Step      string    `json:"step"`
	// The endpoint's adaptive concurrency limit as the range's latest sent attempt recorded it, when
	// that attempt started, and the lowest limit of the range's sent attempts (ranges of up to
	// attemptlog.MinLimitRange); absent when none.
	ConcurrencyLimit    int                      `json:"concurrency_limit,omitempty"`
	ConcurrencyLimitAt  *time.Time               `json:"concurrency_limit_at,omitempty"`
	ConcurrencyLimitMin int                      `json:"concurrency_limit_min,omitempty"`
	Data                []attemptlog.StatsBucket `json:"data"`
}

// List is one page of a list: its items, and the cursor of the next page ("" on the last).
type List[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor"`
}
