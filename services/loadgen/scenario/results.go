package scenario

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Results is what bench/results.json holds. The top-level figures are the ones issue 6 names.
type Results struct {
	Machine Machine `json:"machine"`
	Setup   Setup   `json:"setup"`

	BaselineRPS float64 `json:"baseline_rps"`        // raw Go POSTs/s to the receiver at the pipeline's concurrency
	PipelineRPS float64 `json:"pipeline_rps"`        // deliveries/s at the receiver, one webhook per event
	Series      []int64 `json:"pipeline_per_second"` // deliveries in each second of throughput's window
	Ratio       float64 `json:"ratio"`               // pipeline_rps / baseline_rps

	FanoutRPS      float64 `json:"fanout_rps"`          // deliveries/s, one event to 10 webhooks
	FanoutEventsPS float64 `json:"fanout_events_per_s"` // events/s behind fanout_rps

	LatencyRate float64     `json:"latency_rate_per_s"` // offered load: half of pipeline_rps
	LatencyMs   Percentiles `json:"latency_ms"`         // produce → receipt
	LatencyLost int64       `json:"latency_not_delivered"`
	// LatencyByStage splits latency_ms at the `events` and `deliveries` records (up to 20,000 of
	// the window's deliveries) and at when a read_committed observer saw the delivery, to tell
	// which hop its p99 comes from.
	LatencyByStage StageLatency `json:"latency_by_stage_ms"`

	Isolation         Isolation `json:"isolation"`
	IsolationP99Ratio float64   `json:"isolation_p99_ratio"` // healthy endpoints' p99 / latency p99

	SlowFlood         SlowFlood `json:"slow_flood"`
	SlowFloodP99Ratio float64   `json:"slow_flood_p99_ratio"` // healthy p99 beside a slow, flooded endpoint / alone

	Ordered          Ordered  `json:"ordered"`
	OrderedRPS       float64  `json:"ordered_rps"` // an ordered webhook's deliveries/s beside an unordered one's (ordered.unordered_rps)
	Fairness         Fairness `json:"fairness"`
	FairnessP99Ratio float64  `json:"fairness_p99_ratio"` // small projects' p99 beside a viral one at 2× capacity / at normal load

	SinkRowsPerS float64            `json:"sink_rows_per_s"` // attempt rows/s into ClickHouse during throughput
	SinkMaxLag   int64              `json:"sink_max_lag"`    // the sink group's highest lag on delivery-attempts then
	GroupLag     map[string]int64   `json:"throughput_max_lag_by_group"`
	CPUCores     map[string]float64 `json:"throughput_cpu_cores"` // cores each process used during throughput

	// Issue 14: where the CPU goes per delivery, and the HTTP path, many endpoints, scale-out.
	Costs            Costs         `json:"costs"`
	HTTPIngest       HTTPIngest    `json:"http_ingest"`
	CPUPerEventAt400 float64       `json:"cpu_us_per_event_at_400"`
	ManyEndpoints    ManyEndpoints `json:"many_endpoints"`
	ScaleOut         ScaleOut      `json:"scale_out"`

	DeliveryPeakRSSMB float64 `json:"delivery_peak_rss_mb"`
	Memory            Memory  `json:"memory"`

	// Duplicates counts deliveries of an event an endpoint had already received, per scenario.
	Duplicates map[string]int64 `json:"duplicates"`

	BodyBytes   int      `json:"body_bytes"` // one delivered webhook body
	Goals       []Goal   `json:"goals"`
	Notes       []string `json:"notes,omitempty"`
	WallSeconds float64  `json:"bench_wall_s"`
	At          string   `json:"at"`
}

// Machine is where the bench ran.
type Machine struct {
	Cores     int     `json:"cores"`
	MemoryMB  int64   `json:"memory_mb"`
	CPU       string  `json:"cpu"`
	Go        string  `json:"go"`
	OS        string  `json:"os"`
	LoadAvg1m float64 `json:"load_avg_1m_at_start"` // other work on the machine skews every figure
}

// Setup says how the bench ran the pipeline.
type Setup struct {
	Processes          string `json:"processes"`
	Kafka              string `json:"kafka"`
	ClickHouse         string `json:"clickhouse"`
	Partitions         int    `json:"partitions"`
	Concurrency        int    `json:"per_endpoint_concurrency"`
	DeliveryTimeout    string `json:"delivery_timeout"`
	MemoryTimeout      string `json:"memory_delivery_timeout"`
	RetrySchedule      string `json:"retry_schedule"`
	Window             string `json:"window_per_scenario"`
	Warmup             string `json:"warmup_per_scenario"`
	Backlog            int64  `json:"closed_loop_backlog"`
	Producer           string `json:"producer"`
	BaselineClient     string `json:"baseline_client"`
	Receiver           string `json:"receiver"`
	SinkMeasuredDuring string `json:"sink_measured_during"`
}

