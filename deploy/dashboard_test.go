package deploy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	"github.com/surveyhooks/surveyhooks/services/delivery"
	"github.com/surveyhooks/surveyhooks/services/fanout"
	"github.com/surveyhooks/surveyhooks/services/ingest"
	"github.com/surveyhooks/surveyhooks/services/sink"
)

type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	ID         int         `json:"id"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Datasource *datasource `json:"datasource"`
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
	} `json:"targets"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaDatasources struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string `yaml:"name"`
		UID       string `yaml:"uid"`
		Type      string `yaml:"type"`
		Access    string `yaml:"access"`
		URL       string `yaml:"url"`
		IsDefault bool   `yaml:"isDefault"`
		Editable  bool   `yaml:"editable"`
	} `yaml:"datasources"`
}

type grafanaDashboards struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name            string `yaml:"name"`
		Folder          string `yaml:"folder"`
		Type            string `yaml:"type"`
		DisableDeletion bool   `yaml:"disableDeletion"`
		AllowUIUpdates  bool   `yaml:"allowUiUpdates"`
		Options         struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

// servedSeries runs pkg/telemetry the way the services do — every service's instruments
// recorded, a Kafka record produced and consumed through KafkaHooks, a consumer group's lag
// observed, an HTTP request through HTTPHandler — and returns each served metric name with the
// label names its series carry.
func servedSeries(t *testing.T) map[string]map[string]bool {
	t.Helper()
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"} {
		t.Setenv(k, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tel, err := telemetry.Setup(ctx, "deploy-test")
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	dm, err := delivery.NewMetrics(tel)
	require.NoError(t, err)
	dm.Done(ctx, "success", time.Second)
	dm.Held(1)
	dm.MovedAside(ctx, false)
	stopTiers, err := dm.ObserveTiers(func() []delivery.TierState { return []delivery.TierState{{Tier: "1m", Depth: 1}} })
	require.NoError(t, err)
	t.Cleanup(func() { _ = stopTiers() })
	stopLimits, err := dm.ObserveLimits(func() []int { return []int{10, 20} })
	require.NoError(t, err)
	t.Cleanup(func() { _ = stopLimits() })
	stopOrdering, err := dm.ObserveOrdering(func() delivery.OrderingState { return delivery.OrderingState{HeldKeys: 1} })
	require.NoError(t, err)
	t.Cleanup(func() { _ = stopOrdering() })
	sm, err := sink.NewMetrics(tel)
	require.NoError(t, err)
	sm.Batch(ctx, 10, time.Second)
	im, err := ingest.NewMetrics(tel)
	require.NoError(t, err)
	im.Events(ctx, 1, "rejected", "invalid")
	fm, err := fanout.NewMetrics(tel)
	require.NoError(t, err)
	stopFanout, err := fm.ObserveTotals(func() map[string]int64 { return map[string]int64{"events": 1, "filtered": 1} })
	require.NoError(t, err)
	t.Cleanup(func() { _ = stopFanout() })

	cfg := kafkatest.Start(t)
	cl, err := kafka.NewClient(cfg, append(tel.KafkaHooks(), kgo.ConsumeTopics("deliveries"), kgo.ConsumerGroup("g"))...)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	_, err = kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "deliveries")
	require.NoError(t, err)
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: "deliveries", Value: []byte("x")}).FirstErr())
	for len(cl.PollFetches(ctx).Records()) == 0 {
		require.NoError(t, ctx.Err())
	}
	require.NoError(t, cl.CommitUncommittedOffsets(ctx))
	stopLag := tel.ObserveConsumerLag(cl, "g")
	t.Cleanup(stopLag)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	srv := httptest.NewServer(telemetry.HTTPHandler(mux, "ingest"))
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL+"/v1/events", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())

	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	require.NoError(t, err)
	out := map[string]map[string]bool{}
	for name, f := range fams {
		names := []string{name}
		if f.GetType().String() == "HISTOGRAM" {
			names = []string{name + "_bucket", name + "_sum", name + "_count"}
		}
		for _, n := range names {
			out[n] = map[string]bool{"le": strings.HasSuffix(n, "_bucket")}
			for _, mt := range f.GetMetric() {
				for _, l := range mt.GetLabel() {
					out[n][l.GetName()] = true
				}
			}
		}
	}
	return out
}

var (
	metricRef = regexp.MustCompile(`\b((?:surveyhooks|http_server|messaging_kafka)_[a-z0-9_]+)\b`)
	byClause  = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matcher   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
)

func TestDashboardQueriesOnlyMetricsAndLabelsTheServicesServe(t *testing.T) {
	var d dashboard
	require.NoError(t, json.Unmarshal(readFile(t, "grafana", "dashboards", "surveyhooks.json"), &d))
	require.NotEmpty(t, d.UID)

	var ds grafanaDatasources
	strictYAML(t, readFile(t, "grafana", "provisioning", "datasources", "prometheus.yaml"), &ds)
	require.Len(t, ds.Datasources, 1)
	uid := ds.Datasources[0].UID
	require.Equal(t, "prometheus", ds.Datasources[0].Type)

	served := servedSeries(t)
	seen := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		require.False(t, ids[p.ID], "panel id %d is unique", p.ID)
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		require.NotNil(t, p.Datasource, p.Title)
		require.Equal(t, uid, p.Datasource.UID, "%s uses the provisioned datasource", p.Title)
		require.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			refs := metricRef.FindAllStringSubmatch(tg.Expr, -1)
			require.NotEmpty(t, refs, "%s: %s queries a surveyhooks metric", p.Title, tg.Expr)
			labels := map[string]bool{}
			for _, r := range refs {
				got, ok := served[r[1]]
				require.True(t, ok, "%s: %s is not served by the services", p.Title, r[1])
				seen[r[1]] = true
				for l := range got {
					labels[l] = true
				}
			}
			for _, by := range byClause.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(by[1], ",") {
					l = strings.TrimSpace(l)
					require.True(t, labels[l], "%s: label %q is not on %v", p.Title, l, refs)
				}
			}
			for _, mt := range matcher.FindAllStringSubmatch(tg.Expr, -1) {
				require.True(t, labels[mt[1]], "%s: label %q is not on %v", p.Title, mt[1], refs)
			}
			require.Equal(t, strings.Count(tg.Expr, "("), strings.Count(tg.Expr, ")"), "%s: balanced parentheses", p.Title)
		}
	}
	// Every surveyhooks instrument is on the dashboard.
	for _, name := range []string{
		"surveyhooks_deliveries_total", "surveyhooks_delivery_latency_seconds_bucket", "surveyhooks_deliveries_in_flight",
		"surveyhooks_retry_tier_depth", "surveyhooks_retry_tier_oldest_age_seconds", "surveyhooks_consumer_lag",
		"surveyhooks_sink_batch_rows_bucket", "surveyhooks_sink_batch_seconds_bucket", "surveyhooks_ingest_events_total",
		"surveyhooks_fanout_total",
	} {
		require.True(t, seen[name], "the dashboard shows %s", name)
	}

	var prov grafanaDashboards
	strictYAML(t, readFile(t, "grafana", "provisioning", "dashboards", "surveyhooks.yaml"), &prov)
	require.Len(t, prov.Providers, 1)
	c := loadCompose(t)
	require.Contains(t, c.Services["grafana"].Volumes, "./deploy/grafana/dashboards:"+prov.Providers[0].Options.Path+":ro",
		"grafana reads the dashboards where the provider looks")
}
