package delivery

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// An erased respondent's delivery is never sent, retried or dead-lettered, whatever the state of
// its webhook, and its attempt keeps no body.
func TestErasedRespondentsDeliveryIsNeverSentAndItsAttemptKeepsNoBody(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	schedule := []time.Duration{time.Minute, 5 * time.Minute}
	enabled := &pb.Webhook{Id: "wh_1", Enabled: true, Revision: 3, Url: "https://example.com/h"}
	for name, in := range map[string]input{
		"a first attempt":              {Webhook: enabled},
		"a retry that would be sent":   {Webhook: enabled, Delivery: &pb.Delivery{Attempt: 3}},
		"after a failure, not retried": {Webhook: enabled, Sent: &sender.Result{StatusCode: 500}},
		"a disabled webhook's":         {Webhook: &pb.Webhook{Id: "wh_1"}},
		"a deleted webhook's":          {},
		"an open circuit: not retried": {Webhook: enabled, BreakerOpen: true},
		"the last attempt: not dead":   {Webhook: enabled, Delivery: &pb.Delivery{Attempt: 6}, Sent: &sender.Result{StatusCode: 500}},
	} {
		t.Run(name, func(t *testing.T) {
			if in.Delivery == nil {
				in.Delivery = &pb.Delivery{Attempt: 1}
			}
			in.Delivery.DeliveryId, in.Delivery.WebhookId, in.Delivery.Body = "d1", "wh_1", []byte(`{"email":"ada@example.com"}`)
			in.Schedule, in.Now, in.ErasedBy = schedule, now, "er_1"
			dec := decide(in)
			require.False(t, dec.Send)
			require.Equal(t, pb.OutcomeClass_OUTCOME_CLASS_ERASED, dec.Outcome.Class)
			require.Equal(t, pb.Disposition_DISPOSITION_ERASED, dec.Outcome.Disposition)
			require.Contains(t, dec.Outcome.Error, "er_1", "the log says which erasure stopped it")
			require.Nil(t, dec.Retry)
			require.Nil(t, dec.Dead)
			require.Nil(t, dec.Disable)
			require.Equal(t, breakerNone, dec.Breaker)

			a := attemptRecord(in, dec, "w", now)
			erasedAttempt(a)
			require.Empty(t, a.RequestBody)
			require.Equal(t, "d1", a.DeliveryId)
		})
	}
	in := input{Delivery: &pb.Delivery{DeliveryId: "d1", Body: []byte("x")}, Webhook: enabled, Schedule: schedule, Now: now}
	require.True(t, decide(in).Send, "not erased: sent")
	a := attemptRecord(in, decision{Outcome: &pb.Outcome{Disposition: pb.Disposition_DISPOSITION_DELIVERED}}, "w", now)
	erasedAttempt(a)
	require.Equal(t, []byte("x"), a.RequestBody, "other attempts keep their body")
}
