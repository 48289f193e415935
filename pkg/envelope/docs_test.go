package envelope_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// docsPath is the payload documentation these tests keep honest.
const docsPath = "../../docs/payloads.md"

// maximalEvent sets every field of Event (TestMaximalEventSetsEveryField keeps it so when the
// proto grows), so that rendering it shows every field a body can carry.
func maximalEvent() *pb.Event {
	ev := completedResponse()
	ev.ReceivedAtMs = ev.TimeMs + 5
	ev.Preview = true
	ev.Source = "http"
	ev.User.LastSeenMs = 1627566309000
	ev.Response.DismissedAtMs = 1627566309400
	ev.Question = &pb.Question{Id: "q1", Type: "multiple_choice", Title: "Which features do you use?"}
	ev.Answer = &pb.Answer{RepliedAtMs: 1627566309286, Tags: []string{"features"}, Fields: []*pb.Field{
		{Id: "c1", Type: "choice", Text: "Reports", Number: ptr(1.0), Boolean: ptr(true), TimeMs: 1627566300000, Value: []byte(`"Reports"`)},
	}}
	for _, it := range ev.Response.Items {
		it.Answer.RepliedAtMs, it.Answer.Tags = 1627566309286, []string{"feedback"}
		it.Answer.Fields[0] = &pb.Field{Id: "c71dfe9d", Type: "string", Text: "Buggy", Number: ptr(2.0),
			Boolean: ptr(false), TimeMs: 1627566300000, Value: []byte(`"Buggy"`)}
	}
	ev.Element = &pb.Element{Type: "feature_tag", Id: "7", Name: "Export button", Action: "text_input", Text: "hello"}
	ev.Nps = &pb.Nps{Score: ptr(int32(9)), Question: "How likely are you to recommend us?",
		FollowUpQuestion: "Why?", Feedback: "Fast"}
	ev.Context.Ip = "203.0.113.7"
	ev.Properties = []byte(`{"campaign":"q3"}`)
	return ev
}

func TestMaximalEventSetsEveryField(t *testing.T) {
	var walk func(m protoreflect.Message, path string)
	walk = func(m protoreflect.Message, path string) {
		fields := m.Descriptor().Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			p := path + "." + string(fd.Name())
			require.True(t, m.Has(fd), "maximalEvent leaves %s unset: set it, and document what it renders to", p)
			switch {
			case fd.IsList() && fd.Message() != nil:
				l := m.Get(fd).List()
				for j := range l.Len() {
					walk(l.Get(j).Message(), fmt.Sprintf("%s[%d]", p, j))
				}
			case fd.Message() != nil && !fd.IsMap():
				walk(m.Get(fd).Message(), p)
			}
		}
	}
	walk(maximalEvent().ProtoReflect(), "Event")
}

// freeForm are the objects whose keys are the producer's (traits, hidden fields, answers by
// question), not ours: documented as a whole, not key by key.
var freeForm = map[string][]string{
	"":          {"payload.user.traits", "payload.account.traits", "payload.response.hidden_fields", "payload.properties"},
	"refiner":   {"attributes", "account.attributes", "response.data"},
	"screeb":    {"payload.response.hidden_fields"},
	"userpilot": {},
	"askusers":  {"data.response.response_data", "data.submission.submission_data"},
	"segmanta":  {"session.parameters", "respondent.attributes", "answer.value", "answers[].value"},
}

// docSections maps each format to the heading of its section in docs/payloads.md.
var docSections = map[string]string{
	"":          "## The surveyhooks envelope, version 1",
	"refiner":   "### Refiner (`refiner`)",
	"screeb":    "### Screeb (`screeb`)",
	"userpilot": "### Userpilot (`userpilot`)",
	"askusers":  "### Ask Users (`askusers`)",
	"segmanta":  "### Segmanta (`segmanta`)",
}

// TestEveryFieldIsDocumented renders the maximal event as every event type in every format, and
// requires each JSON path it produces to be documented in that format's section of
// docs/payloads.md as `path` — and each documented path to be one a body can carry.
func TestEveryFieldIsDocumented(t *testing.T) {
	docs := readDocs(t)
	types := append([]string{envelope.TestEventType}, envelope.EventTypes...)
	for format, heading := range docSections {
		t.Run("format "+format, func(t *testing.T) {
			emitted := map[string]bool{}
			for _, typ := range types {
				ev := maximalEvent()
				ev.EventType = typ
				body, err := envelope.Render(ev, &pb.Webhook{Format: format})
				require.NoError(t, err)
				var v any
				require.NoError(t, json.Unmarshal(body, &v))
				jsonPaths(v, "", freeForm[format], emitted)
			}
			section := docSection(t, docs, heading)
			var missing []string
			for p := range emitted {
				if !strings.Contains(section, "| `"+p+"` |") {
					missing = append(missing, p)
				}
			}
			sort.Strings(missing)
			require.Empty(t, missing, "fields a %q body carries but %s does not document (as a table row \"| `path` |\")", format, docsPath)
			for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(section, -1) {
				require.True(t, emitted[m[1]], "%s documents `%s` under %q, which no body carries", docsPath, m[1], heading)
			}
		})
	}
}

