package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
)

// HTTPIngest is the HTTP path as producers use it: 50 concurrent producers POSTing one event each
// to ingest, closed loop, one webhook per event.
type HTTPIngest struct {
	Producers   int     `json:"producers"`
	AcceptedPS  float64 `json:"accepted_per_s"`  // 202s per second
	DeliveredPS float64 `json:"delivered_per_s"` // deliveries per second at the receiver
	Ratio       float64 `json:"ratio"`           // delivered_per_s / baseline_rps (goal ≥ 0.4)
	Failed      int64   `json:"failed_requests"`
	// CPUMicrosPerEventAt400 is every pipeline process's CPU (services, broker, ClickHouse) per
	// delivered event at a steady 400 HTTP events/s (goal ≤ 300).
	CPUMicrosPerEventAt400 float64            `json:"cpu_us_per_event_at_400"`
	CoresAt400             map[string]float64 `json:"cpu_cores_at_400"`
	// IdleCores is each process's CPU with nothing sent, measured just before: the part of the
	// cost at 400/s that does not follow the load.
	IdleCores        map[string]float64 `json:"cpu_cores_idle"`
	DeliveredPSAt400 float64            `json:"delivered_per_s_at_400"`
}

const httpProducers = 50

// httpPoster posts single events to ingest with a keep-alive client, like a producer's backend.
type httpPoster struct {
	url, key string
	client   *http.Client
	seq      atomic.Int64
	tag      string
	failed   atomic.Int64
	accepted atomic.Int64
}

func (b *bench) newHTTPPoster(t target, tag string) *httpPoster {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * httpProducers,
		MaxIdleConnsPerHost: 2 * httpProducers,
		IdleConnTimeout:     90 * time.Second,
	}
	return &httpPoster{url: b.ingestURL + "/v1/events", key: t.p.APIKey, tag: b.runID + "-" + tag,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (h *httpPoster) post(ctx context.Context, projectID string) {
	i := h.seq.Add(1)
	ev := produce.Event{ProjectID: projectID, EventID: "bench-" + h.tag + "-" + strconv.FormatInt(i, 10),
		UserID: "user-" + strconv.FormatInt(i%1000, 10), Score: int(i % 11), SentAt: time.Now()}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(ev.JSON()))
	req.Header.Set("Authorization", "Bearer "+h.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			h.failed.Add(1)
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		h.accepted.Add(1)
	} else {
		h.failed.Add(1)
	}
}

func (h *httpPoster) close() { h.client.CloseIdleConnections() }

// runHTTPIngest: 50 producers, each POSTing one event and waiting for the answer before the next.
func (b *bench) runHTTPIngest(ctx context.Context) error {
	t := b.httpT
	eps := []*hooktest.Endpoint{t.ep}
	base := received(eps)
	h := b.newHTTPPoster(t, "http")
	defer h.close()
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range httpProducers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pctx.Err() == nil {
				h.post(pctx, t.p.ID)
			}
		}()
	}
	sleep(ctx, b.opts.Warmup)
	a0, r0, t0 := h.accepted.Load(), received(eps), time.Now()
	sleep(ctx, b.opts.Window)
	a1, r1, t1 := h.accepted.Load(), received(eps), time.Now()
	cancel()
	wg.Wait()
	el := t1.Sub(t0).Seconds()
	hi := &b.res.HTTPIngest
	hi.Producers = httpProducers
	hi.AcceptedPS = round2(float64(a1-a0) / el)
	hi.DeliveredPS = round2(float64(r1-r0) / el)
	hi.Failed = h.failed.Load()
	if b.res.BaselineRPS > 0 {
		hi.Ratio = round2(hi.DeliveredPS / b.res.BaselineRPS)
	}
	b.say("http_ingest: %.0f accepted/s, %.0f delivered/s (ratio %.2f), %d failed", hi.AcceptedPS, hi.DeliveredPS, hi.Ratio, hi.Failed)
	return b.drain(ctx, eps, base, h.accepted.Load(), 60*time.Second)
}

