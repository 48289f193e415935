package surveyhooks_test

// Helpers of the fault test (fault_test.go): a ClickHouse server of its own that can be taken
// down and brought back on the same port, service processes watched for exiting on their own,
// and a receiver that keeps a timeline of every request.

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// chServer is a private clickhouse-server started through deploy/clickhouse/local.sh. down and up
// stop it and start it again with the same configuration, so the services find it at the same
// address.
type chServer struct {
	t      *testing.T
	script string
	dir    string
	addr   string
}

func startClickHouse(t *testing.T) *chServer {
	t.Helper()
	script, err := filepath.Abs("../../deploy/clickhouse/local.sh")
	require.NoError(t, err)
	dir := t.TempDir()
	out, err := exec.Command(script, "start", dir).Output()
	require.NoError(t, err, "starting a ClickHouse server of the test's own")
	c := &chServer{t: t, script: script, dir: dir}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "export CLICKHOUSE_ADDR="); ok {
			c.addr = strings.TrimSpace(v)
		}
	}
	require.NotEmpty(t, c.addr, "local.sh printed no address: %s", out)
	t.Cleanup(func() { _ = exec.Command(script, "stop", dir).Run() })
	return c
}

func (c *chServer) down() {
	c.t.Helper()
	out, err := exec.Command(c.script, "stop", c.dir).CombinedOutput()
	require.NoError(c.t, err, "stopping ClickHouse: %s", out)
}

func (c *chServer) up() {
	c.t.Helper()
	bin := "/usr/sbin/clickhouse-server"
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		bin = p
	}
	cmd := exec.Command(bin, "--config-file="+filepath.Join(c.dir, "config.xml"), "--pid-file="+filepath.Join(c.dir, "pid"), "--daemon")
	out, err := cmd.CombinedOutput()
	require.NoError(c.t, err, "starting ClickHouse again: %s", out)
	require.Eventually(c.t, func() bool {
		conn, err := net.DialTimeout("tcp", c.addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, 60*time.Second, 200*time.Millisecond, "ClickHouse did not listen again on %s", c.addr)
}

// watched is one service process of the fault test. Its only waiter is the goroutine started with
// it, which records an exit that the test did not cause.
type watched struct {
	name, bin string
	env       []string
	cmd       *exec.Cmd
	log       string
	killed    atomic.Bool
	done      chan struct{}
}

// procs starts and kills the fault test's processes and remembers who exited on its own.
type procs struct {
	l        *lifecycle
	mu       sync.Mutex
	live     map[string]*watched
	dead     map[string]*watched // killed, to be restarted
	selfExit []string            // "name: exit status …: log tail"
}

func newProcs(l *lifecycle) *procs {
	p := &procs{l: l, live: map[string]*watched{}, dead: map[string]*watched{}}
	l.t.Cleanup(p.stopAll)
	return p
}

func (p *procs) start(name, bin string, env ...string) {
	p.l.t.Helper()
	p.l.run(name, bin, env...)
	p.l.mu.Lock()
	sp := p.l.procs[name]
	delete(p.l.procs, name) // this helper is its only waiter
	p.l.mu.Unlock()
	w := &watched{name: name, bin: bin, env: env, cmd: sp.cmd, log: sp.log, done: make(chan struct{})}
	go func() {
		err := w.cmd.Wait()
		if !w.killed.Load() {
			b, _ := os.ReadFile(w.log)
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			p.mu.Lock()
			p.selfExit = append(p.selfExit, fmt.Sprintf("%s: %v\n%s", name, err, b))
			p.mu.Unlock()
		}
		close(w.done)
	}()
	p.mu.Lock()
	p.live[name] = w
	p.mu.Unlock()
}

// kill9 kills name without warning and waits until it is gone.
func (p *procs) kill9(name string) {
	p.mu.Lock()
	w := p.live[name]
	delete(p.live, name)
	p.mu.Unlock()
	require.NotNil(p.l.t, w, "no live process %s", name)
	w.killed.Store(true)
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
	p.mu.Lock()
	p.dead[name] = w
	p.mu.Unlock()
}

// restart starts a killed process again, as it was started.
func (p *procs) restart(name string) {
	p.mu.Lock()
	w := p.dead[name]
	delete(p.dead, name)
	p.mu.Unlock()
	require.NotNil(p.l.t, w, "%s was not killed", name)
	p.start(name, w.bin, w.env...)
}

func (p *procs) exitedOnTheirOwn() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.selfExit...)
}

