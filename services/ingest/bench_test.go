package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
)

// BenchmarkHTTPBatchesOf50 posts batches of 50 distinct events from parallel clients and reports
// accepted events per second (each answer waits for Kafka's acknowledgement).
func BenchmarkHTTPBatchesOf50(b *testing.B) {
	kcfg := kafkatest.Start(b)
	createProject(b, kcfg, "prj_1", key)
	in := start(b, testConfig(b, kcfg))
	var seq atomic.Int64
	began := time.Now()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			evs := make([]any, 50)
			for i := range evs {
				evs[i] = npsEvent(fmt.Sprintf("h-%d-%d", n, i), fmt.Sprintf("u%d", i), 9)
			}
			body, _ := json.Marshal(map[string]any{"events": evs})
			if a := post(b, in.addr, key, "application/json", body); a.status != 202 {
				b.Fatalf("status %d: %v", a.status, a.body)
			}
		}
	})
	b.ReportMetric(float64(b.N*50)/time.Since(began).Seconds(), "events/s")
}

// BenchmarkHTTPSingleEvents posts one event per request from parallel clients: the latency-bound
// case (each answer waits for its records' acknowledgement).
func BenchmarkHTTPSingleEvents(b *testing.B) {
	kcfg := kafkatest.Start(b)
	createProject(b, kcfg, "prj_1", key)
	in := start(b, testConfig(b, kcfg))
	var seq atomic.Int64
	began := time.Now()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			body, _ := json.Marshal(npsEvent(fmt.Sprintf("s-%d", n), fmt.Sprintf("u%d", n%100), 9))
			if a := post(b, in.addr, key, "application/json", body); a.status != 202 {
				b.Fatalf("status %d: %v", a.status, a.body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "events/s")
}

// BenchmarkKafkaRecords writes records to survey-events and reports how fast they reach events.
func BenchmarkKafkaRecords(b *testing.B) {
	kcfg := kafkatest.Start(b)
	createProject(b, kcfg, "prj_1", key)
	in := start(b, testConfig(b, kcfg))
	cl, err := kafka.NewClient(kcfg, kgo.ProducerBatchMaxBytes(1_000_000))
	require.NoError(b, err)
	defer cl.Close()
	n := max(b.N, 20_000)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	for i := range n {
		v := fmt.Appendf(nil, `{"project_id":"prj_1","event_id":"k-%d","event_type":"nps.scored","user":{"id":"u%d"},"nps":{"score":9},"properties":{"sent_at_ns":%d}}`, i, i%1000, i)
		cl.Produce(ctx, &kgo.Record{Topic: kcfg.Topics.SurveyEvents, Value: v}, nil)
	}
	require.NoError(b, cl.Flush(ctx))
	for stats(b, in.addr)["forwarded"] < int64(n) {
		require.NoError(b, ctx.Err())
		time.Sleep(50 * time.Millisecond)
	}
	b.ReportMetric(float64(n)/time.Since(began).Seconds(), "events/s")
}