// runCPUAt400 offers a steady 400 HTTP events/s (open loop, up to 50 requests at once) and
// divides every pipeline process's CPU over the window by the events delivered in it.
func (b *bench) runCPUAt400(ctx context.Context) error {
	const rate = 400
	t := b.httpT
	eps := []*hooktest.Endpoint{t.ep}
	sleep(ctx, 2*time.Second) // what earlier scenarios left settles
	idle := b.newCPUMeter()
	sleep(ctx, 5*time.Second)
	b.res.HTTPIngest.IdleCores = idle.cores()
	base := received(eps)
	h := b.newHTTPPoster(t, "at400")
	defer h.close()
	pctx, cancel := context.WithCancel(ctx)
	slots := make(chan struct{}, httpProducers)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			select {
			case slots <- struct{}{}:
			default:
				continue // 50 requests open already: the pipeline is not keeping up
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.post(pctx, t.p.ID)
				<-slots
			}()
		}
	}()
	sleep(ctx, b.opts.Warmup)
	r0, t0 := received(eps), time.Now()
	cpu := b.newCPUMeter()
	sleep(ctx, b.opts.Window)
	cores := cpu.cores()
	r1, t1 := received(eps), time.Now()
	// Profiles after the window, under the same load, beside throughput's.
	var profiles map[string]string
	if b.opts.ProfileOut != "" {
		profiles = b.profileAll(ctx)
	}
	cancel()
	wg.Wait()
	hi := &b.res.HTTPIngest
	hi.CoresAt400 = cores
	hi.DeliveredPSAt400 = round2(float64(r1-r0) / t1.Sub(t0).Seconds())
	if r1 <= r0 {
		return errors.New("nothing was delivered at 400 events/s")
	}
	var pipeline float64
	for name, n := range cores {
		if name != benchProcess {
			pipeline += n
		}
	}
	hi.CPUMicrosPerEventAt400 = round2(pipeline * 1e6 / hi.DeliveredPSAt400)
	b.res.CPUPerEventAt400 = hi.CPUMicrosPerEventAt400
	b.say("cpu_at_400: %.0f delivered/s, %.2f cores in the pipeline: %.0f µs per event", hi.DeliveredPSAt400, pipeline, hi.CPUMicrosPerEventAt400)
	if len(profiles) > 0 {
		path := filepath.Join(filepath.Dir(b.opts.ProfileOut), "profile-at400.txt")
		header := fmt.Sprintf("# CPU profiles taken right after `cpu_at_400`'s window at the same steady 400 HTTP events/s (%d s each, all services at once), %s\n", profileSeconds, b.res.At) +
			fmt.Sprintf("# %.0f deliveries/s; CPU cores used per process: %v\n", hi.DeliveredPSAt400, cores)
		if err := b.writeProfilesTo(ctx, path, header, profiles); err != nil {
			b.res.note("profile at 400/s: %v", err)
		}
	}
	if err := b.drain(ctx, eps, base, h.accepted.Load(), 60*time.Second); err != nil {
		return fmt.Errorf("after 400/s: %w", err)
	}
	b.profileIdle(ctx)
	return nil
}

// idleProfileSeconds is how long each service is profiled with nothing sent.
const idleProfileSeconds = 5

// profileIdle profiles every service once the pipeline is idle again after cpu_at_400 (not during
// its idle measurement, which the profiler would inflate): what fetch loops, heartbeats, timers
// and metric collection cost with no traffic, in profile-idle.txt beside the others.
func (b *bench) profileIdle(ctx context.Context) {
	if b.opts.ProfileOut == "" {
		return
	}
	sleep(ctx, 2*time.Second)
	profiles := b.profileAllFor(ctx, idleProfileSeconds, "idle-")
	path := filepath.Join(filepath.Dir(b.opts.ProfileOut), "profile-idle.txt")
	header := fmt.Sprintf("# CPU profiles of the idle pipeline after `cpu_at_400` (%d s each, all services at once, nothing sent), %s\n", idleProfileSeconds, b.res.At) +
		fmt.Sprintf("# idle CPU cores per process (before cpu_at_400): %v\n", b.res.HTTPIngest.IdleCores)
	if err := b.writeProfilesTo(ctx, path, header, profiles); err != nil {
		b.res.note("idle profile: %v", err)
	}
}
