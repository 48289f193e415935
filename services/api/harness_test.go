package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/apitest"
	"github.com/surveyhooks/surveyhooks/pkg/chtest"
	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	"github.com/surveyhooks/surveyhooks/services/api"
	"github.com/surveyhooks/surveyhooks/services/delivery"
	"github.com/surveyhooks/surveyhooks/services/fanout"
	"github.com/surveyhooks/surveyhooks/services/sink"
)

const adminToken = "test-admin-token-0123456789"

// quiet keeps the services' warnings and errors in the test output, and their chatter out.
var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// stack is a kfake cluster with the API running on it (and, when asked, the delivery service,
// the sink and a ClickHouse database), reached over real HTTP.
type stack struct {
	t    *testing.T
	ctx  context.Context
	cfg  api.Config
	base string
	box  *secrets.Box
	kcl  *kgo.Client
}

type option func(*stackOptions)

type stackOptions struct {
	clickhouse bool // a fresh database on CLICKHOUSE_ADDR
	delivery   bool // run the delivery service
	sink       bool // run the sink (needs clickhouse)
	fanout     bool // run fan-out
	tweak      func(*api.Config)
	tweakDel   func(*delivery.Config)
}

func withClickHouse() option { return func(o *stackOptions) { o.clickhouse = true } }
func withDelivery() option   { return func(o *stackOptions) { o.delivery = true } }
func withSink() option       { return func(o *stackOptions) { o.sink, o.clickhouse = true, true } }
func withFanout() option     { return func(o *stackOptions) { o.fanout = true } }
func withDeliveryConfig(f func(*delivery.Config)) option {
	return func(o *stackOptions) { o.delivery, o.tweakDel = true, f }
}
func withConfig(f func(*api.Config)) option {
	return func(o *stackOptions) { o.tweak = f }
}

func startStack(t *testing.T, opts ...option) *stack {
	t.Helper()
	var o stackOptions
	for _, f := range opts {
		f(&o)
	}
	kcfg := kafkatest.Start(t)
	kcfg.RetrySchedule = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}
	key := make([]byte, 32)
	_, _ = rand.Read(key)

	var cfg api.Config
	require.NoError(t, config.Defaults(&cfg))
	cfg.Kafka = kcfg
	cfg.Addr = proctest.Addr(t)
	cfg.AdminToken = adminToken
	cfg.EncryptionKey = base64.StdEncoding.EncodeToString(key)
	cfg.TestTimeout = 10 * time.Second
	cfg.ErasureSecondPass = 200 * time.Millisecond
	// Unless the test asks for ClickHouse, point at a port nothing listens on.
	cfg.ClickHouseAddr = proctest.Addr(t)
	if o.clickhouse {
		cfg.ClickHouseAddr = chtest.Addr(t)
		cfg.ClickHouseDatabase = chtest.Database(t)
	}
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	box, err := secrets.NewBox(cfg.EncryptionKey)
	require.NoError(t, err)
	kcl, err := kafka.NewClient(kcfg)
	require.NoError(t, err)
	t.Cleanup(kcl.Close)
	s := &stack{t: t, ctx: ctx, cfg: cfg, base: "http://" + cfg.Addr, box: box, kcl: kcl}

	s.run("api", func(ctx context.Context) error { return api.Run(ctx, cfg, quiet) })
	if o.delivery {
		var dcfg delivery.Config
		require.NoError(t, config.Defaults(&dcfg))
		dcfg.Kafka, dcfg.EncryptionKey, dcfg.AllowDestinations = kcfg, cfg.EncryptionKey, "127.0.0.0/8"
		dcfg.CommitInterval, dcfg.Timeout = 50*time.Millisecond, 3*time.Second
		if o.tweakDel != nil { // nil: the defaults
			o.tweakDel(&dcfg)
		}
		s.run("delivery", func(ctx context.Context) error { return delivery.Run(ctx, dcfg, quiet) })
	}
	if o.fanout {
		var fcfg fanout.Config
		require.NoError(t, config.Defaults(&fcfg))
		fcfg.Kafka, fcfg.EncryptionKey = kcfg, cfg.EncryptionKey
		s.run("fanout", func(ctx context.Context) error { return fanout.Run(ctx, fcfg, quiet) })
	}
	if o.sink {
		var scfg sink.Config
		require.NoError(t, config.Defaults(&scfg))
		scfg.Kafka, scfg.ClickHouseAddr, scfg.Database = kcfg, cfg.ClickHouseAddr, cfg.ClickHouseDatabase
		scfg.EncryptionKey = cfg.EncryptionKey
		scfg.FlushInterval = 100 * time.Millisecond
		s.run("sink", func(ctx context.Context) error { return sink.Run(ctx, scfg, quiet) })
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "the API did not start listening")
	return s
}

