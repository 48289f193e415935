package deploy

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// compose is the subset of the Compose specification docker-compose.yml uses. Decoding is
// strict: a key that is not listed here (a typo, or a feature nobody checked) fails the test.
type compose struct {
	Name        string                    `yaml:"name"`
	XServiceEnv map[string]string         `yaml:"x-service-env"`
	XService    map[string]any            `yaml:"x-service"`
	Services    map[string]composeService `yaml:"services"`
	Volumes     map[string]*struct{}      `yaml:"volumes"`
}

type composeService struct {
	Image           string                   `yaml:"image"`
	Build           *composeBuild            `yaml:"build"`
	Command         []string                 `yaml:"command"`
	Environment     map[string]string        `yaml:"environment"`
	Ports           []string                 `yaml:"ports"`
	Volumes         []string                 `yaml:"volumes"`
	DependsOn       dependsOn                `yaml:"depends_on"`
	Healthcheck     *composeHealthcheck      `yaml:"healthcheck"`
	Restart         string                   `yaml:"restart"`
	Ulimits         map[string]composeUlimit `yaml:"ulimits"`
	StopGracePeriod string                   `yaml:"stop_grace_period"`
}

type composeBuild struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Args       map[string]string `yaml:"args"`
}

type composeHealthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

type composeUlimit struct {
	Soft int `yaml:"soft"`
	Hard int `yaml:"hard"`
}

// dependsOn accepts both forms of depends_on: a list of names, or a map of name → condition.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*d)[name] = "service_started"
		}
		return nil
	case yaml.MappingNode:
		for i := 0; i < len(n.Content); i += 2 {
			name, body := n.Content[i].Value, n.Content[i+1]
			var cond struct {
				Condition string `yaml:"condition"`
			}
			dec := yaml.NewDecoder(strings.NewReader(nodeYAML(body)))
			dec.KnownFields(true)
			if err := dec.Decode(&cond); err != nil {
				return fmt.Errorf("depends_on %s: %w", name, err)
			}
			switch cond.Condition {
			case "service_started", "service_healthy", "service_completed_successfully":
			default:
				return fmt.Errorf("depends_on %s: unknown condition %q", name, cond.Condition)
			}
			(*d)[name] = cond.Condition
		}
		return nil
	}
	return fmt.Errorf("depends_on: want a list or a map, line %d", n.Line)
}

func nodeYAML(n *yaml.Node) string {
	b, _ := yaml.Marshal(n)
	return string(b)
}

func strictYAML(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(v))
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	strictYAML(t, readFile(t, repoRoot, "docker-compose.yml"), &c)
	return c
}

// composeEnv is a service's environment after interpolation with an empty shell environment.
func composeEnv(s composeService) map[string]string {
	out := make(map[string]string, len(s.Environment))
	for k, v := range s.Environment {
		out[k] = interpolate(v)
	}
	return out
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err, addr)
	return p
}

func TestComposeRunsEveryServiceFromTheOneDockerfile(t *testing.T) {
	c := loadCompose(t)
	for _, name := range serviceNames() {
		s, ok := c.Services[name]
		require.True(t, ok, "docker-compose.yml has no %s service", name)
		require.NotNil(t, s.Build, "%s is built from source", name)
		require.Equal(t, ".", s.Build.Context, name)
		require.Equal(t, "Dockerfile", s.Build.Dockerfile, name)
		fileExists(t, filepath.Join(repoRoot, s.Build.Context, s.Build.Dockerfile))
		require.Equal(t, name, s.Build.Args["SERVICE"], "%s builds its own binary", name)
		fileExists(t, filepath.Join(repoRoot, "services", name, "cmd", name, "main.go"))
		require.Equal(t, "surveyhooks/"+name+":dev", s.Image, name)
		require.Equal(t, "unless-stopped", s.Restart, name)
	}
}

func TestComposeEnvironmentIsWhatEachServiceAccepts(t *testing.T) {
	c := loadCompose(t)
	for _, name := range serviceNames() {
		set := composeEnv(c.Services[name])
		checkEnvAccepted(t, "docker-compose.yml", name, set)
		checkEnvValid(t, "docker-compose.yml", name, set)

		// Listen addresses must be reachable from other containers, not loopback-only.
		for _, v := range []string{"INGEST_ADDR", "API_ADDR", "SURVEYHOOKS_OPS_ADDR"} {
			if addr, ok := set[v]; ok {
				host, _, err := net.SplitHostPort(addr)
				require.NoError(t, err, "%s %s", name, v)
				require.Empty(t, host, "%s: %s=%s listens on one interface only", name, v, addr)
			}
		}
		require.Contains(t, set, "SURVEYHOOKS_OPS_ADDR", "%s serves /metrics, /healthz, /readyz", name)
	}
}

