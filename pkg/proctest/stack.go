package proctest

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Stack is a set of named processes started from the binaries in one folder with a shared
// environment: the pipeline of an end-to-end test or of the bench.
type Stack struct {
	Bin    string   // where the binaries are
	LogDir string   // one log file per process start
	Env    []string // on top of this process's environment for every process

	mu    sync.Mutex
	procs map[string]*Proc // the latest start of each name, running or not
	all   []*Proc          // every start, for ExitedOnTheirOwn
}

// NewStack returns a stack of the binaries in bin, logging into logDir.
func NewStack(bin, logDir string, env []string) *Stack {
	return &Stack{Bin: bin, LogDir: logDir, Env: env, procs: map[string]*Proc{}}
}

// StartAs starts binary bin as process name (a second fan-out, a third delivery worker), env on
// top of the stack's.
func (s *Stack) StartAs(name, bin string, env ...string) (*Proc, error) {
	p, err := Start(name, filepath.Join(s.Bin, bin), s.LogDir, append(append([]string(nil), s.Env...), env...)...)
	if err != nil {
		return nil, err
	}
	s.keep(p)
	return p, nil
}

func (s *Stack) keep(p *Proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs[p.Name] = p
	s.all = append(s.all, p)
}

// Proc returns the latest start of name, or nil.
func (s *Stack) Proc(name string) *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

// Take removes name from the stack and returns it (nil when unknown): the caller stops it.
func (s *Stack) Take(name string) *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[name]
	delete(s.procs, name)
	return p
}

// Kill kills name with SIGKILL and waits until it is gone; it stays in the stack for Restart.
func (s *Stack) Kill(name string) error {
	p := s.Proc(name)
	if p == nil {
		return fmt.Errorf("no process %s", name)
	}
	return p.Kill()
}

// Restart starts name again as it was last started.
func (s *Stack) Restart(name string) (*Proc, error) {
	p := s.Proc(name)
	if p == nil {
		return nil, fmt.Errorf("no process %s", name)
	}
	if p.Alive() {
		return nil, fmt.Errorf("%s is still running", name)
	}
	np, err := p.Restart()
	if err != nil {
		return nil, err
	}
	s.keep(np)
	return np, nil
}

// Stop stops name (Proc.Stop) and removes it; it reports whether the process had to be killed.
func (s *Stack) Stop(name string, grace time.Duration) (killed bool) {
	p := s.Take(name)
	return p != nil && p.Stop(grace)
}

// StopAll stops every process at once, those named in last after the others (the broker, which
// the others need to shut down cleanly), and returns the names of those that had to be killed.
func (s *Stack) StopAll(grace time.Duration, last ...string) (killed []string) {
	s.mu.Lock()
	procs := s.procs
	s.procs = map[string]*Proc{}
	s.mu.Unlock()
	var first []*Proc
	for name, p := range procs {
		if !slices.Contains(last, name) {
			first = append(first, p)
		}
	}
	killed = stopEach(first, grace)
	for _, name := range last {
		if p := procs[name]; p != nil && p.Stop(grace) {
			killed = append(killed, name)
		}
	}
	return killed
}

func stopEach(procs []*Proc, grace time.Duration) (killed []string) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, p := range procs {
		wg.Go(func() {
			if p.Stop(grace) {
				mu.Lock()
				killed = append(killed, p.Name)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return killed
}

// ExitedOnTheirOwn lists every process of the stack that exited without being signalled, with its
// exit and the end of its log.
func (s *Stack) ExitedOnTheirOwn() []string {
	s.mu.Lock()
	all := append([]*Proc(nil), s.all...)
	s.mu.Unlock()
	var out []string
	for _, p := range all {
		if p.ExitedOnItsOwn() {
			out = append(out, fmt.Sprintf("%s: %v\n%s", p.Name, p.Wait(), p.Tail(3000)))
		}
	}
	return out
}