// run starts a service; the test fails if it returns an error, and waits for it to stop.
func (s *stack) run(name string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	s.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				s.t.Errorf("%s stopped with an error: %v", name, err)
			}
		case <-time.After(stopWait(name)):
			if name == "api" {
				s.t.Errorf("%s did not stop within %s", name, stopWait(name))
				return
			}
			// Not this package's to fix: the sink and the delivery releaser return from a
			// cancelled PollRecords without AllowRebalance, so Close waits forever in LeaveGroup.
			s.t.Logf("%s did not stop within %s (left running; see the report on BlockRebalanceOnPoll)", name, stopWait(name))
		}
	})
}

func stopWait(name string) time.Duration {
	if name == "api" {
		return 15 * time.Second
	}
	return 3 * time.Second
}

// reply is a decoded HTTP answer.
type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.raw) }

// field returns body[k] as a string ("" when absent).
func (r reply) str(k string) string {
	v, _ := r.body[k].(string)
	return v
}

// errField is error.field of an error answer.
func (r reply) errField() string {
	e, _ := r.body["error"].(map[string]any)
	v, _ := e["field"].(string)
	return v
}

func (r reply) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	v, _ := e["code"].(string)
	return v
}

func (r reply) list() []map[string]any {
	var out []map[string]any
	for _, v := range r.body["data"].([]any) {
		out = append(out, v.(map[string]any))
	}
	return out
}

// do sends a request; body is JSON-encoded unless it is a string (sent as is) or nil. Every
// answer must be a JSON object (or empty) and match the OpenAPI document.
func (s *stack) do(method, path, token string, body any) reply {
	s.t.Helper()
	return s.doH(method, path, token, nil, body)
}

// doH is do with extra request headers.
func (s *stack) doH(method, path, token string, hdr map[string]string, body any) reply {
	s.t.Helper()
	r, err := apitest.Do(s.ctx, nil, apitest.Request{Method: method, URL: s.base + path, Token: token, Header: hdr, Body: body})
	require.NoError(s.t, err)
	out := reply{status: r.Status, header: r.Header, raw: r.Raw, body: r.Body}
	if len(bytes.TrimSpace(r.Raw)) > 0 && r.Body == nil {
		s.t.Errorf("%s %s: answer is not a JSON object: %s", method, path, r.Raw)
	}
	if err := documented(s.t, method, path, out); err != nil {
		s.t.Error(err)
	}
	return out
}

// must sends a request and requires the status.
func (s *stack) must(status int, method, path, token string, body any) reply {
	s.t.Helper()
	r := s.do(method, path, token, body)
	require.Equal(s.t, status, r.status, "%s %s → %s", method, path, r)
	return r
}

// project creates a project and returns its id and API key.
func (s *stack) project(name string) (id, key string) {
	s.t.Helper()
	r := s.must(http.StatusCreated, "POST", "/v1/projects", adminToken, map[string]any{"name": name})
	return r.str("id"), r.str("api_key")
}

// webhook creates a webhook and returns the answer.
func (s *stack) webhook(key string, body map[string]any) reply {
	s.t.Helper()
	if body["name"] == nil {
		body["name"] = "hook"
	}
	if body["events"] == nil {
		body["events"] = []string{"*"}
	}
	return s.must(http.StatusCreated, "POST", "/v1/webhooks", key, body)
}

// records reads a topic from the start until enough says so (or fails after 10 s).
func (s *stack) records(topic string, enough func([]*kgo.Record) bool) []*kgo.Record {
	s.t.Helper()
	cl, err := kafka.NewClient(s.cfg.Kafka, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(s.t, err)
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(10 * time.Second)
	for !enough(out) {
		require.True(s.t, time.Now().Before(deadline), "gave up reading %s with %d records", topic, len(out))
		ctx, cancel := context.WithTimeout(s.ctx, 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// lastRecord returns the latest record of topic with key (nil value: a tombstone).
func (s *stack) lastRecord(topic, key string, want func(*kgo.Record) bool) *kgo.Record {
	s.t.Helper()
	var last *kgo.Record
	s.records(topic, func(rs []*kgo.Record) bool {
		last = nil
		for _, r := range rs {
			if string(r.Key) == key {
				last = r
			}
		}
		return last != nil && want(last)
	})
	return last
}

func decode[T proto.Message](t testing.TB, b []byte, m T) T {
	t.Helper()
	require.NoError(t, proto.Unmarshal(b, m))
	return m
}

func TestMain(m *testing.M) {
	// The query tests need ClickHouse; say how to get one instead of failing obscurely.
	if os.Getenv("CLICKHOUSE_ADDR") == "" {
		fmt.Fprintln(os.Stderr, "note: CLICKHOUSE_ADDR is not set; tests that need ClickHouse will fail. "+
			"Start one with: eval \"$(deploy/clickhouse/local.sh start)\"")
	}
	os.Exit(m.Run())
}
