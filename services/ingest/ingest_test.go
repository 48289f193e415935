package ingest_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

const key = "shk_test_key_1"

// uuidRE is the canonical text form of a UUID: the ids ingest assigns.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func setup(t *testing.T) (kafka.Config, *instance, *topicReader) {
	kcfg := kafkatest.Start(t)
	createProject(t, kcfg, "prj_1", key)
	in := start(t, testConfig(t, kcfg))
	return kcfg, in, readTopic(t, kcfg, kcfg.Topics.Events)
}

func TestPostedEventReachesEventsWithAnAssignedID(t *testing.T) {
	_, in, events := setup(t)
	before := time.Now().UnixMilli()
	a := postJSON(t, in.addr, key, map[string]any{"event_type": "survey.completed", "time": "2024-05-01T12:00:00Z",
		"survey": map[string]any{"id": "s1"}, "user": map[string]any{"id": "u1", "traits": map[string]any{"plan": "pro"}}})
	require.Equal(t, 202, a.status, a.body)
	id := a.ids()[0]
	require.Regexp(t, uuidRE, id, "an event without event_id gets a UUID")

	ev := events.waitEvents(id)[id][0]
	require.Equal(t, "prj_1", ev.ProjectId, "the API key names the project")
	require.Equal(t, "http", ev.Source)
	require.Equal(t, "survey.completed", ev.EventType)
	require.Equal(t, int64(1714564800000), ev.TimeMs)
	require.GreaterOrEqual(t, ev.ReceivedAtMs, before)
	require.JSONEq(t, `{"plan":"pro"}`, string(ev.User.Traits))

	// Anonymous and user-less events are keyed by what identifies them.
	b := postJSON(t, in.addr, key, map[string]any{"events": []any{
		map[string]any{"event_type": "nps.ask_later", "user": map[string]any{"anonymous_id": "anon-7"}},
		map[string]any{"event_id": "form-1", "event_type": "form.submitted", "element": map[string]any{"id": "contact"}},
	}})
	require.Equal(t, 202, b.status, b.body)
	got := events.waitEvents(b.ids()...) // waitEvents checks every key is project/user-or-anonymous-or-event id
	require.Equal(t, "form", got["form-1"][0].Element.Type)
}

func TestEveryHTTPErrorIsJSONNamingTheField(t *testing.T) {
	kcfg := kafkatest.Start(t)
	createProject(t, kcfg, "prj_1", key)
	cfg := testConfig(t, kcfg)
	cfg.MaxBodyBytes = 4096
	cfg.MaxBatch = 3
	in := start(t, cfg)
	ok := `{"event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":9}}`
	for _, c := range []struct {
		name, key, ct, body string
		status              int
		code, field         string
	}{
		{"no key", "", "application/json", ok, 401, "unauthorized", ""},
		{"unknown key", "shk_nope", "application/json", ok, 401, "unauthorized", ""},
		{"no content type", key, "", ok, 415, "unsupported_media_type", ""},
		{"form content type", key, "application/x-www-form-urlencoded", ok, 415, "unsupported_media_type", ""},
		{"body too large", key, "application/json", `{"event_type":"nps.scored","user":{"id":"` + strings.Repeat("u", 5000) + `"}}`, 413, "body_too_large", ""},
		{"batch too large", key, "application/json", `{"events":[` + ok + `,` + ok + `,` + ok + `,` + ok + `]}`, 413, "batch_too_large", "events"},
		{"malformed JSON", key, "application/json", `{"event_type":`, 400, "invalid_json", ""},
		{"score out of range in a batch", key, "application/json", `{"events":[` + ok + `,` + ok + `,{"event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":11}}]}`, 400, "invalid_field", "events[2].nps.score"},
		{"missing survey id", key, "application/json", `{"event_type":"survey.displayed","user":{"id":"u1"}}`, 400, "missing_field", "survey.id"},
		{"unknown field", key, "application/json", `{"event_type":"nps.scored","user":{"id":"u1","mail":"x"},"nps":{"score":1}}`, 400, "unknown_field", "user.mail"},
		{"send test type", key, "application/json", `{"event_type":"webhook.test","user":{"id":"u1"}}`, 400, "invalid_field", "event_type"},
		{"other project", key, "application/json", `{"project_id":"prj_2","event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":1}}`, 400, "invalid_field", "project_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := post(t, in.addr, c.key, c.ct, []byte(c.body))
			require.Equal(t, c.status, a.status, a.body)
			require.Equal(t, c.code, a.errCode(), a.body)
			require.Equal(t, c.field, a.errField(), a.body)
			require.NotEmpty(t, a.body["error"].(map[string]any)["message"])
		})
	}
	require.Equal(t, int64(12), stats(t, in.addr)["rejected"])
	require.Zero(t, stats(t, in.addr)["http_events"])
}

