package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/masking"
	"github.com/surveyhooks/surveyhooks/pkg/proctest"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/api"
	"github.com/surveyhooks/surveyhooks/services/delivery"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

func TestErasureRemovesARespondentsAttemptsAndDeadLettersAndReportsTheCount(t *testing.T) {
	s := startStack(t, withClickHouse())
	pa, key := s.project("Acme")
	pb2, key2 := s.project("Other")
	path := "/v1/projects/" + pa + "/erasures"

	s.must(http.StatusUnauthorized, "POST", path, key, map[string]any{"email": "ada@example.com"})
	s.must(http.StatusNotFound, "POST", "/v1/projects/prj_nope/erasures", adminToken, map[string]any{"email": "a@b"})
	require.Equal(t, "user_id", s.must(http.StatusBadRequest, "POST", path, adminToken, map[string]any{}).errField())
	require.Equal(t, "email", s.must(http.StatusBadRequest, "POST", path, adminToken, map[string]any{"email": "  "}).errField())
	require.Equal(t, "unknown_field", s.must(http.StatusBadRequest, "POST", path, adminToken, `{"phone":"1"}`).errCode())

	s.logRows(pa, row{id: "att_keep", webhook: "wh_a", event: "evt_1", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, status: 200})
	s.logRows(pb2, row{id: "att_other", webhook: "wh_b", event: "evt_ada", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, status: 200})
	// logRows writes {"event_id":"<event>"}: an event id equal to the e-mail stands for a body naming her.
	s.logRows(pa, row{id: "att_ada", webhook: "wh_a", event: "ada@example.com", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, status: 200})
	s.deadRows(&pb.Delivery{DeliveryId: "msg_ada", EventId: "evt_2", WebhookId: "wh_a", ProjectId: pa, EventType: "nps.scored",
		Body: []byte(`{"user":{"email":"ada@example.com"}}`), Attempt: 6, LastOutcome: &pb.Outcome{StatusCode: 500, AtMs: t0.UnixMilli()}})

	job := s.must(http.StatusAccepted, "POST", path, adminToken, map[string]any{"email": "ada@example.com"})
	id := job.str("id")
	require.Equal(t, "running", job.str("status"))
	require.NotContains(t, job.raw, "ada@example.com", "the job never holds the identifier")

	var done reply
	require.Eventually(t, func() bool {
		done = s.must(http.StatusOK, "GET", path+"/"+id, adminToken, nil)
		return done.str("status") != "running"
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "done", done.str("status"), done.String())
	require.Equal(t, map[string]any{"attempts": 1.0, "dead_letters": 1.0}, done.body["erased"])

	require.Equal(t, []any{"att_keep"}, ids(s.must(http.StatusOK, "GET", "/v1/attempts", key, nil)))
	require.Empty(t, s.must(http.StatusOK, "GET", "/v1/dead-letters", key, nil).list())
	require.Equal(t, []any{"att_other"}, ids(s.must(http.StatusOK, "GET", "/v1/attempts", key2, nil)), "another project keeps its rows")
	s.must(http.StatusNotFound, "GET", "/v1/projects/"+pb2+"/erasures/"+id, adminToken, nil)
}

// syncBuffer is a log sink that tests read while services write to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// logger writes JSON lines of every level to b, and those at WARN or ERROR to stderr too, as
// quiet does.
func (b *syncBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.MultiWriter(b, stderrAtWarn{}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// stderrAtWarn passes the lines of a JSON log at WARN or ERROR to stderr.
type stderrAtWarn struct{}

func (stderrAtWarn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"level":"WARN"`)) || bytes.Contains(p, []byte(`"level":"ERROR"`)) {
		return os.Stderr.Write(p)
	}
	return len(p), nil
}

// startFanoutAndDelivery runs fan-out (with the stack's key: deliveries carry respondent hashes)
// and the delivery service with the given retry tiers.
func (s *stack) startFanoutAndDelivery(retry ...time.Duration) {
	s.t.Helper()
	kcfg := s.cfg.Kafka
	kcfg.RetrySchedule = retry
	var fcfg fanout.Config
	require.NoError(s.t, config.Defaults(&fcfg))
	fcfg.Kafka, fcfg.EncryptionKey = kcfg, s.cfg.EncryptionKey
	s.run("fanout", func(ctx context.Context) error { return fanout.Run(ctx, fcfg, quiet) })
	var dcfg delivery.Config
	require.NoError(s.t, config.Defaults(&dcfg))
	dcfg.Kafka, dcfg.EncryptionKey, dcfg.AllowDestinations = kcfg, s.cfg.EncryptionKey, "127.0.0.0/8"
	dcfg.CommitInterval, dcfg.Timeout = 50*time.Millisecond, 3*time.Second
	s.run("delivery", func(ctx context.Context) error { return delivery.Run(ctx, dcfg, quiet) })
}

// startAPI starts another API process over the stack's Kafka and ClickHouse, logging to log, and
// returns the stack as seen through it.
func (s *stack) startAPI(log *slog.Logger) *stack {
	s.t.Helper()
	cfg := s.cfg
	cfg.Addr = proctest.Addr(s.t)
	s.run("api "+cfg.Addr, func(ctx context.Context) error { return api.Run(ctx, cfg, log) })
	other := *s
	other.base = "http://" + cfg.Addr
	require.Eventually(s.t, func() bool {
		resp, err := http.Get(other.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "the API did not start listening")
	return &other
}

// event puts a respondent's NPS answer on `events`, as ingest would.
func (s *stack) event(projectID, eventID string, u *pb.User) {
	s.t.Helper()
	score := int32(3)
	now := time.Now().UnixMilli()
	v, err := proto.Marshal(&pb.Event{EventId: eventID, ProjectId: projectID, EventType: "nps.scored", TimeMs: now,
		ReceivedAtMs: now, User: u, Nps: &pb.Nps{Score: &score}})
	require.NoError(s.t, err)
	require.NoError(s.t, s.kcl.ProduceSync(s.ctx, &kgo.Record{Topic: s.cfg.Kafka.Topics.Events,
		Key: []byte(projectID + "/" + u.Id), Value: v}).FirstErr())
}

// The "done when", end to end on kfake, the local ClickHouse and a real receiver that
// fails, so that each respondent has a retry pending: erasing Ada stops her retry (the receiver
// never hears of her again) while Bob's retries still arrive; ClickHouse keeps nothing of hers but
// the record of the stopped attempt, without a body; the job counts what it removed; the API's
// log never names her.
func TestErasureStopsPendingRetriesAndRemovesTheRespondentEverywhere(t *testing.T) {
	base := startStack(t, withSink())
	// Retries 4 s and 5 s after a failure: time for the erasure to come first.
	base.startFanoutAndDelivery(4*time.Second, 5*time.Second)
	// The erasure goes through an API process whose log the test reads.
	var apiLog syncBuffer
	s := base.startAPI(apiLog.logger())
	rc := newReceiver(t, http.StatusServiceUnavailable)
	pid, key := s.project("Acme")
	s.webhook(key, map[string]any{"url": rc.URL + "/hook"})

	s.event(pid, "evt_ada", &pb.User{Id: "u-ada", Email: "Ada@Example.com"})
	s.event(pid, "evt_bob", &pb.User{Id: "u-bob", Email: "bob@example.com"})
	sentFor := func(user string) int {
		n := 0
		for _, r := range rc.requests() {
			if bytes.Contains(r.body, []byte(`"`+user+`"`)) {
				n++
			}
		}
		return n
	}
	attemptsOf := func(event string) []map[string]any {
		r := s.do("GET", "/v1/events/"+event+"/attempts", key, nil)
		if r.status == http.StatusNotFound {
			return nil
		}
		require.Equal(t, http.StatusOK, r.status, r.String())
		return r.list()
	}
	// Both first attempts failed and are in the log: a retry is pending for each.
	require.Eventually(t, func() bool {
		return sentFor("u-ada") == 1 && sentFor("u-bob") == 1 && len(attemptsOf("evt_ada")) == 1 && len(attemptsOf("evt_bob")) == 1
	}, 20*time.Second, 50*time.Millisecond, "requests: %d", len(rc.requests()))

	path := "/v1/projects/" + pid + "/erasures"
	job := s.must(http.StatusAccepted, "POST", path, adminToken, map[string]any{"email": "ada@example.com"})
	var done reply
	require.Eventually(t, func() bool {
		done = s.must(http.StatusOK, "GET", path+"/"+job.str("id"), adminToken, nil)
		return done.str("status") != "running"
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, "done", done.str("status"), done.String())
	require.Equal(t, map[string]any{"attempts": 1.0, "dead_letters": 0.0}, done.body["erased"], "her first attempt")

	// Bob's retries go on to the end of the schedule (attempts 2 and 3, then a dead letter) ...
	s.deadLetters(key, "", 1)
	require.Equal(t, 3, sentFor("u-bob"))
	// ... by which time Ada's retries were due too: never sent.
	require.Equal(t, 1, sentFor("u-ada"), "the pending retry of an erased respondent is not sent")

	// Her only row left records the stopped retry: outcome erased, no body, no identifier.
	var ada []map[string]any
	require.Eventually(t, func() bool { ada = attemptsOf("evt_ada"); return len(ada) == 1 }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, "erased", ada[0]["outcome"])
	require.Equal(t, "erased", ada[0]["disposition"])
	require.EqualValues(t, 2, ada[0]["attempt"])
	detail := s.must(http.StatusOK, "GET", "/v1/attempts/"+ada[0]["id"].(string), key, nil)
	require.Empty(t, detail.str("request_body"))
	require.NotContains(t, strings.ToLower(string(detail.raw)), "ada@example.com")
	require.NotContains(t, string(detail.raw), "u-ada")
	require.Len(t, attemptsOf("evt_bob"), 3, "Bob's attempts are all kept")
	done = s.must(http.StatusOK, "GET", path+"/"+job.str("id"), adminToken, nil)
	require.EqualValues(t, 1, done.body["pending_stopped"], "her retry, stopped after the job was done")
	require.Equal(t, map[string]any{"attempts": 1.0, "dead_letters": 0.0}, done.body["erased"])

	// Posting it again finds nothing left, and the log never named her.
	again := s.must(http.StatusAccepted, "POST", path, adminToken, map[string]any{"user_id": "u-ada"})
	require.Eventually(t, func() bool {
		done = s.must(http.StatusOK, "GET", path+"/"+again.str("id"), adminToken, nil)
		return done.str("status") == "done"
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, map[string]any{"attempts": 0.0, "dead_letters": 0.0}, done.body["erased"])
	logged := apiLog.String()
	require.Contains(t, logged, job.str("id"), "the erasure itself is logged")
	require.NotContains(t, strings.ToLower(logged), "ada@example.com")
	require.NotContains(t, logged, "u-ada")
}

// A job left "running" by an API that died is resumed by the next API to start, to the end.
func TestErasureLeftRunningByADeadAPIIsResumedAtTheNextStart(t *testing.T) {
	s := startStack(t, withClickHouse())
	pa, key := s.project("Acme")
	s.logRows(pa, row{id: "att_keep", webhook: "wh_a", event: "evt_1", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, status: 200})
	s.logRows(pa, row{id: "att_ada", webhook: "wh_a", event: "ada@example.com", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, status: 200})

	// What createErasure records before it starts the job, and nothing after: the API died.
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	st, err := attemptlog.Open(ctx, s.cfg.ClickHouseAddr, s.cfg.ClickHouseDatabase)
	require.NoError(t, err)
	defer st.Close()
	who, err := json.Marshal(attemptlog.Respondent{Email: "ada@example.com"})
	require.NoError(t, err)
	require.NoError(t, st.SaveErasure(ctx, attemptlog.ErasureJob{ID: "er_left", ProjectID: pa, Status: "running",
		RequestedAt: time.Now().UTC().Truncate(time.Millisecond), Sealed: s.box.Seal(string(who))}))
	path := "/v1/projects/" + pa + "/erasures/er_left"
	running := s.must(http.StatusOK, "GET", path, adminToken, nil)
	require.Equal(t, "running", running.str("status"))
	require.NotContains(t, string(running.raw), "sealed", "the sealed identifiers are never shown")

	// Another API process starts over the same Kafka and ClickHouse.
	s.startAPI(quiet)

	var done reply
	require.Eventually(t, func() bool {
		done = s.must(http.StatusOK, "GET", path, adminToken, nil)
		return done.str("status") != "running"
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "done", done.str("status"), done.String())
	require.Equal(t, map[string]any{"attempts": 1.0, "dead_letters": 0.0}, done.body["erased"])
	require.Equal(t, []any{"att_keep"}, ids(s.must(http.StatusOK, "GET", "/v1/attempts", key, nil)))
	// The resumed job also published the erasure for the delivery workers.
	recs := s.records(s.cfg.Kafka.Topics.Erasures, func(r []*kgo.Record) bool { return len(r) > 0 })
	e := decode(t, recs[0].Value, &pb.Erasure{})
	require.Equal(t, "er_left", e.ErasureId)
	require.Equal(t, pa, e.ProjectId)
	require.NotContains(t, string(recs[0].Value)+string(recs[0].Key), "ada@example.com")
}

// An attempt that reaches ClickHouse after the job's first pass (it was in flight, or on its way
// through the sink) is removed by the second pass and counted.
func TestErasureSecondPassRemovesWhatArrivedAfterTheFirst(t *testing.T) {
	s := startStack(t, withClickHouse(), withConfig(func(c *api.Config) { c.ErasureSecondPass = 3 * time.Second }))
	pa, key := s.project("Acme")
	s.logRows(pa, row{id: "att_ada_1", webhook: "wh_a", event: "u-ada", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, status: 500})
	path := "/v1/projects/" + pa + "/erasures"
	id := s.must(http.StatusAccepted, "POST", path, adminToken, map[string]any{"user_id": "u-ada"}).str("id")
	var job reply
	require.Eventually(t, func() bool {
		job = s.must(http.StatusOK, "GET", path+"/"+id, adminToken, nil)
		return job.body["erased"].(map[string]any)["attempts"] == 1.0
	}, 10*time.Second, 50*time.Millisecond, "the first pass's count is recorded while the job waits")
	require.Equal(t, "running", job.str("status"))
	s.logRows(pa, row{id: "att_ada_2", webhook: "wh_a", event: "u-ada", etype: "nps.scored", class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, status: 500, attempt: 2})
	require.Eventually(t, func() bool {
		job = s.must(http.StatusOK, "GET", path+"/"+id, adminToken, nil)
		return job.str("status") != "running"
	}, 20*time.Second, 100*time.Millisecond)
	require.Equal(t, "done", job.str("status"), job.String())
	require.Equal(t, map[string]any{"attempts": 2.0, "dead_letters": 0.0}, job.body["erased"])
	require.Empty(t, s.must(http.StatusOK, "GET", "/v1/attempts", key, nil).list())
}

// A dead letter that the ClickHouse pass cannot match (its body holds the e-mail only masked) is
// still recognised by its respondent hashes: it cannot be replayed after the erasure.
func TestDeadLetterOfAnErasedRespondentIsNotReplayed(t *testing.T) {
	s := startStack(t, withClickHouse())
	pa, key := s.project("Acme")
	wh := s.webhook(key, map[string]any{"url": "https://example.com/h"}).str("id")
	material, err := base64.StdEncoding.DecodeString(s.cfg.EncryptionKey)
	require.NoError(t, err)
	hashes := masking.RespondentHashes(masking.ProjectKey(material, pa), "", "", "ada@example.com")
	for _, id := range []string{"msg_ada", "msg_bob"} {
		d := &pb.Delivery{DeliveryId: id, EventId: "evt_" + id, WebhookId: wh, ProjectId: pa, EventType: "nps.scored",
			Body: []byte(`{"user":{"email":"ada***"}}`), Attempt: 6, CreatedAtMs: time.Now().Add(-time.Hour).UnixMilli(),
			LastOutcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, StatusCode: 500, AtMs: time.Now().UnixMilli()}}
		if id == "msg_ada" {
			d.RespondentHashes = hashes
		}
		s.deadRows(d)
	}
	path := "/v1/projects/" + pa + "/erasures"
	id := s.must(http.StatusAccepted, "POST", path, adminToken, map[string]any{"email": "Ada@Example.com"}).str("id")
	require.Eventually(t, func() bool {
		return s.must(http.StatusOK, "GET", path+"/"+id, adminToken, nil).str("status") == "done"
	}, 20*time.Second, 50*time.Millisecond)

	dead := map[string]string{}
	for _, dl := range s.must(http.StatusOK, "GET", "/v1/dead-letters", key, nil).list() {
		dead[dl["delivery_id"].(string)] = dl["id"].(string)
	}
	require.Len(t, dead, 2, "the masked body did not match in ClickHouse")
	r := s.must(http.StatusConflict, "POST", "/v1/dead-letters/"+dead["msg_ada"]+"/replay", key, nil)
	require.Equal(t, "respondent_erased", r.errCode())
	require.Contains(t, string(r.raw), id)
	s.must(http.StatusAccepted, "POST", "/v1/dead-letters/"+dead["msg_bob"]+"/replay", key, nil)
}