// jsonPaths adds the path of every field of v: "a.b", lists as "a[].b".
func jsonPaths(v any, prefix string, stop []string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			if !slices.Contains(stop, p) {
				jsonPaths(e, p, stop, out)
			}
		}
	case []any:
		for _, e := range x {
			jsonPaths(e, prefix+"[]", stop, out)
		}
	}
}

func readDocs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(docsPath)
	require.NoError(t, err)
	return string(b)
}

// docSection returns the text under heading up to the next heading of the same or a higher level.
func docSection(t *testing.T, docs, heading string) string {
	t.Helper()
	i := strings.Index(docs, "\n"+heading+"\n")
	require.GreaterOrEqual(t, i, 0, "%s has no heading %q", docsPath, heading)
	level := strings.Index(heading, " ")
	rest := docs[i+len(heading)+2:]
	for j := 0; j < len(rest); {
		k := strings.Index(rest[j:], "\n#")
		if k < 0 {
			break
		}
		j += k + 1
		n := len(rest[j:]) - len(strings.TrimLeft(rest[j:], "#"))
		if n <= level && strings.HasPrefix(rest[j+n:], " ") {
			return rest[:j]
		}
	}
	return rest
}

// TestEventNameTableIsDocumented requires docs/payloads.md to hold the mapping of every event type
// onto each format's names exactly as the code has it.
func TestEventNameTableIsDocumented(t *testing.T) {
	var b strings.Builder
	b.WriteString("| surveyhooks | " + strings.Join(envelope.Formats, " | ") + " |\n")
	b.WriteString("|---" + strings.Repeat("|---", len(envelope.Formats)) + "|\n")
	for _, typ := range append(slices.Clone(envelope.EventTypes), envelope.TestEventType) {
		b.WriteString("| `" + typ + "` |")
		for _, f := range envelope.Formats {
			if n, ok := envelope.EventName(f, typ); ok {
				b.WriteString(" `" + n + "` |")
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
	require.Contains(t, readDocs(t), b.String(), "the event name table in %s differs from the code's; it should read:\n%s", docsPath, b.String())
}

// TestDocumentedExamplesAreTheGoldenFiles requires every example marked
// "<!-- golden: testdata/NAME.golden.json -->" in docs/payloads.md to be that file, byte for byte.
func TestDocumentedExamplesAreTheGoldenFiles(t *testing.T) {
	docs := readDocs(t)
	marks := regexp.MustCompile("<!-- golden: (testdata/[a-z0-9_]+\\.golden\\.json) -->\n```json\n((?s:.*?))```").FindAllStringSubmatch(docs, -1)
	require.GreaterOrEqual(t, len(marks), 6, "one example per format and for the envelope")
	for _, m := range marks {
		want, err := os.ReadFile(m[1])
		require.NoError(t, err)
		require.Equal(t, string(want), m[2], "the example in %s is not %s", docsPath, m[1])
	}
}

// TestDocumentedExpressionsCompile compiles every example filter and transform in
// docs/payloads.md, so that none of them teaches something that does not work.
func TestDocumentedExpressionsCompile(t *testing.T) {
	docs := readDocs(t)
	filters := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(docSection(t, docs, "## Filters"), -1)
	transforms := regexp.MustCompile("(?s)```\n(.*?)\n```").FindAllStringSubmatch(docSection(t, docs, "## Transforms"), -1)
	require.GreaterOrEqual(t, len(filters), 5)
	require.GreaterOrEqual(t, len(transforms), 2)
	for _, m := range filters {
		switch m[1] {
		case "event", "traits", "account_traits", "hidden_fields", "properties": // the variables table
			continue
		}
		require.NoError(t, envelope.ValidateFilter(m[1]), "documented filter %s", m[1])
	}
	for _, m := range transforms {
		require.NoError(t, envelope.ValidateTransform(m[1]), "documented transform %s", m[1])
	}
	// And the first transform does what the text says on a detractor.
	r, err := envelope.NewRenderer(&pb.Webhook{Transform: transforms[0][1]})
	require.NoError(t, err)
	ev := maximalEvent()
	ev.Nps.Score = ptr(int32(3))
	body, err := r.Render(ev)
	require.NoError(t, err)
	require.JSONEq(t, `{"text":"NPS 3 from samuel@example.com: Fast"}`, string(body))
}
