package envelope_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// compileSchema compiles s with an independent validator (draft 2020-12).
func compileSchema(t testing.TB, s envelope.Schema) *jsonschema.Schema {
	t.Helper()
	raw, err := json.Marshal(s)
	require.NoError(t, err)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	require.NoError(t, c.AddResource("body.json", doc))
	compiled, err := c.Compile("body.json")
	require.NoError(t, err)
	return compiled
}

func validate(t testing.TB, s *jsonschema.Schema, body []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	require.NoError(t, err)
	return s.Validate(v)
}

// producerEvent decodes a catalogue example (a producer event) onto the protobuf Event, as far as
// the examples go: free-form objects travel as JSON bytes.
func producerEvent(t testing.TB, example string) *pb.Event {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(example), &m))
	if u, ok := m["user"].(map[string]any); ok && u["traits"] != nil {
		b, err := json.Marshal(u["traits"])
		require.NoError(t, err)
		u["traits"] = base64.StdEncoding.EncodeToString(b)
	}
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	ev := &pb.Event{}
	require.NoError(t, protojson.Unmarshal(raw, ev))
	ev.ProjectId, ev.EventId, ev.TimeMs = "prj_example", "evt_1", 1767182400000
	return ev
}

// TestEveryRenderedBodyMatchesItsSchema renders, for every event type and every body shape,
// the catalogue's example and the richer ExampleEvent, and validates each against the schema.
func TestEveryRenderedBodyMatchesItsSchema(t *testing.T) {
	for _, et := range envelope.Catalogue {
		for _, b := range envelope.Bodies() {
			t.Run(et.Name+"/"+b.Format+b.Version, func(t *testing.T) {
				s, err := envelope.BodySchema(et.Name, b)
				require.NoError(t, err)
				compiled := compileSchema(t, s)
				wh := &pb.Webhook{Id: "wh_1", Format: b.Format, PayloadVersion: b.Version}
				for _, ev := range []*pb.Event{producerEvent(t, et.Example), envelope.ExampleEvent(et)} {
					body, err := envelope.Render(ev, wh)
					require.NoError(t, err)
					require.NoError(t, validate(t, compiled, body), "%s", body)
				}
			})
		}
	}
}

// TestEveryGoldenFileMatchesItsSchema validates the frozen bodies of testdata against the schema
// of their event type and format, and the formats' reference cases rendered with their options.
func TestEveryGoldenFileMatchesItsSchema(t *testing.T) {
	byGolden := map[string]formatCase{}
	for _, c := range formatCases() {
		byGolden[c.golden] = c
	}
	files, err := filepath.Glob("testdata/*.golden.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".golden.json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(path)
			require.NoError(t, err)
			var eventType string
			b := envelope.Body{Format: envelope.FormatEnvelope, Version: "1"}
			if strings.HasPrefix(name, "v1_") {
				var v struct {
					EventType string `json:"event_type"`
				}
				require.NoError(t, json.Unmarshal(body, &v))
				eventType = v.EventType
			} else {
				c, ok := byGolden[name]
				require.True(t, ok, "golden file %s has no case in formatCases", name)
				eventType, b = c.ev.EventType, envelope.Body{Format: c.wh.GetFormat()}
				rendered, err := envelope.Render(c.ev, c.wh, envelope.WithProject(c.project))
				require.NoError(t, err)
				s, err := envelope.BodySchema(eventType, b)
				require.NoError(t, err)
				require.NoError(t, validate(t, compileSchema(t, s), rendered), "%s", rendered)
			}
			s, err := envelope.BodySchema(eventType, b)
			require.NoError(t, err)
			require.NoError(t, validate(t, compileSchema(t, s), body))
		})
	}
}

// TestAWrongBodyFailsItsSchema makes sure the schemas say something: a body with the wrong event
// name, a missing member, an undocumented member or a wrong type is refused.
func TestAWrongBodyFailsItsSchema(t *testing.T) {
	et, _ := envelope.LookupEventType("survey.question_answered")
	for _, b := range envelope.Bodies() {
		t.Run(b.Format+b.Version, func(t *testing.T) {
			s, err := envelope.BodySchema(et.Name, b)
			require.NoError(t, err)
			compiled := compileSchema(t, s)
			body, err := envelope.Render(envelope.ExampleEvent(et), &pb.Webhook{Format: b.Format, PayloadVersion: b.Version})
			require.NoError(t, err)
			require.NoError(t, validate(t, compiled, body))
			var good map[string]any
			require.NoError(t, json.Unmarshal(body, &good))
			for what, change := range map[string]func(m map[string]any){
				"an undocumented member": func(m map[string]any) { m["surprise"] = true },
				"a missing member": func(m map[string]any) {
					for k := range m {
						delete(m, k)
						return
					}
				},
				"every member a number": func(m map[string]any) {
					for k := range m {
						m[k] = 42
					}
				},
			} {
				m := map[string]any{}
				for k, v := range good {
					m[k] = v
				}
				change(m)
				wrong, err := json.Marshal(m)
				require.NoError(t, err)
				require.Error(t, validate(t, compiled, wrong), "%s: %s", what, wrong)
			}
			other, _ := envelope.LookupEventType("flow.seen")
			otherBody, err := envelope.Render(envelope.ExampleEvent(other), &pb.Webhook{Format: b.Format, PayloadVersion: b.Version})
			require.NoError(t, err)
			require.Error(t, validate(t, compiled, otherBody), "a flow.seen body is not a survey.question_answered one: %s", otherBody)
		})
	}
}
