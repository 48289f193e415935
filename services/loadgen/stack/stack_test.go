package stack_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/services/loadgen/stack"
)

func TestReadMemoryReportsThisProcessesResidentAndPeakMemory(t *testing.T) {
	m, err := stack.ReadMemory(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, m.RSS)
	require.GreaterOrEqual(t, m.Peak, m.RSS)
	_, err = stack.ReadMemory(-1)
	require.Error(t, err)
}
