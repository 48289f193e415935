package proctest_test

import (
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/proctest"
)

// TestMain lets the test binary stand in for a service: PROCTEST_CHILD=exit3 exits 3 at once,
// PROCTEST_CHILD=serve prints its environment variable PROCTEST_SAY and runs until SIGTERM, then
// exits 0.
func TestMain(m *testing.M) {
	switch os.Getenv("PROCTEST_CHILD") {
	case "exit3":
		os.Exit(3)
	case "serve":
		println("say:", os.Getenv("PROCTEST_SAY"))
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		<-c
		println("stopping")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestProcStopsOnSIGTERMAndRestartsWithTheSameEnvironment(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	s := proctest.NewStack("", t.TempDir(), []string{"PROCTEST_CHILD=serve", "PROCTEST_SAY=shared"})
	t.Cleanup(func() { s.StopAll(5 * time.Second) })

	p, err := s.StartAs("svc", self, "PROCTEST_SAY=own")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(p.ReadLog()) > 0 }, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, p.Tail(100), "say: own", "the process's own environment wins over the stack's")
	require.True(t, p.Alive())

	require.NoError(t, p.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.ExitCode())
	require.NoError(t, p.Wait())
	require.Contains(t, p.ReadLog(), "stopping")
	require.False(t, p.ExitedOnItsOwn(), "it was asked to stop")

	q, err := s.Restart("svc")
	require.NoError(t, err)
	require.NotEqual(t, p.Log, q.Log, "a new log per start")
	require.Eventually(t, func() bool { return len(q.ReadLog()) > 0 }, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, q.ReadLog(), "say: own")

	require.NoError(t, s.Kill("svc"))
	require.Equal(t, -1, q.ExitCode(), "killed by a signal")
	require.Error(t, q.Kill(), "it is gone already")
	require.Empty(t, s.ExitedOnTheirOwn())
}

func TestStackReportsAProcessThatExitedOnItsOwn(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	s := proctest.NewStack("", t.TempDir(), []string{"PROCTEST_CHILD=exit3"})
	p, err := s.StartAs("crash", self)
	require.NoError(t, err)
	require.Equal(t, 3, p.ExitCode())
	require.True(t, p.ExitedOnItsOwn())
	require.ErrorIs(t, p.Kill(), os.ErrProcessDone)
	require.True(t, p.ExitedOnItsOwn(), "signalling it afterwards does not make its exit asked for")
	exits := s.ExitedOnTheirOwn()
	require.Len(t, exits, 1)
	require.Contains(t, exits[0], "crash: exit status 3")
	require.Empty(t, s.StopAll(time.Second), "nothing needed killing")
}
