package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
	"github.com/surveyhooks/surveyhooks/services/loadgen/stack"
)

// Consumer groups whose lag the bench samples during `throughput` (the services' defaults).
var groups = []string{"surveyhooks-ingest", "surveyhooks-fanout", "surveyhooks-delivery", "surveyhooks-sink"}

// profiled are the services started with a profiler (SURVEYHOOKS_PPROF_ADDR), delivery first.
var profiled = []string{"delivery", "ingest", "fanout", "sink", "api", "kafka"}

const sinkGroup, attemptsTopic = "surveyhooks-sink", "delivery-attempts"

// closedLoop produces events from gen as fast as the pipeline delivers them, keeping at most
// b.opts.Backlog events' worth of deliveries outstanding; perEvent is how many deliveries one
// event makes. It returns a stop function that ends production and reports how many were sent.
func (b *bench) closedLoop(ctx context.Context, eps []*hooktest.Endpoint, perEvent int64, gen func(int) produce.Event) func() (int64, error) {
	base := received(eps)
	pctx, cancel := context.WithCancel(ctx)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := b.prod.Run(pctx, produce.Plan{
			Outstanding: func(sent int64) int64 { return (sent*perEvent - (received(eps) - base)) / perEvent },
			MaxBacklog:  max(1, b.opts.Backlog/perEvent),
		}, gen)
		done <- result{n, err}
	}()
	return func() (int64, error) {
		cancel()
		r := <-done
		return int64(r.n), r.err
	}
}

// drain waits until eps received want deliveries since base.
func (b *bench) drain(ctx context.Context, eps []*hooktest.Endpoint, base, want int64, timeout time.Duration) error {
	if waitFor(ctx, timeout, func() bool { return received(eps)-base >= want }) {
		return nil
	}
	return fmt.Errorf("%d of %d deliveries arrived within %s of the end", received(eps)-base, want, timeout)
}

// runThroughput measures deliveries per second with one webhook per event, as fast as the
// pipeline goes with a bounded backlog; meanwhile the sink's rows per second and lag, every
// consumer group's lag, each process's CPU, and CPU profiles of the services.
func (b *bench) runThroughput(ctx context.Context) error {
	eps := []*hooktest.Endpoint{b.tp.ep}
	base := received(eps)
	stop := b.closedLoop(ctx, eps, 1, b.events(b.tp.p, "throughput"))
	sleep(ctx, b.opts.Warmup)

	lags, err := newLagSampler(b.brokers)
	if err != nil {
		stop()
		return err
	}
	defer lags.close()
	rows, err := openAttemptRows(b.opts.ClickHouseAddr, b.db)
	if err != nil {
		stop()
		return err
	}
	defer rows.close()

	rows0, rerr0 := rows.count(ctx)
	offs0 := b.endOffsets(ctx, lags)
	r0, t0 := received(eps), time.Now()
	cpu := b.newCPUMeter()
	maxLag := map[string]int64{}
	last := r0
	for time.Since(t0) < b.opts.Window && ctx.Err() == nil {
		if time.Since(t0) >= time.Second {
			now := received(eps)
			b.res.Series = append(b.res.Series, now-last)
			last = now
		}
		if l, err := lags.lag(ctx, groups...); err == nil {
			for g, topics := range l {
				for t, n := range topics {
					k := g + " on " + t
					maxLag[k] = max(maxLag[k], n)
				}
			}
		}
		sleep(ctx, time.Second-time.Since(t0)%time.Second)
	}
	r1, t1 := received(eps), time.Now()
	cores := cpu.cores()
	offs1 := b.endOffsets(ctx, lags)
	rows1, rerr1 := rows.count(ctx)
	b.costs(cores, r1-r0, t1.Sub(t0), offs0, offs1)
	// Profiles are taken after the window, under the same load, so they do not skew its figures.
	profiles := b.profileAll(ctx)
	sent, perr := stop()

	el := t1.Sub(t0).Seconds()
	b.res.PipelineRPS = round2(float64(r1-r0) / el)
	if b.res.BaselineRPS > 0 {
		b.res.Ratio = round2(b.res.PipelineRPS / b.res.BaselineRPS)
	}
	if rerr0 == nil && rerr1 == nil {
		b.res.SinkRowsPerS = round2(float64(rows1-rows0) / el)
	} else {
		b.res.note("sink rows: %v", errors.Join(rerr0, rerr1))
	}
	b.res.SinkMaxLag = maxLag[sinkGroup+" on "+attemptsTopic]
	b.res.GroupLag = maxLag
	b.res.CPUCores = cores
	b.say("throughput: %.0f deliveries/s (ratio %.2f); sink %.0f rows/s, max lag %d",
		b.res.PipelineRPS, b.res.Ratio, b.res.SinkRowsPerS, b.res.SinkMaxLag)
	if len(profiles) > 0 {
		if err := b.writeProfiles(ctx, profiles, profileSeconds); err != nil {
			b.res.note("profile: %v", err)
		}
	}
	if perr != nil {
		return fmt.Errorf("producing: %w", perr)
	}
	return b.drain(ctx, eps, base, sent, 60*time.Second)
}

