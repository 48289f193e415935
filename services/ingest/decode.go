package ingest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/buger/jsonparser"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// The producer's JSON is walked field by field (no reflection): it is the hot path of both
// inputs, and walking by hand names the exact path of whatever is wrong
// (`events[2].response.items[0].answer.fields[1].number`). Field names are the protobuf Event's;
// every `*_ms` time may instead be given as RFC 3339 under the name without `_ms` (`time`,
// `first_seen_at`, `replied_at` …). null is the same as absent.

// decoded is one producer event before ingest's own fields are set.
type decoded struct {
	ev        *pb.Event
	projectID string // the JSON field project_id (Kafka input; on HTTP it must match the key)
}

// syntaxError answers a body that is not JSON, with the byte offset encoding/json finds.
func syntaxError(body []byte) *httpapi.Error {
	var v any
	err := json.Unmarshal(body, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_json", "", "malformed JSON at byte %d: %v", se.Offset, se)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return httpapi.Errorf(http.StatusBadRequest, "invalid_json", "", "the body is empty")
	}
	return httpapi.Errorf(http.StatusBadRequest, "invalid_json", "", "malformed JSON")
}

// decodeEvents parses a request body: one event, or {"events":[…]} with at most max events.
// batch reports which form it was, so errors can be named accordingly.
func decodeEvents(body []byte, max int, receivedMs int64) (evs []decoded, batch bool, herr *httpapi.Error) {
	if !json.Valid(body) {
		return nil, false, syntaxError(body)
	}
	v, vt, _, err := jsonparser.Get(body)
	if err != nil || vt != jsonparser.Object {
		return nil, false, httpapi.Errorf(http.StatusBadRequest, "invalid_json", "", "the body must be a JSON object: one event or {\"events\":[…]}")
	}
	list, lt, _, err := jsonparser.Get(v, "events")
	if err != nil { // no "events": one event
		d, herr := decodeEvent(v, "", receivedMs)
		if herr != nil {
			return nil, false, herr
		}
		return []decoded{d}, false, nil
	}
	seen := false
	if herr := eachField(v, "", func(k, _ []byte, _ jsonparser.ValueType) *httpapi.Error {
		if string(k) != "events" {
			return unknown("", k, "a batch is {\"events\":[…]} and nothing else")
		}
		if seen { // jsonparser would read the first, encoding/json the last: neither is right
			return duplicateKey("", "events")
		}
		seen = true
		return nil
	}); herr != nil {
		return nil, true, herr
	}
	if lt != jsonparser.Array {
		return nil, true, typeError("events", "an array of events", lt)
	}
	i := 0
	_, err = jsonparser.ArrayEach(list, func(ev []byte, et jsonparser.ValueType, _ int, _ error) {
		if herr != nil {
			return
		}
		if i >= max {
			herr = httpapi.Errorf(http.StatusRequestEntityTooLarge, "batch_too_large", "events", "at most %d events per request", max)
			return
		}
		base := "events[" + strconv.Itoa(i) + "]"
		i++
		if et != jsonparser.Object {
			herr = typeError(base, "an event object", et)
			return
		}
		var d decoded
		if d, herr = decodeEvent(ev, base, receivedMs); herr == nil {
			evs = append(evs, d)
		}
	})
	if herr != nil {
		return nil, true, herr
	}
	if err != nil {
		return nil, true, bad("events", "events is not a valid array")
	}
	if len(evs) == 0 {
		return nil, true, missing("events", "events must hold at least one event")
	}
	return evs, true, nil
}

