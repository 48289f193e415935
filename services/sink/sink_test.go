package sink

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/chtest"
	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// A sink that dies after ClickHouse took a batch but before Kafka heard about it must not, once
// restarted, insert that batch again: neither the raw rows nor the hourly rollup count twice.
func TestSinkStoresEveryAttemptOnceAcrossACrash(t *testing.T) {
	kcfg := kafkatest.Start(t)
	var cfg Config
	require.NoError(t, config.Defaults(&cfg))
	cfg.Kafka, cfg.ClickHouseAddr, cfg.Database = kcfg, chtest.Addr(t), chtest.Database(t)
	cfg.FlushInterval, cfg.BatchSize = 100*time.Millisecond, 200
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := kafkatest.Client(t, ctx, kcfg)

	const n = 1000
	now := time.Now().UnixMilli()
	var recs []*kgo.Record
	for i := range n {
		a := &pb.Attempt{AttemptId: fmt.Sprintf("att-%04d", i), DeliveryId: "d", EventId: fmt.Sprintf("e-%d", i),
			WebhookId: "wh_1", ProjectId: "p1", EventType: "nps.scored", Attempt: 1, StartedAtMs: now, LatencyUs: 1500,
			Outcome:        &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, Disposition: pb.Disposition_DISPOSITION_DELIVERED, StatusCode: 200},
			RequestHeaders: map[string]string{"Content-Type": "application/json"}}
		v, _ := proto.Marshal(a)
		recs = append(recs, &kgo.Record{Topic: kcfg.Topics.Attempts, Key: []byte("wh_1"), Value: v})
	}
	recs = append(recs, &kgo.Record{Topic: kcfg.Topics.Attempts, Key: []byte("wh_1"), Value: []byte("garbage")})
	require.NoError(t, cl.ProduceSync(ctx, recs...).FirstErr())

	// First life: crash right after the first insert, before committing.
	first := New(cfg, nil)
	first.afterInsert = func() error { return errors.New("simulated crash before commit") }
	require.Error(t, first.Run(ctx))
	require.Positive(t, first.Stats.Attempts.Load())

	// Second life finishes the job.
	second := New(cfg, nil)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- second.Run(sctx) }()
	defer func() { stop(); <-done }()

	store, err := attemptlog.Open(ctx, cfg.ClickHouseAddr, cfg.Database)
	require.NoError(t, err)
	defer store.Close()
	var rows uint64
	require.Eventually(t, func() bool {
		items, _, err := store.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: "p1", WebhookID: "wh_1", Limit: 500})
		if err != nil || len(items) == 0 {
			return false
		}
		rows = uint64(first.Stats.Attempts.Load() + second.Stats.Attempts.Load())
		return rows >= n
	}, 60*time.Second, 100*time.Millisecond)
	require.EqualValues(t, n, rows, "rows inserted across both lives")
	require.Positive(t, second.Stats.Skipped.Load(), "the restarted sink skipped what ClickHouse already held")
	require.Eventually(t, func() bool { return second.Stats.Unreadable.Load()+first.Stats.Unreadable.Load() >= 1 }, 5*time.Second, 50*time.Millisecond)

	stats, err := store.Stats(ctx, attemptlog.StatsQuery{ProjectID: "p1", WebhookID: "wh_1",
		From: time.UnixMilli(now).Add(-time.Hour), To: time.UnixMilli(now).Add(time.Hour), Step: time.Hour})
	require.NoError(t, err)
	var total, ok uint64
	for _, b := range stats {
		total += b.Count
		ok += b.Status2xx
	}
	require.EqualValues(t, n, total, "the rollup counts each attempt once")
	require.EqualValues(t, n, ok)

	one, err := store.GetAttempt(ctx, "p1", "att-0007")
	require.NoError(t, err)
	require.Equal(t, "application/json", one.RequestHeaders["Content-Type"])
	_, err = store.GetAttempt(ctx, "other-project", "att-0007")
	require.ErrorIs(t, err, attemptlog.ErrNotFound, "another project's attempt is not found")
}