// profileSeconds is how long each service is profiled after `throughput`'s window.
const profileSeconds = 10

// profileAll takes a CPU profile of every service with a profiler at once and returns where each
// went; a failure is noted and leaves that service out.
func (b *bench) profileAll(ctx context.Context) map[string]string {
	return b.profileAllFor(ctx, profileSeconds, "cpu-")
}

// profileAllFor is profileAll for seconds, the files named prefix+service.
func (b *bench) profileAllFor(ctx context.Context, seconds int, prefix string) map[string]string {
	profiles := map[string]string{}
	if b.opts.ProfileOut == "" {
		return profiles
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for svc, addr := range b.pprof {
		path := filepath.Join(b.tmp, prefix+svc+".pprof")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cpuProfile(ctx, addr, seconds, path); err != nil {
				mu.Lock()
				b.res.note("profile of %s: %v", svc, err)
				mu.Unlock()
				return
			}
			mu.Lock()
			profiles[svc] = path
			mu.Unlock()
		}()
	}
	wg.Wait()
	return profiles
}

// writeProfiles renders the top functions of each service's profile into opts.ProfileOut.
func (b *bench) writeProfiles(ctx context.Context, profiles map[string]string, seconds int) error {
	header := fmt.Sprintf("# CPU profiles taken right after `throughput`'s window under the same closed-loop load (%d s each, all services at once), %s\n", seconds, b.res.At) +
		fmt.Sprintf("# %.0f deliveries/s; CPU cores used per process: %v\n", b.res.PipelineRPS, b.res.CPUCores)
	return b.writeProfilesTo(ctx, b.opts.ProfileOut, header, profiles)
}