// decodeEvent walks one event object; base names it in errors ("" or "events[2]").
func decodeEvent(data []byte, base string, receivedMs int64) (decoded, *httpapi.Error) {
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
		return decoded{}, bad(base, "an event must be a JSON object")
	}
	if herr := strictJSON(data, base); herr != nil {
		return decoded{}, herr
	}
	ev := &pb.Event{ReceivedAtMs: receivedMs}
	d := decoded{ev: ev}
	t := timePair{rfcKey: "time", msKey: "time_ms"}
	herr := eachField(data, base, func(k, v []byte, vt jsonparser.ValueType) *httpapi.Error {
		var err *httpapi.Error
		switch string(k) {
		case "event_id":
			ev.EventId, err = str(v, vt, base, "event_id")
		case "event_type":
			ev.EventType, err = str(v, vt, base, "event_type")
		case "project_id":
			d.projectID, err = str(v, vt, base, "project_id")
		case "time":
			err = t.rfc(v, vt, base)
		case "time_ms":
			err = t.millis(v, vt, base)
		case "preview":
			ev.Preview, err = boolean(v, vt, base, "preview")
		case "channel":
			ev.Channel, err = channel(v, vt, join(base, "channel"))
		case "survey":
			ev.Survey, err = survey(v, vt, join(base, "survey"))
		case "user":
			ev.User, err = user(v, vt, join(base, "user"))
		case "account":
			ev.Account, err = account(v, vt, join(base, "account"))
		case "response":
			ev.Response, err = response(v, vt, join(base, "response"))
		case "question":
			ev.Question, err = question(v, vt, join(base, "question"))
		case "answer":
			ev.Answer, err = answer(v, vt, join(base, "answer"))
		case "context":
			ev.Context, err = context_(v, vt, join(base, "context"))
		case "element":
			ev.Element, err = element_(v, vt, join(base, "element"))
		case "nps":
			ev.Nps, err = nps(v, vt, join(base, "nps"))
		case "properties":
			ev.Properties, err = object(v, vt, base, "properties")
		case "received_at_ms", "source":
			err = bad(join(base, string(k)), "%s is set by ingest, not by producers", k)
		default:
			err = unknown(base, k, "")
		}
		return err
	})
	if herr != nil {
		return decoded{}, herr
	}
	var err *httpapi.Error
	if ev.TimeMs, err = t.resolve(base); err != nil {
		return decoded{}, err
	}
	if len(d.projectID) > maxIDLen {
		return decoded{}, bad(join(base, "project_id"), "project_id is at most %d characters", maxIDLen)
	}
	prefix := base
	if prefix != "" {
		prefix += "."
	}
	return d, Validate(ev, prefix)
}

func channel(v []byte, vt jsonparser.ValueType, base string) (*pb.Channel, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	c := &pb.Channel{}
	return c, eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "id":
			c.Id, err = str(v, vt, base, "id")
		case "type":
			c.Type, err = str(v, vt, base, "type")
		default:
			err = unknown(base, k, "")
		}
		return err
	})
}

func survey(v []byte, vt jsonparser.ValueType, base string) (*pb.Survey, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	s := &pb.Survey{}
	t := timePair{rfcKey: "scenario_time", msKey: "scenario_time_ms"}
	err := eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "id":
			s.Id, err = str(v, vt, base, "id")
		case "name":
			s.Name, err = str(v, vt, base, "name")
		case "scenario_id":
			s.ScenarioId, err = str(v, vt, base, "scenario_id")
		case "scenario_version":
			var n int64
			n, err = integer(v, vt, base, "scenario_version", 0, 1<<31-1)
			s.ScenarioVersion = int32(n)
		case "scenario_time":
			err = t.rfc(v, vt, base)
		case "scenario_time_ms":
			err = t.millis(v, vt, base)
		default:
			err = unknown(base, k, "")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s.ScenarioTimeMs, err = t.resolve(base)
	return s, err
}

func user(v []byte, vt jsonparser.ValueType, base string) (*pb.User, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	u := &pb.User{}
	first := timePair{rfcKey: "first_seen_at", msKey: "first_seen_ms"}
	last := timePair{rfcKey: "last_seen_at", msKey: "last_seen_ms"}
	err := eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "id":
			u.Id, err = str(v, vt, base, "id")
		case "anonymous_id":
			u.AnonymousId, err = str(v, vt, base, "anonymous_id")
		case "email":
			u.Email, err = str(v, vt, base, "email")
		case "name":
			u.Name, err = str(v, vt, base, "name")
		case "traits":
			u.Traits, err = object(v, vt, base, "traits")
		case "segments":
			u.Segments, err = segments(v, vt, join(base, "segments"))
		case "groups":
			u.Groups, err = strs(v, vt, join(base, "groups"))
		case "first_seen_at":
			err = first.rfc(v, vt, base)
		case "first_seen_ms":
			err = first.millis(v, vt, base)
		case "last_seen_at":
			err = last.rfc(v, vt, base)
		case "last_seen_ms":
			err = last.millis(v, vt, base)
		default:
			err = unknown(base, k, "")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if u.FirstSeenMs, err = first.resolve(base); err != nil {
		return nil, err
	}
	u.LastSeenMs, err = last.resolve(base)
	return u, err
}

