package scenario

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/services/loadgen/stack"
)

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

// percentiles sorts ds in place.
func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(q*float64(len(ds))+0.5) - 1
		i = max(0, min(i, len(ds)-1))
		return float64(ds[i]) / float64(time.Millisecond)
	}
	return Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: at(1), N: len(ds)}
}

// latencies of the samples whose event was sent within [from, to).
func latencies(eps []*hooktest.Endpoint, from, to time.Time) []time.Duration {
	var out []time.Duration
	for _, ep := range eps {
		for _, s := range ep.Samples(from) {
			sent := s.At.Add(-s.Latency)
			if s.Latency > 0 && !sent.Before(from) && sent.Before(to) {
				out = append(out, s.Latency)
			}
		}
	}
	return out
}

func received(eps []*hooktest.Endpoint) (n int64) {
	for _, ep := range eps {
		n += ep.Received()
	}
	return n
}

func duplicates(eps []*hooktest.Endpoint) (n int64) {
	for _, ep := range eps {
		n += ep.Duplicates()
	}
	return n
}

func endpoints(ts []target) []*hooktest.Endpoint {
	out := make([]*hooktest.Endpoint, len(ts))
	for i, t := range ts {
		out[i] = t.ep
	}
	return out
}

func waitTCP(ctx context.Context, p *stack.Proc, addr string, timeout time.Duration) error {
	ok := waitFor(ctx, timeout, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil || !p.Alive()
	})
	if !ok || !p.Alive() {
		return fmt.Errorf("%s did not listen on %s:\n%s", p.Name, addr, p.Tail(3000))
	}
	return nil
}

// cpuSeconds is the user+system CPU time a process has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// cpuMeter measures how many cores each process used over an interval.
type cpuMeter struct {
	pids  map[string]int
	start map[string]float64
	at    time.Time
}

func (b *bench) newCPUMeter() *cpuMeter {
	m := &cpuMeter{pids: map[string]int{"bench (loadgen + receiver)": os.Getpid()}, start: map[string]float64{}, at: time.Now()}
	for _, s := range []string{"kafka", "ingest", "fanout", "delivery", "sink", "api"} {
		if p := b.st.Proc(s); p != nil {
			m.pids[s] = p.PID()
		}
	}
	if b.opts.ClickHouseDir != "" {
		if raw, err := os.ReadFile(filepath.Join(b.opts.ClickHouseDir, "pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
				m.pids["clickhouse"] = pid
			}
		}
	}
	for name, pid := range m.pids {
		if s, err := cpuSeconds(pid); err == nil {
			m.start[name] = s
		}
	}
	return m
}

// cores is each process's CPU use since the meter started, in cores.
func (m *cpuMeter) cores() map[string]float64 {
	el := time.Since(m.at).Seconds()
	out := map[string]float64{}
	for name, pid := range m.pids {
		if s, err := cpuSeconds(pid); err == nil {
			// Three decimals: at 400 events/s a hundredth of a core is 25 µs per event.
			out[name] = round3((s - m.start[name]) / el)
		}
	}
	return out
}

// lagSampler reads consumer-group lag with kadm.
type lagSampler struct {
	cl  *kgo.Client
	adm *kadm.Client
}

func newLagSampler(brokers []string) (*lagSampler, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, fmt.Errorf("creating the admin client: %w", err)
	}
	return &lagSampler{cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (l *lagSampler) close() { l.cl.Close() }

// lag is each group's total lag on each topic it consumes: group → topic → records.
func (l *lagSampler) lag(ctx context.Context, groups ...string) (map[string]map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ls, err := l.adm.Lag(ctx, groups...)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]int64{}
	ls.Each(func(g kadm.DescribedGroupLag) {
		out[g.Group] = map[string]int64{}
		for t, tl := range g.Lag.TotalByTopic() {
			out[g.Group][t] = tl.Lag
		}
	})
	return out, ls.Error()
}

// attemptRows counts the attempt rows ClickHouse holds for this run.
type attemptRows struct {
	conn clickhouse.Conn
}

func openAttemptRows(addr, db string) (*attemptRows, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db},
		DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("connecting to ClickHouse at %s: %w", addr, err)
	}
	return &attemptRows{conn: conn}, nil
}

func (a *attemptRows) count(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n uint64
	if err := a.conn.QueryRow(ctx, "SELECT count() FROM delivery_attempts").Scan(&n); err != nil {
		return 0, fmt.Errorf("counting attempt rows: %w", err)
	}
	return n, nil
}

func (a *attemptRows) close() { _ = a.conn.Close() }

func dropDatabase(addr, db string) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
}

// cpuProfile fetches a CPU profile of seconds from a service's profiler into path.
func cpuProfile(ctx context.Context, addr string, seconds int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+15)*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// pprofTop renders the top n functions of a profile with `go tool pprof`.
func pprofTop(ctx context.Context, binary, profile string, n int, cum bool) (string, error) {
	args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n)}
	if cum {
		args = append(args, "-cum")
	}
	out, err := exec.CommandContext(ctx, "go", append(args, binary, profile)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %w: %s", err, out)
	}
	return string(out), nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