func TestComposeWiresServicesToTheirDependencies(t *testing.T) {
	c := loadCompose(t)
	for _, name := range serviceNames() {
		s := c.Services[name]
		set := composeEnv(s)
		for dep := range s.DependsOn {
			require.Contains(t, c.Services, dep, "%s depends on an unknown service", name)
		}
		require.Equal(t, "service_healthy", s.DependsOn["kafka"], "%s waits for Kafka to answer", name)
		for _, b := range strings.Split(set["KAFKA_BROKERS"], ",") {
			host, _, err := net.SplitHostPort(b)
			require.NoError(t, err)
			require.Contains(t, c.Services, host, "%s: KAFKA_BROKERS names a compose service", name)
		}
		if addr, ok := set["CLICKHOUSE_ADDR"]; ok {
			host, _, err := net.SplitHostPort(addr)
			require.NoError(t, err)
			require.Contains(t, c.Services, host, name)
			require.Equal(t, "service_healthy", s.DependsOn[host], "%s waits for ClickHouse", name)
		}
		endpoint, err := url.Parse(set["OTEL_EXPORTER_OTLP_ENDPOINT"])
		require.NoError(t, err)
		require.Contains(t, c.Services, endpoint.Hostname(), "%s exports traces to the collector", name)
		require.Equal(t, "http/protobuf", set["OTEL_EXPORTER_OTLP_PROTOCOL"])
		require.Contains(t, s.DependsOn, endpoint.Hostname(), name)
	}
	// Every service reading the same topics must agree on their names and the retry tiers.
	for _, v := range []string{"KAFKA_PARTITIONS", "SURVEYHOOKS_RETRY_SCHEDULE"} {
		want := composeEnv(c.Services["delivery"])[v]
		for _, name := range serviceNames() {
			require.Equal(t, want, composeEnv(c.Services[name])[v], "%s of %s", v, name)
		}
	}
}

func TestComposeInfrastructureIsPinnedAndMountsExistingFiles(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		if s.Build == nil {
			require.Regexp(t, `^[a-z0-9./_-]+:[A-Za-z0-9._-]+$`, s.Image, "%s: image with an explicit tag", name)
			require.NotContains(t, s.Image, ":latest", name)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				fileExists(t, filepath.Join(repoRoot, src))
				continue
			}
			require.Contains(t, c.Volumes, src, "%s mounts an undeclared volume", name)
		}
		for _, p := range s.Ports {
			require.Regexp(t, `^\d+:\d+$`, p, "%s: host:container port", name)
		}
	}
	require.Regexp(t, `^apache/kafka:`, c.Services["kafka"].Image)
	require.Regexp(t, `^clickhouse/clickhouse-server:2[4-9]\.`, c.Services["clickhouse"].Image, "a current ClickHouse")
	require.Equal(t, "broker,controller", c.Services["kafka"].Environment["KAFKA_PROCESS_ROLES"], "KRaft, one node")
	require.Equal(t, "false", c.Services["kafka"].Environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "the services create topics with their own settings")
}

// collector is the subset of the OpenTelemetry collector configuration deploy/otel uses.
type collector struct {
	Receivers struct {
		OTLP struct {
			Protocols struct {
				GRPC struct {
					Endpoint string `yaml:"endpoint"`
				} `yaml:"grpc"`
				HTTP struct {
					Endpoint string `yaml:"endpoint"`
				} `yaml:"http"`
			} `yaml:"protocols"`
		} `yaml:"otlp"`
	} `yaml:"receivers"`
	Processors map[string]map[string]any `yaml:"processors"`
	Exporters  map[string]struct {
		Endpoint string `yaml:"endpoint"`
		TLS      struct {
			Insecure bool `yaml:"insecure"`
		} `yaml:"tls"`
	} `yaml:"exporters"`
	Extensions map[string]struct {
		Endpoint string `yaml:"endpoint"`
	} `yaml:"extensions"`
	Service struct {
		Extensions []string `yaml:"extensions"`
		Pipelines  map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
}

func TestCollectorReceivesOTLPAndForwardsTracesToJaeger(t *testing.T) {
	c := loadCompose(t)
	var col collector
	strictYAML(t, readFile(t, "otel", "collector.yaml"), &col)

	endpoint, err := url.Parse(composeEnv(c.Services["delivery"])["OTEL_EXPORTER_OTLP_ENDPOINT"])
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0:"+endpoint.Port(), col.Receivers.OTLP.Protocols.HTTP.Endpoint,
		"the collector listens where the services send (all interfaces)")

	traces, ok := col.Service.Pipelines["traces"]
	require.True(t, ok, "a traces pipeline")
	require.Equal(t, []string{"otlp"}, traces.Receivers)
	for _, p := range traces.Processors {
		require.Contains(t, col.Processors, p, "pipeline processor %s is defined", p)
	}
	require.NotEmpty(t, traces.Exporters)
	for _, e := range traces.Exporters {
		exp, ok := col.Exporters[e]
		require.True(t, ok, "pipeline exporter %s is defined", e)
		host, _, err := net.SplitHostPort(exp.Endpoint)
		require.NoError(t, err)
		require.Contains(t, c.Services, host, "exporter %s sends to a compose service", e)
		require.Regexp(t, `^jaegertracing/`, c.Services[host].Image, "traces end in the trace viewer")
	}
	for _, e := range col.Service.Extensions {
		require.Contains(t, col.Extensions, e)
	}
	require.Equal(t, []string{"--config=/etc/otelcol/config.yaml"}, c.Services["otel-collector"].Command)
	require.Contains(t, c.Services["otel-collector"].Volumes, "./deploy/otel/collector.yaml:/etc/otelcol/config.yaml:ro")
}

