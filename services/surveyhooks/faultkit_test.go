package surveyhooks_test

// Helpers of the fault test (fault_test.go): a ClickHouse server of its own that can be taken
// down and brought back on the same port, and a receiver that keeps a timeline of every request.
// (The stack's processes are proctest's, which notes those that exit on their own.)

import (
	"encoding/json"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
