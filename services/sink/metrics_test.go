package sink

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry/telemetrytest"
)

func TestSinkInstrumentsAreServedUnderTheirPrometheusNames(t *testing.T) {
	tel := telemetrytest.Setup(t, "sink")
	m, err := NewMetrics(tel)
	require.NoError(t, err)
	m.Batch(context.Background(), 250, 40*time.Millisecond)

	fams := telemetrytest.Scrape(t, tel)
	require.Equal(t, 1.0, telemetrytest.Value(t, fams, "surveyhooks_sink_batch_rows", nil), "histogram count")
	require.Equal(t, 1.0, telemetrytest.Value(t, fams, "surveyhooks_sink_batch_seconds", nil), "histogram count")

	var none *Metrics // without telemetry: records nothing, never panics
	none.Batch(context.Background(), 1, time.Second)
	none, err = NewMetrics(nil)
	require.NoError(t, err)
	require.Nil(t, none)
}
