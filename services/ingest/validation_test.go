package ingest_test

import (
	"context"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// hostileBodies are events that every JSON reader on the way accepted before (issue 13): invalid
// UTF-8 inside free-form objects, and a key given twice, the last silently winning.
var hostileBodies = []struct {
	name, body, field, code, reason string
}{
	{"invalid UTF-8 in a trait", "{\"project_id\":\"prj_1\",\"event_type\":\"nps.scored\",\"nps\":{\"score\":9},\"user\":{\"id\":\"u\",\"traits\":{\"team\":\"R&D \xff\"}}}",
		"user.traits.team", "invalid_field", "user.traits.team is not valid UTF-8"},
	{"invalid UTF-8 in a hidden field", "{\"project_id\":\"prj_1\",\"event_type\":\"survey.completed\",\"survey\":{\"id\":\"s\"},\"user\":{\"id\":\"u\"},\"response\":{\"hidden_fields\":{\"a\":{\"b\":\"\xc0\xaf\"}}}}",
		"response.hidden_fields.a.b", "invalid_field", "response.hidden_fields.a.b is not valid UTF-8"},
	{"two event types", `{"project_id":"prj_1","event_type":"nps.scored","event_type":"nps.dismissed","user":{"id":"u"},"nps":{"score":9}}`,
		"event_type", "duplicate_key", `key "event_type" is given twice in the event`},
	{"a property given twice", `{"project_id":"prj_1","event_type":"nps.dismissed","user":{"id":"u"},"properties":{"x":{"y":1,"y":2}}}`,
		"properties.x.y", "duplicate_key", `key "y" is given twice in properties.x`},
}

func TestHostileJSONIsRefusedOverHTTPNamingTheField(t *testing.T) {
	_, in, events := setup(t)
	for _, c := range hostileBodies {
		t.Run(c.name, func(t *testing.T) {
			a := post(t, in.addr, key, "application/json", []byte(c.body))
			require.Equal(t, 400, a.status, a.body)
			require.Equal(t, c.code, a.errCode(), a.body)
			require.Equal(t, c.field, a.errField(), a.body)
			require.Contains(t, a.body["error"].(map[string]any)["message"], c.reason)
		})
	}
	a := post(t, in.addr, key, "application/json", []byte(`{"event_id":"marker","event_type":"nps.dismissed","user":{"id":"u"}}`))
	require.Equal(t, 202, a.status, a.body)
	got := events.waitEvents("marker")
	require.Len(t, got, 1, "nothing of the refused bodies reached events")
}

func TestHostileJSONFromKafkaGoesToRejectedWithTheReason(t *testing.T) {
	kcfg, _, events := setup(t)
	rejected := readTopic(t, kcfg, kcfg.Topics.SurveyEventsRejected)
	w := &kafkago.Writer{Addr: kafkago.TCP(kcfg.Brokers...), Topic: kcfg.Topics.SurveyEvents, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var msgs []kafkago.Message
	for i, c := range hostileBodies {
		msgs = append(msgs, kafkago.Message{Key: []byte{byte('a' + i)}, Value: []byte(c.body)})
	}
	msgs = append(msgs, kafkago.Message{Key: []byte("prj_1"), Value: []byte(`{"project_id":"prj_1","event_id":"marker","event_type":"nps.dismissed","user":{"id":"u"}}`)})
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	events.waitEvents("marker")
	require.Eventually(t, func() bool { return len(rejected.records()) == len(hostileBodies) }, 30*time.Second, 20*time.Millisecond)
	for _, r := range rejected.records() {
		c := hostileBodies[int(r.Key[0]-'a')]
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		require.Equal(t, c.body, string(r.Value), "%s: the original bytes are kept", c.name)
		require.Equal(t, c.field, h["rejection-field"], c.name)
		require.Equal(t, c.code, h["rejection-code"], c.name)
		require.Contains(t, h["rejection-reason"], c.reason, c.name)
	}
	require.Len(t, events.events(), 1, "only the valid record reached events")
}
