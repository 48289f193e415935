package sink

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/config"
)

func TestRetentionSettingsAreBoundedByThePlatformMaximum(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string // the variable the error names; "" when valid
	}{
		{map[string]string{}, ""},
		{map[string]string{"SINK_PROJECT_RETENTION": "prj_a=7,prj_b=90"}, ""},
		{map[string]string{"SINK_PROJECT_RETENTION": "prj_a=91"}, "SINK_PROJECT_RETENTION"},
		{map[string]string{"SINK_PROJECT_RETENTION": "prj_a=0"}, "SINK_PROJECT_RETENTION"},
		{map[string]string{"SINK_RETENTION_DAYS": "120"}, "SINK_RETENTION_DAYS"},
		{map[string]string{"SINK_RETENTION_DAYS": "120", "SINK_MAX_RETENTION_DAYS": "365"}, ""},
		{map[string]string{"SINK_MAX_RETENTION_DAYS": "0"}, "SINK_MAX_RETENTION_DAYS"},
	} {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		var cfg Config
		err := config.Load(&cfg) // which validates
		if err == nil {
			err = cfg.Validate()
		}
		if c.want == "" {
			require.NoError(t, err, c.env)
		} else {
			require.ErrorContains(t, err, c.want, c.env)
		}
		for k := range c.env {
			t.Setenv(k, "")
		}
	}
	t.Setenv("SINK_PROJECT_RETENTION", "prj_a=7")
	var cfg Config
	require.NoError(t, config.Load(&cfg))
	r := cfg.retention()
	require.Equal(t, uint16(7), r.Days("prj_a"))
	require.Equal(t, uint16(30), r.Days("prj_other"))
}
