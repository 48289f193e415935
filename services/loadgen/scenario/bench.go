// Package scenario is `make bench`: it starts the pipeline as separate processes (package stack),
// drives every scenario of issue 6 through it with the load generator (package produce) against a
// receiver on 127.0.0.1 (package receiver), and returns the figures for the table and
// bench/results.json. It reports; it never fails a build over a number. Every loop is bounded in
// time, every target is on loopback, and everything it starts is stopped before Run returns.
package scenario

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
	"github.com/surveyhooks/surveyhooks/services/loadgen/stack"
)

// Options shape a bench run. Zero values take the defaults in Defaults.
type Options struct {
	RepoRoot       string // where `go build` runs; the working directory when empty
	ClickHouseAddr string // required: a running ClickHouse (make bench starts one)
	ClickHouseDir  string // the local server's folder, for its pid (CPU accounting); optional

	Partitions  int           // KAFKA_PARTITIONS of every topic
	Concurrency int           // DELIVERY_PER_ENDPOINT_CONCURRENCY, and the baseline's concurrency
	Window      time.Duration // the measured part of each scenario
	Warmup      time.Duration // run before each window, not measured
	Backlog     int64         // closed-loop bound: events produced but not yet delivered
	// Env adds KEY=VALUE settings to every service's environment after the bench's own (a later
	// setting wins), e.g. DELIVERY_ADAPTIVE_CONCURRENCY=false to compare a feature off.
	Env []string
	// IsolationTimeout and RetrySchedule make `isolation`'s hanging endpoints give up and retry
	// quickly enough to matter within a window.
	IsolationTimeout time.Duration
	RetrySchedule    string
	InFlight         int // deliveries held by the delivery process in `memory`

	Only    []string // run only these scenarios (by name); all when empty
	KeepDir bool     // keep the binaries and the services' logs (the folder is printed)

	ProfileOut string    // where the throughput CPU profiles' top functions go; none when empty
	Progress   io.Writer // one line per step; io.Discard when nil
}