// Isolation details: 100 endpoints, some hanging, one flooded.
type Isolation struct {
	Endpoints      int         `json:"endpoints"`
	Hanging        int         `json:"hanging"`
	FloodFactor    int         `json:"flood_factor"`
	RatePerS       float64     `json:"rate_per_s"` // all 100 endpoints together
	HealthyMs      Percentiles `json:"healthy_ms"`
	FloodedMs      Percentiles `json:"flooded_ms"`
	HealthyMissing int64       `json:"healthy_not_delivered"`
	HangingTries   int64       `json:"hanging_requests"`
}

// Memory details: the delivery process's resident memory with deliveries in flight.
type Memory struct {
	InFlight int `json:"in_flight"`
	// Open: every delivery an open request (Concurrency to each of InFlight/Concurrency hanging
	// endpoints). Queued: one hanging endpoint, Concurrency open and the rest queued behind it.
	OpenIdleRSSMB        float64 `json:"open_idle_rss_mb"`
	OpenPeakRSSMB        float64 `json:"open_peak_rss_mb"`
	OpenOpenRequests     int64   `json:"open_requests_seen"`
	OpenKiBPerDelivery   float64 `json:"open_kib_per_delivery"`
	QueuedIdleRSSMB      float64 `json:"queued_idle_rss_mb"`
	QueuedPeakRSSMB      float64 `json:"queued_peak_rss_mb"`
	QueuedKiBPerDelivery float64 `json:"queued_kib_per_delivery"`
	BodyKiB              float64 `json:"body_kib"`
}

// Goal is one of issue 6's targets and whether this run met it.
type Goal struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

func newResults(o Options) *Results {
	r := &Results{At: time.Now().UTC().Format(time.RFC3339), Duplicates: map[string]int64{}}
	r.Machine = Machine{Cores: runtime.NumCPU(), MemoryMB: memTotalMB(), CPU: cpuModel(), Go: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, LoadAvg1m: loadAvg()}
	r.Setup = Setup{
		Processes: "separate processes: kfake broker (the all-in-one binary with SURVEYHOOKS_SERVICES=kafka), ingest, " +
			"fanout, delivery, sink, api — the real binaries, built by the bench; load generator and receiver in the bench process",
		Kafka:              "kfake (embedded Kafka-protocol broker, on-disk log) on 127.0.0.1 — not Apache Kafka",
		ClickHouse:         "the local clickhouse-server that make bench starts (deploy/clickhouse/local.sh)",
		Partitions:         o.Partitions,
		Concurrency:        o.Concurrency,
		DeliveryTimeout:    o.IsolationTimeout.String() + " (DELIVERY_TIMEOUT, shortened for isolation)",
		MemoryTimeout:      memoryTimeout.String(),
		RetrySchedule:      o.RetrySchedule + " (SURVEYHOOKS_RETRY_SCHEDULE, shortened for isolation)",
		Window:             o.Window.String(),
		Warmup:             o.Warmup.String(),
		Backlog:            o.Backlog,
		Producer:           "segmentio/kafka-go Writer into survey-events, JSON, round-robin partitions",
		BaselineClient:     fmt.Sprintf("net/http, tuned Transport, %d workers, same body and both signatures", o.Concurrency),
		Receiver:           "net/http server on 127.0.0.1, reads and parses every body",
		SinkMeasuredDuring: "throughput",
	}
	return r
}

