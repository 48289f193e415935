package delivery_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer is a hostile receiver on 127.0.0.1: a bare TCP listener whose every connection is
// handed to behave, which may answer anything, byte by byte, or nothing at all. An httptest
// server cannot misbehave at the protocol level, hence raw sockets.
//
// It counts what a user of the pipeline would look at: requests received, bytes written back,
// and connections the client has not closed yet (live). A connection is live until the client
// hangs up, so live dropping to 0 shows the client gave up every request it started instead of
// leaving a goroutine stuck on it.
type rawServer struct {
	url      string
	requests atomic.Int32 // requests read in full
	written  atomic.Int64 // bytes written to clients
	live     atomic.Int32 // connections the client has not closed

	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// behaviour is what a hostile receiver does with one connection: c counts what it writes, br is
// positioned at the start of the request.
type behaviour func(s *rawServer, c net.Conn, br *bufio.Reader)

// newRawServer starts a receiver; it is closed, every connection with it, when the test ends.
// Connections are bounded by what the test sends (a handful of deliveries, one connection each).
func newRawServer(t testing.TB, behave behaviour) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	s := &rawServer{url: "http://" + ln.Addr().String() + "/hook", ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept(behave)
	t.Cleanup(s.close)
	return s
}

func (s *rawServer) accept(behave behaviour) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.closed { // accepted just as the server closed: close() did not see it
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.live.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.live.Add(-1)
			defer func() { s.mu.Lock(); delete(s.conns, c); s.mu.Unlock() }()
			defer c.Close()
			cc := &countingConn{Conn: c, n: &s.written}
			behave(s, cc, bufio.NewReader(cc))
			// Whatever it answered, the connection stays live until the client hangs up: a
			// client that neither reads nor closes shows up as a live connection.
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

// close stops accepting, closes every connection and waits for their goroutines.
func (s *rawServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// readRequest reads one request and its body, so that the client is waiting for the answer. It
// reports false when the client went away first.
func (s *rawServer) readRequest(c net.Conn, br *bufio.Reader) bool {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	if _, err := io.Copy(io.Discard, req.Body); err != nil {
		return false
	}
	s.requests.Add(1)
	return true
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// dribble writes b one byte every gap; it stops when the client is gone.
func dribble(c net.Conn, b []byte, gap time.Duration) bool {
	for i := range b {
		if _, err := c.Write(b[i : i+1]); err != nil {
			return false
		}
		time.Sleep(gap)
	}
	return true
}

// forever calls write until it fails (the client hung up) or, as a bound on a broken client, a
// minute passed.
func forever(write func() error) {
	end := time.Now().Add(time.Minute)
	for time.Now().Before(end) {
		if write() != nil {
			return
		}
	}
}

// gzipBomb is a gzip stream a thousand times smaller than what it inflates to: n members of
// 1 MiB of zeros each (a gzip reader reads concatenated members as one stream).
func gzipBomb(n int) []byte {
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	_, _ = zw.Write(make([]byte, 1<<20))
	_ = zw.Close()
	return bytes.Repeat(member.Bytes(), n)
}

// heapPeak samples the heap in use until stop is called and returns the highest value seen
// above the starting one: a client that read a 100 MB body, or inflated a bomb, into memory
// shows up here.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
					peak.Store(ms.HeapInuse - base)
				}
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// clientGoroutines lists, by goroutine header ("goroutine 12 [IO wait]:" without the state),
// the goroutines whose stacks are the delivery worker's or its HTTP client's: what a request
// left hanging would leave behind.
func clientGoroutines() map[string]string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range []string{"net/http.(*persistConn)", "delivery/sender.(*Sender).Send", "delivery.(*Worker)"} {
			if strings.Contains(g, f) {
				id, _, _ := strings.Cut(g, " [")
				out[id] = g
				break
			}
		}
	}
	return out
}

// newGoroutines waits up to wait for the client goroutines not in before to end, and returns
// the stacks of those that did not.
func newGoroutines(before map[string]string, wait time.Duration) []string {
	var left []string
	for end := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
		left = left[:0]
		for id, g := range clientGoroutines() {
			if _, ok := before[id]; !ok {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(end) {
			return left
		}
	}
}

// response is a complete HTTP/1.1 answer that asks the client to close the connection after it,
// so that a live connection always means a client still busy with the request.
func response(status string, headers, body string) string {
	return fmt.Sprintf("HTTP/1.1 %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s", status, headers, len(body), body)
}
