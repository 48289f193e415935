package delivery

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func orderedTask(id, key string) *task {
	return &task{d: &pb.Delivery{DeliveryId: id, EventId: "evt-" + id, WebhookId: "wh", OrderingKey: key}}
}

func newGate() *heldPartition {
	return &heldPartition{keys: map[orderKey]*keyState{}, waitingBy: map[string]int{}, maxWaiting: 100}
}

// TestGateRunsOneDeliveryPerKeyAndTheNextWhenItIsDelivered: a key's later deliveries wait in
// memory behind its running one and start, in order, as each is delivered; other keys never wait.
func TestGateRunsOneDeliveryPerKeyAndTheNextWhenItIsDelivered(t *testing.T) {
	g := newGate()
	a0, a1, a2, b0 := orderedTask("a0", "r:a"), orderedTask("a1", "r:a"), orderedTask("a2", "r:a"), orderedTask("b0", "r:b")
	v, _ := g.admit(a0, false)
	require.Equal(t, admitRun, v)
	v, _ = g.admit(a1, false)
	require.Equal(t, admitWait, v)
	v, _ = g.admit(a2, true)
	require.Equal(t, admitWait, v)
	v, _ = g.admit(b0, false)
	require.Equal(t, admitRun, v, "another key is not delayed")
	require.Equal(t, OrderingState{Waiting: 2}, (&ordering{parts: map[int32]*heldPartition{0: g}}).state(), "the metrics' view")

	st := g.settle(a0.d, false, false)
	require.Same(t, a1, st.next.t)
	require.Nil(t, st.hold)
	require.False(t, st.unhold)
	st = g.settle(a1.d, false, false)
	require.Same(t, a2, st.next.t)
	require.True(t, st.next.returned, "a delivery back from a tier keeps its overflow mark")
	st = g.settle(a2.d, false, false)
	require.Nil(t, st.next)
	require.NotContains(t, g.keys, orderKey{"wh", "r:a"}, "a settled key is forgotten")
}

// TestGateHoldsAKeyWhileItsHeadWaitsOnATier: the running delivery goes to a retry tier, so the
// key is held by it; the deliveries that waited and those that come later are parked in order; the
// head's return runs it; its delivery drains the parked ones one at a time; the last one releases
// the hold.
func TestGateHoldsAKeyWhileItsHeadWaitsOnATier(t *testing.T) {
	g := newGate()
	a0, a1, a2, a3 := orderedTask("a0", "r:a"), orderedTask("a1", "r:a"), orderedTask("a2", "r:a"), orderedTask("a3", "r:a")
	g.admit(a0, false)
	g.admit(a1, false)

	st := g.settle(a0.d, true, false)
	require.Equal(t, "a0", st.hold.HeadDeliveryId)
	require.Equal(t, OrderingState{HeldKeys: 1, Parked: 1}, (&ordering{parts: map[int32]*heldPartition{0: g}}).state(), "the metrics' view")
	require.Zero(t, g.waitingBy["wh"], "parked, no longer waiting in memory")
	require.Equal(t, []*task{a1}, st.parked)
	require.EqualValues(t, 0, st.parkedAs[0].Seq)
	require.EqualValues(t, -1, st.unpark)

	v, st := g.admit(a2, false)
	require.Equal(t, admitPark, v, "while held, later deliveries are parked")
	require.EqualValues(t, 1, st.parkedAs[0].Seq)
	v, _ = g.admit(a2, false)
	require.Equal(t, admitKnown, v, "a copy of a parked delivery is not parked twice")
	v, _ = g.admit(orderedTask("a0", "r:a"), false)
	require.Equal(t, admitRun, v, "the head is back from its tier")
	v, _ = g.admit(orderedTask("a0", "r:a"), false)
	require.Equal(t, admitKnown, v, "a copy of the running head is dropped")

	st = g.settle(a0.d, false, false)
	require.Equal(t, "", st.hold.HeadDeliveryId, "draining: no head")
	require.Equal(t, "a1", st.drain.DeliveryId)
	v, st2 := g.admit(a3, false)
	require.Equal(t, admitPark, v, "still held while draining")
	require.EqualValues(t, 2, st2.parkedAs[0].Seq)

	st = g.settle(st.drain, false, false)
	require.EqualValues(t, 0, st.unpark, "a1's parked record is tombstoned")
	require.Equal(t, "a2", st.drain.DeliveryId)
	st = g.settle(st.drain, false, false)
	require.Equal(t, "a3", st.drain.DeliveryId)
	st = g.settle(st.drain, false, false)
	require.EqualValues(t, 2, st.unpark)
	require.True(t, st.unhold, "the hold ends with the last parked delivery")
	require.Nil(t, st.drain)
	require.Empty(t, g.keys)
}

