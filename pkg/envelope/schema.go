package envelope

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Schemas of delivered bodies, for the event-type registry (GET /v1/event-types). They are
// generated, never written per event type: the envelope versions, Screeb and Refiner from the
// renderers' own Go types (reflection over their json tags), the formats that build their bodies
// member by member (Userpilot, Ask Users, Segmanta) from one typed description per format beside
// it; then narrowed per event type from the Catalogue (the name the format sends, the sections
// ingest guarantees). Tests validate real rendered bodies and the golden files against them.

// SchemaDialect is the JSON Schema dialect of every schema BodySchema returns.
const SchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// Schema is one JSON Schema node.
type Schema = map[string]any

// Body names one shape of delivered body: a compatible format, or the envelope in a payload version.
type Body struct {
	Format  string `json:"format"`  // "" for the surveyhooks envelope
	Version string `json:"version"` // the envelope's payload version; "" for a compatible format
}

// Bodies lists every body shape a webhook can receive: each envelope version, then each format.
func Bodies() []Body {
	out := make([]Body, 0, len(Versions)+len(Formats))
	for _, v := range Versions {
		out = append(out, Body{Format: FormatEnvelope, Version: v})
	}
	for _, f := range Formats {
		out = append(out, Body{Format: f})
	}
	return out
}

// BodySchema returns the JSON Schema (draft 2020-12) of the body a webhook of shape b receives for
// an event of catalogue type eventType, before any transform (a transform's output is the
// subscriber's own shape). It does not cover TestEventType.
func BodySchema(eventType string, b Body) (Schema, error) {
	et, ok := LookupEventType(eventType)
	if !ok {
		return nil, fmt.Errorf("unknown event type %q", eventType)
	}
	var s Schema
	switch b.Format {
	case FormatEnvelope:
		if b.Version != "1" {
			return nil, fmt.Errorf("unknown payload version %q (have %v)", b.Version, Versions)
		}
		s = v1Schema(et)
	case FormatScreeb:
		s = typeSchema(reflect.TypeFor[screebBody]())
		props(s)["event_type"] = Schema{"const": eventName(FormatScreeb, et.Name)}
		props(s)["version"] = Schema{"const": screebVersion}
	case FormatRefiner:
		s = typeSchema(reflect.TypeFor[refinerBody]())
		props(s)["triggered_event"] = Schema{"const": eventName(FormatRefiner, et.Name)}
		if et.Survey {
			requireMembers(s, "form", "response")
		}
	case FormatUserpilot:
		s = userpilotSchema(et)
	case FormatAskUsers:
		s = askUsersSchema(et)
	case FormatSegmanta:
		s = segmantaSchema(et)
	default:
		return nil, ValidateFormat(b.Format)
	}
	s["$schema"] = SchemaDialect
	return s, nil
}

// ExampleEvent is a sample event of type et with every section Send Test's sample has, plus those
// the type's catalogue entry requires (question and answer, element, NPS feedback), so that its
// rendered bodies show what a subscriber of the type receives.
func ExampleEvent(et EventType) *pb.Event {
	ev := TestEvent("prj_example", time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC))
	ev.EventType, ev.EventId = et.Name, "evt_example"
	if et.Question {
		ev.Question = &pb.Question{Id: "q1", Type: "input", Title: "What could we improve?"}
		ev.Answer = &pb.Answer{RepliedAtMs: ev.TimeMs, Fields: []*pb.Field{{Id: "f1", Type: "string",
			Text: "Faster exports", Value: []byte(`"Faster exports"`)}}}
	}
	if et.Element != "" {
		ev.Element = &pb.Element{Type: et.Element, Id: "example-" + et.Element, Name: "Example " + et.Element, Action: et.Action}
	}
	if et.Feedback {
		ev.Nps.FollowUpQuestion, ev.Nps.Feedback = "Why this score?", "Great product"
	}
	return ev
}

