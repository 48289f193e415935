package scenario

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
)

// fairness (issue 19, point 3): the delivery process is restarted with fairnessSending sending
// slots in front of receivers answering in fairnessDelay, so it can send fairnessCapacity
// deliveries a second whatever the machine. Four small projects offer 20 a second each beside a
// fifth project's 160 (60 % of capacity: normal load); then the fifth project's survey goes
// viral and it offers 720 a second (twice the capacity with the others, 90 % of it its own). The
// figure is the small projects' p99 under the viral load divided by their p99 at normal load
// (goal ≤ 2); afterwards the viral backlog must drain in full.
const (
	fairnessSending    = 20
	fairnessDelay      = 50 * time.Millisecond
	fairnessCapacity   = fairnessSending * int(time.Second/fairnessDelay) // 400 deliveries/s
	fairnessSmall      = 4
	fairnessSmallRate  = 20.0 // events/s per small project, one webhook each
	fairnessViralHooks = 4
	fairnessWindow     = 15 * time.Second
	fairnessSettle     = 3 * time.Second
)

// Fairness details.
type Fairness struct {
	CapacityPerS   int         `json:"capacity_per_s"` // sending slots / receiver latency
	NormalPerS     float64     `json:"normal_offered_per_s"`
	ViralPerS      float64     `json:"viral_offered_per_s"` // the whole offered load while the survey is viral
	SmallNormalMs  Percentiles `json:"small_normal_ms"`
	SmallViralMs   Percentiles `json:"small_viral_ms"`
	ViralDelivered int64       `json:"viral_delivered"`
	ViralSent      int64       `json:"viral_sent"`    // deliveries: events × webhooks
	ViralDrainS    float64     `json:"viral_drain_s"` // from the end of the viral load until its backlog was delivered
}

// fairnessTargets are the small projects' webhooks and the viral project's, behind a receiver
// of their own that answers in fairnessDelay.
type fairnessTargets struct {
	rx    *hooktest.Server
	small []target
	viral []target
}

// subscribeFairness creates fairness's projects, webhooks and receiver.
func (b *bench) subscribeFairness(ctx context.Context) error {
	rx, err := hooktest.Start("127.0.0.1:0", hooktest.Options{SlowDelay: fairnessDelay})
	if err != nil {
		return err
	}
	b.fair.rx = rx
	for i := range fairnessSmall {
		p, err := b.api.createProject(ctx, fmt.Sprintf("bench fairness small %d", i))
		if err != nil {
			return err
		}
		name := fmt.Sprintf("fairness-small-%d", i)
		ep := rx.Endpoint(name, hooktest.Slow)
		w, err := b.api.createWebhook(ctx, p, name, rx.URL()+"/"+name)
		if err != nil {
			return err
		}
		b.fair.small = append(b.fair.small, target{p: p, w: w, ep: ep})
	}
	p, err := b.api.createProject(ctx, "bench fairness viral")
	if err != nil {
		return err
	}
	b.fair.viral = make([]target, fairnessViralHooks)
	for i := range fairnessViralHooks {
		name := fmt.Sprintf("fairness-viral-%d", i)
		ep := rx.Endpoint(name, hooktest.Slow)
		w, err := b.api.createWebhook(ctx, p, name, rx.URL()+"/"+name)
		if err != nil {
			return err
		}
		b.fair.viral[i] = target{p: p, w: w, ep: ep}
	}
	return nil
}

