package delivery

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

func TestDeliveryInstrumentsAreServedUnderTheirPrometheusNames(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), "delivery", telemetry.WithoutGlobals())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	m, err := NewMetrics(tel)
	require.NoError(t, err)
	ctx := context.Background()
	m.Done(ctx, "success", 120*time.Millisecond)
	m.Done(ctx, "success", 80*time.Millisecond)
	m.Done(ctx, "http_retryable", 30*time.Second)
	m.Held(3)
	m.Held(-1)
	m.MovedAside(ctx, false)
	m.MovedAside(ctx, true)
	m.MovedAside(ctx, true)
	unregisterOrdering, err := m.ObserveOrdering(func() OrderingState { return OrderingState{HeldKeys: 2, Waiting: 5, Parked: 9} })
	require.NoError(t, err)
	defer func() { _ = unregisterOrdering() }()
	unregister, err := m.ObserveTiers(func() []TierState {
		return []TierState{{Tier: "1m", Depth: 7, OldestAge: 90 * time.Second}, {Tier: "5m"}}
	})
	require.NoError(t, err)
	defer func() { _ = unregister() }()

	w := httptest.NewRecorder()
	tel.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	// value is the value of the series of family name whose labels include every one of labels.
	value := func(name string, labels ...string) string {
		for l := range strings.Lines(body) {
			if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
				continue
			}
			all := true
			for _, lb := range labels {
				all = all && strings.Contains(l, lb)
			}
			if all {
				return strings.Fields(l[strings.LastIndexByte(l, '}')+1:])[0]
			}
		}
		return "absent"
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   string
	}{
		{"surveyhooks_deliveries_total", []string{`outcome="success"`}, "2"},
		{"surveyhooks_deliveries_total", []string{`outcome="http_retryable"`}, "1"},
		{"surveyhooks_delivery_latency_seconds_count", []string{`outcome="success"`}, "2"},
		{"surveyhooks_deliveries_in_flight", nil, "2"},
		{"surveyhooks_deliveries_moved_aside_total", []string{`by="endpoint"`}, "1"},
		{"surveyhooks_deliveries_moved_aside_total", []string{`by="project"`}, "2"},
		{"surveyhooks_ordering_held_keys", nil, "2"},
		{"surveyhooks_ordering_waiting", []string{`where="memory"`}, "5"},
		{"surveyhooks_ordering_waiting", []string{`where="parked"`}, "9"},
		{"surveyhooks_retry_tier_depth", []string{`tier="1m"`}, "7"},
		{"surveyhooks_retry_tier_depth", []string{`tier="5m"`}, "0"},
		{"surveyhooks_retry_tier_oldest_age_seconds", []string{`tier="1m"`}, "90"},
	} {
		require.Equal(t, c.want, value(c.name, c.labels...), "%s %v", c.name, c.labels)
	}

	var none *Metrics // without telemetry: records nothing, never panics
	none.Done(ctx, "success", time.Second)
	none.Held(1)
	none.MovedAside(ctx, true)
	uo, err := none.ObserveOrdering(func() OrderingState { return OrderingState{} })
	require.NoError(t, err)
	require.NoError(t, uo())
	un, err := none.ObserveTiers(func() []TierState { return nil })
	require.NoError(t, err)
	require.NoError(t, un())
}