// The same attempt can reach delivery-attempts twice (a worker that did not hear back from its
// produce sends the record again): attempt_id is its identity, so it is one row, in one batch or
// two, and counted once by the rollup.
func TestSinkStoresAnAttemptProducedTwiceOnce(t *testing.T) {
	kcfg := kafkatest.Start(t)
	var cfg Config
	require.NoError(t, config.Defaults(&cfg))
	cfg.Kafka, cfg.ClickHouseAddr, cfg.Database = kcfg, chtest.Addr(t), chtest.Database(t)
	cfg.FlushInterval = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := kafkatest.Client(t, ctx, kcfg)

	now := time.Now().UnixMilli()
	attempt := func(id string) *kgo.Record {
		a := &pb.Attempt{AttemptId: id, DeliveryId: "d-" + id, EventId: "e-" + id, WebhookId: "wh_2", ProjectId: "p2",
			EventType: "nps.scored", Attempt: 1, StartedAtMs: now, LatencyUs: 900,
			Outcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, Disposition: pb.Disposition_DISPOSITION_DELIVERED, StatusCode: 200}}
		v, _ := proto.Marshal(a)
		return &kgo.Record{Topic: kcfg.Topics.Attempts, Key: []byte("wh_2"), Value: v}
	}
	// att-a twice in the same batch; att-b once before the sink runs and once after it stored it.
	require.NoError(t, cl.ProduceSync(ctx, attempt("att-a"), attempt("att-a"), attempt("att-b")).FirstErr())

	sk := New(cfg, nil)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sk.Run(sctx) }()
	defer func() { stop(); <-done }()
	require.Eventually(t, func() bool { return sk.Stats.Attempts.Load() == 2 }, 60*time.Second, 50*time.Millisecond)
	require.NoError(t, cl.ProduceSync(ctx, attempt("att-b"), attempt("att-c")).FirstErr())
	require.Eventually(t, func() bool { return sk.Stats.Attempts.Load() == 3 }, 60*time.Second, 50*time.Millisecond)
	require.EqualValues(t, 2, sk.Stats.Duplicates.Load())

	store, err := attemptlog.Open(ctx, cfg.ClickHouseAddr, cfg.Database)
	require.NoError(t, err)
	defer store.Close()
	items, _, err := store.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: "p2", Limit: 100})
	require.NoError(t, err)
	ids := map[string]int{}
	for _, it := range items {
		ids[it.AttemptID]++
	}
	require.Equal(t, map[string]int{"att-a": 1, "att-b": 1, "att-c": 1}, ids, "one row per attempt_id")
	stats, err := store.Stats(ctx, attemptlog.StatsQuery{ProjectID: "p2", WebhookID: "wh_2",
		From: time.UnixMilli(now).Add(-time.Hour), To: time.UnixMilli(now).Add(time.Hour), Step: time.Hour})
	require.NoError(t, err)
	var total uint64
	for _, b := range stats {
		total += b.Count
	}
	require.EqualValues(t, 3, total, "the rollup counts each attempt once")
}

// A full batch (SINK_BATCH_SIZE, 10,000 by default) of attempts with ids as long as the workers'
// is stored: looking up which ids ClickHouse already holds must not outgrow its query size limit.
func TestSinkStoresFullBatches(t *testing.T) {
	kcfg := kafkatest.Start(t)
	var cfg Config
	require.NoError(t, config.Defaults(&cfg))
	cfg.Kafka, cfg.ClickHouseAddr, cfg.Database = kcfg, chtest.Addr(t), chtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cl := kafkatest.Client(t, ctx, kcfg)
	n := cfg.BatchSize + cfg.BatchSize/5
	now := time.Now().UnixMilli()
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		a := &pb.Attempt{AttemptId: fmt.Sprintf("att_%024x", i), DeliveryId: "d", EventId: "e", WebhookId: "wh_3", ProjectId: "p3",
			EventType: "nps.scored", Attempt: 1, StartedAtMs: now,
			Outcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, Disposition: pb.Disposition_DISPOSITION_DELIVERED, StatusCode: 200}}
		v, _ := proto.Marshal(a)
		recs = append(recs, &kgo.Record{Topic: kcfg.Topics.Attempts, Key: []byte("wh_3"), Value: v})
	}
	require.NoError(t, cl.ProduceSync(ctx, recs...).FirstErr())

	sk := New(cfg, nil)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sk.Run(sctx) }()
	defer func() { stop(); <-done }()
	require.Eventually(t, func() bool { return sk.Stats.Attempts.Load() == int64(n) }, 100*time.Second, 100*time.Millisecond,
		"stored %d of %d (failed inserts %d)", sk.Stats.Attempts.Load(), n, sk.Stats.InsertFails.Load())
	require.Zero(t, sk.Stats.InsertFails.Load())
}
