package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// visibleMax bounds the observer's map: latency's window at up to ~3,000 events/s, with room.
const visibleMax = 50_000

// visibleFetchWait is short so that a fetch parked at the end of the log returns soon after
// fan-out's commit (kfake also wakes waiting read_committed fetches at commit).
const visibleFetchWait = 20 * time.Millisecond

// visibility notes, during latency's run, when each of one project's first attempts became
// readable on `deliveries` read_committed, as the delivery worker reads it: the moment splits
// fanned_out → sending into fan-out's transaction commit (plus a fetch) and the worker's own wait.
type visibility struct {
	cl      *kgo.Client
	project string
	after   int64 // ms: deliveries fanned out before it are the warmup's, not worth a slot
	seen    map[string]time.Time
	stopped chan struct{} // closed by stop: drain what is committed, then return
	done    chan struct{}
}

// watchVisibility starts reading `deliveries` from its current end, before the producer starts,
// so no delivery of the window is missed and none before it is read.
func (b *bench) watchVisibility(ctx context.Context, project string, after time.Time) (*visibility, error) {
	adm, err := newLagSampler(b.brokers)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ends, err := adm.adm.ListEndOffsets(lctx, deliveriesTopic)
	cancel()
	adm.close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s's end: %w", deliveriesTopic, err)
	}
	start := map[string]map[int32]kgo.Offset{deliveriesTopic: {}}
	ends.Each(func(o kadm.ListedOffset) { start[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumePartitions(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(visibleFetchWait))
	if err != nil {
		return nil, fmt.Errorf("creating the observing client: %w", err)
	}
	v := &visibility{cl: cl, project: project, after: after.UnixMilli(), seen: make(map[string]time.Time),
		stopped: make(chan struct{}), done: make(chan struct{})}
	go v.run(ctx)
	return v, nil
}

func (v *visibility) run(ctx context.Context) {
	defer close(v.done)
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fs := v.cl.PollFetches(pctx)
		now := time.Now() // before decoding: the batch was readable by then
		cancel()
		if fs.IsClientClosed() {
			return
		}
		if fs.NumRecords() == 0 {
			select {
			case <-v.stopped: // caught up after the drain: everything committed has been read
				return
			default:
				continue
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Timestamp.UnixMilli() < v.after || len(v.seen) >= visibleMax {
				return
			}
			var d pb.Delivery
			if proto.Unmarshal(r.Value, &d) != nil || d.Attempt != 1 || d.ProjectId != v.project {
				return
			}
			if _, dup := v.seen[d.EventId]; !dup {
				v.seen[d.EventId] = now
			}
		})
	}
}

// stop returns once the observer has read up to the end (or after 5 s), and closes its client.
// Call it after the window's deliveries were received: all of them are committed by then.
func (v *visibility) stop() map[string]time.Time {
	close(v.stopped)
	select {
	case <-v.done:
	case <-time.After(5 * time.Second):
	}
	v.cl.Close()
	<-v.done
	return v.seen
}
