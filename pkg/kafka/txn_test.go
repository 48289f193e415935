package kafka_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
)

func TestTxnLoopCopiesEveryRecordOnceAcrossARestart(t *testing.T) {
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := kafkatest.Client(t, ctx, cfg)
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

// TestTxnLoopKeepsGoingAcrossABrokerRestart kills the broker under a running loop and starts it
// again on the same port and data: the loop must neither return nor lose or repeat a record.
func TestTxnLoopKeepsGoingAcrossABrokerRestart(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir))
		require.NoError(t, err)
		return c
	}
	broker := start()
	defer func() { broker.Close() }()
	cfg := kafka.Config{}
	require.NoError(t, config.Defaults(&cfg))
	cfg.Brokers, cfg.Partitions = broker.ListenAddrs(), 3
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, kafka.EnsureTopics(ctx, cfg))

	loopCtx, stopLoop := context.WithCancel(ctx)
	loopErr := make(chan error, 1)
	go func() {
		loop := &kafka.TxnLoop{Config: cfg, Group: "copy-restart", Topics: []string{cfg.Topics.Events},
			Handler: func(_ context.Context, recs []*kgo.Record, produce func(*kgo.Record)) error {
				for _, r := range recs {
					produce(&kgo.Record{Topic: cfg.Topics.Deliveries, Key: r.Key, Value: r.Value})
				}
				// Keep the transaction open a while, so that the broker goes away in the middle of one.
				time.Sleep(100 * time.Millisecond)
				return nil
			}}
		loopErr <- loop.Run(loopCtx)
	}()

	produce := func(from, to int) {
		cl, err := kafka.NewClient(cfg)
		require.NoError(t, err)
		defer cl.Close()
		for i := from; i < to; i++ {
			require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Topics.Events, Key: []byte(fmt.Sprint(i % 5)), Value: []byte(fmt.Sprint(i))}).FirstErr())
		}
	}
	copied := func(want int) map[string]int {
		got := map[string]int{}
		rd, err := kafka.NewClient(cfg, kgo.ConsumeTopics(cfg.Topics.Deliveries), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		require.NoError(t, err)
		defer rd.Close()
		for len(got) < want {
			pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
			f := rd.PollFetches(pctx)
			pcancel()
			require.NoError(t, ctx.Err(), "only %d of %d records copied", len(got), want)
			f.EachRecord(func(r *kgo.Record) { got[string(r.Value)]++ })
		}
		return got
	}

	produce(0, 100)
	copied(100) // the loop is at work
	// The broker goes away while the loop is mid-transaction, and comes back on the same port and
	// data; three times, with records arriving all along.
	const restarts = 3
	for i := range restarts {
		from := 100 + i*100
		produce(from, from+50)
		time.Sleep(150 * time.Millisecond)
		broker.Close()
		time.Sleep(time.Second)
		broker = start()
		produce(from+50, from+100)
	}
	total := 100 + restarts*100
	copied(total)
	time.Sleep(time.Second) // a repeated copy would show up now
	got := copied(total)
	for v, c := range got {
		require.Equal(t, 1, c, "record %s copied %d times", v, c)
	}
	select {
	case err := <-loopErr:
		t.Fatalf("the loop returned across a broker restart: %v", err)
	default:
	}
	stopLoop()
	require.NoError(t, <-loopErr)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