func TestInvalidEventRejectsTheWholeBatch(t *testing.T) {
	_, in, events := setup(t)
	batch := []any{npsEvent("b-0", "u0", 1), npsEvent("b-1", "u1", 2), npsEvent("b-2", "u2", 99), npsEvent("b-3", "u3", 4)}
	a := postJSON(t, in.addr, key, map[string]any{"events": batch})
	require.Equal(t, 400, a.status)
	require.Equal(t, "events[2].nps.score", a.errField())

	// A later event arrives; nothing of the refused batch came before it (ingest writes in order
	// per partition, and a refused batch is refused before anything is written).
	m := postJSON(t, in.addr, key, map[string]any{"events": []any{npsEvent("marker-0", "u0", 5), npsEvent("marker-1", "u1", 5), npsEvent("marker-3", "u3", 5)}})
	require.Equal(t, 202, m.status, m.body)
	got := events.waitEvents("marker-0", "marker-1", "marker-3")
	for _, id := range []string{"b-0", "b-1", "b-2", "b-3"} {
		require.NotContains(t, got, id, "no event of a refused batch is stored")
	}
	// The same batch once corrected is accepted whole.
	batch[2] = npsEvent("b-2", "u2", 9)
	a = postJSON(t, in.addr, key, map[string]any{"events": batch})
	require.Equal(t, 202, a.status, a.body)
	require.Equal(t, []string{"b-0", "b-1", "b-2", "b-3"}, a.ids())
	events.waitEvents("b-0", "b-1", "b-2", "b-3")
}

func TestPreviewsAreCountedAndNeverForwarded(t *testing.T) {
	kcfg, in, events := setup(t)
	a := postJSON(t, in.addr, key, map[string]any{"events": []any{
		map[string]any{"event_id": "pv-1", "event_type": "survey.displayed", "preview": true, "survey": map[string]any{"id": "s1"}, "user": map[string]any{"id": "u1"}},
		map[string]any{"event_id": "real-1", "event_type": "survey.displayed", "survey": map[string]any{"id": "s1"}, "user": map[string]any{"id": "u1"}},
		map[string]any{"event_type": "survey.completed", "preview": true, "survey": map[string]any{"id": "s1"}, "user": map[string]any{"id": "u2"}},
	}})
	require.Equal(t, 202, a.status, a.body)
	require.Len(t, a.ids(), 3, "a preview's event_id is listed too")
	require.Equal(t, float64(2), a.body["previews"])

	// A preview is validated like any event.
	bad := postJSON(t, in.addr, key, map[string]any{"event_type": "survey.displayed", "preview": true, "user": map[string]any{"id": "u1"}})
	require.Equal(t, 400, bad.status)
	require.Equal(t, "survey.id", bad.errField())

	// And previews from Kafka are counted and dropped the same way.
	w := &kafkago.Writer{Addr: kafkago.TCP(kcfg.Brokers...), Topic: kcfg.Topics.SurveyEvents, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx,
		kafkago.Message{Key: []byte("prj_1"), Value: []byte(`{"project_id":"prj_1","event_id":"pv-k","event_type":"nps.scored","preview":true,"user":{"id":"u9"},"nps":{"score":3}}`)},
		kafkago.Message{Key: []byte("prj_1"), Value: []byte(`{"project_id":"prj_1","event_id":"real-k","event_type":"nps.scored","user":{"id":"u9"},"nps":{"score":3}}`)}))

	got := events.waitEvents("real-1", "real-k")
	require.NotContains(t, got, "pv-1")
	require.NotContains(t, got, "pv-k")
	require.NotContains(t, got, a.ids()[2])
	require.Eventually(t, func() bool { return stats(t, in.addr)["previews"] == 3 }, 10*time.Second, 20*time.Millisecond)
	s := stats(t, in.addr)
	require.Equal(t, int64(2), s["forwarded"], "only the two real events reached events: %v", s)
}

