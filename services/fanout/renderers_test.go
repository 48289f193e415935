package fanout

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestRenderersCompileOncePerRevisionAndForgetChangedWebhooks(t *testing.T) {
	c := newRenderers()
	v1 := &pb.Webhook{Id: "wh", Revision: 1, Filter: `event.nps.score <= 6`}
	first := c.get(v1, c.generation())
	require.NoError(t, first.err)
	require.Same(t, first, c.get(v1, c.generation()), "same revision: compiled once")
	require.Equal(t, 1, c.len())

	v2 := &pb.Webhook{Id: "wh", Revision: 2, Filter: `event.nps.score >= 9`}
	c.forget(v1, v2)
	require.Zero(t, c.len(), "a change evicts the webhook's entry")
	second := c.get(v2, c.generation())
	require.NotSame(t, first, second)
	require.Equal(t, 1, c.len(), "one entry per webhook, never one per revision")

	c.forget(v2, nil)
	require.Zero(t, c.len(), "a deletion evicts")
}

func TestRendererCompiledFromAStaleReadIsNotCached(t *testing.T) {
	c := newRenderers()
	old := &pb.Webhook{Id: "wh", Revision: 1, Filter: `true`}
	gen := c.generation() // fan-out reads the webhooks after this…
	c.forget(old, nil)    // …and the webhook is deleted before its renderer is compiled
	e := c.get(old, gen)
	require.NoError(t, e.err, "the event in hand is still rendered")
	require.Zero(t, c.len(), "but the deleted webhook leaves nothing behind")
}

func TestInvalidExpressionIsCompiledOnceAndReported(t *testing.T) {
	c := newRenderers()
	wh := &pb.Webhook{Id: "wh", Revision: 1, Filter: `event.nps.scor <= 6`}
	e := c.get(wh, c.generation())
	require.ErrorContains(t, e.err, "undefined field 'scor'")
	require.Same(t, e, c.get(wh, c.generation()), "the failure is cached too: no recompiling per event")
	require.True(t, e.warnOnce())
	require.False(t, e.warnOnce(), "logged once per revision")
}
