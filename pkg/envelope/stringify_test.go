package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// nodeStringify runs each document through a real Node.js: JSON.stringify(JSON.parse(doc)), the
// re-serialisation Ask Users' verification recipe performs. Node is part of the test toolchain
// (see the README); without it the test fails rather than pass unproven.
func nodeStringify(t *testing.T, docs [][]byte) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err, "these tests compare with a real JSON.stringify: install Node.js (apt-get install nodejs)")
	in := make([]string, len(docs))
	for i, d := range docs {
		in[i] = base64.StdEncoding.EncodeToString(d)
	}
	stdin, err := json.Marshal(in)
	require.NoError(t, err)
	const script = `let s = ''; process.stdin.on('data', d => s += d).on('end', () => {
	  const out = JSON.parse(s).map(b => {
	    try { return Buffer.from(JSON.stringify(JSON.parse(Buffer.from(b, 'base64').toString('utf8'))), 'utf8').toString('base64') }
	    catch (e) { return 'ERR ' + e.message }
	  });
	  process.stdout.write(JSON.stringify(out));
	});`
	cmd := exec.Command(node, "-e", script)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, "node: %s", stderr.String())
	var got []string
	require.NoError(t, json.Unmarshal(stdout, &got))
	require.Len(t, got, len(docs))
	out := make([]string, len(got))
	for i, g := range got {
		require.False(t, strings.HasPrefix(g, "ERR "), "node could not parse %q: %s", docs[i], g)
		b, err := base64.StdEncoding.DecodeString(g)
		require.NoError(t, err)
		out[i] = string(b)
	}
	return out
}

// stringifyCases are documents whose JSON.stringify form differs from Go's encoding in some way.
var stringifyCases = []string{
	`{"a":"R&D <team> \u0026 \u003cb\u003e"}`,
	`"line\u2028separator\u2029paragraph"`,
	"\"emoji 😀 and \\ud83d\\ude00 and é and \\u00e9\"",
	`"lone \ud800 and \udfff surrogates, \uD83D alone"`,
	`"controls \u0000 \u0001 \b \f \n \r \t \u000b \u001f \u007f \u0080 \/ \" \\"`,
	`[0, -0, 1.0, 9.50, 1e3, 1E+3, 1e21, 1e-7, 1e-6, 0.000001, 123456789012345678901234, 1.7976931348623157e308, 5e-324, 1e400, -1e400, 0.1, 100, 1e20, 2.5e-7, 9007199254740993]`,
	`{"b":1,"a":2,"2":3,"10":4,"1":5,"01":6,"-1":7,"4294967294":8,"4294967295":9,"1.5":10}`,
	`{"k":1,"j":2,"k":3}`,
	`{"1":1,"x":2,"1":3}`,
	` { "spaced" : [ 1 , { } , [ ] , true , false , null ] } `,
	`{"nested":{"3":{"2":"\u2028"},"a":[{"1":1,"0":0}]}}`,
	`{"":"empty key","__proto__":{"x":1}}`,
}

func TestStringifyWritesWhatJSONStringifyWrites(t *testing.T) {
	docs := make([][]byte, len(stringifyCases))
	for i, c := range stringifyCases {
		docs[i] = []byte(c)
	}
	want := nodeStringify(t, docs)
	for i, d := range docs {
		got, err := stringify(d)
		require.NoError(t, err, "%s", d)
		require.Equal(t, want[i], string(got), "input %s", d)
		again, err := stringify(got)
		require.NoError(t, err)
		require.Equal(t, string(got), string(again), "stringify is idempotent")
	}
}

func TestStringifyRefusesWhatIsNotJSON(t *testing.T) {
	for _, doc := range []string{``, `{`, `{"a":1,}`, `[1 2]`, `"\x"`, "\"tab\there\"", `nul`, `{"a":1} x`, `"\u12"`} {
		_, err := stringify([]byte(doc))
		require.Error(t, err, "%q", doc)
	}
}