func (r *Results) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// evaluate fills in Goals from issue 6's targets.
func (r *Results) evaluate() {
	add := func(name, want, got string, met bool) {
		r.Goals = append(r.Goals, Goal{Name: name, Want: want, Got: got, Met: met})
	}
	add("ratio", "≥ 0.5", fmt.Sprintf("%.2f", r.Ratio), r.Ratio >= 0.5)
	add("latency_ms.p99", "≤ 100", fmt.Sprintf("%.1f", r.LatencyMs.P99), r.LatencyMs.N > 0 && r.LatencyMs.P99 <= 100)
	add("isolation_p99_ratio", "≤ 2", fmt.Sprintf("%.2f", r.IsolationP99Ratio), r.IsolationP99Ratio > 0 && r.IsolationP99Ratio <= 2)
	add("slow_flood_p99_ratio", "≤ 2", fmt.Sprintf("%.2f", r.SlowFloodP99Ratio), r.SlowFloodP99Ratio > 0 && r.SlowFloodP99Ratio <= 2)
	add("fairness_p99_ratio", "≤ 2", fmt.Sprintf("%.2f", r.FairnessP99Ratio), r.FairnessP99Ratio > 0 && r.FairnessP99Ratio <= 2)
	sinkOK := r.PipelineRPS > 0 && r.SinkRowsPerS >= 0.9*r.PipelineRPS && float64(r.SinkMaxLag) <= 5*r.PipelineRPS
	add("sink not the bottleneck", "rows/s ≈ deliveries/s, lag ≤ 5 s of traffic",
		fmt.Sprintf("%.0f rows/s vs %.0f deliveries/s, max lag %d", r.SinkRowsPerS, r.PipelineRPS, r.SinkMaxLag), sinkOK)
	add("cpu_ratio", "≤ 1.5", fmt.Sprintf("%.2f", r.Costs.CPURatio), r.Costs.CPURatio > 0 && r.Costs.CPURatio <= 1.5)
	add("http_ingest ratio", "≥ 0.4", fmt.Sprintf("%.2f", r.HTTPIngest.Ratio), r.HTTPIngest.Ratio >= 0.4)
	add("cpu_us_per_event_at_400", "≤ 300", fmt.Sprintf("%.0f", r.CPUPerEventAt400), r.CPUPerEventAt400 > 0 && r.CPUPerEventAt400 <= 300)
	so := r.ScaleOut
	add("scale_out", "every event delivered, 0 duplicates, partitions balanced",
		fmt.Sprintf("%d of %d, %d duplicates, %v", so.Delivered, so.Events, so.Duplicates, so.Partitions),
		so.Events > 0 && so.Delivered >= so.Events && so.Duplicates == 0 && so.Balanced)
	m := r.Memory
	add("memory per held delivery beyond its body (queued)", "≤ 4 KiB",
		fmt.Sprintf("%.1f KiB", m.QueuedKiBPerDelivery-m.BodyKiB), m.QueuedPeakRSSMB > 0 && m.QueuedKiBPerDelivery-m.BodyKiB <= 4)
	add("memory per open request beyond its body", "≤ 4 KiB",
		fmt.Sprintf("%.1f KiB", m.OpenKiBPerDelivery-m.BodyKiB), m.OpenPeakRSSMB > 0 && m.OpenKiBPerDelivery-m.BodyKiB <= 4)
}

