package ingest

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// TestEventsKeyKeepsARespondentsEventsOnOnePartition: the key of `events` covers every ordering
// key of docs/ordering.md — a response's events without a user share it too.
func TestEventsKeyKeepsARespondentsEventsOnOnePartition(t *testing.T) {
	require.Equal(t, "p1/u1", eventsKey(&pb.Event{ProjectId: "p1", EventId: "e1", User: &pb.User{Id: "u1", AnonymousId: "a"}, Response: &pb.Response{Id: "r"}}))
	require.Equal(t, "p1/a", eventsKey(&pb.Event{ProjectId: "p1", EventId: "e1", User: &pb.User{AnonymousId: "a"}, Response: &pb.Response{Id: "r"}}))
	require.Equal(t, "p1/r", eventsKey(&pb.Event{ProjectId: "p1", EventId: "e1", Response: &pb.Response{Id: "r"}}),
		"events of a response without a user stay together")
	require.Equal(t, "p1/e1", eventsKey(&pb.Event{ProjectId: "p1", EventId: "e1"}))
}
