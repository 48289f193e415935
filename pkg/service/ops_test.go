package service

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/config"
)

func TestReadinessIsReadyOnlyWhenEveryConditionIsMetAndNotWhileDraining(t *testing.T) {
	r := NewReadiness()
	require.EqualError(t, r.Check(), "starting", "not ready before the service said what it waits for")
	group := r.Wait("group deliveries joined")
	webhooks := r.Wait("webhooks caught up")
	require.EqualError(t, r.Check(), "waiting for: group deliveries joined, webhooks caught up")
	webhooks()
	webhooks() // idempotent
	require.EqualError(t, r.Check(), "waiting for: group deliveries joined")
	group()
	require.NoError(t, r.Check())
	r.Drain()
	require.EqualError(t, r.Check(), "shutting down")

	var none *Readiness
	none.Wait("x")()
	none.Drain()
	require.NoError(t, none.Check(), "a nil readiness is always ready")
}

func TestOpsAddrDefaultsToLoopbackAndRefusesNonsense(t *testing.T) {
	for _, c := range []struct {
		set      bool
		value    string
		want     string
		errorHas string
	}{
		{set: false, want: DefaultOpsAddr},
		{set: true, value: ":9464", want: ":9464"},
		{set: true, value: "127.0.0.1:0", want: "127.0.0.1:0"},
		{set: true, value: "off", want: ""},
		{set: true, value: "", want: ""},
		{set: true, value: "9464", errorHas: OpsAddrEnv},
		{set: true, value: "localhost:", errorHas: OpsAddrEnv},
	} {
		if c.set {
			t.Setenv(OpsAddrEnv, c.value)
		} else {
			t.Setenv(OpsAddrEnv, "x") // make t restore it, then unset for this case
			unsetenv(t, OpsAddrEnv)
		}
		got, err := opsAddr(config.Environ())
		if c.errorHas != "" {
			require.ErrorContains(t, err, c.errorHas, "value %q", c.value)
			continue
		}
		require.NoError(t, err, "value %q", c.value)
		require.Equal(t, c.want, got, "value %q", c.value)
	}
}