func segments(v []byte, vt jsonparser.ValueType, base string) (out []*pb.Segment, err *httpapi.Error) {
	err = each(v, vt, base, func(item []byte, it jsonparser.ValueType, at string) *httpapi.Error {
		if it != jsonparser.Object {
			return typeError(at, "an object {id, name}", it)
		}
		s := &pb.Segment{}
		out = append(out, s)
		return eachField(item, at, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
			switch string(k) {
			case "id":
				s.Id, err = str(v, vt, at, "id")
			case "name":
				s.Name, err = str(v, vt, at, "name")
			default:
				err = unknown(at, k, "")
			}
			return err
		})
	})
	return out, err
}

func account(v []byte, vt jsonparser.ValueType, base string) (*pb.Account, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	a := &pb.Account{}
	return a, eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "id":
			a.Id, err = str(v, vt, base, "id")
		case "name":
			a.Name, err = str(v, vt, base, "name")
		case "domain":
			a.Domain, err = str(v, vt, base, "domain")
		case "traits":
			a.Traits, err = object(v, vt, base, "traits")
		default:
			err = unknown(base, k, "")
		}
		return err
	})
}

func response(v []byte, vt jsonparser.ValueType, base string) (*pb.Response, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	r := &pb.Response{}
	at := timePair{rfcKey: "time", msKey: "time_ms"}
	completed := timePair{rfcKey: "completed_at", msKey: "completed_at_ms"}
	dismissed := timePair{rfcKey: "dismissed_at", msKey: "dismissed_at_ms"}
	err := eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "id":
			r.Id, err = str(v, vt, base, "id")
		case "locale":
			r.Locale, err = str(v, vt, base, "locale")
		case "completion":
			r.Completion, err = str(v, vt, base, "completion")
		case "time":
			err = at.rfc(v, vt, base)
		case "time_ms":
			err = at.millis(v, vt, base)
		case "time_to_complete_s", "time_to_complete_second": // the second spelling is Screeb's
			r.TimeToCompleteS, err = integer(v, vt, base, string(k), 0, 1<<62)
		case "hidden_fields":
			r.HiddenFields, err = object(v, vt, base, "hidden_fields")
		case "items":
			r.Items, err = items(v, vt, join(base, "items"))
		case "tags":
			r.Tags, err = strs(v, vt, join(base, "tags"))
		case "completed_at":
			err = completed.rfc(v, vt, base)
		case "completed_at_ms":
			err = completed.millis(v, vt, base)
		case "dismissed_at":
			err = dismissed.rfc(v, vt, base)
		case "dismissed_at_ms":
			err = dismissed.millis(v, vt, base)
		default:
			err = unknown(base, k, "")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if r.TimeMs, err = at.resolve(base); err != nil {
		return nil, err
	}
	if r.CompletedAtMs, err = completed.resolve(base); err != nil {
		return nil, err
	}
	r.DismissedAtMs, err = dismissed.resolve(base)
	return r, err
}

func items(v []byte, vt jsonparser.ValueType, base string) (out []*pb.Item, err *httpapi.Error) {
	err = each(v, vt, base, func(item []byte, it jsonparser.ValueType, at string) *httpapi.Error {
		if it != jsonparser.Object {
			return typeError(at, "an object {question, answer}", it)
		}
		x := &pb.Item{}
		out = append(out, x)
		return eachField(item, at, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
			switch string(k) {
			case "question":
				x.Question, err = question(v, vt, join(at, "question"))
			case "answer":
				x.Answer, err = answer(v, vt, join(at, "answer"))
			default:
				err = unknown(at, k, "")
			}
			return err
		})
	})
	return out, err
}

func question(v []byte, vt jsonparser.ValueType, base string) (*pb.Question, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	q := &pb.Question{}
	return q, eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "id":
			q.Id, err = str(v, vt, base, "id")
		case "type":
			q.Type, err = str(v, vt, base, "type")
		case "title":
			q.Title, err = str(v, vt, base, "title")
		default:
			err = unknown(base, k, "")
		}
		return err
	})
}

func answer(v []byte, vt jsonparser.ValueType, base string) (*pb.Answer, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	a := &pb.Answer{}
	replied := timePair{rfcKey: "replied_at", msKey: "replied_at_ms"}
	err := eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "fields":
			a.Fields, err = fields(v, vt, join(base, "fields"))
		case "replied_at":
			err = replied.rfc(v, vt, base)
		case "replied_at_ms":
			err = replied.millis(v, vt, base)
		case "tags":
			a.Tags, err = strs(v, vt, join(base, "tags"))
		default:
			err = unknown(base, k, "")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	a.RepliedAtMs, err = replied.resolve(base)
	return a, err
}

