package deploy

import (
	"encoding"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/services/api"
	"github.com/surveyhooks/surveyhooks/services/delivery"
	"github.com/surveyhooks/surveyhooks/services/fanout"
	"github.com/surveyhooks/surveyhooks/services/ingest"
	"github.com/surveyhooks/surveyhooks/services/sink"
)

// repoRoot is where docker-compose.yml and the Dockerfile live.
const repoRoot = ".."

// services are the binaries that are deployed, each with a fresh pointer to its Config.
var services = map[string]func() any{
	"ingest":   func() any { return &ingest.Config{} },
	"fanout":   func() any { return &fanout.Config{} },
	"delivery": func() any { return &delivery.Config{} },
	"sink":     func() any { return &sink.Config{} },
	"api":      func() any { return &api.Config{} },
}

func serviceNames() []string {
	names := make([]string, 0, len(services))
	for n := range services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// readByLibraries reports whether a variable is read outside the service's Config: the OTel SDK
// (OTEL_*), pkg/logging (SURVEYHOOKS_LOG_LEVEL), the ops server (SURVEYHOOKS_OPS_ADDR) and
// pkg/service's profiler switch (SURVEYHOOKS_PPROF_ADDR).
func readByLibraries(name string) bool {
	switch name {
	case "SURVEYHOOKS_OPS_ADDR", "SURVEYHOOKS_LOG_LEVEL", "SURVEYHOOKS_PPROF_ADDR":
		return true
	}
	return strings.HasPrefix(name, "OTEL_")
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// acceptedEnv lists the variables a Config accepts, walking its `env:"…"` tags the way
// caarlos0/env does (nested structs, envPrefix), with each one's envDefault.
func acceptedEnv(cfg any) map[string]string {
	out := map[string]string{}
	walkEnv(reflect.TypeOf(cfg), "", out)
	return out
}

func walkEnv(t reflect.Type, prefix string, out map[string]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		leaf := ft.Kind() != reflect.Struct || reflect.PointerTo(ft).Implements(textUnmarshaler)
		if !leaf {
			walkEnv(ft, prefix+f.Tag.Get("envPrefix"), out)
			continue
		}
		if name != "" {
			out[prefix+name] = f.Tag.Get("envDefault")
		}
	}
}

// checkEnvAccepted fails for every variable in set that the service's Config does not read.
func checkEnvAccepted(t *testing.T, where, service string, set map[string]string) {
	t.Helper()
	newCfg, ok := services[service]
	require.True(t, ok, "%s: unknown service %q", where, service)
	accepted := acceptedEnv(newCfg())
	require.NotEmpty(t, accepted, "%s: %s.Config has no env tags", where, service)
	for name := range set {
		if readByLibraries(name) {
			continue
		}
		_, ok := accepted[name]
		require.True(t, ok, "%s sets %s for %s, but %s.Config does not read it (accepted: %s)",
			where, name, service, service, strings.Join(sortedKeys(accepted), " "))
	}
}

// checkEnvValid parses set into the service's Config exactly as the binary would (defaults for
// everything unset) and runs its Validate.
func checkEnvValid(t *testing.T, where, service string, set map[string]string) any {
	t.Helper()
	cfg := services[service]()
	require.NoError(t, env.ParseWithOptions(cfg, env.Options{Environment: set}), "%s: %s", where, service)
	if v, ok := cfg.(interface{ Validate() error }); ok {
		require.NoError(t, v.Validate(), "%s: the environment of %s does not pass its Config.Validate", where, service)
	}
	return cfg
}

// effective is the value a service sees for a variable: what set gives, else the Config default.
func effective(service string, set map[string]string, name string) string {
	if v, ok := set[name]; ok {
		return v
	}
	return acceptedEnv(services[service]())[name]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var interpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate resolves compose's ${VAR}, ${VAR:-default}, ${VAR-default} and $$ as `make up` in
// an empty shell environment would: every variable unset, so defaults apply.
func interpolate(s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := interpolation.FindStringSubmatch(m)
		return sub[3] // the default, or "" when there is none
	})
}

func TestInterpolationUsesComposeDefaults(t *testing.T) {
	require.Equal(t, "kafka:9092", interpolate("${BROKERS:-kafka:9092}"))
	require.Equal(t, "", interpolate("${ALLOW:-}"))
	require.Equal(t, "x", interpolate("${A-x}"))
	require.Equal(t, "a$b", interpolate("a$$b"))
	require.Equal(t, "", interpolate("$UNSET"))
}

func TestAcceptedEnvFollowsNestedStructsAndPrefixes(t *testing.T) {
	type inner struct {
		A string `env:"A" envDefault:"a"`
	}
	type cfg struct {
		Plain  string `env:"PLAIN,required"`
		Nested inner
		Pref   inner `envPrefix:"P_"`
		hidden string
	}
	got := acceptedEnv(&cfg{})
	require.Equal(t, map[string]string{"PLAIN": "", "A": "a", "P_A": "a"}, got)
}

func TestEveryServiceConfigReadsKafkaSettings(t *testing.T) {
	for _, name := range serviceNames() {
		accepted := acceptedEnv(services[name]())
		require.Contains(t, accepted, "KAFKA_BROKERS", "%s.Config embeds kafka.Config", name)
		require.Contains(t, accepted, "TOPIC_DELIVERIES", name)
	}
}

func fileExists(t *testing.T, path string) {
	t.Helper()
	_, err := os.Stat(path)
	require.NoError(t, err, "%s must exist", path)
}

func readFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(parts...))
	require.NoError(t, err)
	return b
}
