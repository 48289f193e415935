// Package operational describes the operational events: what the platform's own endpoints (the
// operational webhooks, webhooks of PlatformProject) hear about its customers' webhooks — failing,
// disabled, recovered, a delivery dead-lettered — and the body they receive. The delivery service
// makes them (services/delivery/health.go); the API manages the endpoints. It must stay free of
// heavy dependencies: the delivery worker imports it.
package operational

import (
	"encoding/json"
	"time"
)

// PlatformProject is the reserved project that owns the operational webhooks: the platform's own
// endpoints, managed with the admin token (`/v1/operational-webhooks`), that hear about customers'
// webhooks. No API key belongs to it and no producer event names it; ids of real projects start
// with "prj_", so none can collide with it.
const PlatformProject = "platform"

// The operational event types (issue 16): what the platform hears about its customers' webhooks.
const (
	WebhookDisabled      = "webhook.disabled"
	WebhookFailing       = "webhook.failing"
	WebhookRecovered     = "webhook.recovered"
	DeliveryDeadLettered = "delivery.dead_lettered"
	BodyVersion          = "1" // the version field of every operational body
)

// Type is one entry of the operational catalogue: its name, a one-line description
// and an example body as an operational webhook receives it.
type Type struct {
	Name        string
	Description string
	Example     string
}

// Catalogue lists the operational event types, in documentation order. They are not
// producer events: only the delivery service makes them, and only operational webhooks get them.
var Catalogue = []Type{
	{Name: WebhookFailing, Description: "A webhook's deliveries failed N times in a row (DELIVERY_FAILING_NOTIFY_AFTER).",
		Example: `{"event_id":"evt_op_…","event_type":"webhook.failing","version":"1","time":"2026-11-29T21:00:00.000Z","time_ms":1795986000000,"payload":{"project_id":"prj_…","webhook_id":"wh_…","webhook_name":"CRM sync","consecutive_failures":10,"failing_since":"2026-11-29T20:10:00.000Z","failing_since_ms":1795983000000,"last_status_code":503,"last_error":"HTTP 503"}}`},
	{Name: WebhookDisabled, Description: "A webhook was disabled by surveyhooks: reason \"failing\" (every delivery failed for DELIVERY_DISABLE_AFTER or DELIVERY_DISABLE_AFTER_FAILURES attempts) or \"gone\" (it answered 410).",
		Example: `{"event_id":"evt_op_…","event_type":"webhook.disabled","version":"1","time":"2026-12-04T20:10:00.000Z","time_ms":1796415000000,"payload":{"project_id":"prj_…","webhook_id":"wh_…","webhook_name":"CRM sync","reason":"failing","consecutive_failures":412,"failing_since":"2026-11-29T20:10:00.000Z","failing_since_ms":1795983000000,"last_status_code":503,"last_error":"HTTP 503"}}`},
	{Name: WebhookRecovered, Description: "A webhook that was failing delivered successfully again.",
		Example: `{"event_id":"evt_op_…","event_type":"webhook.recovered","version":"1","time":"2026-11-29T22:00:00.000Z","time_ms":1795989600000,"payload":{"project_id":"prj_…","webhook_id":"wh_…","webhook_name":"CRM sync","consecutive_failures":17,"failing_since":"2026-11-29T20:10:00.000Z","failing_since_ms":1795983000000}}`},
	{Name: DeliveryDeadLettered, Description: "A delivery ran out of attempts, or failed permanently, and went to the dead letters.",
		Example: `{"event_id":"evt_op_…","event_type":"delivery.dead_lettered","version":"1","time":"2026-11-29T21:00:00.000Z","time_ms":1795986000000,"payload":{"project_id":"prj_…","webhook_id":"wh_…","webhook_name":"CRM sync","delivery_id":"msg_…","event_id":"3f0c…","event_type":"nps.scored","attempts":6,"last_status_code":503,"last_error":"HTTP 503 (after 6 attempts)"}}`},
}

// Known reports whether t is an operational event type.
func Known(t string) bool {
	for _, o := range Catalogue {
		if o.Name == t {
			return true
		}
	}
	return false
}

// Types are the names of the Catalogue, in its order.
func Types() []string {
	out := make([]string, len(Catalogue))
	for i, o := range Catalogue {
		out[i] = o.Name
	}
	return out
}

// Payload is the payload of an operational event. Every field is bounded: ids, a name of at
// most 200 characters, an error text of at most 512 bytes.
type Payload struct {
	ProjectID           string `json:"project_id"`
	WebhookID           string `json:"webhook_id"`
	WebhookName         string `json:"webhook_name,omitempty"`
	Reason              string `json:"reason,omitempty"`
	ConsecutiveFailures int32  `json:"consecutive_failures,omitempty"`
	FailingSince        string `json:"failing_since,omitempty"`
	FailingSinceMs      int64  `json:"failing_since_ms,omitempty"`
	DeliveryID          string `json:"delivery_id,omitempty"`
	EventID             string `json:"event_id,omitempty"`
	EventType           string `json:"event_type,omitempty"`
	Attempts            int32  `json:"attempts,omitempty"`
	LastStatusCode      int32  `json:"last_status_code,omitempty"`
	LastError           string `json:"last_error,omitempty"`
}

// Body is the body an operational webhook receives: the envelope shape of every
// webhook, `{event_id, event_type, version, time, time_ms, payload}`.
func Body(eventID, eventType string, atMs int64, p Payload) []byte {
	if p.FailingSinceMs != 0 {
		p.FailingSince = timeString(p.FailingSinceMs)
	}
	body, _ := json.Marshal(struct {
		EventID   string  `json:"event_id"`
		EventType string  `json:"event_type"`
		Version   string  `json:"version"`
		Time      string  `json:"time"`
		TimeMs    int64   `json:"time_ms"`
		Payload   Payload `json:"payload"`
	}{eventID, eventType, BodyVersion, timeString(atMs), atMs, p})
	return body
}

// timeString formats milliseconds as RFC 3339 UTC with milliseconds, as the envelope does.
func timeString(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
