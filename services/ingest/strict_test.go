package ingest

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// strictCases are bodies every JSON reader in the pipeline accepted before, each refused now with
// the path of the culprit: invalid UTF-8 or a lone surrogate anywhere (free-form objects and raw
// answer values included), and a key given twice at any depth.
var strictCases = []struct {
	name, body, field, code string
}{
	{"invalid UTF-8 in a trait", "{\"event_type\":\"nps.scored\",\"nps\":{\"score\":9},\"user\":{\"id\":\"u\",\"traits\":{\"plan\":\"pro\xff\"}}}", "user.traits.plan", "invalid_field"},
	{"invalid UTF-8 deep in properties", "{\"event_type\":\"nps.scored\",\"nps\":{\"score\":9},\"user\":{\"id\":\"u\"},\"properties\":{\"a\":[1,{\"b\":\"\xc3\x28\"}]}}", "properties.a[1].b", "invalid_field"},
	{"invalid UTF-8 in a hidden field", "{\"event_type\":\"survey.completed\",\"survey\":{\"id\":\"s\"},\"user\":{\"id\":\"u\"},\"response\":{\"hidden_fields\":{\"src\":\"\xed\xa0\x80\"}}}", "response.hidden_fields.src", "invalid_field"},
	{"invalid UTF-8 in an account trait key", "{\"event_type\":\"nps.scored\",\"nps\":{\"score\":9},\"user\":{\"id\":\"u\"},\"account\":{\"traits\":{\"k\xfe\":1}}}", "account.traits", "invalid_field"},
	{"invalid UTF-8 in a raw answer value", "{\"event_type\":\"survey.question_answered\",\"survey\":{\"id\":\"s\"},\"user\":{\"id\":\"u\"},\"question\":{\"id\":\"q\"},\"answer\":{\"fields\":[{\"value\":[\"ok\",\"\x80\"]}]}}", "answer.fields[0].value[1]", "invalid_field"},
	{"invalid UTF-8 in an escaped string", "{\"event_type\":\"nps.scored\",\"nps\":{\"score\":9},\"user\":{\"id\":\"u\",\"name\":\"a\\\"\xff\"}}", "user.name", "invalid_field"},
	{"lone high surrogate in a trait", `{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u","traits":{"t":"\ud83d"}}}`, "user.traits.t", "invalid_field"},
	{"lone low surrogate in feedback", `{"event_type":"nps.feedback","user":{"id":"u"},"nps":{"feedback":"ok \ude00"}}`, "nps.feedback", "invalid_field"},
	{"duplicate event_type", `{"event_type":"nps.scored","event_type":"nps.dismissed","user":{"id":"u"},"nps":{"score":9}}`, "event_type", "duplicate_key"},
	{"duplicate key in traits", `{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u","traits":{"plan":"free","plan":"pro"}}}`, "user.traits.plan", "duplicate_key"},
	{"duplicate key spelt with an escape", `{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u","traits":{"plan":1,"pl\u0061n":2}}}`, "user.traits.plan", "duplicate_key"},
	{"duplicate key in an array's object", `{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u"},"properties":{"l":[{"a":1},{"a":1,"b":2,"a":3}]}}`, "properties.l[1].a", "duplicate_key"},
	{"duplicate key among many", `{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u","traits":{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"e":2}}}`, "user.traits.e", "duplicate_key"},
	{"duplicate key among more than sixteen", `{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u"},"properties":{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k18":18,"k19":19,"k3":0}}`, "properties.k3", "duplicate_key"},
	{"escaped duplicate among more than sixteen", `{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u"},"properties":{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k18":18,"k19":19,"k\u0031":0}}`, "properties.k1", "duplicate_key"},
	{"duplicate known object", `{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u"},"user":{"id":"v"}}`, "user", "duplicate_key"},
	{"duplicate key in a batched event", `{"events":[{"event_type":"nps.dismissed","user":{"id":"u"}},{"event_type":"nps.dismissed","user":{"id":"u","id":"v"}}]}`, "events[1].user.id", "duplicate_key"},
	{"duplicate events of a batch", `{"events":[{"event_type":"nps.dismissed","user":{"id":"u"}}],"events":[]}`, "events", "duplicate_key"},
}

