package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	"github.com/surveyhooks/surveyhooks/pkg/service"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/ingest"
)

// instance is one ingest process (its Run) serving on a free port of 127.0.0.1.
type instance struct {
	addr string
	stop func() // cancels Run and waits for it to return nil
}

func testConfig(t testing.TB, kcfg kafka.Config) ingest.Config {
	t.Helper()
	var cfg ingest.Config
	require.NoError(t, config.Defaults(&cfg))
	cfg.Kafka = kcfg
	cfg.Addr = proctest.Addr(t)
	require.NoError(t, cfg.Validate())
	return cfg
}

func start(t testing.TB, cfg ingest.Config, opts ...service.Option) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- ingest.Run(ctx, cfg, log, opts...) }()
	var once sync.Once
	in := &instance{addr: cfg.Addr}
	in.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, "Run returns nil when its context is cancelled")
			case <-time.After(30 * time.Second):
				t.Error("ingest did not shut down within 30s")
			}
		})
	}
	t.Cleanup(in.stop)
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			t.Fatalf("ingest stopped at start: %v", err)
		default:
		}
		resp, err := http.Get("http://" + cfg.Addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "ingest should answer /healthz")
	return in
}

// createProject writes a project straight to the `projects` topic, as the API does.
func createProject(t testing.TB, kcfg kafka.Config, id, key string) {
	t.Helper()
	cl, err := kafka.NewClient(kcfg)
	require.NoError(t, err)
	defer cl.Close()
	v, err := proto.Marshal(&pb.Project{Id: id, Name: id, ApiKeyHash: secrets.HashAPIKey(key), CreatedAtMs: time.Now().UnixMilli()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, kafka.EnsureTopics(ctx, kcfg))
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: kcfg.Topics.Projects, Key: []byte(id), Value: v}).FirstErr())
}

type answer struct {
	status int
	body   map[string]any
}

func (a answer) ids() []string {
	var out []string
	for _, v := range a.body["event_ids"].([]any) {
		out = append(out, v.(string))
	}
	return out
}

func (a answer) errField() string {
	e, _ := a.body["error"].(map[string]any)
	f, _ := e["field"].(string)
	return f
}

func (a answer) errCode() string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func post(t testing.TB, addr, key, contentType string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/events", bytes.NewReader(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{status: resp.StatusCode}
	require.NoError(t, json.Unmarshal(raw, &a.body), "every answer is JSON: %s", raw)
	return a
}

func postJSON(t testing.TB, addr, key string, v any) answer {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return post(t, addr, key, "application/json", b)
}

func stats(t testing.TB, addr string) map[string]int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var s map[string]int64
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
	return s
}

// topicReader collects the committed records of a topic from its start.
type topicReader struct {
	t testing.TB

	mu   sync.Mutex
	recs []*kgo.Record
}

func readTopic(t testing.TB, kcfg kafka.Config, topic string) *topicReader {
	t.Helper()
	r := &topicReader{t: t}
	kafkatest.Tail(t, kcfg, topic, func(rec *kgo.Record) {
		r.mu.Lock()
		r.recs = append(r.recs, rec)
		r.mu.Unlock()
	})
	return r
}

func (r *topicReader) records() []*kgo.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*kgo.Record(nil), r.recs...)
}

// events decodes what reached `events`, by event id.
func (r *topicReader) events() map[string][]*pb.Event {
	out := map[string][]*pb.Event{}
	for _, rec := range r.records() {
		ev := &pb.Event{}
		require.NoError(r.t, proto.Unmarshal(rec.Value, ev))
		require.Equal(r.t, ingestKey(ev), string(rec.Key), "the events key is project/user")
		out[ev.EventId] = append(out[ev.EventId], ev)
	}
	return out
}

func ingestKey(ev *pb.Event) string {
	who := ev.GetUser().GetId()
	if who == "" {
		who = ev.GetUser().GetAnonymousId()
	}
	if who == "" {
		who = ev.GetResponse().GetId()
	}
	if who == "" {
		who = ev.EventId
	}
	return ev.ProjectId + "/" + who
}

// waitEvents waits until every id reached `events`.
func (r *topicReader) waitEvents(ids ...string) map[string][]*pb.Event {
	r.t.Helper()
	var got map[string][]*pb.Event
	require.Eventually(r.t, func() bool {
		got = r.events()
		for _, id := range ids {
			if len(got[id]) == 0 {
				return false
			}
		}
		return true
	}, 45*time.Second, 20*time.Millisecond, "events %v should reach the events topic", ids)
	return got
}

func npsEvent(id, user string, score int) map[string]any {
	e := map[string]any{"event_type": "nps.scored", "user": map[string]any{"id": user}, "nps": map[string]any{"score": score}}
	if id != "" {
		e["event_id"] = id
	}
	return e
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}
