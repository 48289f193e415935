// Package kafkatest starts the kfake Kafka broker on 127.0.0.1 for tests: a real
// Kafka-protocol server over TCP, with groups, transactions and compaction.
package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
)

// Start runs a one-broker cluster for the test and returns a kafka.Config pointing at it with
// few partitions. The cluster is closed when the test ends.
func Start(t testing.TB, opts ...kfake.Opt) kafka.Config {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	cfg := kafka.Config{}
	if err := config.Defaults(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Brokers = c.ListenAddrs()
	cfg.Partitions = 3
	return cfg
}

// Client creates cfg's topics and returns a client of cfg with opts, closed when the test ends:
// the producing client a component test starts with.
func Client(t testing.TB, ctx context.Context, cfg kafka.Config, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	if err := kafka.EnsureTopics(ctx, cfg); err != nil {
		t.Fatalf("creating topics: %v", err)
	}
	cl, err := kafka.NewClient(cfg, opts...)
	if err != nil {
		t.Fatalf("creating a Kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Tail reads topic from its start (committed records only) in the background and calls fn for each
// record, from one goroutine, until the test ends: what a test watches an output topic with.
func Tail(t testing.TB, cfg kafka.Config, topic string, fn func(*kgo.Record)) {
	t.Helper()
	cl, err := kafka.NewClient(cfg, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("creating a Kafka client for %s: %v", topic, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachRecord(fn)
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
}