// TestKafkaProducerEventsFlowToEvents produces to survey-events as a typical survey platform
// would, with segmentio/kafka-go: JSON with the project in the body, JSON with the project in a
// header, and a protobuf Event.
func TestKafkaProducerEventsFlowToEvents(t *testing.T) {
	kcfg, _, events := setup(t)
	pbEvent, err := proto.Marshal(&pb.Event{EventId: "k-pb", EventType: "survey.completed", ProjectId: "prj_1",
		Survey: &pb.Survey{Id: "s1"}, User: &pb.User{Id: "u3"}, Response: &pb.Response{Id: "r1", Completion: "fully_completed"}})
	require.NoError(t, err)
	w := &kafkago.Writer{Addr: kafkago.TCP(kcfg.Brokers...), Topic: kcfg.Topics.SurveyEvents, RequiredAcks: kafkago.RequireAll,
		Balancer: &kafkago.RoundRobin{}}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx,
		kafkago.Message{Key: []byte("prj_1"), Value: []byte(`{"project_id":"prj_1","event_id":"k-json","event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":9},"properties":{"sent_at_ns":1}}`),
			Headers: []kafkago.Header{{Key: "content-type", Value: []byte("application/json")}, {Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}},
		kafkago.Message{Value: []byte(`{"event_id":"k-header","event_type":"flow.seen","element":{"id":1},"user":{"anonymous_id":"a2"}}`),
			Headers: []kafkago.Header{{Key: "project-id", Value: []byte("prj_1")}}},
		kafkago.Message{Key: []byte("prj_1"), Value: pbEvent, Headers: []kafkago.Header{{Key: "content-type", Value: []byte("application/x-protobuf")}}},
		kafkago.Message{Key: []byte("prj_1"), Value: []byte(`{"project_id":"prj_1","event_type":"user.identified","user":{"id":"u4"}}`)},
	))
	got := events.waitEvents("k-json", "k-header", "k-pb")
	for _, id := range []string{"k-json", "k-header", "k-pb"} {
		require.Len(t, got[id], 1)
		require.Equal(t, "kafka", got[id][0].Source)
		require.Equal(t, "prj_1", got[id][0].ProjectId)
		require.NotZero(t, got[id][0].ReceivedAtMs)
	}
	require.Equal(t, "flow", got["k-header"][0].Element.Type)
	require.JSONEq(t, `{"sent_at_ns":1}`, string(got["k-json"][0].Properties))
	require.Eventually(t, func() bool {
		for _, evs := range events.events() {
			if evs[0].EventType == "user.identified" && uuidRE.MatchString(evs[0].EventId) {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "a record without event_id gets one")
	for _, r := range events.records() {
		ev := &pb.Event{}
		require.NoError(t, proto.Unmarshal(r.Value, ev))
		if ev.EventId == "k-json" {
			require.Equal(t, "traceparent", r.Headers[0].Key, "trace context travels with the event")
		}
	}
}

func TestBadKafkaRecordsGoToRejectedWithTheirReason(t *testing.T) {
	kcfg, _, events := setup(t)
	rejected := readTopic(t, kcfg, kcfg.Topics.SurveyEventsRejected)
	w := &kafkago.Writer{Addr: kafkago.TCP(kcfg.Brokers...), Topic: kcfg.Topics.SurveyEvents, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := []struct {
		value, ct, field, reason string
	}{
		{`{"project_id":"prj_1","event_type":`, "", "", "malformed JSON"},
		{`{"project_id":"prj_nope","event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":1}}`, "", "project_id", `unknown project "prj_nope"`},
		{`{"event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":1}}`, "application/json", "project_id", "project_id is required"},
		{`{"project_id":"prj_1","event_type":"survey.completed","user":{"id":"u1"}}`, "application/json", "survey.id", "survey.id is required for survey.completed"},
		{`{"project_id":"prj_1","event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":11}}`, "", "nps.score", "nps.score must be an integer from 0 to 10, got 11"},
		{`<xml/>`, "text/xml", "content-type", "neither application/json nor application/x-protobuf"},
		{"\x0a\x03", "application/x-protobuf", "", "not a surveyhooks.v1.Event"},
	}
	var msgs []kafkago.Message
	for i, b := range bad {
		m := kafkago.Message{Key: []byte{byte('a' + i)}, Value: []byte(b.value), Headers: []kafkago.Header{{Key: "origin", Value: []byte("test")}}}
		if b.ct != "" {
			m.Headers = append(m.Headers, kafkago.Header{Key: "content-type", Value: []byte(b.ct)})
		}
		msgs = append(msgs, m)
	}
	msgs = append(msgs, kafkago.Message{Key: []byte("prj_1"), Value: []byte(`{"project_id":"prj_1","event_id":"after-the-bad-ones","event_type":"nps.dismissed","user":{"id":"u1"}}`)})
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	events.waitEvents("after-the-bad-ones") // bad input did not stop the consumer
	require.Eventually(t, func() bool { return len(rejected.records()) == len(bad) }, 30*time.Second, 20*time.Millisecond)
	for _, r := range rejected.records() {
		i := int(r.Key[0] - 'a')
		b := bad[i]
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		require.Equal(t, b.value, string(r.Value), "the original value is kept")
		require.Equal(t, "test", h["origin"], "the original headers are kept")
		require.Contains(t, h["rejection-reason"], b.reason)
		require.Equal(t, b.field, h["rejection-field"])
		require.NotEmpty(t, h["rejection-code"])
		require.NotEmpty(t, h["source-offset"])
	}
	require.Len(t, events.events(), 1)
}

// TestRepeatedEventIDIsAnsweredDuplicateByTheProcessThatWroteIt: the synchronous answer is the
// process's best effort; a repeat it does not know (from Kafka, another process, after a restart)
// is written again with its id, and fan-out forwards it once (fanout's and the end-to-end
// de-duplication tests show it).
func TestRepeatedEventIDIsAnsweredDuplicateByTheProcessThatWroteIt(t *testing.T) {
	kcfg, in, events := setup(t)
	first := postJSON(t, in.addr, key, npsEvent("dup-1", "u1", 7))
	require.Equal(t, 202, first.status, first.body)
	require.Nil(t, first.body["duplicate"])

	again := postJSON(t, in.addr, key, npsEvent("dup-1", "u1", 7))
	require.Equal(t, 200, again.status, again.body)
	require.Equal(t, true, again.body["duplicate"])
	require.Equal(t, []string{"dup-1"}, again.ids())

	mixed := postJSON(t, in.addr, key, map[string]any{"events": []any{npsEvent("dup-1", "u1", 7), npsEvent("dup-2", "u2", 7), npsEvent("dup-2", "u2", 7)}})
	require.Equal(t, 202, mixed.status, mixed.body)
	require.Equal(t, float64(2), mixed.body["duplicates"], "the old one and the repeat inside the batch")
	require.Equal(t, []any{"dup-1", "dup-2"}, mixed.body["duplicate_event_ids"])

	// The same id from the project's Kafka producer reaches events with the same id, keyed like
	// the first copy (so fan-out sees both on one partition); another project's is its own event.
	createProject(t, kcfg, "prj_2", "shk_other")
	w := &kafkago.Writer{Addr: kafkago.TCP(kcfg.Brokers...), Topic: kcfg.Topics.SurveyEvents, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx,
		kafkago.Message{Value: []byte(`{"project_id":"prj_1","event_id":"dup-1","event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":7}}`)},
		kafkago.Message{Value: []byte(`{"project_id":"prj_2","event_id":"dup-1","event_type":"nps.scored","user":{"id":"u1"},"nps":{"score":7}}`)}))
	require.Eventually(t, func() bool { return len(events.events()["dup-1"]) == 3 }, 30*time.Second, 20*time.Millisecond)
	byProject := map[string]int{}
	for _, ev := range events.events()["dup-1"] {
		byProject[ev.ProjectId]++
	}
	require.Equal(t, map[string]int{"prj_1": 2, "prj_2": 1}, byProject)
	require.Len(t, events.events()["dup-2"], 1, "a repeat the process knows is not written again")
	require.Equal(t, int64(3), stats(t, in.addr)["duplicates"])
}

func TestStatsAndHealth(t *testing.T) {
	_, in, events := setup(t)
	require.Equal(t, 202, postJSON(t, in.addr, key, npsEvent("s-1", "u", 1)).status)
	events.waitEvents("s-1")
	require.Eventually(t, func() bool { return stats(t, in.addr)["forwarded"] == 1 }, 10*time.Second, 20*time.Millisecond)
	s := stats(t, in.addr)
	require.Equal(t, int64(1), s["http_requests"])
	require.Equal(t, int64(1), s["http_events"])
	require.Equal(t, int64(1), s["forwarded"])
}

func TestOneEventTooLargeForKafkaIs413(t *testing.T) {
	kcfg := kafkatest.Start(t)
	createProject(t, kcfg, "prj_1", key)
	cfg := testConfig(t, kcfg)
	cfg.MaxBodyBytes = 2 << 20
	in := start(t, cfg)
	big := npsEvent("big", "u1", 1)
	big["properties"] = map[string]any{"blob": strings.Repeat("x", 950_000)}
	a := postJSON(t, in.addr, key, map[string]any{"events": []any{npsEvent("small", "u1", 1), big}})
	require.Equal(t, 413, a.status, a.body)
	require.Equal(t, "event_too_large", a.errCode())
	require.Equal(t, "events[1]", a.errField())
}

func TestProjectCreatedAfterStartIsAcceptedAtOnce(t *testing.T) {
	kcfg, in, events := setup(t)
	createProject(t, kcfg, "prj_new", "shk_brand_new")
	a := postJSON(t, in.addr, "shk_brand_new", npsEvent("new-1", "u1", 8))
	require.Equal(t, 202, a.status, "a key created a moment ago is known: %v", a.body)
	require.Equal(t, "prj_new", events.waitEvents("new-1")["new-1"][0].ProjectId)
}
