package delivery

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/config"
)

// TestHealthPolicy is the auto-disable policy of docs/operations.md, row by row.
func TestHealthPolicy(t *testing.T) {
	pol := healthPolicy{NotifyAfter: 3, DisableAfter: time.Hour, DisableAfterFailures: 5}
	const t0 = int64(1_000_000)
	failing := func(n int32) healthState { return healthState{FailingSinceMs: t0, Failures: n} }
	cases := []struct {
		name    string
		pol     healthPolicy
		st      healthState
		success bool
		now     int64
		want    healthChange
	}{
		{"a success while healthy changes nothing", pol, healthState{}, true, t0, healthChange{}},
		{"a first failure starts the streak, in memory only", pol, healthState{}, false, t0,
			healthChange{State: failing(1)}},
		{"the streak keeps its start", pol, failing(1), false, t0 + 10, healthChange{State: failing(2)}},
		{"the Nth failure in a row reports webhook.failing and is persisted", pol, failing(2), false, t0 + 20,
			healthChange{State: failing(3), Persist: true, Events: []string{"webhook.failing"}}},
		{"past N: reported once", pol, failing(3), false, t0 + 30, healthChange{State: failing(4)}},
		{"a success before N ends the streak quietly", pol, failing(2), true, t0 + 40, healthChange{}},
		{"the first success after webhook.failing reports webhook.recovered", pol, failing(4), true, t0 + 40,
			healthChange{Persist: true, Events: []string{"webhook.recovered"}}},
		{"DISABLE_AFTER_FAILURES in a row disable it", pol, failing(4), false, t0 + 50,
			healthChange{State: healthState{FailingSinceMs: t0, Failures: 5, Disabled: true}, Persist: true, Disable: true,
				Events: []string{"webhook.disabled"}}},
		{"failing for DISABLE_AFTER disables it", pol, failing(3), false, t0 + time.Hour.Milliseconds(),
			healthChange{State: healthState{FailingSinceMs: t0, Failures: 4, Disabled: true}, Persist: true, Disable: true,
				Events: []string{"webhook.disabled"}}},
		{"disabled by time before N: webhook.failing comes first", pol, failing(1), false, t0 + 2*time.Hour.Milliseconds(),
			healthChange{State: healthState{FailingSinceMs: t0, Failures: 2, Disabled: true}, Persist: true, Disable: true,
				Events: []string{"webhook.failing", "webhook.disabled"}}},
		{"once disabled, nothing more", pol, healthState{FailingSinceMs: t0, Failures: 5, Disabled: true}, false, t0 + 60,
			healthChange{State: healthState{FailingSinceMs: t0, Failures: 5, Disabled: true}}},
		{"0 never disables by count nor time", healthPolicy{NotifyAfter: 3}, failing(1000), false, t0 + 1e10,
			healthChange{State: failing(1001)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, judgeHealth(c.pol, c.st, c.success, c.now))
		})
	}
}

func TestHealthSettingsAreValidated(t *testing.T) {
	var base Config
	require.NoError(t, config.Defaults(&base))
	base.EncryptionKey = base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, c := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"notify", func(c *Config) { c.FailingNotifyAfter = 0 }, "DELIVERY_FAILING_NOTIFY_AFTER"},
		{"span", func(c *Config) { c.DisableAfter = -time.Second }, "DELIVERY_DISABLE_AFTER"},
		{"count", func(c *Config) { c.DisableAfterFailures = -1 }, "DELIVERY_DISABLE_AFTER_FAILURES"},
		{"order", func(c *Config) { c.FailingNotifyAfter, c.DisableAfterFailures = 20, 10 }, "DELIVERY_DISABLE_AFTER_FAILURES (10)"},
	} {
		cfg := base
		c.set(&cfg)
		err := cfg.Validate()
		require.Error(t, err, c.name)
		require.Contains(t, err.Error(), c.want)
	}
	require.NoError(t, base.Validate())
}
