package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/signature"
)

// runBaseline measures the machine's limit for this work: a bare Go client POSTing the body the
// pipeline delivers, signed both ways like the delivery service signs it, to the same receiver at
// the delivery service's per-endpoint concurrency, for the same window.
func (b *bench) runBaseline(ctx context.Context) error {
	body := bytes.Clone(b.tp.ep.SampleBody())
	if len(body) == 0 {
		return errors.New("no delivered body to size the baseline's requests on")
	}
	key, err := signature.Key(b.secret)
	if err != nil {
		return fmt.Errorf("baseline signing key: %w", err)
	}
	conc := b.opts.Concurrency
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * conc,
		MaxIdleConnsPerHost: 2 * conc,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := b.rx.URL() + "/" + b.baseline.Name

	var (
		stop   atomic.Bool
		failed atomic.Int64
		seq    atomic.Int64
		wg     sync.WaitGroup
	)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && ctx.Err() == nil {
				id := "msg_baseline_" + strconv.FormatInt(seq.Add(1), 10)
				now := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				h := req.Header
				h.Set("Content-Type", "application/json")
				h.Set("User-Agent", "surveyhooks-bench/1")
				h.Set(signature.HeaderID, id)
				h.Set(signature.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
				h.Set(signature.HeaderSignature, signature.Standard(id, now, body, [][]byte{key}))
				h.Set(signature.HeaderAskUsers, signature.AskUsers(body, b.secret))
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					failed.Add(1)
				}
			}
		}()
	}
	sleep(ctx, b.opts.Warmup)
	r0, t0, c0 := b.baseline.Received(), time.Now(), selfCPU()
	sleep(ctx, b.opts.Window)
	r1, t1, c1 := b.baseline.Received(), time.Now(), selfCPU()
	stop.Store(true)
	wg.Wait()
	b.res.BaselineRPS = round2(float64(r1-r0) / t1.Sub(t0).Seconds())
	if r1 > r0 {
		b.res.Costs.BaselineMicrosPerPost = round2((c1 - c0) * 1e6 / float64(r1-r0))
	}
	if n := failed.Load(); n > 0 {
		b.res.note("baseline: %d requests failed", n)
	}
	b.say("baseline: %.0f requests/s at concurrency %d", b.res.BaselineRPS, conc)
	return nil
}
