package proctest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// Build compiles pkgs into outDir with one `go build`, run in dir (inside the workspace, so that
// every module resolves).
func Build(ctx context.Context, dir, outDir string, pkgs ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", outDir + string(os.PathSeparator)}, pkgs...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %v: %w\n%s", pkgs, err, out)
	}
	return nil
}

// Proc is one start of a built binary, its output in a log file of its own. Exactly one goroutine
// waits for it; everything else reads what that goroutine recorded, so any number of callers may
// wait, signal or read the exit code.
type Proc struct {
	Name string   // what the caller calls it: "delivery-2" runs the delivery binary
	Path string   // the binary
	Env  []string // on top of this process's environment; the last of duplicates wins
	Log  string   // this start's log file

	logDir string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error       // cmd.Wait's result, set before done is closed
	asked  atomic.Bool // the caller signalled it: its exit is not its own
}

// Start starts the binary at path as name, env on top of this process's environment, its output
// in a new file in logDir. The child gets SIGKILL when this process dies, so a crashed test or
// bench leaves nothing running.
func Start(name, path, logDir string, env ...string) (*Proc, error) {
	logPath := filepath.Join(logDir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", logPath, err)
	}
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, Path: path, Env: env, Log: logPath, logDir: logDir, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Restart starts the same binary again under the same name with the same environment, logging
// into a new file beside the first.
func (p *Proc) Restart() (*Proc, error) { return Start(p.Name, p.Path, p.logDir, p.Env...) }

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Alive reports whether the process is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig; from then on the process's exit counts as asked for. A process that has
// exited already keeps its exit its own, and the error wraps os.ErrProcessDone.
func (p *Proc) Signal(sig os.Signal) error {
	if !p.Alive() {
		return fmt.Errorf("signalling %s: %w", p.Name, os.ErrProcessDone)
	}
	p.asked.Store(true)
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling %s: %w", p.Name, err)
	}
	return nil
}

// Kill is kill -9: SIGKILL, then wait until the process is gone. The error is the signal's (the
// process had already exited).
func (p *Proc) Kill() error {
	err := p.Signal(syscall.SIGKILL)
	<-p.done
	return err
}

// Stop sends SIGTERM and waits up to grace; then SIGQUIT (a Go process writes every goroutine's
// stack to its log, showing what held it up) and, 2 s later, SIGKILL. It reports whether the
// process had to be killed.
func (p *Proc) Stop(grace time.Duration) (killed bool) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
	}
	_ = p.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		_ = p.Kill()
	}
	return true
}

// Wait waits for the exit and returns what exec.Cmd.Wait returned (an *exec.ExitError for a
// non-zero exit or a signal).
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// ExitCode waits for the exit and returns its code; -1 when a signal ended the process.
func (p *Proc) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// ExitedOnItsOwn reports whether the process has exited without having been signalled.
func (p *Proc) ExitedOnItsOwn() bool { return !p.Alive() && !p.asked.Load() }

// ReadLog returns the whole log so far.
func (p *Proc) ReadLog() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Tail returns the last n bytes of the log, for error messages.
func (p *Proc) Tail(n int) string {
	b := p.ReadLog()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

// WaitHTTP waits until url answers 200, the process dies, or timeout passes; the error shows the
// end of the log.
func (p *Proc) WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	err := WaitHTTP(ctx, url, timeout, func() error {
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