// runFairness measures the small projects at normal load, then beside the viral project, then
// waits for the viral backlog; the delivery process is restarted with its usual configuration
// at the end.
func (b *bench) runFairness(ctx context.Context) error {
	fr := &b.res.Fairness
	viralEventRate := func(deliveries float64) float64 { return deliveries / fairnessViralHooks }
	normalViral := 0.6*float64(fairnessCapacity) - fairnessSmall*fairnessSmallRate
	peakViral := 2*float64(fairnessCapacity) - fairnessSmall*fairnessSmallRate
	*fr = Fairness{CapacityPerS: fairnessCapacity, NormalPerS: normalViral + fairnessSmall*fairnessSmallRate,
		ViralPerS: peakViral + fairnessSmall*fairnessSmallRate}
	if err := b.restartDelivery(ctx, fmt.Sprintf("DELIVERY_MAX_SENDING=%d", fairnessSending)); err != nil {
		return err
	}
	defer func() {
		if err := b.restartDelivery(ctx); err != nil {
			b.res.note("fairness: restarting the delivery process: %v", err)
		}
	}()
	smallEps := make([]*hooktest.Endpoint, len(b.fair.small))
	for i, t := range b.fair.small {
		smallEps[i] = t.ep
	}
	viralEps := make([]*hooktest.Endpoint, len(b.fair.viral))
	for i, t := range b.fair.viral {
		viralEps[i] = t.ep
	}
	viralBase := received(viralEps)
	// phase offers every small project at its rate and the viral project at viralRate deliveries
	// a second for settle+window, and returns the small projects' latencies in the window.
	var viralEvents int64
	var mu sync.Mutex
	phase := func(tag string, viralRate float64) (Percentiles, error) {
		start := time.Now()
		from, to := start.Add(fairnessSettle), start.Add(fairnessSettle+fairnessWindow)
		pctx, cancel := context.WithDeadline(ctx, to)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, fairnessSmall+1)
		smallBase, smallSent := received(smallEps), int64(0)
		run := func(p project, rate float64, tag string, viral bool) {
			defer wg.Done()
			n, err := b.prod.Run(pctx, produce.Plan{Rate: rate, Batch: 10}, b.events(p, tag))
			mu.Lock()
			if viral {
				viralEvents += int64(n)
			} else {
				smallSent += int64(n)
			}
			mu.Unlock()
			errs <- err
		}
		for i, t := range b.fair.small {
			wg.Add(1)
			go run(t.p, fairnessSmallRate, fmt.Sprintf("fairness-%s-%d", tag, i), false)
		}
		wg.Add(1)
		go run(b.fair.viral[0].p, viralEventRate(viralRate), "fairness-viral-"+tag, true)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return Percentiles{}, fmt.Errorf("%s: producing: %w", tag, err)
			}
		}
		err := b.drain(ctx, smallEps, smallBase, smallSent, 60*time.Second)
		if err != nil {
			err = fmt.Errorf("%s: small projects: %w", tag, err)
		}
		return percentiles(latencies(smallEps, from, to)), err
	}
	var err error
	if fr.SmallNormalMs, err = phase("normal", normalViral); err != nil {
		return err
	}
	if fr.SmallViralMs, err = phase("viral", peakViral); err != nil {
		return err
	}
	viralEnd := time.Now()
	fr.ViralSent = viralEvents * fairnessViralHooks
	derr := b.drain(ctx, viralEps, viralBase, fr.ViralSent, 180*time.Second)
	fr.ViralDelivered = received(viralEps) - viralBase
	fr.ViralDrainS = round2(time.Since(viralEnd).Seconds())
	if fr.SmallNormalMs.P99 > 0 {
		b.res.FairnessP99Ratio = round2(fr.SmallViralMs.P99 / fr.SmallNormalMs.P99)
	}
	b.say("fairness: small projects' p99 %.1f ms at normal load, %.1f ms beside the viral project (ratio %.2f); viral backlog %d of %d in %.0f s",
		fr.SmallNormalMs.P99, fr.SmallViralMs.P99, b.res.FairnessP99Ratio, fr.ViralDelivered, fr.ViralSent, fr.ViralDrainS)
	if derr != nil {
		return fmt.Errorf("viral backlog: %w", derr)
	}
	return nil
}

// restartDelivery replaces the delivery process with one started with env on top of the bench's,
// and waits until it delivers.
func (b *bench) restartDelivery(ctx context.Context, env ...string) error {
	if b.st.Stop("delivery", stopGrace) {
		b.res.note("fairness: the delivery process did not exit within %s of SIGTERM and was killed", stopGrace)
	}
	p, err := b.st.Start("delivery", append(env, "SURVEYHOOKS_PPROF_ADDR="+b.pprof["delivery"])...)
	if err != nil {
		return err
	}
	before := b.tp.ep.Received()
	if _, err := b.prod.Run(ctx, produce.Plan{Count: 1}, b.events(b.tp.p, "probe-"+randomHex(3))); err != nil {
		return err
	}
	if !waitFor(ctx, 90*time.Second, func() bool { return b.tp.ep.Received() > before }) {
		return fmt.Errorf("the restarted delivery process delivered nothing within 90 s:\n%s", p.Tail(3000))
	}
	return nil
}
