package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
)

func TestTxnLoopCopiesEveryRecordOnceAcrossARestart(t *testing.T) {
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, kafka.EnsureTopics(ctx, cfg))

	cl, err := kafka.NewClient(cfg)
	require.NoError(t, err)
	defer cl.Close()
	const n = 500
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Topic: cfg.Topics.Events, Key: []byte(fmt.Sprint(i % 7)), Value: []byte(fmt.Sprint(i))}, nil)
	}
	require.NoError(t, cl.Flush(ctx))

	run := func(lctx context.Context, lcancel func(), stopAfter int) {
		seen := 0
		loop := &kafka.TxnLoop{Config: cfg, Group: "copy", Topics: []string{cfg.Topics.Events},
			Handler: func(_ context.Context, recs []*kgo.Record, produce func(*kgo.Record)) error {
				for _, r := range recs {
					produce(&kgo.Record{Topic: cfg.Topics.Deliveries, Key: r.Key, Value: r.Value})
				}
				seen += len(recs)
				if seen >= stopAfter {
					lcancel()
				}
				return nil
			}}
		require.NoError(t, loop.Run(lctx))
	}
	first, stopFirst := context.WithCancel(ctx)
	run(first, stopFirst, 100) // stops part-way (its last batch may or may not commit)
	second, stopSecond := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); run(second, func() {}, n+1) }() // a second process finishes the job
	defer func() { stopSecond(); <-done }()

	got := map[string]int{}
	rd, err := kafka.NewClient(cfg, kgo.ConsumeTopics(cfg.Topics.Deliveries), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	require.NoError(t, err)
	defer rd.Close()
	for len(got) < n {
		f := rd.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "only %d of %d records arrived", len(got), n)
		f.EachRecord(func(r *kgo.Record) { got[string(r.Value)]++ })
	}
	for v, c := range got {
		require.Equal(t, 1, c, "record %s copied %d times", v, c)
	}
}

func TestDurationName(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1m", 5 * time.Minute: "5m", time.Hour: "1h", 6 * time.Hour: "6h",
		90 * time.Second: "90s", 200 * time.Millisecond: "200ms", 90 * time.Minute: "90m",
	} {
		require.Equal(t, want, kafka.DurationName(d), "%v", d)
	}
}
