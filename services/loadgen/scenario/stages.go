package scenario

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// StageLatency splits `latency`'s produce → receipt into the pipeline's hops, so a p99 over the
// goal can be pinned on one of them. A struct rather than a map: JSON keeps the pipeline's order.
type StageLatency struct {
	// Ingested: the producer's send time → the event's record on `events`, which ingest stamps
	// with the moment it polled the event (Event.received_at_ms).
	Ingested Percentiles `json:"produced_to_ingested"`
	// FannedOut: that → the delivery's record on `deliveries`, stamped by fan-out's client when
	// it produced it inside its transaction.
	FannedOut Percentiles `json:"ingested_to_fanned_out"`
	// Received: that → the receiver read the POST's body. It includes the wait for fan-out's
	// transaction to commit, since `deliveries` is read_committed.
	Received Percentiles `json:"fanned_out_to_received"`
}

// stageRow is one hop of StageLatency, named as the progress lines and the table show it.
type stageRow struct {
	name string
	p    Percentiles
}

func (s StageLatency) rows() []stageRow {
	return []stageRow{{"produced → ingested", s.Ingested}, {"ingested → fanned_out", s.FannedOut}, {"fanned_out → received", s.Received}}
}

// stageSampleMax bounds how many of the window's deliveries are split by stage: reading back two
// topics' window costs the shared machine CPU, and 20,000 pins a p99 well enough.
const stageSampleMax = 20_000

// stageReadTimeout bounds reading `events` and `deliveries` back after the window.
const stageReadTimeout = 30 * time.Second

// stamped is one sampled delivery's ends: the producer's send time and the receiver's.
type stamped struct{ sent, received time.Time }

// windowStamps is the deliveries eps accepted whose event was sent within [from, to), by event id,
// every k-th of them when there are more than limit. Event ids join the three records because the
// latency project has one webhook: one delivery (one webhook-id) per event.
func windowStamps(eps []*hooktest.Endpoint, from, to time.Time, limit int) map[string]stamped {
	var all []hooktest.Sample
	for _, ep := range eps {
		for _, s := range ep.Samples(from) {
			sent := s.At.Add(-s.Latency)
			if s.Latency > 0 && s.EventID != "" && !sent.Before(from) && sent.Before(to) {
				all = append(all, s)
			}
		}
	}
	step := max(1, (len(all)+limit-1)/limit)
	out := make(map[string]stamped, len(all)/step+1)
	for i := 0; i < len(all); i += step {
		s := all[i]
		if _, dup := out[s.EventID]; !dup { // a redelivery: the first receipt is the latency
			out[s.EventID] = stamped{sent: s.At.Add(-s.Latency), received: s.At}
		}
	}
	return out
}

// latencyByStage reads `events` and `deliveries` back from just before from (read_committed, as
// the services read them) and splits the latency of the sampled deliveries at the two records'
// timestamps. Those are milliseconds, so each stage is exact to about a millisecond.
func (b *bench) latencyByStage(ctx context.Context, eps []*hooktest.Endpoint, from, to time.Time) (StageLatency, error) {
	want := windowStamps(eps, from, to, stageSampleMax)
	if len(want) == 0 {
		return StageLatency{}, errors.New("no delivery of the window to split")
	}
	const eventsTopic, deliveriesTopic = "events", "deliveries" // the services' defaults
	ctx, cancel := context.WithTimeout(ctx, stageReadTimeout)
	defer cancel()

	adm, err := newLagSampler(b.brokers)
	if err != nil {
		return StageLatency{}, err
	}
	// A second early: ingest's stamp is after the send, and the broker's time index is coarse.
	listed, err := adm.adm.ListOffsetsAfterMilli(ctx, from.Add(-time.Second).UnixMilli(), eventsTopic, deliveriesTopic)
	adm.close()
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return StageLatency{}, fmt.Errorf("listing the window's offsets: %w", err)
	}
	start := map[string]map[int32]kgo.Offset{}
	listed.Each(func(o kadm.ListedOffset) {
		if start[o.Topic] == nil {
			start[o.Topic] = map[int32]kgo.Offset{}
		}
		start[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumePartitions(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(250*time.Millisecond))
	if err != nil {
		return StageLatency{}, fmt.Errorf("creating the reading client: %w", err)
	}
	defer cl.Close()

	ingested := make(map[string]time.Time, len(want))
	fanned := make(map[string]time.Time, len(want))
	// Bounded by count as well as time: the window plus the second before it, with room for
	// other scenarios' leftovers, and a quiet second once everything written has been read.
	maxRecords := 20 * (len(want) + 1000)
	read, quiet := 0, 0
	for (len(ingested) < len(want) || len(fanned) < len(want)) && read < maxRecords && quiet < 4 && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollRecords(pctx, 10_000)
		pcancel()
		if fs.NumRecords() == 0 {
			quiet++
			continue
		}
		quiet = 0
		fs.EachRecord(func(r *kgo.Record) {
			read++
			switch r.Topic {
			case eventsTopic:
				var ev pb.Event
				if proto.Unmarshal(r.Value, &ev) != nil {
					return
				}
				if _, ok := want[ev.EventId]; ok {
					if _, seen := ingested[ev.EventId]; !seen {
						ingested[ev.EventId] = r.Timestamp
					}
				}
			case deliveriesTopic:
				var d pb.Delivery
				if proto.Unmarshal(r.Value, &d) != nil || d.Attempt != 1 {
					return
				}
				if _, ok := want[d.EventId]; ok {
					if _, seen := fanned[d.EventId]; !seen {
						fanned[d.EventId] = r.Timestamp
					}
				}
			}
		})
	}

	var ing, fan, rcv []time.Duration
	for id, s := range want {
		ti, okI := ingested[id]
		tf, okF := fanned[id]
		if okI {
			ing = append(ing, ti.Sub(s.sent))
		}
		if okI && okF {
			fan = append(fan, tf.Sub(ti))
		}
		if okF {
			rcv = append(rcv, s.received.Sub(tf))
		}
	}
	out := StageLatency{Ingested: percentiles(ing), FannedOut: percentiles(fan), Received: percentiles(rcv)}
	if len(ingested) < len(want) || len(fanned) < len(want) {
		return out, fmt.Errorf("found %d of %d sampled events on %s and %d on %s (%d records read)",
			len(ingested), len(want), eventsTopic, len(fanned), deliveriesTopic, read)
	}
	return out, nil
}