func fields(v []byte, vt jsonparser.ValueType, base string) (out []*pb.Field, err *httpapi.Error) {
	err = each(v, vt, base, func(item []byte, it jsonparser.ValueType, at string) *httpapi.Error {
		if it != jsonparser.Object {
			return typeError(at, "an object {id, type, value, text, number, boolean, time}", it)
		}
		f, err := field(item, at)
		out = append(out, f)
		return err
	})
	return out, err
}

// field reads one typed answer value. The typed slots and the raw value complete each other: a
// producer may send only `value` (as Screeb's v1 did) or only the typed slot.
func field(data []byte, base string) (*pb.Field, *httpapi.Error) {
	f := &pb.Field{}
	t := timePair{rfcKey: "time", msKey: "time_ms"}
	var valueType jsonparser.ValueType
	err := eachField(data, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "id":
			f.Id, err = str(v, vt, base, "id")
		case "type":
			f.Type, err = str(v, vt, base, "type")
		case "text":
			f.Text, err = str(v, vt, base, "text")
		case "number":
			if vt != jsonparser.Null {
				n, perr := jsonparser.ParseFloat(v)
				if vt != jsonparser.Number || perr != nil {
					return typeError(join(base, "number"), "a number", vt)
				}
				f.Number = &n
			}
		case "boolean":
			if vt != jsonparser.Null {
				b, err := boolean(v, vt, base, "boolean")
				if err != nil {
					return err
				}
				f.Boolean = &b
			}
		case "time":
			err = t.rfc(v, vt, base)
		case "time_ms":
			err = t.millis(v, vt, base)
		case "value":
			if vt != jsonparser.Null {
				valueType = vt
				f.Value = compact(v, vt)
			}
		default:
			err = unknown(base, k, "")
		}
		return err
	})
	if err != nil {
		return f, err
	}
	if f.TimeMs, err = t.resolve(base); err != nil {
		return f, err
	}
	typed := f.Text != "" || f.Number != nil || f.Boolean != nil || f.TimeMs != 0
	switch {
	case len(f.Value) == 0 && typed:
		f.Value = typedValue(f)
	case len(f.Value) > 0 && !typed:
		switch valueType {
		case jsonparser.String:
			f.Text, _ = jsonparser.ParseString(trimQuotes(f.Value))
			f.Type = or(f.Type, "string")
		case jsonparser.Number:
			if n, err := jsonparser.ParseFloat(f.Value); err == nil {
				f.Number = &n
			}
			f.Type = or(f.Type, "number")
		case jsonparser.Boolean:
			b := f.Value[0] == 't'
			f.Boolean = &b
			f.Type = or(f.Type, "boolean")
		default:
			f.Type = or(f.Type, "choice")
		}
	}
	if f.Type == "" {
		switch {
		case f.Number != nil:
			f.Type = "number"
		case f.Boolean != nil:
			f.Type = "boolean"
		case f.TimeMs != 0:
			f.Type = "time"
		case f.Text != "":
			f.Type = "string"
		}
	}
	return f, nil
}

func typedValue(f *pb.Field) []byte {
	switch {
	case f.Text != "":
		b, _ := json.Marshal(f.Text) // cannot fail for a string
		return b
	case f.Number != nil:
		return strconv.AppendFloat(nil, *f.Number, 'g', -1, 64)
	case f.Boolean != nil:
		return strconv.AppendBool(nil, *f.Boolean)
	default:
		return strconv.AppendQuote(nil, time.UnixMilli(f.TimeMs).UTC().Format(time.RFC3339Nano))
	}
}

func context_(v []byte, vt jsonparser.ValueType, base string) (*pb.Context, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	c := &pb.Context{}
	return c, eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "hostname":
			c.Hostname, err = str(v, vt, base, "hostname")
		case "pathname":
			c.Pathname, err = str(v, vt, base, "pathname")
		case "user_agent":
			c.UserAgent, err = str(v, vt, base, "user_agent")
		case "ip":
			c.Ip, err = str(v, vt, base, "ip")
		default:
			err = unknown(base, k, "")
		}
		return err
	})
}

