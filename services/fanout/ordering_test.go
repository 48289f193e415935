package fanout

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestOrderingKeyIsTheResponseElseTheUserElseTheAnonymousID(t *testing.T) {
	ordered, plain := &pb.Webhook{Ordering: OrderingRespondent}, &pb.Webhook{}
	for _, c := range []struct {
		name string
		ev   *pb.Event
		want string
	}{
		{"response id first", &pb.Event{Response: &pb.Response{Id: "resp-1"}, User: &pb.User{Id: "u1", AnonymousId: "anon"}}, "r:resp-1"},
		{"user id without a response", &pb.Event{User: &pb.User{Id: "u1", AnonymousId: "anon"}}, "u:u1"},
		{"anonymous id last", &pb.Event{User: &pb.User{AnonymousId: "anon"}}, "a:anon"},
		{"none: not ordered", &pb.Event{EventId: "e1"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, OrderingKey(c.ev, ordered))
			require.Empty(t, OrderingKey(c.ev, plain), "a webhook without ordering gets no key")
		})
	}
}
