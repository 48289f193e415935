// Package stack runs the surveyhooks pipeline for the bench as separate processes, the way
// production runs it: the real service binaries, built once into a temporary folder, each with its
// own Go runtime, configured through the environment, with output to log files. A separate
// process per service keeps the load generator and the receiver off the pipeline's runtime and
// lets the bench read a process's peak memory. It starts nothing that listens beyond 127.0.0.1
// and leaves nothing running after Stop.
package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/proctest"
)

// Services are the binaries the bench runs; "kafka" is the all-in-one command running only the
// embedded broker (kfake).
var Services = []string{"kafka", "ingest", "fanout", "delivery", "sink", "api"}

var packages = map[string]string{
	"surveyhooks": "github.com/surveyhooks/surveyhooks/services/surveyhooks/cmd/surveyhooks",
	"ingest":      "github.com/surveyhooks/surveyhooks/services/ingest/cmd/ingest",
	"fanout":      "github.com/surveyhooks/surveyhooks/services/fanout/cmd/fanout",
	"delivery":    "github.com/surveyhooks/surveyhooks/services/delivery/cmd/delivery",
	"sink":        "github.com/surveyhooks/surveyhooks/services/sink/cmd/sink",
	"api":         "github.com/surveyhooks/surveyhooks/services/api/cmd/api",
}

// Build compiles every service binary into dir with one `go build` (run from the repository, so
// the workspace resolves the modules).
func Build(ctx context.Context, repoRoot, dir string) error {
	pkgs := make([]string, 0, len(packages))
	for _, p := range packages {
		pkgs = append(pkgs, p)
	}
	if err := proctest.Build(ctx, repoRoot, dir, pkgs...); err != nil {
		return fmt.Errorf("building the service binaries: %w", err)
	}
	return nil
}

// Stack is the running pipeline: proctest's, with "kafka" naming the broker.
type Stack struct{ *proctest.Stack }

// Proc is one running service process.
type Proc = proctest.Proc

// New returns a stack of the binaries in bin, logging into logDir.
func New(bin, logDir string, env []string) *Stack {
	return &Stack{proctest.NewStack(bin, logDir, env)}
}

// Start starts one service with extra environment on top of s.Env.
func (s *Stack) Start(name string, extraEnv ...string) (*Proc, error) {
	return s.StartAs(name, name, extraEnv...)
}

// StartAs starts service bin as process name (a second fan-out, a third delivery worker).
func (s *Stack) StartAs(name, bin string, extraEnv ...string) (*Proc, error) {
	if bin == "kafka" {
		bin = "surveyhooks"
		extraEnv = append([]string{"SURVEYHOOKS_SERVICES=kafka"}, extraEnv...)
	}
	return s.Stack.StartAs(name, bin, extraEnv...)
}

// StopAll stops every service, the broker last, and returns the names of those that had to be
// killed because they did not exit within grace of SIGTERM.
func (s *Stack) StopAll(grace time.Duration) (killed []string) {
	return s.Stack.StopAll(grace, "kafka")
}

// Memory is a process's resident memory now and at its peak (VmRSS and VmHWM), in bytes.
type Memory struct{ RSS, Peak int64 }

// ReadMemory reads /proc/<pid>/status.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("reading memory of process %d: %w", pid, err)
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.Peak = kb << 10
		}
	}
	if m.Peak == 0 {
		return m, errors.New("no VmHWM in /proc status")
	}
	return m, nil
}
