package config_test

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/config"
)

type sample struct {
	Brokers []string      `env:"KAFKA_BROKERS" envSeparator:"," envDefault:"127.0.0.1:9092"`
	Timeout time.Duration `env:"DELIVERY_TIMEOUT" envDefault:"30s"`
}

func TestFlagsSetTheVariableTheyNameAndWin(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "from-env:9092")
	t.Setenv("DELIVERY_TIMEOUT", "")
	t.Setenv("SURVEYHOOKS_LOG_LEVEL", "")
	vars, err := config.Vars(&sample{})
	require.NoError(t, err)
	require.Equal(t, []config.Var{
		{Name: "KAFKA_BROKERS", Flag: "--kafka-brokers", Default: "127.0.0.1:9092"},
		{Name: "DELIVERY_TIMEOUT", Flag: "--delivery-timeout", Default: "30s"},
	}, vars)

	environ := config.Environ()
	require.NoError(t, config.ApplyFlags(environ, []string{"--kafka-brokers=a:1,b:2", "-delivery-timeout", "5s",
		"--surveyhooks-log-level=debug"}, vars, "SURVEYHOOKS_LOG_LEVEL"))
	var cfg sample
	require.NoError(t, config.LoadEnv(&cfg, environ))
	require.Equal(t, []string{"a:1", "b:2"}, cfg.Brokers, "the flag wins over the variable")
	require.Equal(t, 5*time.Second, cfg.Timeout)
	require.Equal(t, "debug", environ.Get("SURVEYHOOKS_LOG_LEVEL"))
	require.Equal(t, "from-env:9092", os.Getenv("KAFKA_BROKERS"), "flags never write the process environment")
	require.Empty(t, os.Getenv("SURVEYHOOKS_LOG_LEVEL"))

	var fromProcess sample
	require.NoError(t, config.Load(&fromProcess))
	require.Equal(t, []string{"from-env:9092"}, fromProcess.Brokers, "Load reads the process environment")
}

func TestBadFlagsAreRefusedNamingTheFlag(t *testing.T) {
	vars, err := config.Vars(&sample{})
	require.NoError(t, err)
	for args, want := range map[string][]string{
		"unknown flag --kafka-broker":           {"--kafka-broker=x"},
		"flag --delivery-timeout needs a value": {"--delivery-timeout"},
		`unexpected argument "serve"`:           {"serve"},
	} {
		require.ErrorContains(t, config.ApplyFlags(config.Env{}, want, vars), args)
	}
	t.Setenv("DELIVERY_TIMEOUT", "soon")
	require.ErrorContains(t, config.Load(&sample{}), "DELIVERY_TIMEOUT", "a bad value names its variable")
	require.ErrorContains(t, config.LoadEnv(&sample{}, config.Env{"DELIVERY_TIMEOUT": "later"}), `DELIVERY_TIMEOUT="later"`,
		"a bad value from an Env names its variable too")
}

func TestSetDefaultFillsOnlyUnsetOrEmptyVariables(t *testing.T) {
	e := config.Env{"A": "set", "B": ""}
	require.False(t, e.SetDefault("A", "x"))
	require.True(t, e.SetDefault("B", "y"))
	require.True(t, e.SetDefault("C", "z"))
	require.Equal(t, config.Env{"A": "set", "B": "y", "C": "z"}, e)
	var cfg sample
	require.NoError(t, config.LoadEnv(&cfg, config.Env{}))
	require.Equal(t, 30*time.Second, cfg.Timeout, "an empty Env gives the defaults")
}
