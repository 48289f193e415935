package fanout

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry/telemetrytest"
)

func TestFanoutTotalsAreServedByResult(t *testing.T) {
	tel := telemetrytest.Setup(t, "fanout")
	m, err := NewMetrics(tel)
	require.NoError(t, err)
	var s Stats
	s.Events.Add(3)
	s.Deliveries.Add(5)
	s.Filtered.Add(2)
	s.FilterErrs.Add(1)
	unregister, err := m.ObserveTotals(s.byResult)
	require.NoError(t, err)

	fams := telemetrytest.Scrape(t, tel)
	for result, want := range map[string]float64{"events": 3, "deliveries": 5, "filtered": 1, "filter_error": 1, "unmatched": 0} {
		require.Equal(t, want, telemetrytest.Value(t, fams, "surveyhooks_fanout_total", map[string]string{"result": result}), result)
	}
	require.NoError(t, unregister())
	require.NotContains(t, telemetrytest.Scrape(t, tel), "surveyhooks_fanout_total", "unregistered")

	var none *Metrics // without telemetry: records nothing, never panics
	un, err := none.ObserveTotals(s.byResult)
	require.NoError(t, err)
	require.NoError(t, un())
}