func element_(v []byte, vt jsonparser.ValueType, base string) (*pb.Element, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	e := &pb.Element{}
	return e, eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "type":
			e.Type, err = str(v, vt, base, "type")
		case "id":
			e.Id, err = idString(v, vt, base, "id")
		case "name":
			e.Name, err = str(v, vt, base, "name")
		case "action":
			e.Action, err = str(v, vt, base, "action")
		case "text":
			e.Text, err = str(v, vt, base, "text")
		default:
			err = unknown(base, k, "")
		}
		return err
	})
}

func nps(v []byte, vt jsonparser.ValueType, base string) (*pb.Nps, *httpapi.Error) {
	if vt == jsonparser.Null {
		return nil, nil
	}
	n := &pb.Nps{}
	return n, eachField(v, base, func(k, v []byte, vt jsonparser.ValueType) (err *httpapi.Error) {
		switch string(k) {
		case "score":
			if vt != jsonparser.Null {
				s, err := integer(v, vt, base, "score", 0, 10)
				if err != nil {
					return err
				}
				s32 := int32(s)
				n.Score = &s32
			}
		case "question":
			n.Question, err = str(v, vt, base, "question")
		case "follow_up_question":
			n.FollowUpQuestion, err = str(v, vt, base, "follow_up_question")
		case "feedback":
			n.Feedback, err = str(v, vt, base, "feedback")
		default:
			err = unknown(base, k, "")
		}
		return err
	})
}

// ---- primitives ----

func join(base, key string) string {
	if key == "" {
		return base
	}
	if base == "" {
		return key
	}
	return base + "." + key
}

func eachField(data []byte, base string, fn func(k, v []byte, vt jsonparser.ValueType) *httpapi.Error) *httpapi.Error {
	var herr *httpapi.Error
	err := jsonparser.ObjectEach(data, func(k, v []byte, vt jsonparser.ValueType, _ int) error {
		if herr = fn(k, v, vt); herr != nil {
			return herr
		}
		return nil
	})
	if herr != nil {
		return herr
	}
	if err != nil {
		return bad(base, "%s must be a JSON object", or(base, "the event"))
	}
	return nil
}

// each walks an array; at is the element's path ("user.segments[3]").
func each(v []byte, vt jsonparser.ValueType, base string, fn func(item []byte, it jsonparser.ValueType, at string) *httpapi.Error) *httpapi.Error {
	if vt == jsonparser.Null {
		return nil
	}
	if vt != jsonparser.Array {
		return typeError(base, "an array", vt)
	}
	i := 0
	var herr *httpapi.Error
	_, err := jsonparser.ArrayEach(v, func(item []byte, it jsonparser.ValueType, _ int, _ error) {
		if herr == nil {
			herr = fn(item, it, base+"["+strconv.Itoa(i)+"]")
		}
		i++
	})
	if herr != nil {
		return herr
	}
	if err != nil {
		return bad(base, "%s is not a valid array", base)
	}
	return nil
}

func unknown(base string, k []byte, hint string) *httpapi.Error {
	f := join(base, string(k))
	msg := "unknown field " + strconv.Quote(string(k))
	if base != "" {
		msg += " in " + base
	}
	if hint != "" {
		msg += ": " + hint
	} else {
		msg += "; the event schema is in docs/events.md"
	}
	return httpapi.Errorf(http.StatusBadRequest, "unknown_field", f, "%s", msg)
}

func typeName(vt jsonparser.ValueType) string {
	switch vt {
	case jsonparser.String:
		return "a string"
	case jsonparser.Number:
		return "a number"
	case jsonparser.Object:
		return "an object"
	case jsonparser.Array:
		return "an array"
	case jsonparser.Boolean:
		return "a boolean"
	case jsonparser.Null:
		return "null"
	}
	return "not valid JSON"
}

