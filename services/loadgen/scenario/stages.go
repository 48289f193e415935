package scenario

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
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
	// Sending is the first part of Received: up to the delivery worker starting the POST (the
	// attempt log's started_at_ms on `delivery-attempts`); the rest is the POST itself.
	Sending Percentiles `json:"fanned_out_to_sending"`
	// Visible is the first part of Sending: up to a read_committed observer of `deliveries`
	// (visibility) received the delivery, i.e. fan-out's transaction commit plus one fetch.
	Visible Percentiles `json:"fanned_out_to_visible"`
	// Waiting is the rest of Sending: the delivery worker's own fetch and queues. The observer's
	// fetch may return after the worker's, so it can be negative by up to a fetch round trip.
	Waiting Percentiles `json:"visible_to_sending"`
	// Slowest is each stage's mean over the slowest 1% end to end: stages' p99s do not add up,
	// and this says which hop the end-to-end p99's deliveries lost their time in.
	Slowest StageMeans `json:"slowest_1pct_mean_ms"`
}

// StageMeans is each stage's mean over some deliveries, in milliseconds.
type StageMeans struct {
	Ingested  float64 `json:"produced_to_ingested"`
	FannedOut float64 `json:"ingested_to_fanned_out"`
	Received  float64 `json:"fanned_out_to_received"`
	Sending   float64 `json:"fanned_out_to_sending"`
	Visible   float64 `json:"fanned_out_to_visible"` // over those of the N the observer saw
	Waiting   float64 `json:"visible_to_sending"`
	N         int     `json:"n"`
}

// stageRow is one hop of StageLatency, named as the progress lines and the table show it.
type stageRow struct {
	name string
	p    Percentiles
}

func (s StageLatency) rows() []stageRow {
	return []stageRow{{"produced → ingested", s.Ingested}, {"ingested → fanned_out", s.FannedOut},
		{"fanned_out → received", s.Received}, {"  of which fanned_out → sending", s.Sending},
		{"    of which fanned_out → visible", s.Visible}, {"    and visible → sending", s.Waiting}}
}

// stageSampleMax bounds how many of the window's deliveries are split by stage: reading back two
// topics' window costs the shared machine CPU, and 20,000 pins a p99 well enough.
const stageSampleMax = 20_000

// stageReadTimeout bounds reading `events` and `deliveries` back after the window.
const stageReadTimeout = 30 * time.Second

// stamped is one sampled delivery's ends: the producer's send time and the receiver's.
type stamped struct{ sent, received time.Time }

// windowStamps is the deliveries eps accepted whose event was sent within [from, to), by event id,
// limit of them evenly spaced when there are more. Event ids join the three records because the
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
	n := min(len(all), limit)
	out := make(map[string]stamped, n)
	for k := range n { // evenly spaced over the window
		s := all[k*len(all)/n]
		if _, dup := out[s.EventID]; !dup { // a redelivery: the first receipt is the latency
			out[s.EventID] = stamped{sent: s.At.Add(-s.Latency), received: s.At}
		}
	}
	return out
}

// The topics latencyByStage reads back: the services' defaults.
const eventsTopic, deliveriesTopic = "events", "deliveries"