// Issue 18: answers such as "R&D <team>", emoji and line separators, in every format and envelope
// version, with and without a transform, arrive as bytes that JSON.stringify(JSON.parse(body))
// reproduces exactly — checked by a real Node.js.
func TestEveryFormatsBodyIsAFixedPointOfJSONStringify(t *testing.T) {
	ev := &pb.Event{
		EventId: "evt_1", ProjectId: "prj_1", EventType: "survey.completed", TimeMs: 1700000000000,
		Survey: &pb.Survey{Id: "s1", Name: "R&D <team> survey"},
		User: &pb.User{Id: "u1", Name: "Zoë 😀", Email: "a&b@example.com",
			Traits: []byte(`{"team":"R&D <team>","2":"two","1":"one","ratio":1.50,"big":1E3,"sep":"a\u2028b"}`)},
		Account: &pb.Account{Id: "42", Name: "<Acme & Co>", Traits: []byte(`{"note":"\u003cb\u003e"}`)},
		Response: &pb.Response{Id: "r1", Completion: "fully_completed", HiddenFields: []byte(`{"ref":"x\u2029y"}`),
			Items: []*pb.Item{
				{Question: &pb.Question{Id: "2", Type: "input", Title: "Who?"}, Answer: &pb.Answer{Fields: []*pb.Field{
					{Type: "string", Text: "R&D <team>\u2028next line 🎉", Value: []byte(`"R&D <team>\u2028next line 🎉"`)}}}},
				{Question: &pb.Question{Id: "1", Type: "nps"}, Answer: &pb.Answer{Fields: []*pb.Field{
					{Type: "number", Number: new(float64), Value: []byte(`0.0`)}}}},
			}},
		Properties: []byte(`{"html":"<script>alert('&')</script>"}`),
	}
	var docs [][]byte
	var names []string
	webhooks := []*pb.Webhook{}
	for _, v := range Versions {
		webhooks = append(webhooks, &pb.Webhook{PayloadVersion: v}, &pb.Webhook{PayloadVersion: v, UserProperties: []string{"team", "1"}})
	}
	for _, f := range Formats {
		webhooks = append(webhooks, &pb.Webhook{Format: f})
	}
	webhooks = append(webhooks, &pb.Webhook{Transform: `{"who": event.user.name, "team": traits.team, "html": properties.html, "body": body}`})
	for _, wh := range webhooks {
		body, err := Render(ev, wh, WithProject(&pb.Project{Id: "prj_1", Name: "R&D <Lab> \u2028"}))
		require.NoError(t, err)
		require.NotContains(t, string(body), `\u0026`, "format %q version %q", wh.Format, wh.PayloadVersion)
		require.NotContains(t, string(body), `\u003c`)
		require.NotContains(t, string(body), `\u2028`)
		docs = append(docs, body)
		names = append(names, "format "+wh.Format+" version "+wh.PayloadVersion+" transform "+wh.Transform)
	}
	want := nodeStringify(t, docs)
	for i := range docs {
		require.Equal(t, want[i], string(docs[i]), "%s: JSON.stringify(JSON.parse(body)) must give back the body", names[i])
	}
}

// A numeric id a JavaScript number cannot hold exactly stays a string: written as a number it
// would reach every JavaScript receiver (and, re-serialised, every signature check) as another id.
func TestIdsBeyondJavaScriptsSafeIntegersStayStrings(t *testing.T) {
	for id, want := range map[string]any{"1": int64(1), "9007199254740991": int64(9007199254740991),
		"9007199254740993": "9007199254740993", "-9007199254740993": "-9007199254740993", "007": "007"} {
		require.Equal(t, want, idValue(id), id)
	}
}

// FuzzStringify: for any JSON document, stringify succeeds, is idempotent, and every JSON parser
// reads the same value from its output as from its input (key order aside).
func FuzzStringify(f *testing.F) {
	for _, c := range stringifyCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var before any
		if !json.Valid(doc) || json.Unmarshal(doc, &before) != nil {
			return // not JSON, or a number beyond a double (JavaScript reads Infinity, Go refuses)
		}
		out, err := stringify(doc)
		require.NoError(t, err, "%q", doc)
		again, err := stringify(out)
		require.NoError(t, err)
		require.Equal(t, string(out), string(again), "idempotent for %q", doc)
		var after any
		require.NoError(t, json.Unmarshal(out, &after), "%q gave %q", doc, out)
		require.Equal(t, before, after, "%q gave %q", doc, out)
	})
}

// Ingest accepts free-form objects as deep as encoding/json reads them (10000 levels): their bodies
// must still be written.
func TestDeeplyNestedTraitsStillRender(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 9990) + `"R&D"` + strings.Repeat(`}`, 9990)
	require.True(t, json.Valid([]byte(deep)))
	for _, f := range append([]string{FormatEnvelope}, Formats...) {
		body, err := Render(&pb.Event{EventId: "e", EventType: "survey.completed", ProjectId: "p",
			User: &pb.User{Id: "u", Traits: []byte(deep)}, Properties: []byte(deep)}, &pb.Webhook{Format: f})
		require.NoError(t, err, "format %q", f)
		require.True(t, json.Valid(body))
	}
}

func BenchmarkStringify(b *testing.B) {
	body, err := renderFormat(&pb.Event{EventId: "e", EventType: "survey.completed", ProjectId: "p",
		User: &pb.User{Id: "u", Name: "R&D <team>", Traits: []byte(`{"plan":"pro","seats":12,"tags":["a","b"]}`)},
		Response: &pb.Response{Id: "r", Items: []*pb.Item{{Question: &pb.Question{Id: "q"},
			Answer: &pb.Answer{Fields: []*pb.Field{{Type: "string", Text: "x", Value: []byte(`"x"`)}}}}}}}, &pb.Webhook{}, options{})
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = stringify(body)
	}
}
