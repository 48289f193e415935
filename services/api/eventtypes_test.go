package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
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

type servedBody struct {
	Format    string          `json:"format"`
	Version   string          `json:"version"`
	EventName string          `json:"event_name"`
	Schema    json.RawMessage `json:"schema"`
	Example   json.RawMessage `json:"example"`
}

type servedEventType struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Example     json.RawMessage `json:"example"`
	Bodies      []servedBody    `json:"bodies"`
}

func compiled(t *testing.T, schema json.RawMessage) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("body.json", doc))
	s, err := c.Compile("body.json")
	require.NoError(t, err)
	return s
}

func validBody(t *testing.T, s *jsonschema.Schema, body []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	require.NoError(t, err)
	return s.Validate(v)
}

// fromProducer decodes a catalogue example (a producer event) onto the protobuf Event; the
// examples' free-form objects travel as JSON bytes.
func fromProducer(t *testing.T, example []byte) *pb.Event {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(example, &m))
	if u, ok := m["user"].(map[string]any); ok && u["traits"] != nil {
		b, err := json.Marshal(u["traits"])
		require.NoError(t, err)
		u["traits"] = base64.StdEncoding.EncodeToString(b)
	}
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	ev := &pb.Event{}
	require.NoError(t, protojson.Unmarshal(raw, ev))
	ev.ProjectId, ev.EventId, ev.TimeMs = "prj_a", "evt_1", 1767182400000
	return ev
}

// TestEventTypesServeASchemaEveryRenderedBodyMeets reads GET /v1/event-types as a client would and
// validates against each served schema (with an independent validator) the served example, the
// catalogue's example rendered by fan-out's renderer in that format or
// version, and every golden file of pkg/envelope; a body of the wrong type, or broken, fails.
func TestEventTypesServeASchemaEveryRenderedBodyMeets(t *testing.T) {
	s := startStack(t)
	pa, key := s.project("A")
	ingestOnly := s.must(http.StatusCreated, "POST", "/v1/projects/"+pa+"/keys", key,
		map[string]any{"name": "ingest", "scopes": []string{"ingest"}}).str("key")

	r := s.must(http.StatusOK, "GET", "/v1/event-types", key, nil)
	require.Equal(t, r.raw, s.must(http.StatusOK, "GET", "/v1/event-types", adminToken, nil).raw,
		"the admin token needs no project and sees the same catalogue")
	require.Equal(t, r.raw, s.must(http.StatusOK, "GET", "/v1/event-types", ingestOnly, nil).raw, "any valid key reads it")
	s.must(http.StatusUnauthorized, "GET", "/v1/event-types", "", nil)
	s.must(http.StatusUnauthorized, "GET", "/v1/event-types", "sk_not_a_key", nil)

	var served struct {
		Data []servedEventType `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.raw, &served))
	var names []string
	for _, et := range served.Data {
		names = append(names, et.Name)
	}
	require.Equal(t, envelope.EventTypes, names)

	// schemas[format+version][event type]
	schemas := map[string]map[string]*jsonschema.Schema{}
	for _, et := range served.Data {
		cat, _ := envelope.LookupEventType(et.Name)
		require.Equal(t, cat.Description, et.Description)
		require.JSONEq(t, cat.Example, string(et.Example))
		require.Len(t, et.Bodies, len(envelope.Bodies()))
		for _, b := range et.Bodies {
			t.Run(et.Name+"/"+b.Format+b.Version, func(t *testing.T) {
				require.Contains(t, string(b.Schema), `"$schema":"https://json-schema.org/draft/2020-12/schema"`)
				sch := compiled(t, b.Schema)
				if schemas[b.Format+b.Version] == nil {
					schemas[b.Format+b.Version] = map[string]*jsonschema.Schema{}
				}
				schemas[b.Format+b.Version][et.Name] = sch
				require.NoError(t, validBody(t, sch, b.Example), "served example: %s", b.Example)
				wh := &pb.Webhook{Id: "wh_1", Format: b.Format, PayloadVersion: b.Version}
				body, err := envelope.Render(fromProducer(t, et.Example), wh)
				require.NoError(t, err)
				require.NoError(t, validBody(t, sch, body), "the catalogue's example: %s", body)

				var m map[string]any
				require.NoError(t, json.Unmarshal(b.Example, &m))
				m["not_in_any_body"] = 1
				extra, _ := json.Marshal(m)
				require.Error(t, validBody(t, sch, extra), "an undocumented member must fail: %s", extra)
				require.Error(t, validBody(t, sch, []byte(`{"event_type":"`+et.Name+`"}`)), "a body missing its members must fail")
			})
		}
	}
	// A body of another type fails: an NPS score is not a flow seen, in any format.
	for shape, byType := range schemas {
		flow := byType["flow.seen"]
		for _, et := range served.Data {
			if et.Name != "nps.scored" {
				continue
			}
			for _, b := range et.Bodies {
				if b.Format+b.Version == shape {
					require.Error(t, validBody(t, flow, b.Example), "%q: an nps.scored body passed as flow.seen: %s", shape, b.Example)
				}
			}
		}
	}

	// Every golden file meets the served schema of its format (the envelope's by its event_type;
	// a platform's names several of our types alike, so one of them).
	files, err := filepath.Glob("../../pkg/envelope/testdata/*.golden.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, path := range files {
		body, err := os.ReadFile(path)
		require.NoError(t, err)
		name := filepath.Base(path)
		format, _, _ := strings.Cut(name, "_")
		if format == "v1" {
			var v struct {
				EventType string `json:"event_type"`
			}
			require.NoError(t, json.Unmarshal(body, &v))
			require.NoError(t, validBody(t, schemas["1"][v.EventType], body), name)
			continue
		}
		require.Contains(t, envelope.Formats, format, name)
		var matched []string
		for typ, sch := range schemas[format] {
			if validBody(t, sch, body) == nil {
				matched = append(matched, typ)
			}
		}
		require.NotEmpty(t, matched, "%s meets no served schema of format %s", name, format)
	}
}
