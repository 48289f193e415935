package surveyhooks_test

// Helpers of the fault test (fault_test.go): a ClickHouse server of its own that can be taken
// down and brought back on the same port, and a receiver that keeps a timeline of every request.
// (The stack's processes are proctest's, which notes those that exit on their own.)

import (
	"hash/fnv"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
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
// faultReceiver is every webhook's endpoint (/hook/<webhook id>), on a recording hooktest
// endpoint serving every path. It fails the first request of about one (event, webhook) pair in
// ten with a 500 and takes a few milliseconds per request (so that some are always in flight).
type faultReceiver struct {
	srv      *hooktest.Server
	hook     *hooktest.Endpoint
	failFrac uint32 // out of 100

	mu    sync.Mutex
	tries map[string]int // pair → requests, counted on arrival
	read  int            // records folded into ok
	ok    map[string]int // pair → 2xx answers
}

// pair names one (webhook, event) as "webhook-id event-id".
func pairName(r hooktest.Request) string {
	return strings.TrimPrefix(r.Path, "/hook/") + " " + r.EventID
}

func newFaultReceiver(t *testing.T) *faultReceiver {
	rc := &faultReceiver{tries: map[string]int{}, ok: map[string]int{}, failFrac: 10}
	rc.hook = hooktest.NewEndpoint("/hook/*", hooktest.Fast)
	rc.hook.Record(false)
	rc.hook.AnswerWith(func(r *hooktest.Request) hooktest.Answer {
		if r.EventID == "" {
			return hooktest.Answer{Status: http.StatusBadRequest}
		}
		p := pairName(*r)
		rc.mu.Lock()
		rc.tries[p]++
		first := rc.tries[p] == 1
		rc.mu.Unlock()
		h := fnv.New32a()
		_, _ = h.Write([]byte(p))
		sum := h.Sum32()
		a := hooktest.Answer{Status: http.StatusOK, Delay: time.Duration(2+sum%10) * time.Millisecond}
		if first && sum%100 < rc.failFrac {
			a.Status = http.StatusInternalServerError
		}
		return a
	})
	rc.srv = hooktest.StartT(t, hooktest.Options{Default: rc.hook})
	return rc
}

// URL is the receiver's base URL; a webhook's endpoint is URL()+"/hook/"+its id.
func (rc *faultReceiver) URL() string { return rc.srv.URL() }

// fold counts the 2xx answers recorded since the last call into ok; rc.mu must be held.
func (rc *faultReceiver) fold() {
	for _, r := range rc.hook.RecordsSince(rc.read) {
		rc.read++
		if r.Status == http.StatusOK {
			rc.ok[pairName(r)]++
		}
	}
}

// answered returns every request answered (or abandoned) so far.
func (rc *faultReceiver) answered() []hooktest.Request {
	rc.mu.Lock()
	rc.fold()
	rc.mu.Unlock()
	return rc.hook.Records()
}

// around counts the requests in flight at t and those answered in the window before it (finished,
// perhaps not yet committed or recorded by the worker that sent them).
func (rc *faultReceiver) around(t time.Time, before time.Duration) (inFlight, finished int) {
	for _, r := range rc.hook.Open() {
		if !r.Start.After(t) {
			inFlight++
		}
	}
	for _, r := range rc.answered() {
		if !r.Start.After(t) && r.End.After(t) {
			inFlight++
		} else if r.End.After(t.Add(-before)) && !r.End.After(t) {
			finished++
		}
	}
	return inFlight, finished
}

// finishedBetween counts requests answered in (from, to].
func (rc *faultReceiver) finishedBetween(from, to time.Time) (n int) {
	for _, r := range rc.answered() {
		if r.End.After(from) && !r.End.After(to) {
			n++
		}
	}
	return n
}

// delivered reports whether the pair was answered 2xx.
func (rc *faultReceiver) delivered(pair string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.fold()
	return rc.ok[pair] > 0
}

// duplicatesBetween counts the 2xx answers in [from, to) that repeated a pair already answered 2xx.
func (rc *faultReceiver) duplicatesBetween(from, to time.Time) (n int) {
	seen := map[string]bool{}
	for _, r := range rc.answered() {
		if r.Status != http.StatusOK {
			continue
		}
		p := pairName(r)
		if seen[p] && !r.End.Before(from) && r.End.Before(to) {
			n++
		}
		seen[p] = true
	}
	return n
}

// answeredAt lists when the requests of the given pairs were answered.
func (rc *faultReceiver) answeredAt(pairs map[string]bool) (at []time.Time) {
	for _, r := range rc.answered() {
		if pairs[pairName(r)] {
			at = append(at, r.End)
		}
	}
	return at
}

// figures: requests answered in all, duplicate 2xx answers (beyond the first of a pair), and the
// requests of each pair.
func (rc *faultReceiver) figures() (requests, duplicates int, tries map[string]int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.fold()
	requests = rc.read
	tries = make(map[string]int, len(rc.tries))
	for k, v := range rc.tries {
		tries[k] = v
	}
	for _, n := range rc.ok {
		if n > 1 {
			duplicates += n - 1
		}
	}
	return requests, duplicates, tries
}