// latencyByStage reads `events`, `deliveries` and `delivery-attempts` back from just before from (read_committed, as
// the services read them) and splits the latency of the sampled deliveries at the two records'
// timestamps. Those are milliseconds, so each stage is exact to about a millisecond. visible is
// when each delivery became readable (by event id, from visibility), and may be nil.
func (b *bench) latencyByStage(ctx context.Context, eps []*hooktest.Endpoint, from, to time.Time, visible map[string]time.Time) (StageLatency, error) {
	want := windowStamps(eps, from, to, stageSampleMax)
	if len(want) == 0 {
		return StageLatency{}, errors.New("no delivery of the window to split")
	}
	ctx, cancel := context.WithTimeout(ctx, stageReadTimeout)
	defer cancel()

	adm, err := newLagSampler(b.brokers)
	if err != nil {
		return StageLatency{}, err
	}
	// A second early: ingest's stamp is after the send, and the broker's time index is coarse.
	listed, err := adm.adm.ListOffsetsAfterMilli(ctx, from.Add(-time.Second).UnixMilli(), eventsTopic, deliveriesTopic, attemptsTopic)
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
	sending := make(map[string]time.Time, len(want))
	// Bounded by count as well as time: the window plus the second before it, with room for
	// other scenarios' leftovers, and a quiet second once everything written has been read.
	maxRecords := 20 * (len(want) + 1000)
	read, quiet := 0, 0
	for (len(ingested) < len(want) || len(fanned) < len(want) || len(sending) < len(want)) && read < maxRecords && quiet < 4 && ctx.Err() == nil {
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
			case attemptsTopic:
				var a pb.Attempt
				if proto.Unmarshal(r.Value, &a) != nil || a.Attempt != 1 {
					return
				}
				if _, ok := want[a.EventId]; ok {
					if _, seen := sending[a.EventId]; !seen {
						sending[a.EventId] = time.UnixMilli(a.StartedAtMs)
					}
				}
			}
		})
	}

	var ing, fan, rcv, snd, vis, wai []time.Duration
	var whole []stageTimes // the deliveries found on every topic
	for id, s := range want {
		ti, okI := ingested[id]
		tf, okF := fanned[id]
		ts, okS := sending[id]
		tv, okV := visible[id]
		if okI {
			ing = append(ing, ti.Sub(s.sent))
		}
		if okI && okF {
			fan = append(fan, tf.Sub(ti))
		}
		if okF {
			rcv = append(rcv, s.received.Sub(tf))
		}
		if okF && okS {
			snd = append(snd, ts.Sub(tf))
		}
		if okF && okV {
			vis = append(vis, tv.Sub(tf))
		}
		if okS && okV {
			wai = append(wai, ts.Sub(tv))
		}
		if okI && okF && okS {
			st := stageTimes{ingested: ti.Sub(s.sent), fannedOut: tf.Sub(ti), received: s.received.Sub(tf), sending: ts.Sub(tf)}
			if okV {
				st.visible, st.seen = tv.Sub(tf), true
			}
			whole = append(whole, st)
		}
	}
	out := StageLatency{Ingested: percentiles(ing), FannedOut: percentiles(fan), Received: percentiles(rcv),
		Sending: percentiles(snd), Visible: percentiles(vis), Waiting: percentiles(wai), Slowest: slowestMeans(whole, 0.01)}
	if len(ingested) < len(want) || len(fanned) < len(want) {
		return out, fmt.Errorf("found %d of %d sampled events on %s and %d on %s (%d records read)",
			len(ingested), len(want), eventsTopic, len(fanned), deliveriesTopic, read)
	}
	return out, nil
}

// stageTimes is one delivery's stages: ingested, fanned out, received, sending (within received)
// and visible (within sending), when seen by the observer.
type stageTimes struct {
	ingested, fannedOut, received, sending, visible time.Duration
	seen                                            bool
}

// slowestMeans is each stage's mean over the share of ds slowest end to end (at least one).
func slowestMeans(ds []stageTimes, share float64) StageMeans {
	if len(ds) == 0 {
		return StageMeans{}
	}
	total := func(d stageTimes) time.Duration { return d.ingested + d.fannedOut + d.received }
	slices.SortFunc(ds, func(a, b stageTimes) int { return cmp.Compare(total(b), total(a)) })
	n := max(1, int(share*float64(len(ds))+0.5))
	var sum stageTimes
	var sendingSeen time.Duration // the split of sending is over the deliveries the observer saw
	seen := 0
	for _, d := range ds[:n] {
		sum.ingested += d.ingested
		sum.fannedOut += d.fannedOut
		sum.received += d.received
		sum.sending += d.sending
		if d.seen {
			sum.visible += d.visible
			sendingSeen += d.sending
			seen++
		}
	}
	mean := func(d time.Duration, n int) float64 {
		return round2(float64(d) / float64(n) / float64(time.Millisecond))
	}
	out := StageMeans{Ingested: mean(sum.ingested, n), FannedOut: mean(sum.fannedOut, n), Received: mean(sum.received, n),
		Sending: mean(sum.sending, n), N: n}
	if seen > 0 {
		out.Visible, out.Waiting = mean(sum.visible, seen), mean(sendingSeen-sum.visible, seen)
	}
	return out
}
