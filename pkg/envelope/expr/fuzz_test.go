package expr_test

import (
	"testing"

	"github.com/surveyhooks/surveyhooks/pkg/envelope/expr"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// FuzzExpressions compiles whatever a webhook's owner may type as a filter or a transform and
// evaluates what compiles against an event: nothing may panic, and evaluation stays bounded by the
// cost limits. `make test` runs the seeds; `go test -run '^$' -fuzz FuzzExpressions ./envelope/expr`
// searches.
func FuzzExpressions(f *testing.F) {
	for _, seed := range []string{
		`event.event_type == "nps.scored" && event.nps.score <= 6`,
		`event.survey.id in ["a", "b"]`,
		`traits.plan == "pro"`,
		`has(event.user.email) && event.user.email.endsWith("@example.com")`,
		`{"id": event.event_id, "score": event.nps.score}`,
		`[1, 2, 3].map(x, x * 2)`,
		`body`,
		`{"answers": body.payload.response.answers.filter(a, a.type == "nps")}`,
		`[1,2,3].map(x, [1,2,3].map(y, [1,2,3].map(z, x*y*z)))`,
		`"a".repeat(1000000)`,
		`event.nps.score / 0`,
		`)(`, ``, `event.`,
	} {
		f.Add(seed)
	}
	traits := []byte(`{"plan":"pro","seats":12,"tags":["a","b"]}`)
	ev := &pb.Event{EventId: "evt_1", EventType: "nps.scored", ProjectId: "p",
		User: &pb.User{Id: "u", Email: "ada@example.com", Traits: traits}, Nps: &pb.Nps{Score: ptr(int32(4))}}
	body := []byte(`{"event_id":"evt_1","payload":{"response":{"answers":[{"type":"nps","value":4}]}}}`)
	f.Fuzz(func(t *testing.T, src string) {
		if flt, err := expr.CompileFilter(src); err == nil {
			_, _ = flt.Match(ev)
		}
		if tr, err := expr.CompileTransform(src); err == nil {
			_, _ = tr.Apply(ev, body)
		}
	})
}

func ptr[T any](v T) *T { return &v }