func TestInvalidUnicodeAndDuplicateKeysAreRefusedNamingTheField(t *testing.T) {
	for _, c := range strictCases {
		t.Run(c.name, func(t *testing.T) {
			_, _, herr := decodeEvents([]byte(c.body), 10, 1)
			require.NotNil(t, herr, "%q must be refused", c.body)
			require.Equal(t, 400, herr.Status)
			require.Equal(t, c.code, herr.Code, herr.Message)
			require.Equal(t, c.field, herr.Field, herr.Message)
		})
	}
}

func TestValidUnicodeAndRepeatedKeysInDifferentObjectsAreAccepted(t *testing.T) {
	for _, body := range []string{
		`{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u","name":"R&D <team> 😀","traits":{"a":{"id":1},"b":{"id":1},"s":"\ud83d\ude00 \u2028 é","é":"\u00e9"}}}`,
		`{"event_type":"nps.scored","nps":{"score":9},"user":{"id":"u"},"properties":{"a":1,"A":2,"a ":3,"l":[{"a":1},{"a":1}]}}`,
	} {
		evs, _, herr := decodeEvents([]byte(body), 10, 1)
		require.Nil(t, herr, "%s", body)
		require.Len(t, evs, 1)
	}
}

// Protobuf producers hand over the free-form JSON as bytes: the same rules hold for them.
func TestProtobufFreeFormJSONIsCheckedLikeJSONInput(t *testing.T) {
	base := func() *pb.Event {
		return &pb.Event{EventType: "survey.question_answered", ProjectId: "p", User: &pb.User{Id: "u"},
			Survey: &pb.Survey{Id: "s"}, Question: &pb.Question{Id: "q"},
			Answer: &pb.Answer{Fields: []*pb.Field{{Type: "string", Text: "x", Value: []byte(`"x"`)}}}}
	}
	for _, c := range []struct {
		name  string
		set   func(ev *pb.Event)
		field string
		code  string
	}{
		{"traits with invalid UTF-8", func(ev *pb.Event) { ev.User.Traits = []byte("{\"a\":\"\xff\"}") }, "user.traits.a", "invalid_field"},
		{"properties with a duplicate key", func(ev *pb.Event) { ev.Properties = []byte(`{"a":1,"a":2}`) }, "properties.a", "duplicate_key"},
		{"hidden fields with a lone surrogate", func(ev *pb.Event) {
			ev.Response = &pb.Response{HiddenFields: []byte(`{"h":"\udfff"}`)}
		}, "response.hidden_fields.h", "invalid_field"},
		{"answer value that is not JSON", func(ev *pb.Event) { ev.Answer.Fields[0].Value = []byte(`{`) }, "answer.fields[0].value", "invalid_field"},
		{"item answer value with a duplicate key", func(ev *pb.Event) {
			ev.Response = &pb.Response{Items: []*pb.Item{{Answer: &pb.Answer{Fields: []*pb.Field{{Value: []byte(`{"k":1,"k":1}`)}}}}}}
		}, "response.items[0].answer.fields[0].value.k", "duplicate_key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := base()
			require.Nil(t, Validate(proto.Clone(ev).(*pb.Event), ""), "the base event is valid")
			c.set(ev)
			b, err := proto.Marshal(ev)
			require.NoError(t, err)
			got := &pb.Event{}
			require.NoError(t, proto.Unmarshal(b, got))
			herr := Validate(got, "")
			require.NotNil(t, herr)
			require.Equal(t, c.code, herr.Code, herr.Message)
			require.Equal(t, c.field, herr.Field, herr.Message)
		})
	}
}

// The check runs on every event: a valid one, with the objects events have (up to 16 keys, keys
// without escapes), costs no allocation.
func TestStrictCheckOfAValidEventAllocatesNothing(t *testing.T) {
	body := []byte(`{"event_type":"survey.completed","survey":{"id":"s"},"user":{"id":"u","name":"Zoë \u00e9 😀",` +
		`"traits":{"a":1,"b":[1,2,{"c":"d"}],"e":{"f":{"g":null}},"h":"\ud83d\ude00","i":true,"j":1,"k":2,"l":3,"m":4,"n":5}}}`)
	require.Nil(t, strictJSON(body, ""))
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = strictJSON(body, "events[0]") }))
}