func typeError(path, want string, got jsonparser.ValueType) *httpapi.Error {
	return bad(path, "%s must be %s, got %s", or(path, "the event"), want, typeName(got))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func str(v []byte, vt jsonparser.ValueType, base, key string) (string, *httpapi.Error) {
	switch vt {
	case jsonparser.Null:
		return "", nil
	case jsonparser.String:
		if !bytes.ContainsRune(v, '\\') {
			if !utf8.Valid(v) {
				return "", bad(join(base, key), "%s is not valid UTF-8", join(base, key))
			}
			return string(v), nil
		}
		s, err := jsonparser.ParseString(v)
		if err != nil {
			return "", bad(join(base, key), "%s is not a valid JSON string", join(base, key))
		}
		return s, nil
	}
	return "", typeError(join(base, key), "a string", vt)
}

// idString takes an id as a string or an integer: Userpilot numbers its flows, checklists and tags.
func idString(v []byte, vt jsonparser.ValueType, base, key string) (string, *httpapi.Error) {
	if vt == jsonparser.Number {
		if _, err := jsonparser.ParseInt(v); err == nil {
			return string(v), nil
		}
		return "", typeError(join(base, key), "a string or an integer", vt)
	}
	return str(v, vt, base, key)
}

func integer(v []byte, vt jsonparser.ValueType, base, key string, lo, hi int64) (int64, *httpapi.Error) {
	switch vt {
	case jsonparser.Null:
		return 0, nil
	case jsonparser.Number:
		n, err := jsonparser.ParseInt(v)
		if err != nil {
			return 0, bad(join(base, key), "%s must be an integer, got %s", join(base, key), v)
		}
		if n < lo || n > hi {
			if hi == 10 {
				return 0, bad(join(base, key), "%s must be an integer from %d to %d, got %d", join(base, key), lo, hi, n)
			}
			return 0, bad(join(base, key), "%s is out of range: %d", join(base, key), n)
		}
		return n, nil
	}
	return 0, typeError(join(base, key), "an integer", vt)
}

func boolean(v []byte, vt jsonparser.ValueType, base, key string) (bool, *httpapi.Error) {
	switch vt {
	case jsonparser.Null:
		return false, nil
	case jsonparser.Boolean:
		return v[0] == 't', nil
	}
	return false, typeError(join(base, key), "true or false", vt)
}

func strs(v []byte, vt jsonparser.ValueType, base string) (out []string, err *httpapi.Error) {
	err = each(v, vt, base, func(item []byte, it jsonparser.ValueType, at string) *httpapi.Error {
		s, err := str(item, it, at, "")
		if it == jsonparser.Null {
			return typeError(at, "a string", it)
		}
		out = append(out, s)
		return err
	})
	return out, err
}

// object keeps a free-form JSON object (traits, hidden fields, properties) as compact bytes.
func object(v []byte, vt jsonparser.ValueType, base, key string) ([]byte, *httpapi.Error) {
	switch vt {
	case jsonparser.Null:
		return nil, nil
	case jsonparser.Object:
		return compact(v, vt), nil
	}
	return nil, typeError(join(base, key), "a JSON object", vt)
}

// compact copies a raw JSON value out of the request buffer without insignificant whitespace.
// jsonparser hands strings without their quotes.
func compact(v []byte, vt jsonparser.ValueType) []byte {
	if vt == jsonparser.String {
		out := make([]byte, 0, len(v)+2)
		return append(append(append(out, '"'), v...), '"')
	}
	if bytes.IndexAny(v, " \t\r\n") < 0 { // already compact: the common case for machine-made JSON
		return append([]byte(nil), v...)
	}
	var b bytes.Buffer
	b.Grow(len(v))
	if json.Compact(&b, v) != nil { // the whole body passed json.Valid
		return append([]byte(nil), v...)
	}
	return b.Bytes()
}

func trimQuotes(b []byte) []byte {
	if len(b) >= 2 && b[0] == '"' {
		return b[1 : len(b)-1]
	}
	return b
}

// timePair is one instant given as RFC 3339 (rfcKey, e.g. `first_seen_at`), as Unix
// milliseconds (msKey, the protobuf name, e.g. `first_seen_ms`), or both (then they must agree).
type timePair struct {
	rfcKey, msKey string
	rfcMs, ms     int64
	hasRFC, hasMs bool
	rfcText       string
}

func (t *timePair) rfc(v []byte, vt jsonparser.ValueType, base string) *httpapi.Error {
	path := join(base, t.rfcKey)
	switch vt {
	case jsonparser.Null:
		return nil
	case jsonparser.String:
		s := string(v)
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return bad(path, "%s must be an RFC 3339 time such as 2024-05-01T12:00:00Z, got %q", path, s)
		}
		t.rfcMs, t.hasRFC, t.rfcText = tm.UnixMilli(), true, s
		return nil
	case jsonparser.Number:
		return bad(path, "%s must be an RFC 3339 string; send Unix milliseconds as %s", path, join(base, t.msKey))
	}
	return typeError(path, "an RFC 3339 time string", vt)
}

func (t *timePair) millis(v []byte, vt jsonparser.ValueType, base string) *httpapi.Error {
	if vt == jsonparser.Null {
		return nil
	}
	n, err := integer(v, vt, base, t.msKey, 0, 1<<53)
	if err != nil {
		return err
	}
	t.ms, t.hasMs = n, true
	return nil
}

