package fanout

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/dedup"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestEventKeyReadsProjectAndEventIDWithoutDecodingTheRest(t *testing.T) {
	score := int32(9)
	v, err := proto.Marshal(&pb.Event{EventId: "e-1", ProjectId: "prj_1", EventType: "nps.scored", Nps: &pb.Nps{Score: &score},
		User: &pb.User{Id: "u1", Traits: []byte(`{"a":1}`)}, ReceivedAtMs: 12345, Properties: []byte(`{"x":"y"}`)})
	require.NoError(t, err)
	k, ok := eventKey(v)
	require.True(t, ok)
	require.Equal(t, dedup.KeyOf([]byte("prj_1/e-1")), k)

	_, ok = eventKey([]byte("not protobuf"))
	require.False(t, ok)
	noID, _ := proto.Marshal(&pb.Event{ProjectId: "prj_1"})
	_, ok = eventKey(noID)
	require.False(t, ok, "an event without id is not de-duplicated (fan-out counts it unreadable)")
}