func (p *procs) stopAll() {
	p.mu.Lock()
	var ws []*watched
	for _, w := range p.live {
		w.killed.Store(true)
		ws = append(ws, w)
	}
	p.live = map[string]*watched{}
	p.mu.Unlock()
	for _, w := range ws {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range ws {
		select {
		case <-w.done:
		case <-time.After(15 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.done
		}
	}
}

// request is one request the fault receiver answered.
type request struct {
	pair       string // webhook id + " " + event id
	start, end time.Time
	status     int
}

// faultReceiver is every webhook's endpoint (/hook/<webhook id>). It fails the first request of
// about one (event, webhook) pair in ten with a 500, takes a few milliseconds per request (so that
// some are always in flight), and keeps every request for the figures.
type faultReceiver struct {
	mu       sync.Mutex
	open     map[int]time.Time // in-flight requests by sequence number
	seq      int
	reqs     []request
	ok       map[string]int // pair → 2xx answers
	tries    map[string]int // pair → requests
	failFrac uint32         // out of 100
}

func newFaultReceiver() *faultReceiver {
	return &faultReceiver{open: map[int]time.Time{}, ok: map[string]int{}, tries: map[string]int{}, failFrac: 10}
}

func (rc *faultReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	webhook := strings.TrimPrefix(r.URL.Path, "/hook/")
	body, _ := io.ReadAll(r.Body)
	var env struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.EventID == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	pair := webhook + " " + env.EventID
	rc.mu.Lock()
	rc.seq++
	id := rc.seq
	rc.open[id] = start
	rc.tries[pair]++
	first := rc.tries[pair] == 1
	rc.mu.Unlock()

	h := fnv.New32a()
	_, _ = h.Write([]byte(pair))
	sum := h.Sum32()
	time.Sleep(time.Duration(2+sum%10) * time.Millisecond)
	status := http.StatusOK
	if first && sum%100 < rc.failFrac {
		status = http.StatusInternalServerError
	}
	w.WriteHeader(status)

	rc.mu.Lock()
	delete(rc.open, id)
	rc.reqs = append(rc.reqs, request{pair: pair, start: start, end: time.Now(), status: status})
	if status == http.StatusOK {
		rc.ok[pair]++
	}
	rc.mu.Unlock()
}

// around counts the requests in flight at t and those answered in the window before it (finished,
// perhaps not yet committed or recorded by the worker that sent them).
func (rc *faultReceiver) around(t time.Time, before time.Duration) (inFlight, finished int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, st := range rc.open {
		if !st.After(t) {
			inFlight++
		}
	}
	for _, r := range rc.reqs {
		if !r.start.After(t) && r.end.After(t) {
			inFlight++
		} else if r.end.After(t.Add(-before)) && !r.end.After(t) {
			finished++
		}
	}
	return inFlight, finished
}

// finishedBetween counts requests answered in (from, to].
func (rc *faultReceiver) finishedBetween(from, to time.Time) (n int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, r := range rc.reqs {
		if r.end.After(from) && !r.end.After(to) {
			n++
		}
	}
	return n
}

func (rc *faultReceiver) delivered(pair string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.ok[pair] > 0
}

// duplicatesBetween counts the 2xx answers in [from, to) that repeated a pair already answered 2xx.
func (rc *faultReceiver) duplicatesBetween(from, to time.Time) (n int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range rc.reqs {
		if r.status != http.StatusOK {
			continue
		}
		if seen[r.pair] && !r.end.Before(from) && r.end.Before(to) {
			n++
		}
		seen[r.pair] = true
	}
	return n
}

// answeredAt lists when the requests of the given pairs were answered.
func (rc *faultReceiver) answeredAt(pairs map[string]bool) (at []time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, r := range rc.reqs {
		if pairs[r.pair] {
			at = append(at, r.end)
		}
	}
	return at
}

// figures: requests in all, duplicate 2xx answers (beyond the first of a pair), and the requests
// of each pair.
func (rc *faultReceiver) figures() (requests, duplicates int, tries map[string]int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	tries = make(map[string]int, len(rc.tries))
	for k, v := range rc.tries {
		tries[k] = v
	}
	for _, n := range rc.ok {
		if n > 1 {
			duplicates += n - 1
		}
	}
	return len(rc.reqs), duplicates, tries
}