// TestGateLetsTheNextProceedAfterADeadHeadNamingIt is the dead-letter choice: the next delivery
// carries the dead one's event id (surveyhooks-skipped-event-id), whether it waited in memory or
// was parked; a parked delivery that fails in turn becomes the new head.
func TestGateLetsTheNextProceedAfterADeadHeadNamingIt(t *testing.T) {
	g := newGate()
	a0, a1 := orderedTask("a0", "u:a"), orderedTask("a1", "u:a")
	g.admit(a0, false)
	g.admit(a1, false)
	st := g.settle(a0.d, false, true)
	require.Equal(t, "evt-a0", st.next.t.d.SkippedEventId)

	b0, b1, b2 := orderedTask("b0", "u:b"), orderedTask("b1", "u:b"), orderedTask("b2", "u:b")
	g.admit(b0, false)
	g.settle(b0.d, true, false)
	g.admit(b1, false)
	g.admit(b2, false)
	g.admit(orderedTask("b0", "u:b"), false)
	st = g.settle(b0.d, false, true)
	require.Equal(t, "evt-b0", st.hold.SkippedEventId)
	require.Equal(t, "b1", st.drain.DeliveryId)
	require.Equal(t, "evt-b0", st.drain.SkippedEventId)
	st = g.settle(st.drain, true, false)
	require.Equal(t, "b1", st.hold.HeadDeliveryId, "a parked delivery that fails becomes the head")
	require.EqualValues(t, 0, st.unpark, "its parked record goes: it lives on its tier now")
	require.Nil(t, st.drain, "b2 waits for b1")
	v, _ := g.admit(orderedTask("b1", "u:b"), false)
	require.Equal(t, admitRun, v)
	st = g.settle(orderedTask("b1", "u:b").d, false, false)
	require.Equal(t, "b2", st.drain.DeliveryId)
	require.Empty(t, st.drain.SkippedEventId, "only the delivery right after a dead one names it")
}

// TestGateParksPastTheWebhooksShareOfWaiting: past maxWaiting deliveries waiting in memory for one
// webhook, a key is held by its running delivery and what waits behind it is parked, in order, so
// a burst of an ordered webhook does not take the process's slots.
func TestGateParksPastTheWebhooksShareOfWaiting(t *testing.T) {
	g := newGate()
	g.maxWaiting = 2
	a0, a1, a2, a3 := orderedTask("a0", "r:a"), orderedTask("a1", "r:a"), orderedTask("a2", "r:a"), orderedTask("a3", "r:a")
	g.admit(a0, false)
	v, _ := g.admit(a1, false)
	require.Equal(t, admitWait, v)
	v, _ = g.admit(a2, false)
	require.Equal(t, admitWait, v)
	v, st := g.admit(a3, false)
	require.Equal(t, admitPark, v)
	require.Equal(t, "a0", st.hold.HeadDeliveryId, "held by the running delivery")
	require.Equal(t, []*task{a1, a2, a3}, st.parked, "the waiting ones first, in order")
	require.Zero(t, g.waitingBy["wh"])
	st = g.settle(a0.d, false, false)
	require.Equal(t, "a1", st.drain.DeliveryId)
}
