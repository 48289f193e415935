package fanout_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

// dedupStack is a broker with one webhook on project p1 (every event type), a producer writing to
// `events` as ingest does, and a reader counting deliveries by event id.
type dedupStack struct {
	t   *testing.T
	cfg kafka.Config
	cl  *kgo.Client

	mu  sync.Mutex
	got map[string]int // "project/event id" → deliveries
}

func newDedupStack(t *testing.T) *dedupStack {
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := kafkatest.Client(t, ctx, cfg)
	s := &dedupStack{t: t, cfg: cfg, cl: cl, got: map[string]int{}}
	for _, p := range []string{"p1", "p2"} {
		v, _ := proto.Marshal(&pb.Webhook{Id: "wh_" + p, ProjectId: p, Enabled: true, EventTypes: []string{"*"}})
		require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Topics.Webhooks, Key: []byte("wh_" + p), Value: v}).FirstErr())
	}
	kafkatest.Tail(t, cfg, cfg.Topics.Deliveries, func(r *kgo.Record) {
		d := &pb.Delivery{}
		if proto.Unmarshal(r.Value, d) == nil {
			s.mu.Lock()
			s.got[d.ProjectId+"/"+d.EventId]++
			s.mu.Unlock()
		}
	})
	return s
}

// start runs a fan-out process of group "fanout-dedup"; the returned func stops it.
func (s *dedupStack) start(window time.Duration) func() {
	s.t.Helper()
	f := fanout.New(fanout.Config{Kafka: s.cfg, Group: "fanout-dedup", DedupWindow: window}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(s.t, err)
			case <-time.After(30 * time.Second):
				s.t.Error("fan-out did not stop within 30s")
			}
		})
	}
	s.t.Cleanup(stop)
	return stop
}

// put writes events as ingest does: keyed project/user, stamped with the receive time.
func (s *dedupStack) put(at time.Time, project string, ids ...string) {
	s.t.Helper()
	var recs []*kgo.Record
	for _, id := range ids {
		v, _ := proto.Marshal(&pb.Event{EventId: id, ProjectId: project, EventType: "nps.scored", User: &pb.User{Id: "u-" + id},
			ReceivedAtMs: at.UnixMilli()})
		recs = append(recs, &kgo.Record{Topic: s.cfg.Topics.Events, Key: []byte(project + "/u-" + id), Value: v, Timestamp: at})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(s.t, s.cl.ProduceSync(ctx, recs...).FirstErr())
}

func (s *dedupStack) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[key]
}

// waitDelivered waits for each key's first delivery, then a little longer for any repeat.
func (s *dedupStack) waitDelivered(keys ...string) {
	s.t.Helper()
	require.Eventually(s.t, func() bool {
		for _, k := range keys {
			if s.count(k) == 0 {
				return false
			}
		}
		return true
	}, 60*time.Second, 20*time.Millisecond, "%v should be fanned out", keys)
}

func TestARepeatedEventIsFannedOutOnceAcrossRestarts(t *testing.T) {
	s := newDedupStack(t)
	stop := s.start(time.Hour)
	now := time.Now()
	s.put(now, "p1", "e1", "e2")
	s.put(now.Add(time.Second), "p1", "e1") // a producer's retry, through another ingest process
	s.put(now, "p2", "e1")                  // another project's id is its own event
	s.waitDelivered("p1/e1", "p1/e2", "p2/e1")

	stop() // a new process must rebuild what the first decided
	s.start(time.Hour)
	s.put(now.Add(2*time.Second), "p1", "e2", "marker-1")
	s.waitDelivered("p1/marker-1")
	// A repeat after the window is a new event.
	s.put(now.Add(2*time.Hour), "p1", "e1", "marker-2")
	s.waitDelivered("p1/marker-2")
	require.Eventually(t, func() bool { return s.count("p1/e1") == 2 }, 30*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // a late repeat would follow its original closely
	require.Equal(t, 2, s.count("p1/e1"), "once, then once more after the window")
	require.Equal(t, 1, s.count("p1/e2"), "a repeat after a restart is not fanned out again")
	require.Equal(t, 1, s.count("p2/e1"))
}

// TestNoDuplicatesWhileFanOutProcessesComeAndGo writes every event twice while fan-out processes
// join and leave the group: partitions move, windows are rebuilt mid-stream, transactions are
// aborted. Every event is fanned out exactly once.
func TestNoDuplicatesWhileFanOutProcessesComeAndGo(t *testing.T) {
	s := newDedupStack(t)
	stopA := s.start(time.Hour)
	s.start(time.Hour)
	var all []string
	write := func(from, to int) {
		for i := from; i < to; i += 10 {
			var ids []string
			for j := i; j < i+10; j++ {
				ids = append(ids, fmt.Sprintf("churn-%03d", j))
			}
			all = append(all, ids...)
			now := time.Now()
			s.put(now, "p1", ids...)
			s.put(now.Add(time.Millisecond), "p1", ids[:5]...) // repeats, right behind
			s.put(now.Add(time.Millisecond), "p1", ids[5:]...)
		}
	}
	write(0, 100)
	stopC := s.start(time.Hour)
	write(100, 200)
	stopA()
	write(200, 300)
	stopC()
	write(300, 400)
	keys := make([]string, len(all))
	for i, id := range all {
		keys[i] = "p1/" + id
	}
	s.waitDelivered(keys...)
	time.Sleep(time.Second)
	for _, k := range keys {
		require.Equal(t, 1, s.count(k), "%s must be fanned out exactly once", k)
	}
}

// putKeyed writes events of one user (one partition), optionally inside a transaction that is
// then aborted.
func (s *dedupStack) putKeyed(aborted bool, ids ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := s.cl
	if aborted {
		var err error
		cl, err = kafka.NewClient(s.cfg, kgo.TransactionalID("aborting-writer"))
		require.NoError(s.t, err)
		defer cl.Close()
		require.NoError(s.t, cl.BeginTransaction())
	}
	now := time.Now()
	for _, id := range ids {
		v, _ := proto.Marshal(&pb.Event{EventId: id, ProjectId: "p1", EventType: "nps.scored", User: &pb.User{Id: "same"},
			ReceivedAtMs: now.UnixMilli()})
		require.NoError(s.t, cl.ProduceSync(ctx, &kgo.Record{Topic: s.cfg.Topics.Events, Key: []byte("p1/same"), Value: v, Timestamp: now}).FirstErr())
	}
	if aborted {
		require.NoError(s.t, cl.EndTransaction(ctx, kgo.TryAbort))
	}
}

// TestRebuildReadsPastAnAbortedTransaction: the partition holds an aborted write (and its marker)
// inside the window when a new fan-out process rebuilds it. The rebuild finishes, does not count
// the aborted copy as seen, and still knows the committed ones.
func TestRebuildReadsPastAnAbortedTransaction(t *testing.T) {
	s := newDedupStack(t)
	stop := s.start(time.Hour)
	s.putKeyed(false, "kept-1")
	s.putKeyed(true, "aborted-1", "aborted-2")
	s.putKeyed(false, "kept-2")
	s.waitDelivered("p1/kept-1", "p1/kept-2")
	stop()

	s.start(time.Hour)
	s.putKeyed(false, "kept-1", "aborted-1", "marker")
	s.waitDelivered("p1/marker", "p1/aborted-1")
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 1, s.count("p1/kept-1"), "a committed id is remembered across the rebuild")
	require.Equal(t, 1, s.count("p1/aborted-1"), "an aborted write is not an occurrence")
	require.Zero(t, s.count("p1/aborted-2"))
}