// writeProfilesTo renders the top functions of each service's profile into path, under header.
func (b *bench) writeProfilesTo(ctx context.Context, path, header string, profiles map[string]string) error {
	var sb strings.Builder
	sb.WriteString(header)
	fmt.Fprintf(&sb, "# machine: %d cores, %s, load %.2f at start\n\n", b.res.Machine.Cores, b.res.Machine.CPU, b.res.Machine.LoadAvg1m)
	for _, svc := range profiled {
		path, ok := profiles[svc]
		if !ok {
			continue
		}
		bin := filepath.Join(b.st.Bin, svc)
		if svc == "kafka" {
			bin = filepath.Join(b.st.Bin, "surveyhooks") // the all-in-one binary running only the broker
		}
		n := 25
		for _, cum := range []bool{false, true} {
			top, err := pprofTop(ctx, bin, path, n, cum)
			if err != nil {
				return err
			}
			kind := "flat"
			if cum {
				kind = "cumulative"
			}
			fmt.Fprintf(&sb, "## %s — top %d by %s\n\n%s\n", svc, n, kind, top)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

// runFanout measures deliveries per second when every event goes to ten webhooks.
func (b *bench) runFanout(ctx context.Context) error {
	eps := endpoints(b.fan)
	per := int64(len(eps))
	base := received(eps)
	stop := b.closedLoop(ctx, eps, per, b.events(b.fanProj, "fanout"))
	sleep(ctx, b.opts.Warmup)
	r0, t0 := received(eps), time.Now()
	sleep(ctx, b.opts.Window)
	r1, t1 := received(eps), time.Now()
	sent, err := stop()
	b.res.FanoutRPS = round2(float64(r1-r0) / t1.Sub(t0).Seconds())
	b.res.FanoutEventsPS = round2(b.res.FanoutRPS / float64(per))
	b.say("fanout: %.0f deliveries/s (%.0f events/s)", b.res.FanoutRPS, b.res.FanoutEventsPS)
	if err != nil {
		return fmt.Errorf("producing: %w", err)
	}
	return b.drain(ctx, eps, base, sent*per, 60*time.Second)
}

// openLoop sends gen's events at rate for warmup+window and returns the measured part's bounds
// and how many were sent.
func (b *bench) openLoop(ctx context.Context, rate float64, gen func(int) produce.Event) (from, to time.Time, sent int64, err error) {
	start := time.Now()
	from, to = start.Add(b.opts.Warmup), start.Add(b.opts.Warmup+b.opts.Window)
	pctx, cancel := context.WithDeadline(ctx, to)
	defer cancel()
	n, err := b.prod.Run(pctx, produce.Plan{Rate: rate, Batch: 1000}, gen)
	return from, to, int64(n), err
}

// runLatency measures produce → receipt at half of throughput's rate.
func (b *bench) runLatency(ctx context.Context) error {
	rate := b.res.PipelineRPS / 2
	if rate <= 0 {
		return errors.New("needs throughput's rate, which was not measured")
	}
	b.res.LatencyRate = round2(rate)
	eps := []*hooktest.Endpoint{b.lat.ep}
	base := received(eps)
	// Started before the producer; a second before the window, as latencyByStage reads back.
	vis, verr := b.watchVisibility(ctx, b.lat.p.ID, time.Now().Add(b.opts.Warmup-time.Second))
	if verr != nil {
		b.res.note("latency by stage: no visibility: %v", verr)
	}
	from, to, sent, err := b.openLoop(ctx, rate, b.events(b.lat.p, "latency"))
	if err != nil {
		if vis != nil {
			vis.stop()
		}
		return fmt.Errorf("producing: %w", err)
	}
	derr := b.drain(ctx, eps, base, sent, 30*time.Second)
	var visible map[string]time.Time
	if vis != nil {
		visible = vis.stop()
	}
	b.res.LatencyLost = max(0, sent-(received(eps)-base))
	b.res.LatencyMs = percentiles(latencies(eps, from, to))
	b.say("latency at %.0f events/s: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", rate,
		b.res.LatencyMs.P50, b.res.LatencyMs.P95, b.res.LatencyMs.P99)
	// After the drain, so every sampled delivery's records are committed and readable.
	stages, serr := b.latencyByStage(ctx, eps, from, to, visible)
	if serr != nil {
		b.res.note("latency by stage: %v", serr)
	}
	b.res.LatencyByStage = stages
	for _, s := range stages.rows() {
		b.say("  %s: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms (n=%d)", s.name, s.p.P50, s.p.P95, s.p.P99, s.p.N)
	}
	if m := stages.Slowest; m.N > 0 {
		b.say("  slowest 1%% (%d) by stage, mean: %.1f / %.1f / %.1f ms (%.1f of it before sending: %.1f to visible, %.1f after)", m.N,
			m.Ingested, m.FannedOut, m.Received, m.Sending, m.Visible, m.Waiting)
	}
	return derr
}

// Isolation: endpoint 0 is flooded, the next isolationHanging hang until the delivery timeout,
// the rest are healthy and measured.
const (
	isolationEndpoints = 100
	isolationHanging   = 10
	isolationFlood     = 100
)

type role int

const (
	roleHealthy role = iota
	roleHanging
	roleFlooded
)

func isolationRole(i int) role {
	switch {
	case i == 0:
		return roleFlooded
	case i <= isolationHanging:
		return roleHanging
	}
	return roleHealthy
}

// runIsolation offers latency's load to 100 endpoints, ten of them hanging until the delivery
// timeout and one getting 100× each other's traffic, and compares the healthy ones' p99 with
// latency's.
func (b *bench) runIsolation(ctx context.Context) error {
	rate := b.res.LatencyRate
	if rate <= 0 {
		return errors.New("needs latency's rate, which was not measured")
	}
	var healthy, hanging []*hooktest.Endpoint
	for i, t := range b.iso {
		switch isolationRole(i) {
		case roleHealthy:
			healthy = append(healthy, t.ep)
		case roleHanging:
			hanging = append(hanging, t.ep)
		}
	}
	flooded := []*hooktest.Endpoint{b.iso[0].ep}
	measured := append(append([]*hooktest.Endpoint{}, healthy...), flooded...)
	base := received(measured)
	var toMeasured atomic.Int64
	cycle := isolationFlood + isolationEndpoints - 1 // the flooded endpoint's share, then one each
	gen := func(i int) produce.Event {
		k := i % cycle
		idx := 0
		if k >= isolationFlood {
			idx = k - isolationFlood + 1
		}
		if isolationRole(idx) != roleHanging {
			toMeasured.Add(1)
		}
		return b.events(b.iso[idx].p, "isolation")(i)
	}
	b.res.Isolation = Isolation{Endpoints: isolationEndpoints, Hanging: isolationHanging, FloodFactor: isolationFlood, RatePerS: round2(rate)}
	from, to, _, err := b.openLoop(ctx, rate, gen)
	if err != nil {
		return fmt.Errorf("producing: %w", err)
	}
	derr := b.drain(ctx, measured, base, toMeasured.Load(), 30*time.Second)
	iso := &b.res.Isolation
	iso.HealthyMs = percentiles(latencies(healthy, from, to))
	iso.FloodedMs = percentiles(latencies(flooded, from, to))
	iso.HealthyMissing = max(0, toMeasured.Load()-(received(measured)-base))
	for _, ep := range hanging {
		iso.HangingTries += ep.Requests()
		ep.SetMode(hooktest.Fast) // let their retries succeed so nothing lingers into `memory`
		ep.Release()
	}
	if b.res.LatencyMs.P99 > 0 {
		b.res.IsolationP99Ratio = round2(iso.HealthyMs.P99 / b.res.LatencyMs.P99)
	}
	b.say("isolation: healthy p99 %.1f ms (ratio %.2f), flooded p99 %.1f ms, %d requests to hanging endpoints",
		iso.HealthyMs.P99, b.res.IsolationP99Ratio, iso.FloodedMs.P99, iso.HangingTries)
	return derr
}

// memoryTimeout is the delivery timeout in `memory`: longer than the scenario, so every hanging
// request stays in flight while the peak is read.
const memoryTimeout = 2 * time.Minute

// runMemory reads the delivery process's peak RSS with opts.InFlight deliveries in flight, in one
// fresh process so the peak is this scenario's alone: first one hanging endpoint with Concurrency
// requests open and the rest queued behind it, then (once those are answered) every delivery an
// open request, to InFlight/Concurrency hanging endpoints. The peak only grows, so the second
// reading is the larger case; both are measured from the same idle process. One process rather
// than a restart between the two, because a restarted worker may redo deliveries its
// predecessor finished, and those would be counted as this scenario's memory.
func (b *bench) runMemory(ctx context.Context) error {
	n := b.opts.InFlight
	b.res.Memory = Memory{InFlight: n, BodyKiB: round2(float64(b.res.BodyBytes) / 1024)}
	m := &b.res.Memory
	pid, idle, err := b.freshDelivery(ctx)
	if err != nil {
		return err
	}

	// One endpoint: Concurrency open, the rest queued.
	if _, err := b.prod.Run(ctx, produce.Plan{Count: n}, b.events(b.memQ.p, "memory-queued")); err != nil {
		return fmt.Errorf("producing: %w", err)
	}
	waitFor(ctx, 30*time.Second, func() bool { return b.memQ.ep.InFlight() >= int64(b.opts.Concurrency) })
	peak, err := settledPeak(ctx, pid)
	if err != nil {
		return err
	}
	m.QueuedIdleRSSMB, m.QueuedPeakRSSMB = mib(idle), mib(peak)
	m.QueuedKiBPerDelivery = round2(float64(peak-idle) / float64(n) / 1024)
	b.say("memory, %d held behind one endpoint: peak %.1f MiB (idle %.1f), %.1f KiB per delivery", n,
		m.QueuedPeakRSSMB, m.QueuedIdleRSSMB, m.QueuedKiBPerDelivery)
	b.memQ.ep.SetMode(hooktest.Fast) // answer them all before the next case
	b.memQ.ep.Release()
	if err := b.drain(ctx, []*hooktest.Endpoint{b.memQ.ep}, 0, int64(n), 60*time.Second); err != nil {
		return fmt.Errorf("queued deliveries: %w", err)
	}

	// Every delivery an open request.
	eps := endpoints(b.mem)
	events := (n + len(eps) - 1) / len(eps)
	if _, err := b.prod.Run(ctx, produce.Plan{Count: events}, b.events(b.memProj, "memory-open")); err != nil {
		return fmt.Errorf("producing: %w", err)
	}
	open := func() (c int64) {
		for _, ep := range eps {
			c += ep.InFlight()
		}
		return c
	}
	if !waitFor(ctx, 60*time.Second, func() bool { return open() >= int64(n) }) {
		b.res.note("memory: only %d of %d requests were open after 60 s", open(), n)
	}
	if peak, err = settledPeak(ctx, pid); err != nil {
		return err
	}
	m.OpenOpenRequests = open()
	m.OpenIdleRSSMB, m.OpenPeakRSSMB = mib(idle), mib(peak)
	m.OpenKiBPerDelivery = round2(float64(peak-idle) / float64(n) / 1024)
	b.res.DeliveryPeakRSSMB = m.OpenPeakRSSMB
	b.say("memory, %d open requests: peak %.1f MiB (idle %.1f), %.1f KiB per delivery", m.OpenOpenRequests,
		m.OpenPeakRSSMB, m.OpenIdleRSSMB, m.OpenKiBPerDelivery)
	return nil
}

// freshDelivery replaces the delivery process with one whose timeout outlasts `memory`, waits
// until it delivers, and returns its pid and resident memory when idle.
func (b *bench) freshDelivery(ctx context.Context) (int, int64, error) {
	if b.st.Stop("delivery", stopGrace) {
		b.res.note("memory: the delivery process did not exit within %s of SIGTERM and was killed", stopGrace)
	}
	// The fixed cap: what is measured is memory per open request, and an adaptive limit shrinks
	// towards one request at a time in front of a hanging endpoint (as it should in production).
	p, err := b.st.Start("delivery", "DELIVERY_TIMEOUT="+memoryTimeout.String(), "DELIVERY_ADAPTIVE_CONCURRENCY=false",
		"SURVEYHOOKS_PPROF_ADDR="+b.pprof["delivery"])
	if err != nil {
		return 0, 0, err
	}
	// Ready once it delivers a probe event.
	before := b.tp.ep.Received()
	if _, err := b.prod.Run(ctx, produce.Plan{Count: 1}, b.events(b.tp.p, "probe-"+randomHex(3))); err != nil {
		return 0, 0, err
	}
	if !waitFor(ctx, 90*time.Second, func() bool { return b.tp.ep.Received() > before }) {
		return 0, 0, fmt.Errorf("the restarted delivery process delivered nothing within 90 s:\n%s", p.Tail(3000))
	}
	// Idle means nothing arrives anywhere for two seconds: work the previous process left
	// unfinished (or finished without committing) is redone first.
	last, quiet := b.rx.Received(), 0
	for deadline := time.Now().Add(30 * time.Second); quiet < 4 && time.Now().Before(deadline) && ctx.Err() == nil; {
		sleep(ctx, 500*time.Millisecond)
		if now := b.rx.Received(); now != last {
			last, quiet = now, 0
		} else {
			quiet++
		}
	}
	mem, err := stack.ReadMemory(p.PID())
	if err != nil {
		return 0, 0, err
	}
	return p.PID(), mem.RSS, nil
}

// settledPeak waits (at most 30 s) until the process's RSS stops growing, then returns its peak.
func settledPeak(ctx context.Context, pid int) (int64, error) {
	var last int64
	still := 0
	deadline := time.Now().Add(30 * time.Second)
	for still < 4 && time.Now().Before(deadline) && ctx.Err() == nil {
		sleep(ctx, 500*time.Millisecond)
		m, err := stack.ReadMemory(pid)
		if err != nil {
			return 0, err
		}
		if m.RSS-last < 256<<10 {
			still++
		} else {
			still = 0
		}
		last = m.RSS
	}
	m, err := stack.ReadMemory(pid)
	return m.Peak, err
}

func mib(b int64) float64 { return round2(float64(b) / (1 << 20)) }
