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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	for _, p := range packages {
		args = append(args, p)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the service binaries: %w\n%s", err, out)
	}
	return nil
}

// Stack is the running pipeline.
type Stack struct {
	Bin    string   // where the binaries are
	LogDir string   // one log file per process start
	Env    []string // added to every process's environment

	mu    sync.Mutex
	procs map[string]*Proc
}

// Proc is one running service process.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// New returns a stack of the binaries in bin, logging into logDir.
func New(bin, logDir string, env []string) *Stack {
	return &Stack{Bin: bin, LogDir: logDir, Env: env, procs: map[string]*Proc{}}
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
	logPath := filepath.Join(s.LogDir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", logPath, err)
	}
	cmd := exec.Command(filepath.Join(s.Bin, bin))
	cmd.Env = append(append(os.Environ(), s.Env...), extraEnv...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	return p, nil
}

// Proc returns the running process of a service, or nil.
func (s *Stack) Proc(name string) *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

// Alive reports whether the service's process is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM to one service and waits up to grace before killing it; it reports whether
// the process had to be killed.
func (s *Stack) Stop(name string, grace time.Duration) (killed bool) {
	s.mu.Lock()
	p := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	return p != nil && p.stop(grace)
}

func (p *Proc) stop(grace time.Duration) (killed bool) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
		// SIGQUIT first: a Go process writes every goroutine's stack to its log, showing what
		// held it up; then SIGKILL.
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(2 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		return true
	}
}

// StopAll stops every service, the broker last, and returns the names of those that had to be
// killed because they did not exit within grace of SIGTERM.
func (s *Stack) StopAll(grace time.Duration) (killed []string) {
	s.mu.Lock()
	var rest []*Proc
	var broker *Proc
	for name, p := range s.procs {
		if name == "kafka" {
			broker = p
		} else {
			rest = append(rest, p)
		}
	}
	s.procs = map[string]*Proc{}
	s.mu.Unlock()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, p := range rest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.stop(grace) {
				mu.Lock()
				killed = append(killed, p.Name)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if broker != nil && broker.stop(grace) {
		killed = append(killed, broker.Name)
	}
	return killed
}

// Tail returns the last n bytes of a process's log, for error messages.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
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

// WaitHTTP waits until url answers 200, the process dies, or timeout passes.
func WaitHTTP(ctx context.Context, p *Proc, url string, timeout time.Duration) error {
	err := proctest.WaitHTTP(ctx, url, timeout, func() error {
		if !p.Alive() {
			return fmt.Errorf("%s exited while starting:\n%s", p.Name, p.Tail(3000))
		}
		return nil
	})
	if err != nil && ctx.Err() == nil && p.Alive() {
		return fmt.Errorf("%s: %w:\n%s", p.Name, err, p.Tail(3000))
	}
	return err
}