func (t *timePair) resolve(base string) (int64, *httpapi.Error) {
	switch {
	case t.hasRFC && t.hasMs && t.rfcMs != t.ms:
		return 0, bad(join(base, t.msKey), "%s (%d) and %s (%s) disagree; send one of them",
			join(base, t.msKey), t.ms, join(base, t.rfcKey), t.rfcText)
	case t.hasMs:
		return t.ms, nil
	default:
		return t.rfcMs, nil
	}
}

// strictJSON refuses what a strict JSON API refuses but json.Valid, jsonparser and encoding/json
// let through, anywhere in data (free-form objects included): a string or key that is not valid
// UTF-8, an escaped lone UTF-16 surrogate (`\ud800`, which no UTF-8 string can hold), and a key
// given twice in one object (which reader wins differs: jsonparser takes the first, encoding/json
// and JavaScript the last). Subscribers must never receive such bytes. data is valid JSON (the
// callers checked json.Valid); base names it in errors ("" or "events[2]"). It runs on every
// event, so its first walk keeps no path and allocates nothing; only a fault costs a second walk
// that names it.
func strictJSON(data []byte, base string) *httpapi.Error {
	fast := strictScanner{data: data}
	if fast.value() == nil {
		return nil
	}
	// Found a fault: walk again, this time keeping the path to name it.
	named := strictScanner{data: data, base: base, named: true}
	if herr := named.value(); herr != nil {
		return herr
	}
	return bad(base, "%s is not valid", or(base, "the event")) // unreachable: both walks agree
}

// errFault is what the first, fast walk returns: it only needs to know that there is a fault.
var errFault = &httpapi.Error{Status: http.StatusBadRequest, Code: "invalid_field"}

// strictScanner walks one JSON value. path holds the keys and indexes leading to the value being
// read; pathString spells them the way decode names fields (`events[2].user.traits.plan`).
type strictScanner struct {
	data  []byte
	i     int
	named bool // keep path and build real errors; otherwise answer errFault
	base  string
	path  []pathSeg
}

type pathSeg struct {
	key   []byte // the key as written (escapes undecoded), or nil for an array element
	index int
}

func (s *strictScanner) pathString() string {
	p := s.base
	for _, seg := range s.path {
		if seg.key == nil {
			p += "[" + strconv.Itoa(seg.index) + "]"
			continue
		}
		k := string(seg.key)
		if bytes.IndexByte(seg.key, '\\') >= 0 {
			_ = json.Unmarshal(append(append([]byte{'"'}, seg.key...), '"'), &k)
		}
		p = join(p, k)
	}
	return p
}

func (s *strictScanner) skipSpace() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *strictScanner) malformed() *httpapi.Error {
	if !s.named {
		return errFault
	}
	return httpapi.Errorf(http.StatusBadRequest, "invalid_json", "", "malformed JSON at byte %d", s.i)
}

func (s *strictScanner) value() *httpapi.Error {
	s.skipSpace()
	if s.i >= len(s.data) {
		return s.malformed()
	}
	switch s.data[s.i] {
	case '{':
		return s.object()
	case '[':
		return s.array()
	case '"':
		_, _, herr := s.str(false)
		return herr
	}
	for s.i < len(s.data) { // a number, true, false or null: json.Valid checked its spelling
		switch s.data[s.i] {
		case ',', ']', '}', ' ', '\t', '\r', '\n':
			return nil
		}
		s.i++
	}
	return nil
}

// objectKey is one key of an object being read: as written, and whether it holds escapes (two
// spellings of one key are compared decoded).
type objectKey struct {
	raw     []byte
	escaped bool
}

func (s *strictScanner) object() *httpapi.Error {
	s.i++                   // {
	var small [16]objectKey // most objects have few keys: no allocation to remember them
	keys := small[:0]
	var set map[string]struct{} // past a few keys, a map beats scanning the slice
	for {
		s.skipSpace()
		if s.i >= len(s.data) {
			return s.malformed()
		}
		if s.data[s.i] == '}' {
			s.i++
			return nil
		}
		if s.data[s.i] == ',' {
			s.i++
			s.skipSpace()
		}
		if s.i >= len(s.data) || s.data[s.i] != '"' {
			return s.malformed()
		}
		raw, escaped, herr := s.str(true)
		if herr != nil {
			return herr
		}
		k := objectKey{raw, escaped}
		if s.seen(keys, set, k) {
			if !s.named {
				return errFault
			}
			return duplicateKey(s.pathString(), k.text())
		}
		switch {
		case set != nil:
			set[k.text()] = struct{}{}
		case len(keys) == 16:
			set = make(map[string]struct{}, 32)
			for _, o := range keys {
				set[o.text()] = struct{}{}
			}
			set[k.text()] = struct{}{}
		default:
			keys = append(keys, k)
		}
		s.skipSpace()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return s.malformed()
		}
		s.i++
		if s.named {
			s.path = append(s.path, pathSeg{key: raw})
		}
		if herr := s.value(); herr != nil {
			return herr
		}
		if s.named {
			s.path = s.path[:len(s.path)-1]
		}
	}
}

