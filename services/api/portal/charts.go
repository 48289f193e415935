package portal

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/services/api/apiv1"
)

// Charts are drawn here, as SVG shapes with computed coordinates, from the API's statistics
// (the hourly rollup): no chart library, nothing for the browser to run, and a table of the same
// figures beside each chart for screen readers.

const (
	chartW, chartH = 640.0, 180.0
	padL, padB     = 48.0, 22.0
	padT, padR     = 8.0, 8.0
)

type rect struct{ X, Y, W, H float64 }

type tick struct {
	X, Y  float64
	Label string
}

type barChart struct {
	Success, Failed []rect
	YTicks, XTicks  []tick
	Max             uint64
}

type lineChart struct {
	P50, P99       string // polyline points
	P50Dots        []tick
	P99Dots        []tick
	YTicks, XTicks []tick
}

type chartRow struct {
	Start                string
	Count, Success, Fail uint64
	P50, P99             string
	HasLatency           bool
	Rate                 string
}

type charts struct {
	Outcomes barChart
	Latency  lineChart
	Rows     []chartRow
	Range    string
	Empty    bool
}

// charts reads one webhook's statistics over 24 hours in hours (step "1h") or 30 days in days ("1d").
func (p *Portal) charts(r *http.Request, s *session, id, step string) (*charts, error) {
	now := p.cfg.Now().UTC()
	from, rng := now.Add(-24*time.Hour), "last 24 hours, by hour"
	if step == "1d" {
		from, rng = now.Add(-30*24*time.Hour), "last 30 days, by day"
	}
	var st apiv1.Stats
	target := query("/v1/webhooks/"+url.PathEscape(id)+"/stats", "from", from.Format(time.RFC3339), "to",
		now.Format(time.RFC3339), "step", step)
	if err := p.call(r, s, "GET", target, nil, &st); err != nil {
		return nil, err
	}
	return drawCharts(st.Data, step, rng), nil
}

func drawCharts(data []attemptlog.StatsBucket, step, rng string) *charts {
	c := &charts{Range: rng, Empty: true}
	n := len(data)
	if n == 0 {
		return c
	}
	plotW, plotH := chartW-padL-padR, chartH-padT-padB
	slot := plotW / float64(n)
	var maxCount uint64
	var maxMs float64
	for _, b := range data {
		maxCount = max(maxCount, b.Count)
		if b.Count > 0 {
			maxMs = max(maxMs, b.P99Ms)
			c.Empty = false
		}
	}
	maxCount = niceCount(maxCount)
	maxMs = niceMs(maxMs)
	c.Outcomes.Max = maxCount
	y := func(v, top float64) float64 { return padT + plotH - plotH*v/top }
	var p50, p99 []string
	labelEvery := max(1, n/6)
	for i, b := range data {
		x := padL + float64(i)*slot
		bw := max(slot*0.7, 1)
		failed := b.Count - min(b.Success, b.Count)
		hs := plotH * float64(b.Success) / float64(maxCount)
		hf := plotH * float64(failed) / float64(maxCount)
		if b.Success > 0 {
			c.Outcomes.Success = append(c.Outcomes.Success, rect{x + (slot-bw)/2, padT + plotH - hs, bw, hs})
		}
		if failed > 0 {
			c.Outcomes.Failed = append(c.Outcomes.Failed, rect{x + (slot-bw)/2, padT + plotH - hs - hf, bw, hf})
		}
		cx := x + slot/2
		row := chartRow{Start: bucketLabel(b.Start, step), Count: b.Count, Success: b.Success, Fail: failed}
		if b.Count > 0 {
			row.HasLatency, row.P50, row.P99 = true, ms(b.P50Ms), ms(b.P99Ms)
			row.Rate = fmt.Sprintf("%.1f%%", 100*float64(b.Success)/float64(b.Count))
			p50 = append(p50, fmt.Sprintf("%.1f,%.1f", cx, y(b.P50Ms, maxMs)))
			p99 = append(p99, fmt.Sprintf("%.1f,%.1f", cx, y(b.P99Ms, maxMs)))
			c.Latency.P50Dots = append(c.Latency.P50Dots, tick{X: cx, Y: y(b.P50Ms, maxMs)})
			c.Latency.P99Dots = append(c.Latency.P99Dots, tick{X: cx, Y: y(b.P99Ms, maxMs)})
		}
		c.Rows = append(c.Rows, row)
		if i%labelEvery == 0 {
			t := tick{X: cx, Y: chartH - 6, Label: bucketLabel(b.Start, step)}
			c.Outcomes.XTicks = append(c.Outcomes.XTicks, t)
			c.Latency.XTicks = append(c.Latency.XTicks, t)
		}
	}
	c.Latency.P50, c.Latency.P99 = strings.Join(p50, " "), strings.Join(p99, " ")
	for i := 0; i <= 4; i++ {
		f := float64(i) / 4
		c.Outcomes.YTicks = append(c.Outcomes.YTicks, tick{X: padL - 6, Y: y(f, 1), Label: fmt.Sprintf("%.0f", f*float64(maxCount))})
		c.Latency.YTicks = append(c.Latency.YTicks, tick{X: padL - 6, Y: y(f, 1), Label: ms(f * maxMs)})
	}
	return c
}

func bucketLabel(t time.Time, step string) string {
	if step == "1d" {
		return t.UTC().Format("Jan 2")
	}
	return t.UTC().Format("15:04")
}

// niceCount rounds a maximum up to a value whose quarters are whole numbers.
func niceCount(v uint64) uint64 {
	for _, n := range []uint64{4, 8, 20, 40, 100, 200, 400, 1000, 2000, 4000, 10000, 20000, 40000, 100000} {
		if v <= n {
			return n
		}
	}
	return (v/100000 + 1) * 100000
}

func niceMs(v float64) float64 {
	for _, n := range []float64{4, 10, 20, 40, 100, 200, 400, 1000, 2000, 4000, 10000, 20000, 40000} {
		if v <= n {
			return n
		}
	}
	return 60000
}
