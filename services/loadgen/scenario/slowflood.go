package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
)

// slow_flood (issue 13, case 1): one endpoint that answers slowly gets a flood of deliveries — more
// than the delivery process may hold — while a healthy endpoint gets a steady trickle. The figure
// is the healthy endpoint's p99 under the flood divided by its p99 alone (goal ≤ 2).
const (
	// slowFloodDelay is how long the slow endpoint takes to answer: 5 s in the report, here just
	// under the bench's shortened DELIVERY_TIMEOUT (2 s) so its answers are successes.
	slowFloodDelay  = 1500 * time.Millisecond
	slowFloodEvents = 10_500
	slowFloodRate   = 100.0 // healthy events per second: 1,500 samples a window, so p99 is not one stall
	slowFloodWindow = 15 * time.Second
	slowFloodSettle = 6 * time.Second // from the flood's last event produced to the measured window
)

// SlowFlood details.
type SlowFlood struct {
	SlowDelayMs   int64       `json:"slow_delay_ms"`
	Flood         int         `json:"flood"`
	HealthyRate   float64     `json:"healthy_rate_per_s"`
	AloneMs       Percentiles `json:"healthy_alone_ms"`
	FloodedMs     Percentiles `json:"healthy_flooded_ms"`
	SlowDelivered int64       `json:"slow_delivered"`
	SlowDrainS    float64     `json:"slow_drain_s"` // from the flood's start until the slow endpoint had every delivery
}

// runSlowFlood measures the healthy endpoint alone, then floods the slow one and measures the
// healthy one again; then it lets the slow endpoint answer at once and waits for every one of its
// deliveries (none may be lost), so nothing lingers into the next scenario.
func (b *bench) runSlowFlood(ctx context.Context) error {
	healthy, slow := b.sfHealthy, b.sfSlow
	sf := &b.res.SlowFlood
	*sf = SlowFlood{SlowDelayMs: slowFloodDelay.Milliseconds(), Flood: slowFloodEvents, HealthyRate: slowFloodRate}
	trickle := func(tag string, settle time.Duration) (Percentiles, error) {
		eps := []*hooktest.Endpoint{healthy.ep}
		base := received(eps)
		start := time.Now()
		from, to := start.Add(settle), start.Add(settle+slowFloodWindow)
		pctx, cancel := context.WithDeadline(ctx, to)
		defer cancel()
		n, err := b.prod.Run(pctx, produce.Plan{Rate: slowFloodRate, Batch: 10}, b.events(healthy.p, tag))
		if err != nil {
			return Percentiles{}, fmt.Errorf("producing: %w", err)
		}
		derr := b.drain(ctx, eps, base, int64(n), 30*time.Second)
		return percentiles(latencies(eps, from, to)), derr
	}
	var err error
	if sf.AloneMs, err = trickle("slow-flood-alone", 2*time.Second); err != nil {
		return fmt.Errorf("healthy alone: %w", err)
	}
	slowBase := received([]*hooktest.Endpoint{slow.ep})
	floodStart := time.Now()
	if _, err := b.prod.Run(ctx, produce.Plan{Count: slowFloodEvents}, b.events(slow.p, "slow-flood")); err != nil {
		return fmt.Errorf("producing the flood: %w", err)
	}
	// Measured once the flood went through ingest and fan-out (a few seconds of CPU on a small
	// machine): the figure is about the slow endpoint's backlog in the delivery worker.
	sf.FloodedMs, err = trickle("slow-flood-healthy", slowFloodSettle)
	if sf.AloneMs.P99 > 0 {
		b.res.SlowFloodP99Ratio = round2(sf.FloodedMs.P99 / sf.AloneMs.P99)
	}
	slow.ep.SetMode(hooktest.Fast)
	derr := b.drain(ctx, []*hooktest.Endpoint{slow.ep}, slowBase, slowFloodEvents, 120*time.Second)
	sf.SlowDelivered = received([]*hooktest.Endpoint{slow.ep}) - slowBase
	sf.SlowDrainS = round2(time.Since(floodStart).Seconds())
	b.say("slow_flood: healthy p99 alone %.1f ms, under the flood %.1f ms (ratio %.2f); slow endpoint got %d of %d in %.0f s",
		sf.AloneMs.P99, sf.FloodedMs.P99, b.res.SlowFloodP99Ratio, sf.SlowDelivered, slowFloodEvents, sf.SlowDrainS)
	if err != nil {
		return fmt.Errorf("healthy under the flood: %w", err)
	}
	if derr != nil {
		return fmt.Errorf("slow endpoint: %w", derr)
	}
	return nil
}