// text is the key's decoded text.
func (k objectKey) text() string {
	if !k.escaped {
		return string(k.raw)
	}
	var t string
	_ = json.Unmarshal(append(append([]byte{'"'}, k.raw...), '"'), &t) // str checked it
	return t
}

func (s *strictScanner) seen(keys []objectKey, set map[string]struct{}, k objectKey) bool {
	if set != nil {
		if !k.escaped {
			_, ok := set[string(k.raw)] // no allocation for the lookup
			return ok
		}
		_, ok := set[k.text()]
		return ok
	}
	for _, o := range keys {
		if !o.escaped && !k.escaped {
			if bytes.Equal(o.raw, k.raw) {
				return true
			}
		} else if o.text() == k.text() {
			return true
		}
	}
	return false
}

func (s *strictScanner) array() *httpapi.Error {
	s.i++ // [
	for n := 0; ; n++ {
		s.skipSpace()
		if s.i >= len(s.data) {
			return s.malformed()
		}
		switch s.data[s.i] {
		case ']':
			s.i++
			return nil
		case ',':
			s.i++
		}
		if s.named {
			s.path = append(s.path, pathSeg{index: n})
		}
		if herr := s.value(); herr != nil {
			return herr
		}
		if s.named {
			s.path = s.path[:len(s.path)-1]
		}
	}
}

// str checks the string at s.i and returns its content as written (without quotes) and whether it
// holds escapes. A fault in a key names the object holding it; in a value, the value.
func (s *strictScanner) str(key bool) ([]byte, bool, *httpapi.Error) {
	s.i++ // "
	start := s.i
	escaped := false
	fault := func(format string, args ...any) *httpapi.Error {
		if !s.named {
			return errFault
		}
		where := s.pathString()
		what := or(where, "the event")
		if key {
			what = "a key in " + what
		}
		return bad(where, format, append([]any{what}, args...)...)
	}
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			return s.data[start : s.i-1], escaped, nil
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.data) {
				return nil, false, s.malformed()
			}
			if s.data[s.i+1] != 'u' {
				s.i += 2
				continue
			}
			r, ok := s.hex4(s.i + 2)
			if !ok {
				return nil, false, s.malformed()
			}
			s.i += 6
			switch {
			case utf16.IsSurrogate(r) && r < 0xdc00: // a high surrogate must be followed by a low one
				if lo, ok := s.hex4(s.i + 2); ok && s.i+1 < len(s.data) && s.data[s.i] == '\\' && s.data[s.i+1] == 'u' &&
					lo >= 0xdc00 && lo <= 0xdfff {
					s.i += 6
					continue
				}
				fallthrough
			case utf16.IsSurrogate(r):
				return nil, false, fault("%s holds \\u%04x, half of a UTF-16 surrogate pair: not a character; send valid Unicode", r)
			}
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.data[s.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false, fault("%s is not valid UTF-8 (byte 0x%02x at offset %d)", c, s.i)
			}
			s.i += size
		}
	}
	return nil, false, s.malformed()
}

// hex4 reads the four hex digits of a \u escape starting at i.
func (s *strictScanner) hex4(i int) (rune, bool) {
	var b [2]byte
	if i+4 > len(s.data) {
		return 0, false
	}
	if _, err := hex.Decode(b[:], s.data[i:i+4]); err != nil {
		return 0, false
	}
	return rune(b[0])<<8 | rune(b[1]), true
}

// duplicateKey names the repeated key k of the object at base by its full path.
func duplicateKey(base, k string) *httpapi.Error {
	return httpapi.Errorf(http.StatusBadRequest, "duplicate_key", join(base, k),
		"key %q is given twice in %s; each key may appear once", k, or(base, "the event"))
}
