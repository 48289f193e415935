package delivery

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func projectTask(project string, n int) *task {
	return &task{d: &pb.Delivery{ProjectId: project, DeliveryId: fmt.Sprintf("%s-%d", project, n)}}
}

// popProjects pops n deliveries and counts them by project.
func popProjects(t *testing.T, q *fairQueue, n int) (by map[string]int, order []string) {
	by = map[string]int{}
	for range n {
		next, ok := q.pop()
		require.True(t, ok)
		by[next.t.d.ProjectId]++
		order = append(order, next.t.d.DeliveryId)
	}
	return by, order
}

func TestFairQueueSharesByWeightWhateverTheArrivalOrder(t *testing.T) {
	weights := map[string]int{"viral": 1, "small": 1, "paying": 3}
	q := newFairQueue(true, 1000, func(p string) int { return weights[p] })
	for i := range 900 { // the viral project's backlog arrived first
		ok, _ := q.push(projectTask("viral", i), false)
		require.True(t, ok)
	}
	for i := range 100 {
		for _, p := range []string{"small", "paying"} {
			ok, _ := q.push(projectTask(p, i), false)
			require.True(t, ok)
		}
	}
	by, _ := popProjects(t, q, 100)
	require.Equal(t, map[string]int{"viral": 20, "small": 20, "paying": 60}, by, "shares 1:1:3 of what starts")
	require.Equal(t, 1000-100+200-100, q.len())
}

func TestFairQueueKeepsEachProjectsOrderAndForgetsIdleProjects(t *testing.T) {
	q := newFairQueue(true, 10, func(string) int { return 2 })
	for i := range 3 {
		q.push(projectTask("a", i), false)
	}
	q.push(projectTask("b", 0), false)
	_, order := popProjects(t, q, 4)
	require.Equal(t, []string{"a-0", "a-1", "b-0", "a-2"}, order, "two of a per round (weight 2), in a's order")
	_, ok := q.pop()
	require.False(t, ok)
	require.Empty(t, q.projects, "no state kept for a project with nothing waiting")
}

func TestFairQueueRefusesPastAProjectsBufferExceptASendTest(t *testing.T) {
	q := newFairQueue(true, 2, func(string) int { return 1 })
	for i := range 2 {
		ok, _ := q.push(projectTask("viral", i), false)
		require.True(t, ok)
	}
	ok, _ := q.push(projectTask("viral", 2), false)
	require.False(t, ok, "the viral project's buffer is full: the worker moves it aside")
	ok, _ = q.push(projectTask("other", 0), false)
	require.True(t, ok, "another project's buffer is its own")
	test := projectTask("viral", 3)
	test.d.Test = true
	ok, _ = q.push(test, false)
	require.True(t, ok, "a Send Test's caller waits for it")
}

func TestFairQueueWithFairShareOffIsFirstComeFirstServed(t *testing.T) {
	q := newFairQueue(false, 2, func(string) int { return 1 })
	for i := range 5 {
		ok, _ := q.push(projectTask("viral", i), false)
		require.True(t, ok, "no per-project bound")
	}
	q.push(projectTask("small", 0), false)
	_, order := popProjects(t, q, 6)
	require.Equal(t, "small-0", order[5])
}
