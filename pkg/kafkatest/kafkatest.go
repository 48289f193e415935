// Package kafkatest starts the kfake Kafka broker on 127.0.0.1 for tests: a real
// Kafka-protocol server over TCP, with groups, transactions and compaction.
package kafkatest

import (
	"context"
	"testing"

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
