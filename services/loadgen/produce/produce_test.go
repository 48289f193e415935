package produce_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
)

func topic(t *testing.T) kafka.Config {
	t.Helper()
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, kafka.EnsureTopics(ctx, cfg))
	return cfg
}

func consume(t *testing.T, cfg kafka.Config, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumeTopics(cfg.Topics.SurveyEvents))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func gen(project string) func(int) produce.Event {
	return func(i int) produce.Event {
		return produce.Event{ProjectID: project, EventID: "e" + string(rune('a'+i%26)), UserID: "u", Score: i % 11}
	}
}

func TestEventsArriveAsJSONTheIngestServiceAccepts(t *testing.T) {
	cfg := topic(t)
	p := produce.New(cfg.Brokers, cfg.Topics.SurveyEvents)
	defer p.Close()
	before := time.Now()
	n, err := p.Run(context.Background(), produce.Plan{Count: 30, Batch: 7}, gen("prj_1"))
	require.NoError(t, err)
	require.Equal(t, 30, n)

	recs := consume(t, cfg, 30)
	require.Len(t, recs, 30)
	partitions := map[int32]bool{}
	for _, r := range recs {
		partitions[r.Partition] = true
		require.Equal(t, "prj_1", string(r.Key))
		require.Equal(t, "application/json", string(kafka.Header(r, "content-type")))
		var ev struct {
			ProjectID  string               `json:"project_id"`
			EventID    string               `json:"event_id"`
			EventType  string               `json:"event_type"`
			User       struct{ ID string }  `json:"user"`
			NPS        struct{ Score *int } `json:"nps"`
			Properties struct {
				SentAtNs int64 `json:"sent_at_ns"`
			} `json:"properties"`
		}
		require.NoError(t, json.Unmarshal(r.Value, &ev))
		require.Equal(t, "prj_1", ev.ProjectID)
		require.Equal(t, "nps.scored", ev.EventType)
		require.NotEmpty(t, ev.EventID)
		require.Equal(t, "u", ev.User.ID)
		require.NotNil(t, ev.NPS.Score)
		sent := time.Unix(0, ev.Properties.SentAtNs)
		require.False(t, sent.Before(before), "sent_at_ns is the send time")
		require.WithinDuration(t, time.Now(), sent, 30*time.Second)
	}
	require.Greater(t, len(partitions), 1, "records are spread over the partitions")
}

func TestRatePacesTheProducer(t *testing.T) {
	cfg := topic(t)
	p := produce.New(cfg.Brokers, cfg.Topics.SurveyEvents)
	defer p.Close()
	start := time.Now()
	n, err := p.Run(context.Background(), produce.Plan{Rate: 100, Count: 50}, gen("prj_rate"))
	require.NoError(t, err)
	require.Equal(t, 50, n)
	// 50 events at 100/s cannot take less than ~half a second.
	require.GreaterOrEqual(t, time.Since(start), 450*time.Millisecond)
}

func TestBacklogBoundPausesProductionUntilDeliveriesCatchUp(t *testing.T) {
	cfg := topic(t)
	p := produce.New(cfg.Brokers, cfg.Topics.SurveyEvents)
	defer p.Close()
	var delivered atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	n, err := p.Run(ctx, produce.Plan{
		Outstanding: func(sent int64) int64 { return sent - delivered.Load() },
		MaxBacklog:  20,
	}, gen("prj_loop"))
	require.NoError(t, err, "the end of the context ends the run without an error")
	require.Equal(t, 20, n, "nothing was delivered, so no more than the backlog bound may be sent")

	delivered.Store(20)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel2()
	n, err = p.Run(ctx2, produce.Plan{
		Outstanding: func(sent int64) int64 { return 20 + sent - delivered.Load() },
		MaxBacklog:  30,
	}, gen("prj_loop"))
	require.NoError(t, err)
	require.Equal(t, 30, n)
}

func TestAnUnboundedRunIsRefused(t *testing.T) {
	p := produce.New([]string{"127.0.0.1:1"}, "survey-events")
	defer p.Close()
	_, err := p.Run(context.Background(), produce.Plan{}, gen("x"))
	require.Error(t, err)
}
