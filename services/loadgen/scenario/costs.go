package scenario

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// benchProcess is the cpuMeter's name for the bench's own process: the load generator and the
// receiver (in `baseline`: the bare client and the receiver).
const benchProcess = "bench (loadgen + receiver)"

// Costs are what one delivered event costs the pipeline (issue 14): CPU per process and in all,
// against the bare client's and receiver's CPU per POST, and records written to Kafka.
type Costs struct {
	// CPUMicrosPerDelivery is each process's CPU time per delivery during `throughput`, in µs;
	// "pipeline" is every service, the broker and ClickHouse together (not the bench process).
	CPUMicrosPerDelivery map[string]float64 `json:"cpu_us_per_delivery"`
	// BaselineMicrosPerPost is the bench process's CPU per request in `baseline`: the bare Go
	// client and the receiver together (one process: they cannot be told apart).
	BaselineMicrosPerPost float64 `json:"baseline_cpu_us_per_post"`
	// CPURatio is the pipeline's CPU per delivery ÷ the baseline's CPU per POST (goal ≤ 1.5).
	CPURatio float64 `json:"cpu_ratio"`
	// RecordsPerEvent counts the offsets surveyhooks' topics advanced during `throughput` (records
	// and transaction markers; not the producer's `survey-events`, not __consumer_offsets) per
	// delivered event; ByTopic breaks it down, `survey-events` included.
	RecordsPerEvent float64            `json:"records_produced_per_delivered_event"`
	ByTopic         map[string]float64 `json:"records_per_delivered_event_by_topic"`
}

// endOffsets is the sum of the end offsets of each of the cluster's topics (internal ones left
// out), or nil when they cannot be listed.
func (b *bench) endOffsets(ctx context.Context, lags *lagSampler) map[string]int64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	topics, err := lags.adm.ListTopics(ctx)
	if err != nil {
		return nil
	}
	offs, err := lags.adm.ListEndOffsets(ctx, topics.Names()...)
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && !strings.HasPrefix(o.Topic, "__") {
			out[o.Topic] += o.Offset
		}
	})
	return out
}

// costs fills in Results.Costs from `throughput`'s CPU use, deliveries and topic end offsets.
func (b *bench) costs(cores map[string]float64, deliveries int64, window time.Duration, offs0, offs1 map[string]int64) {
	c := &b.res.Costs
	if deliveries <= 0 {
		return
	}
	perSecond := float64(deliveries) / window.Seconds()
	c.CPUMicrosPerDelivery = map[string]float64{}
	var pipeline float64
	for name, n := range cores {
		us := n * 1e6 / perSecond
		c.CPUMicrosPerDelivery[name] = round2(us)
		if name != benchProcess {
			pipeline += us
		}
	}
	c.CPUMicrosPerDelivery["pipeline"] = round2(pipeline)
	if c.BaselineMicrosPerPost > 0 {
		c.CPURatio = round2(pipeline / c.BaselineMicrosPerPost)
	}
	if offs0 != nil && offs1 != nil {
		c.ByTopic = map[string]float64{}
		var total int64
		for t, end := range offs1 {
			d := end - offs0[t]
			if d <= 0 {
				continue
			}
			c.ByTopic[t] = round2(float64(d) / float64(deliveries))
			if t != "survey-events" {
				total += d
			}
		}
		c.RecordsPerEvent = round2(float64(total) / float64(deliveries))
	}
}

// selfCPU is the bench process's CPU time so far, in seconds.
func selfCPU() float64 {
	s, _ := cpuSeconds(os.Getpid())
	return s
}

// costsTable writes issue 14's rows of the table.
func (r *Results) costsTable(tw io.Writer) {
	c := r.Costs
	if len(c.CPUMicrosPerDelivery) > 0 {
		var parts []string
		for _, n := range slices.Sorted(maps.Keys(c.CPUMicrosPerDelivery)) {
			if n != "pipeline" {
				parts = append(parts, fmt.Sprintf("%s %.0f", n, c.CPUMicrosPerDelivery[n]))
			}
		}
		fmt.Fprintf(tw, "throughput\tcpu_us_per_delivery\tpipeline %.0f µs (%s)\n", c.CPUMicrosPerDelivery["pipeline"], strings.Join(parts, ", "))
	}
	fmt.Fprintf(tw, "baseline\tCPU per POST (bare client + receiver)\t%.0f µs\n", c.BaselineMicrosPerPost)
	fmt.Fprintf(tw, "throughput\tcpu_ratio (pipeline per delivery / baseline per POST)\t%.2f\n", c.CPURatio)
	if len(c.ByTopic) > 0 {
		var parts []string
		for _, t := range slices.Sorted(maps.Keys(c.ByTopic)) {
			parts = append(parts, fmt.Sprintf("%s %.2f", t, c.ByTopic[t]))
		}
		fmt.Fprintf(tw, "throughput\trecords produced per delivered event\t%.2f (%s)\n", c.RecordsPerEvent, strings.Join(parts, ", "))
	}
	h := r.HTTPIngest
	fmt.Fprintf(tw, "http_ingest\t%d producers, 1 event per POST, closed loop\t%.0f delivered/s (%.0f accepted/s), ratio %.2f, %d failed\n",
		h.Producers, h.DeliveredPS, h.AcceptedPS, h.Ratio, h.Failed)
	fmt.Fprintf(tw, "http_ingest\tcpu_us_per_event_at_400\t%.0f µs (%.0f delivered/s; cores at 400/s %s; idle %s)\n",
		h.CPUMicrosPerEventAt400, h.DeliveredPSAt400, coresList(h.CoresAt400), coresList(h.IdleCores))
	m := r.ManyEndpoints
	fmt.Fprintf(tw, "many_endpoints\t%d projects × %d webhooks\t%.0f deliveries/s, delivery RSS %.1f MiB (peak %.1f), %d duplicates, set-up %.0f s\n",
		m.Projects, m.Webhooks/max(1, m.Projects), m.DeliveriesPS, m.DeliveryRSSMB, m.DeliveryHWMMB, m.Duplicates, m.SetupSeconds)
	s := r.ScaleOut
	fmt.Fprintf(tw, "scale_out\t%d delivery workers, %d fan-outs\t%d of %d delivered, %d duplicates, %.0f deliveries/s, partitions per member %v\n",
		s.Deliveries, s.Fanouts, s.Delivered, s.Events, s.Duplicates, s.DeliveriesPS, s.Partitions)
}

func coresList(m map[string]float64) string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(m)) {
		if n != benchProcess {
			parts = append(parts, fmt.Sprintf("%s %.2f", n, m[n]))
		}
	}
	return strings.Join(parts, ", ")
}
