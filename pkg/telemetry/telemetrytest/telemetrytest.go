// Package telemetrytest reads what a telemetry.Telemetry serves on /metrics, for the services'
// metrics tests. Test code only: nothing in a service imports it.
package telemetrytest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// Setup is a Telemetry for one test (no globals, no exporter), shut down by t.Cleanup.
func Setup(t testing.TB, service string) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), service, telemetry.WithoutGlobals())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// Scrape collects tel's metrics as Prometheus serves them, by family name.
func Scrape(t testing.TB, tel *telemetry.Telemetry) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return Parse(t, rec.Body.String())
}

// Parse reads a Prometheus text exposition, by family name.
func Parse(t testing.TB, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	return fams
}

// Value returns the value of the series of family name whose labels include want: a counter's
// or gauge's value, a histogram's sample count.
func Value(t testing.TB, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	fam, ok := fams[name]
	require.True(t, ok, "metric family %s not served", name)
next:
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got, ok := labels[k]; !(ok || v == "") || got != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no series of %s with labels %v", name, want)
	return 0
}
