package fanout_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

// TestEventsOfAnAutoDisabledWebhookAreRecordedAsSkippedWithTheirBody: a webhook disabled by
// surveyhooks ("failing", "gone") gets no delivery, but every event it would have received
// becomes a SKIPPED attempt carrying what a replay needs: the body it would have been sent (its
// filter applied), the delivery id a delivery would have had, the event id and type. A webhook its
// subscriber disabled gets nothing.
func TestEventsOfAnAutoDisabledWebhookAreRecordedAsSkippedWithTheirBody(t *testing.T) {
	p := startPipeline(t)
	rd, err := kafka.NewClient(p.cfg, kgo.ConsumeTopics(p.cfg.Topics.Attempts), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	require.NoError(t, err)
	t.Cleanup(rd.Close)
	p.webhooks(
		&pb.Webhook{Id: "wh_failing", ProjectId: "p1", EventTypes: []string{"nps.scored"}, DisabledReason: "failing",
			Filter: `event.nps.score <= 6`, Revision: 4},
		&pb.Webhook{Id: "wh_gone", ProjectId: "p1", EventTypes: []string{"*"}, DisabledReason: "gone"},
		&pb.Webhook{Id: "wh_manual", ProjectId: "p1", EventTypes: []string{"*"}},
		&pb.Webhook{Id: "wh_on", ProjectId: "p1", Enabled: true, EventTypes: []string{"nps.scored"}})
	p.events(nps("e1", 3), nps("e2", 9))

	ds := p.deliveries(2)
	require.ElementsMatch(t, []string{"e1", "e2"}, eventIDs(byEvent(ds, "wh_on")), "the enabled webhook is delivered to as before")
	require.Len(t, ds, 2, "no delivery for a disabled webhook")
	sent := byEvent(ds, "wh_on")

	got := map[string]*pb.Attempt{}
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	for len(got) < 3 && ctx.Err() == nil {
		fs := rd.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			a := &pb.Attempt{}
			require.NoError(t, proto.Unmarshal(r.Value, a))
			require.Equal(t, a.WebhookId, string(r.Key), "attempts are keyed by webhook id")
			got[a.EventId+"→"+a.WebhookId] = a
		})
	}
	keys := []string{}
	for k := range got {
		keys = append(keys, k)
	}
	// e2 (a promoter) does not pass wh_failing's filter: it would not have been sent either.
	require.ElementsMatch(t, []string{"e1→wh_failing", "e1→wh_gone", "e2→wh_gone"}, keys)
	a := got["e1→wh_failing"]
	require.Equal(t, pb.Disposition_DISPOSITION_SKIPPED, a.Outcome.Disposition)
	require.Equal(t, pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, a.Outcome.Class)
	require.Contains(t, a.Outcome.Error, "failing")
	require.Equal(t, fanout.DeliveryID("e1", "wh_failing"), a.DeliveryId)
	require.Equal(t, "nps.scored", a.EventType)
	require.Equal(t, "p1", a.ProjectId)
	require.Zero(t, a.LatencyUs)
	require.Empty(t, a.RequestUrl, "no request was made")
	require.JSONEq(t, string(sent["e1"].Body), string(a.RequestBody), "the body it would have received (same version and shape)")
	require.Eventually(t, func() bool { return p.f.Stats.Skipped.Load() == 3 }, 5*time.Second, 20*time.Millisecond)
}
