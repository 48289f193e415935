package fanout

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// AutoDisabledReasons are the disabled_reason values of a webhook switched off by surveyhooks
// rather than by its subscriber: "failing" (every attempt failed for DELIVERY_DISABLE_AFTER, or
// DELIVERY_DISABLE_AFTER_FAILURES in a row) and "gone" (it answered 410). Events matching such a
// webhook are not dropped: each becomes a skipped attempt with its body (issue 16, point 2). A
// webhook its subscriber disabled gets nothing, as a deleted one: that was their choice.
var AutoDisabledReasons = []string{"failing", "gone"}

// Skips reports whether an event of eventType is recorded as skipped for wh: wh was disabled
// automatically and would otherwise want the event.
func Skips(wh *pb.Webhook, eventType string) bool {
	return !wh.Enabled && slices.Contains(AutoDisabledReasons, wh.DisabledReason) && subscribes(wh, eventType)
}

// skipped is the attempt record of ev for disabled webhook wh: no request, disposition SKIPPED,
// the rendered body (filter, format, transform and webhook masking applied, as a delivery's) and
// the delivery id a delivery would have had, so a replay of the span sends what the webhook would
// have received, with the same webhook-id. It goes straight to `delivery-attempts` in fan-out's
// transaction — exactly once, one hop less than through delivery — where the sink applies the
// project's storage masking as to any attempt.
func (f *FanOut) skipped(r *kgo.Record, ev *pb.Event, wh *pb.Webhook, body []byte, now int64) *kgo.Record {
	f.Stats.Skipped.Add(1)
	deliveryID := DeliveryID(ev.EventId, wh.Id)
	a := &pb.Attempt{AttemptId: "att_" + deliveryID[len("msg_"):] + "_skipped", DeliveryId: deliveryID, EventId: ev.EventId,
		WebhookId: wh.Id, ProjectId: ev.ProjectId, EventType: ev.EventType, Attempt: 1, StartedAtMs: now,
		Worker: "fanout", RequestBody: body,
		Outcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, Disposition: pb.Disposition_DISPOSITION_SKIPPED,
			Error: "not sent: webhook is disabled (" + wh.DisabledReason + "); kept for a replay", AtMs: now}}
	v, _ := proto.Marshal(a)
	out := &kgo.Record{Topic: f.cfg.Kafka.Topics.Attempts, Key: []byte(wh.Id), Value: v, Headers: slices.Clone(r.Headers)}
	telemetry.Continue(out, r)
	return out
}