// Defaults fills in what o leaves zero.
func (o Options) Defaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Partitions, 12)
	def(&o.Concurrency, 50)
	def(&o.InFlight, 10_000)
	defDur(&o.Window, 20*time.Second)
	defDur(&o.Warmup, 5*time.Second)
	defDur(&o.IsolationTimeout, 2*time.Second)
	if o.Backlog <= 0 {
		o.Backlog = 5000
	}
	if o.RetrySchedule == "" {
		o.RetrySchedule = "1s,2s,3s,4s,5s"
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// bench is one run's state.
type bench struct {
	opts  Options
	runID string
	res   *Results
	tmp   string // binaries, logs, profiles; removed at the end

	st        *stack.Stack
	brokers   []string
	pprof     map[string]string // service → its profiler's address
	rx        *hooktest.Server
	prod      *produce.Producer
	api       *apiClient
	db        string // ClickHouse database of this run
	ingestURL string // http://host:port of ingest

	// Subscribers, created before any scenario so every service knows them from the start.
	tp       target   // throughput (and sink)
	httpT    target   // http_ingest and cpu_at_400: events POSTed to ingest
	lat      target   // latency
	fan      []target // fanout: one project, ten webhooks
	fanProj  project
	iso      []target // isolation: a project per endpoint
	memQ     target   // memory, queued: one hanging webhook with every delivery behind it
	mem      []target // memory, open: hanging webhooks, Concurrency requests open to each
	memProj  project
	baseline *hooktest.Endpoint
	secret   string // a webhook secret, for the baseline's signatures

	sfSlow, sfHealthy target // slow_flood: the slow endpoint that gets the flood, the healthy one beside it
	fair              fairnessTargets
}

// target is one webhook and the receiver endpoint behind it.
type target struct {
	p  project
	w  webhook
	ep *hooktest.Endpoint
}

func (b *bench) say(format string, args ...any) {
	fmt.Fprintf(b.opts.Progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Run runs every scenario once and returns the figures. A scenario that fails leaves its figures
// zero and says why in Results.Notes; Run returns an error only when the pipeline cannot start.
func Run(ctx context.Context, opts Options) (*Results, error) {
	opts = opts.Defaults()
	if opts.ClickHouseAddr == "" {
		return nil, errors.New("CLICKHOUSE_ADDR is unset: start ClickHouse first (make bench does)")
	}
	started := time.Now()
	b := &bench{opts: opts, runID: randomHex(4), res: newResults(opts)}
	defer func() { b.res.WallSeconds = time.Since(started).Seconds() }()
	tmp, err := os.MkdirTemp("", "surveyhooks-bench-")
	if err != nil {
		return nil, err
	}
	if opts.KeepDir {
		defer b.say("kept binaries and logs in %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	b.tmp = tmp

	b.say("building the service binaries")
	if err := stack.Build(ctx, opts.RepoRoot, filepath.Join(tmp, "bin")); err != nil {
		return nil, err
	}
	if err := b.start(ctx, tmp); err != nil {
		b.teardown()
		return nil, err
	}
	defer b.teardown()
	if err := b.subscribe(ctx); err != nil {
		return nil, fmt.Errorf("creating the bench's projects and webhooks: %w", err)
	}
	if err := b.warmup(ctx); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"baseline", b.runBaseline},
		{"throughput", b.runThroughput},
		{"fanout", b.runFanout},
		{"latency", b.runLatency},
		{"isolation", b.runIsolation},
		{"slow_flood", b.runSlowFlood},
		{"ordered", b.runOrdered},
		{"fairness", b.runFairness},
		{"http_ingest", b.runHTTPIngest},
		{"cpu_at_400", b.runCPUAt400},
		{"many_endpoints", b.runManyEndpoints},
		{"scale_out", b.runScaleOut},
		{"memory", b.runMemory},
	} {
		if ctx.Err() != nil {
			return b.res, ctx.Err()
		}
		if len(opts.Only) > 0 && !slices.Contains(opts.Only, s.name) {
			continue
		}
		b.say("scenario %s", s.name)
		if err := s.run(ctx); err != nil {
			b.res.note("%s: %v", s.name, err)
			b.say("scenario %s failed: %v", s.name, err)
		}
	}
	b.countDuplicates()
	b.res.evaluate()
	return b.res, nil
}

// start launches the broker and every service with the bench's configuration.
func (b *bench) start(ctx context.Context, tmp string) error {
	addrs := map[string]string{}
	keys := []string{"kafka", "ingest", "api"}
	for _, s := range profiled {
		keys = append(keys, "pprof-"+s)
	}
	for _, k := range keys {
		a, err := proctest.FreeAddr()
		if err != nil {
			return err
		}
		addrs[k] = a
	}
	b.brokers = []string{addrs["kafka"]}
	b.pprof = map[string]string{}
	for _, s := range profiled {
		b.pprof[s] = addrs["pprof-"+s]
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	admin := "bench-admin-" + randomHex(16)
	b.db = "surveyhooks_bench_" + b.runID
	env := []string{
		"KAFKA_BROKERS=" + addrs["kafka"], fmt.Sprintf("KAFKA_PARTITIONS=%d", b.opts.Partitions),
		"SURVEYHOOKS_RETRY_SCHEDULE=" + b.opts.RetrySchedule,
		"SURVEYHOOKS_KAFKA_LISTEN=" + addrs["kafka"], "SURVEYHOOKS_DATA_DIR=" + filepath.Join(tmp, "data"),
		"INGEST_ADDR=" + addrs["ingest"], "API_ADDR=" + addrs["api"],
		"SURVEYHOOKS_ADMIN_TOKEN=" + admin, "SURVEYHOOKS_ENCRYPTION_KEY=" + base64.StdEncoding.EncodeToString(key),
		"SURVEYHOOKS_ALLOW_DESTINATIONS=127.0.0.0/8,::1/128", "SURVEYHOOKS_OPS_ADDR=127.0.0.1:0",
		"CLICKHOUSE_ADDR=" + b.opts.ClickHouseAddr, "SINK_CLICKHOUSE_DATABASE=" + b.db, "API_CLICKHOUSE_DATABASE=" + b.db,
		fmt.Sprintf("DELIVERY_PER_ENDPOINT_CONCURRENCY=%d", b.opts.Concurrency),
		"DELIVERY_TIMEOUT=" + b.opts.IsolationTimeout.String(),
		"DELIVERY_DRAIN_TIMEOUT=2s",
		// The isolation scenario's hanging endpoints must stay hanging, not be auto-disabled
		// after 100 timeouts: what is measured is their effect on the others.
		"DELIVERY_DISABLE_AFTER_FAILURES=0", "DELIVERY_DISABLE_AFTER=0s",
		"SURVEYHOOKS_LOG_LEVEL=info",
	}
	env = append(env, b.opts.Env...)
	logDir := filepath.Join(tmp, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return err
	}
	b.st = stack.New(filepath.Join(tmp, "bin"), logDir, env)
	b.say("starting the pipeline as separate processes: %s (Kafka: kfake in its own process on %s)",
		strings.Join(stack.Services, ", "), addrs["kafka"])
	k, err := b.st.Start("kafka", "SURVEYHOOKS_PPROF_ADDR="+b.pprof["kafka"])
	if err != nil {
		return err
	}
	if err := waitTCP(ctx, k, addrs["kafka"], 30*time.Second); err != nil {
		return err
	}
	for _, s := range []string{"ingest", "fanout", "delivery", "sink", "api"} {
		if _, err := b.st.Start(s, "SURVEYHOOKS_PPROF_ADDR="+b.pprof[s]); err != nil {
			return err
		}
	}
	if err := b.st.Proc("ingest").WaitHTTP(ctx, "http://"+addrs["ingest"]+"/healthz", 60*time.Second); err != nil {
		return err
	}
	if err := b.st.Proc("api").WaitHTTP(ctx, "http://"+addrs["api"]+"/healthz", 60*time.Second); err != nil {
		return err
	}
	b.api = newAPIClient("http://"+addrs["api"], admin)
	b.ingestURL = "http://" + addrs["ingest"]
	rx, err := hooktest.Start("127.0.0.1:0", hooktest.Options{HangMax: 3 * time.Minute, SlowDelay: slowFloodDelay})
	if err != nil {
		return err
	}
	b.rx = rx
	b.prod = produce.New(b.brokers, "survey-events")
	return nil
}

// stopGrace is how long a service gets to exit after SIGTERM before it is killed.
const stopGrace = 15 * time.Second

func (b *bench) teardown() {
	if b.st != nil {
		b.say("stopping the pipeline")
		if killed := b.st.StopAll(stopGrace); len(killed) > 0 {
			b.res.note("stopping: %s did not exit within %s of SIGTERM and was killed (goroutine dump in its log; -keep keeps logs)",
				strings.Join(killed, ", "), stopGrace)
		}
	}
	if b.prod != nil {
		_ = b.prod.Close()
	}
	if b.rx != nil {
		_ = b.rx.Close()
	}
	if b.fair.rx != nil {
		_ = b.fair.rx.Close()
	}
	if b.db != "" && b.opts.ClickHouseAddr != "" {
		dropDatabase(b.opts.ClickHouseAddr, b.db)
	}
}

// subscribe creates every project, webhook and receiver endpoint the scenarios use.
func (b *bench) subscribe(ctx context.Context) error {
	b.say("creating projects and webhooks")
	one := func(name string, mode hooktest.Mode) (target, error) {
		p, err := b.api.createProject(ctx, "bench "+name)
		if err != nil {
			return target{}, err
		}
		ep := b.rx.Endpoint(name, mode)
		w, err := b.api.createWebhook(ctx, p, name, b.rx.URL()+"/"+name)
		return target{p: p, w: w, ep: ep}, err
	}
	var err error
	if b.tp, err = one("throughput", hooktest.Fast); err != nil {
		return err
	}
	b.secret = b.tp.w.Secret
	if b.httpT, err = one("http", hooktest.Fast); err != nil {
		return err
	}
	if b.lat, err = one("latency", hooktest.Fast); err != nil {
		return err
	}
	if b.memQ, err = one("memory-queued", hooktest.Hanging); err != nil {
		return err
	}
	if b.sfSlow, err = one("slow-flood", hooktest.Slow); err != nil {
		return err
	}
	if b.sfHealthy, err = one("slow-flood-healthy", hooktest.Fast); err != nil {
		return err
	}
	b.baseline = b.rx.Endpoint("baseline", hooktest.Fast)
	if err := b.subscribeFairness(ctx); err != nil {
		return err
	}

	if b.fanProj, err = b.api.createProject(ctx, "bench fanout"); err != nil {
		return err
	}
	if b.fan, err = b.webhooks(ctx, b.fanProj, "fanout", 10, hooktest.Fast); err != nil {
		return err
	}
	if b.memProj, err = b.api.createProject(ctx, "bench memory"); err != nil {
		return err
	}
	perEndpoint := b.opts.Concurrency
	if b.mem, err = b.webhooks(ctx, b.memProj, "memory-open", (b.opts.InFlight+perEndpoint-1)/perEndpoint, hooktest.Hanging); err != nil {
		return err
	}
	// isolation: 100 endpoints, each its own project so traffic can be aimed at one of them.
	b.iso = make([]target, isolationEndpoints)
	err = parallel(ctx, 8, isolationEndpoints, func(i int) error {
		mode := hooktest.Fast
		if isolationRole(i) == roleHanging {
			mode = hooktest.Hanging
		}
		t, err := one(fmt.Sprintf("isolation-%03d", i), mode)
		b.iso[i] = t
		return err
	})
	return err
}

// webhooks creates n webhooks in p, each to its own endpoint.
func (b *bench) webhooks(ctx context.Context, p project, prefix string, n int, mode hooktest.Mode) ([]target, error) {
	out := make([]target, n)
	err := parallel(ctx, 8, n, func(i int) error {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		ep := b.rx.Endpoint(name, mode)
		w, err := b.api.createWebhook(ctx, p, name, b.rx.URL()+"/"+name)
		out[i] = target{p: p, w: w, ep: ep}
		return err
	})
	return out, err
}

// warmup pushes a few hundred events through every stage and keeps one delivered body, the
// size and shape the baseline sends.
func (b *bench) warmup(ctx context.Context) error {
	b.say("warming up the pipeline")
	const n = 500
	before := b.tp.ep.Received()
	if _, err := b.prod.Run(ctx, produce.Plan{Count: n, Rate: 1000}, b.events(b.tp.p, "warmup")); err != nil {
		return fmt.Errorf("warm-up: producing: %w", err)
	}
	if !waitFor(ctx, 90*time.Second, func() bool { return b.tp.ep.Received()-before >= n }) {
		return fmt.Errorf("warm-up: %d of %d events reached the receiver within 90 s; logs:\n%s",
			b.tp.ep.Received()-before, n, b.tails())
	}
	b.res.BodyBytes = len(b.tp.ep.SampleBody())
	return nil
}

// countDuplicates records, per scenario, deliveries of events an endpoint had already received.
func (b *bench) countDuplicates() {
	for name, ts := range map[string][]target{
		"throughput": {b.tp}, "latency": {b.lat}, "fanout": b.fan, "isolation": b.iso, "http_ingest": {b.httpT},
		"memory (open)": b.mem, "memory (queued)": {b.memQ},
	} {
		if n := duplicates(endpoints(ts)); n > 0 {
			b.res.Duplicates[name] = n
		}
	}
}

// events makes event i for project p; ids are unique per run and tag.
func (b *bench) events(p project, tag string) func(int) produce.Event {
	return func(i int) produce.Event {
		return produce.Event{ProjectID: p.ID, EventID: fmt.Sprintf("bench-%s-%s-%d", b.runID, tag, i),
			UserID: fmt.Sprintf("user-%d", i%1000), Score: i % 11}
	}
}

// tails is the end of every service's log, for a failure message.
func (b *bench) tails() string {
	var sb strings.Builder
	for _, s := range stack.Services {
		if p := b.st.Proc(s); p != nil {
			fmt.Fprintf(&sb, "==== %s\n%s\n", s, p.Tail(1500))
		}
	}
	return sb.String()
}

func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// waitFor polls cond every 20 ms until it holds (true) or timeout passes (false).
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