// Table writes the human-readable summary.
func (r *Results) Table(w io.Writer) {
	var buf strings.Builder
	defer func() {
		for _, line := range strings.SplitAfter(buf.String(), "\n") {
			if line != "" {
				fmt.Fprintln(w, strings.TrimRight(line, " \n"))
			}
		}
	}()
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "machine\t%d cores, %d MiB, %s, %s, load %.2f at start\n", r.Machine.Cores, r.Machine.MemoryMB,
		r.Machine.CPU, r.Machine.Go, r.Machine.LoadAvg1m)
	fmt.Fprintf(tw, "pipeline\t%s\n", "separate processes (kfake broker, ingest, fanout, delivery, sink, api); loadgen + receiver in the bench process")
	fmt.Fprintf(tw, "\t\n")
	fmt.Fprintf(tw, "scenario\tfigure\tvalue\n")
	fmt.Fprintf(tw, "baseline\tbaseline_rps (raw Go POSTs, %d concurrent)\t%.0f /s\n", r.Setup.Concurrency, r.BaselineRPS)
	fmt.Fprintf(tw, "throughput\tpipeline_rps (1 webhook per event)\t%.0f /s\n", r.PipelineRPS)
	fmt.Fprintf(tw, "throughput\tratio (pipeline / baseline)\t%.2f\n", r.Ratio)
	fmt.Fprintf(tw, "fanout\tfanout_rps (1 event → 10 webhooks)\t%.0f deliveries/s (%.0f events/s)\n", r.FanoutRPS, r.FanoutEventsPS)
	fmt.Fprintf(tw, "latency\tlatency_ms at %.0f events/s\tp50 %.1f  p95 %.1f  p99 %.1f  (n=%d)\n",
		r.LatencyRate, r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.LatencyMs.N)
	for _, s := range r.LatencyByStage.rows() {
		if s.p.N > 0 {
			fmt.Fprintf(tw, "latency\t  by stage: %s\tp50 %.1f  p95 %.1f  p99 %.1f  (n=%d)\n", s.name, s.p.P50, s.p.P95, s.p.P99, s.p.N)
		}
	}
	if m := r.LatencyByStage.Slowest; m.N > 0 {
		fmt.Fprintf(tw, "latency\t  by stage: slowest 1%% end to end, mean\t%.1f / %.1f / %.1f (%.1f before sending: %.1f to visible, %.1f after)  (n=%d)\n",
			m.Ingested, m.FannedOut, m.Received, m.Sending, m.Visible, m.Waiting, m.N)
	}
	fmt.Fprintf(tw, "isolation\thealthy p99 / latency p99\t%.2f  (healthy p99 %.1f ms, flooded p99 %.1f ms, %d hanging)\n",
		r.IsolationP99Ratio, r.Isolation.HealthyMs.P99, r.Isolation.FloodedMs.P99, r.Isolation.Hanging)
	fmt.Fprintf(tw, "slow_flood\thealthy p99 flooded / alone\t%.2f  (alone %.1f ms, beside %d to a %d ms endpoint %.1f ms)\n",
		r.SlowFloodP99Ratio, r.SlowFlood.AloneMs.P99, r.SlowFlood.Flood, r.SlowFlood.SlowDelayMs, r.SlowFlood.FloodedMs.P99)
	fmt.Fprintf(tw, "ordered\tordered_rps (ordering \"respondent\", %d users) vs unordered\t%.0f /s vs %.0f /s (ratio %.2f)\n",
		r.Ordered.Respondents, r.OrderedRPS, r.Ordered.UnorderedRPS, r.Ordered.Ratio)
	fmt.Fprintf(tw, "fairness\tsmall projects' p99 viral / normal\t%.2f  (normal %.1f ms, beside a viral project at %.0f/s of %d/s %.1f ms; backlog %d of %d in %.0f s)\n",
		r.FairnessP99Ratio, r.Fairness.SmallNormalMs.P99, r.Fairness.ViralPerS, r.Fairness.CapacityPerS, r.Fairness.SmallViralMs.P99,
		r.Fairness.ViralDelivered, r.Fairness.ViralSent, r.Fairness.ViralDrainS)
	fmt.Fprintf(tw, "sink\tsink_rows_per_s (during throughput)\t%.0f rows/s\n", r.SinkRowsPerS)
	fmt.Fprintf(tw, "sink\tsink_max_lag\t%d records\n", r.SinkMaxLag)
	fmt.Fprintf(tw, "memory\tdelivery_peak_rss_mb (%d requests open)\t%.1f MiB (idle %.1f; %.1f KiB per delivery)\n",
		r.Memory.InFlight, r.DeliveryPeakRSSMB, r.Memory.OpenIdleRSSMB, r.Memory.OpenKiBPerDelivery)
	fmt.Fprintf(tw, "memory\t%d held, %d open, rest queued\t%.1f MiB (idle %.1f; %.1f KiB per delivery)\n",
		r.Memory.InFlight, r.Setup.Concurrency, r.Memory.QueuedPeakRSSMB, r.Memory.QueuedIdleRSSMB, r.Memory.QueuedKiBPerDelivery)
	if len(r.CPUCores) > 0 {
		var parts []string
		for _, n := range slices.Sorted(maps.Keys(r.CPUCores)) {
			parts = append(parts, fmt.Sprintf("%s %.2f", n, r.CPUCores[n]))
		}
		fmt.Fprintf(tw, "throughput\tCPU cores used\t%s\n", strings.Join(parts, ", "))
	}
	r.costsTable(tw)
	if len(r.Duplicates) > 0 {
		var parts []string
		for _, n := range slices.Sorted(maps.Keys(r.Duplicates)) {
			parts = append(parts, fmt.Sprintf("%s %d", n, r.Duplicates[n]))
		}
		fmt.Fprintf(tw, "all\tduplicate deliveries\t%s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(tw, "\t\n")
	for _, g := range r.Goals {
		mark := "MISSED"
		if g.Met {
			mark = "met"
		}
		fmt.Fprintf(tw, "goal\t%s %s\t%s (%s)\n", g.Name, g.Want, g.Got, mark)
	}
	_ = tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(&buf, "note: %s\n", n)
	}
	fmt.Fprintf(&buf, "bench wall time %.0f s\n", r.WallSeconds)
}

func memTotalMB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb >> 10
		}
	}
	return 0
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