// v1Schema is version 1 of the envelope for et: its Go types, the type's name, and the sections
// ingest guarantees an event of the type carries.
func v1Schema(et EventType) Schema {
	s := typeSchema(reflect.TypeFor[v1]())
	props(s)["event_type"] = Schema{"const": et.Name}
	props(s)["version"] = Schema{"const": "1"}
	p := props(s)["payload"].(Schema)
	if et.Survey {
		requireMembers(p, "survey")
	}
	if et.Question {
		requireMembers(p, "question", "answer")
	}
	if et.Element != "" && !et.SurveyOr {
		requireMembers(p, "element")
	}
	if et.Score || et.Feedback {
		requireMembers(p, "nps")
		nps := props(p)["nps"].(Schema)
		if et.Score {
			requireMembers(nps, "score")
		}
		if et.Feedback {
			requireMembers(nps, "feedback")
		}
	}
	if et.Who == UserID {
		requireMembers(p, "user")
		requireMembers(props(p)["user"].(Schema), "id")
	}
	return s
}

// typeSchema describes what encoding/json writes for a value of type t: structs by their json
// tags (a field without omitempty is required; no other member is allowed), pointers and
// unmarshalled raw JSON as they may be null, the formats' ordered object as any object.
func typeSchema(t reflect.Type) Schema {
	switch t {
	case reflect.TypeFor[json.RawMessage](), reflect.TypeFor[any]():
		return Schema{}
	case reflect.TypeFor[object]():
		return Schema{"type": "object"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return nullable(typeSchema(t.Elem()))
	case reflect.String:
		return Schema{"type": "string"}
	case reflect.Bool:
		return Schema{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint32, reflect.Uint64:
		return Schema{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return Schema{"type": "number"}
	case reflect.Slice:
		return Schema{"type": "array", "items": typeSchema(t.Elem())}
	case reflect.Struct:
		ps, req := Schema{}, []string{}
		for f := range t.Fields() {
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fs := typeSchema(f.Type)
			if slices.Contains(strings.Split(opts, ","), "omitempty") {
				fs = notNull(fs) // omitempty leaves out nil, so what is present is not null
			} else {
				req = append(req, name)
			}
			ps[name] = fs
		}
		return Schema{"type": "object", "properties": ps, "required": req, "additionalProperties": false}
	}
	panic(fmt.Sprintf("envelope: no schema for %s", t))
}

// nullable is s or null.
func nullable(s Schema) Schema {
	if t, ok := s["type"].(string); ok && len(s) == 1 {
		return Schema{"type": []string{t, "null"}}
	}
	if len(s) == 0 {
		return s
	}
	return Schema{"anyOf": []Schema{s, {"type": "null"}}}
}

// notNull undoes nullable.
func notNull(s Schema) Schema {
	if ts, ok := s["type"].([]string); ok && len(s) == 1 {
		return Schema{"type": ts[0]}
	}
	if alt, ok := s["anyOf"].([]Schema); ok && len(s) == 1 {
		return alt[0]
	}
	return s
}

func props(s Schema) Schema { return s["properties"].(Schema) }

// requireMembers adds names to s's required members.
func requireMembers(s Schema, names ...string) {
	req, _ := s["required"].([]string)
	for _, n := range names {
		if !slices.Contains(req, n) {
			req = append(req, n)
		}
	}
	s["required"] = req
}

// obj is a closed object schema: required members, then optional ones.
func obj(required, optional Schema) Schema {
	ps, req := Schema{}, []string{}
	for k, v := range required {
		ps[k] = v
		req = append(req, k)
	}
	for k, v := range optional {
		ps[k] = v
	}
	slices.Sort(req)
	return Schema{"type": "object", "properties": ps, "required": req, "additionalProperties": false}
}

var (
	str        = Schema{"type": "string"}
	integer    = Schema{"type": "integer"}
	anyObject  = Schema{"type": "object"}
	strOrNull  = Schema{"type": []string{"string", "null"}}
	anyValue   = Schema{}
	elementObj = obj(Schema{"type": str, "id": str, "name": str, "action": str, "text": str}, nil)
)

// userpilotSchema describes renderUserpilot's body.
func userpilotSchema(et EventType) Schema {
	name := eventName(FormatUserpilot, et.Name)
	family, action, _ := strings.Cut(name, ".")
	var data Schema
	if family == "nps" {
		data = obj(Schema{"action": Schema{"const": action}},
			Schema{"survey_question": str, "score": integer, "follow_up_question": str, "feedback": str})
		if et.Score {
			requireMembers(data, "score")
		}
		if et.Feedback {
			requireMembers(data, "feedback")
		}
	} else {
		kind, ok := userpilotKinds[family]
		if !ok {
			kind = family
		}
		data = obj(Schema{"type": Schema{"const": kind}, "action": Schema{"const": action},
			"id": Schema{"type": []string{"string", "integer"}}}, nil)
	}
	props(data)["hostname"], props(data)["pathname"], props(data)["text"] = str, str, str
	requireMembers(data, "hostname", "pathname", "user")
	user := obj(Schema{"user_id": str, "name": str, "email": str}, nil)
	user["additionalProperties"] = true // the properties the webhook chose
	company := obj(Schema{"id": str, "name": str}, nil)
	company["additionalProperties"] = true
	props(data)["user"], props(data)["company"] = user, company
	return obj(Schema{"type": Schema{"const": name}, "timestamp": integer, "app_token": str, "data": data}, nil)
}

// askUsersSchema describes renderAskUsers's body.
func askUsersSchema(et EventType) Schema {
	status := Schema{"enum": []string{"completed", "partial", "not_started"}}
	var data Schema
	if et.Name == "form.submitted" {
		data = obj(Schema{
			"submission": obj(Schema{"id": str, "form_id": str, "submission_data": anyObject, "status": status, "created_at": str}, nil),
			"form":       obj(Schema{"id": str, "title": str}, nil),
		}, Schema{"respondent": obj(Schema{"id": str, "email": str, "name": str}, nil)})
	} else {
		data = obj(nil, Schema{
			"response":   obj(Schema{"id": str, "survey_id": str, "response_data": anyObject, "completion_status": status, "created_at": str}, nil),
			"survey":     obj(Schema{"id": str, "title": str}, nil),
			"respondent": obj(Schema{"id": str, "email": str, "name": str}, nil),
			"element":    elementObj,
		})
		if et.Survey {
			requireMembers(data, "survey")
		}
		if et.Element != "" {
			requireMembers(data, "element")
		}
	}
	return obj(Schema{"event_type": Schema{"const": eventName(FormatAskUsers, et.Name)}, "event_id": str,
		"timestamp": str, "data": data}, nil)
}

// segmantaSchema describes renderSegmanta's body.
func segmantaSchema(et EventType) Schema {
	name := eventName(FormatSegmanta, et.Name)
	answer := obj(Schema{"question_id": str, "question_type": str, "question_title": str, "value": anyValue,
		"text": str, "answered_at": strOrNull}, nil)
	s := obj(Schema{
		"event": Schema{"const": name}, "event_id": str, "timestamp": str,
		"survey": obj(Schema{"id": str, "name": str}, nil),
		"session": obj(Schema{"id": str, "locale": str, "completion": str, "started_at": strOrNull,
			"completed_at": strOrNull, "parameters": anyObject}, nil),
		"respondent": obj(Schema{"id": str, "email": str, "name": str, "attributes": anyObject}, nil),
	}, nil)
	if name == "survey.completed" {
		props(s)["answers"] = Schema{"type": "array", "items": answer}
		requireMembers(s, "answers")
	} else {
		props(s)["answer"] = answer
		if et.Question || et.Score || et.Feedback {
			requireMembers(s, "answer")
		}
	}
	if et.Element != "" && et.Name != "form.submitted" {
		props(s)["element"] = elementObj
		requireMembers(s, "element")
	}
	return s
}
