package kafka_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
)

// TestProducerBatchesFitTheTopicsLimit sets a small max.message.bytes on the broker and on one
// topic: after EnsureTopics, a client producing a burst of ordinary records (lingering, so that
// batches fill) gets no MESSAGE_TOO_LARGE.
func TestProducerBatchesFitTheTopicsLimit(t *testing.T) {
	cfg := kafkatest.Start(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "200000"}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// An operator lowered one topic's limit below the broker's before the services started.
	adm, err := kafka.NewClient(cfg)
	require.NoError(t, err)
	defer adm.Close()
	_, err = kadm.NewClient(adm).CreateTopic(ctx, cfg.Partitions, 1, map[string]*string{"max.message.bytes": ptr("50000")}, cfg.Topics.Deliveries)
	require.NoError(t, err)

	require.NoError(t, kafka.EnsureTopics(ctx, cfg))
	limit := kafka.ProducerBatchMaxBytes(cfg)
	require.LessOrEqual(t, limit, int32(50000), "the batch limit is above the smallest topic limit")
	require.Greater(t, limit, int32(40000), "the batch limit is needlessly small")

	cl, err := kafka.NewClient(cfg, kgo.ProducerLinger(200*time.Millisecond))
	require.NoError(t, err)
	defer cl.Close()
	value := []byte(strings.Repeat("x", 900))
	var results []chan error
	for i := range 3000 {
		done := make(chan error, 1)
		results = append(results, done)
		topic := cfg.Topics.Deliveries
		if i%2 == 1 {
			topic = cfg.Topics.Attempts // under the broker's limit only
		}
		// One key: every record to the same partition, so that batches grow as large as allowed.
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte("one"), Value: value}, func(_ *kgo.Record, err error) { done <- err })
	}
	for i, done := range results {
		require.NoError(t, <-done, "record %d", i)
	}
}

func TestConfigValidateNamesTheGroupVariable(t *testing.T) {
	cfg := kafka.Config{Brokers: []string{"x:1"}, Partitions: 1, RetrySchedule: []time.Duration{time.Second},
		Group: kafka.GroupConfig{SessionTimeout: 6 * time.Second, HeartbeatInterval: 5 * time.Second, RebalanceTimeout: time.Minute}}
	require.ErrorContains(t, cfg.Validate(), "KAFKA_HEARTBEAT_INTERVAL")
	cfg.Group.HeartbeatInterval = time.Second
	require.NoError(t, cfg.Validate())
}

func ptr(s string) *string { return &s }
