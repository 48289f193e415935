package ingest

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// FuzzDecodeEvents feeds arbitrary bodies to the HTTP decoder: it must never panic, and every
// refusal must be a 4xx naming a code (bad input gets a clear error, never a crash or a 500).
// `make test` runs the seeds; `go test -run '^$' -fuzz FuzzDecodeEvents ./services/ingest` searches.
func FuzzDecodeEvents(f *testing.F) {
	for _, seed := range []string{
		`{"event_type":"nps.scored","user":{"id":"u"},"nps":{"score":9}}`,
		`{"events":[{"event_type":"survey.completed","user":{"id":"u"},"survey":{"id":"s"},"response":{"id":"r"}}]}`,
		`{"event_type":"survey.question_answered","user":{"id":"u"},"survey":{"id":"s"},"question":{"id":"q","type":"nps"},"answer":{"value":3}}`,
		`{"event_type":"nps.scored","nps":{"score":11}}`,
		`{"events":[]}`, `[]`, `null`, `{"event_type":1}`, `{"user":{"traits":{"a":[1,{"b":null}]}}}`,
		`{"event_type":"nps.scored","time":"2026-13-45T99:00:00Z","user":{"id":"u"},"nps":{"score":1}}`,
		"{\"event_type\":\"nps.scored\",\"user\":{\"id\":\"\xff\"}}",
	} {
		f.Add([]byte(seed))
	}
	for _, c := range strictCases { // invalid UTF-8, lone surrogates, duplicate keys (issue 13)
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, _, herr := decodeEvents(body, 100, 1795398529730)
		if herr != nil {
			if herr.Status < 400 || herr.Status >= 500 || herr.Code == "" {
				t.Fatalf("refusal %d %q for %q: want a 4xx with a code", herr.Status, herr.Code, body)
			}
			return
		}
		for _, d := range evs {
			if d.ev == nil || d.ev.EventType == "" {
				t.Fatalf("accepted an event without a type: %q", body)
			}
			// Every string was checked, so the protobuf encoder (which refuses invalid UTF-8 in
			// strings) must succeed, and the free-form JSON forwarded as bytes must be UTF-8 too.
			if _, err := proto.Marshal(d.ev); err != nil {
				t.Fatalf("accepted event does not encode: %v", err)
			}
			for _, b := range [][]byte{d.ev.GetUser().GetTraits(), d.ev.GetAccount().GetTraits(), d.ev.GetProperties(),
				d.ev.GetResponse().GetHiddenFields()} {
				if !utf8.Valid(b) {
					t.Fatalf("accepted free-form JSON that is not UTF-8: %q", b)
				}
			}
		}
	})
}

// FuzzValidateProtobufEvent feeds arbitrary protobuf records (the Kafka path) to validation.
func FuzzValidateProtobufEvent(f *testing.F) {
	good, _ := proto.Marshal(&pb.Event{EventType: "nps.scored", ProjectId: "p", User: &pb.User{Id: "u"},
		Nps: &pb.Nps{Score: proto.Int32(7)}})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev := &pb.Event{}
		if proto.Unmarshal(b, ev) != nil {
			return
		}
		if herr := Validate(ev, ""); herr != nil && (herr.Status < 400 || herr.Status >= 500) {
			t.Fatalf("refusal %d for %v: want a 4xx", herr.Status, ev)
		}
	})
}