// prometheusConfig is the subset of prometheus.yml deploy/prometheus uses.
type prometheusConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		RelabelConfigs []struct {
			SourceLabels []string `yaml:"source_labels"`
			Regex        string   `yaml:"regex"`
			TargetLabel  string   `yaml:"target_label"`
		} `yaml:"relabel_configs"`
	} `yaml:"scrape_configs"`
}

func TestPrometheusScrapesEveryServiceOpsServer(t *testing.T) {
	c := loadCompose(t)
	var p prometheusConfig
	strictYAML(t, readFile(t, "prometheus", "prometheus.yml"), &p)
	targets := map[string]bool{}
	for _, sc := range p.ScrapeConfigs {
		require.Equal(t, "/metrics", sc.MetricsPath)
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
		for _, rc := range sc.RelabelConfigs {
			_, err := regexp.Compile(rc.Regex)
			require.NoError(t, err)
		}
	}
	for _, name := range serviceNames() {
		ops := port(t, composeEnv(c.Services[name])["SURVEYHOOKS_OPS_ADDR"])
		require.True(t, targets[name+":"+ops], "prometheus scrapes %s:%s", name, ops)
	}
	require.Contains(t, c.Services["prometheus"].Volumes, "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro")
}

func TestDockerfileBuildsAnyServiceStaticallyIntoDistroless(t *testing.T) {
	df := string(readFile(t, repoRoot, "Dockerfile"))
	work := string(readFile(t, repoRoot, "go.work"))

	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(work)
	require.NotNil(t, goVersion, "go.work names a Go version")
	require.Regexp(t, `(?m)^FROM golang:`+regexp.QuoteMeta(goVersion[1])+` AS build$`, df, "builder matches go.work's Go version")
	require.Regexp(t, `(?m)^FROM gcr\.io/distroless/static[a-z0-9-]*:nonroot$`, df, "static distroless runtime")
	require.Regexp(t, `(?m)^ENV .*CGO_ENABLED=0`, df)
	require.Contains(t, df, `go build -trimpath -ldflags="-s -w" -o /out/service "./services/$SERVICE/cmd/$SERVICE"`)
	require.Regexp(t, `(?m)^COPY go\.work go\.work\.sum\* \./$`, df)

	// Every workspace module's go.mod is copied before `go mod download`, or the download
	// layer fails (go.work names a module whose go.mod is missing).
	uses := regexp.MustCompile(`(?m)^\s*\./(\S+)\s*$`).FindAllStringSubmatch(work, -1)
	require.NotEmpty(t, uses)
	download := strings.Index(df, "RUN go mod download")
	require.Positive(t, download)
	for _, u := range uses {
		line := fmt.Sprintf("COPY %[1]s/go.mod %[1]s/go.sum* %[1]s/", u[1])
		i := strings.Index(df, line)
		require.True(t, i >= 0 && i < download, "Dockerfile copies %s/go.mod before downloading modules", u[1])
	}
	dockerignore := string(readFile(t, repoRoot, ".dockerignore"))
	for _, keep := range []string{"go.work", "go.mod", "Dockerfile"} {
		require.NotContains(t, strings.Fields(dockerignore), keep, ".dockerignore must not drop %s", keep)
	}
}
