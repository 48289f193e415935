package delivery_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/chtest"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery"
)

// hostileTimeout is the suite's DELIVERY_TIMEOUT: short, so that each receiver that never
// finishes is given up quickly, and long enough for a healthy request on a loaded machine.
const hostileTimeout = 2 * time.Second

// hostileCase is one receiver that misbehaves, and what the attempt log must say about it.
type hostileCase struct {
	name   string
	behave behaviour
	class  pb.OutcomeClass // of every attempt to it
	// check looks at one of its attempts (each is already checked for size, encoding and time).
	check func(t *testing.T, a *pb.Attempt, s *rawServer)
	// after runs once every attempt is recorded.
	after func(t *testing.T, s *rawServer)
}

func hostileCases(t *testing.T) []hostileCase {
	// A receiver a redirect points at: the client must never reach it (redirects are not
	// followed, so the SSRF guard's allow-list — which is by address, not port — is never asked).
	private := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
		if s.readRequest(c, br) {
			_, _ = c.Write([]byte(response("200 OK", "", "secret")))
		}
	})
	return []hostileCase{
		{
			name: "slowloris_headers_never_end",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) && dribble(c, []byte("HTTP/1.1 200 OK\r\nX-Slow: "), 10*time.Millisecond) {
					forever(func() error { time.Sleep(50 * time.Millisecond); _, err := c.Write([]byte("a")); return err })
				}
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT,
		},
		{
			name: "slowloris_body_never_ends",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) && dribble(c, []byte("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"), 10*time.Millisecond) {
					forever(func() error { time.Sleep(50 * time.Millisecond); _, err := c.Write([]byte("b")); return err })
				}
			},
			// The receiver said 200 within the timeout: the event is delivered, and the log says
			// the body it kept is only part of what was announced.
			class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.True(t, a.ResponseTruncated, "a body cut short by the timeout is marked")
				require.NotEmpty(t, a.ResponseBody)
				require.Equal(t, strings.Repeat("b", len(a.ResponseBody)), string(a.ResponseBody))
			},
		},
		{
			name: "endless_body",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if !s.readRequest(c, br) {
					return
				}
				if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")); err != nil {
					return
				}
				chunk := fmt.Sprintf("%x\r\n%s\r\n", 32<<10, strings.Repeat("e", 32<<10))
				forever(func() error { _, err := c.Write([]byte(chunk)); return err })
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.True(t, a.ResponseTruncated)
				require.Len(t, a.ResponseBody, 64<<10, "the body is kept up to DELIVERY_MAX_RESPONSE_BYTES")
			},
		},
		{
			name: "huge_body_100MB",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if !s.readRequest(c, br) {
					return
				}
				const size = 100 << 20
				if _, err := c.Write([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size))); err != nil {
					return
				}
				block := []byte(strings.Repeat("h", 64<<10))
				for sent := 0; sent < size; sent += len(block) {
					if _, err := c.Write(block); err != nil {
						return
					}
				}
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.True(t, a.ResponseTruncated)
				require.Len(t, a.ResponseBody, 64<<10)
			},
			after: func(t *testing.T, s *rawServer) {
				// Three responses of 100 MB each: the client hung up after its cap, so the server
				// could write little more than what the sockets' buffers took.
				require.Less(t, s.written.Load(), int64(100<<20), "the client read the 100 MB bodies")
			},
		},
		{
			name: "gzip_bomb",
			behave: func() behaviour {
				bomb := gzipBomb(1024) // about 1 MB that inflates to 1 GiB
				return func(s *rawServer, c net.Conn, br *bufio.Reader) {
					if s.readRequest(c, br) {
						_, _ = c.Write([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n", len(bomb))))
						_, _ = c.Write(bomb)
					}
				}
			}(),
			class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.True(t, a.ResponseTruncated)
				require.Len(t, a.ResponseBody, 64<<10, "inflated only up to the cap")
				require.Equal(t, make([]byte, 64<<10), a.ResponseBody)
			},
		},
		{
			name: "thousands_of_headers",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) {
					var hs strings.Builder
					for i := range 3000 { // about 45 KB: under the client's 64 KiB, over the record's cap
						fmt.Fprintf(&hs, "X-H-%d: v\r\n", i)
					}
					_, _ = c.Write([]byte(response("200 OK", hs.String(), "ok")))
				}
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.Contains(t, a.ResponseHeaders, delivery.TruncatedMark, "the record says headers were dropped")
				require.Equal(t, "ok", string(a.ResponseBody))
			},
		},
		{
			name: "trailer_bomb",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if !s.readRequest(c, br) {
					return
				}
				if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n")); err != nil {
					return
				}
				line := []byte("X-Trailer: " + strings.Repeat("t", 1000) + "\r\n")
				forever(func() error { _, err := c.Write(line); return err }) // trailers without end
			},
			// Go refuses a trailer that long: the body read fails after "ok", the status stands.
			class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.Equal(t, "ok", string(a.ResponseBody))
				require.True(t, a.ResponseTruncated, "the body read ended in an error: marked")
			},
		},
		{
			name: "one_giant_header_line",
			behave: func() behaviour {
				// Built once: the heap check below is about the client, not this server.
				giant := []byte(response("200 OK", "X-Giant: "+strings.Repeat("g", 4<<20)+"\r\n", "ok"))
				return func(s *rawServer, c net.Conn, br *bufio.Reader) {
					if s.readRequest(c, br) {
						_, _ = c.Write(giant)
					}
				}
			}(),
			class: pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.Contains(t, a.Outcome.Error, "exceeded", "the log says why")
			},
		},
		{
			name: "never_answers",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				s.readRequest(c, br) // then silence: the server waits for the client to hang up
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT,
		},
		{
			name:   "closes_at_once",
			behave: func(_ *rawServer, c net.Conn, _ *bufio.Reader) { _ = c.Close() }, // accept, close
			class:  pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR,
		},
		{
			name: "resets_at_once",
			behave: func(_ *rawServer, c net.Conn, _ *bufio.Reader) {
				_ = c.(*countingConn).Conn.(*net.TCPConn).SetLinger(0) // close sends RST
				_ = c.Close()
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR,
		},
		{
			name: "resets_after_the_request",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				s.readRequest(c, br)
				_ = c.(*countingConn).Conn.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR,
		},
		{
			name: "redirect_loop",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) {
					_, _ = c.Write([]byte(response("307 Temporary Redirect", "Location: "+s.url+"\r\n", "")))
				}
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE,
			check: func(t *testing.T, a *pb.Attempt, s *rawServer) {
				require.EqualValues(t, 307, a.Outcome.StatusCode)
				require.Equal(t, s.url, a.ResponseHeaders["Location"], "the log shows where it pointed")
			},
			after: func(t *testing.T, s *rawServer) {
				require.EqualValues(t, 6, s.requests.Load(), "one request per attempt: the redirect is not followed")
			},
		},
		{
			name: "redirect_to_a_private_address",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) {
					_, _ = c.Write([]byte(response("302 Found", "Location: "+private.url+"\r\n", "")))
				}
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.EqualValues(t, 302, a.Outcome.StatusCode)
			},
			after: func(t *testing.T, _ *rawServer) {
				require.Zero(t, private.requests.Load(), "the redirect target was reached")
			},
		},
		{
			name: "garbage_instead_of_http",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) {
					junk := make([]byte, 100<<10)
					_, _ = rand.Read(junk)
					_, _ = c.Write(junk)
				}
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.Contains(t, a.Outcome.Error, "malformed HTTP", "the log says why")
			},
		},
		{
			name: "header_values_not_utf8_or_cut_inside_a_character",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) {
					_, _ = c.Write([]byte(response("200 OK", "X-Latin1: caf\xe9 \xff\xfe\r\nX-Euro: "+strings.Repeat("€", 2000)+"\r\n", "ok")))
				}
			},
			// Go's client accepts these bytes; the attempt record (protobuf strings must be
			// UTF-8) must still be readable by the sink. The 6,000-byte value is cut to 4 KiB,
			// which falls inside a character.
			class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.Equal(t, "caf\uFFFD \uFFFD", a.ResponseHeaders["X-Latin1"])
				require.Equal(t, strings.Repeat("€", (4<<10)/3), a.ResponseHeaders["X-Euro"])
				require.Contains(t, a.ResponseHeaders, delivery.TruncatedMark)
			},
		},
		{
			name: "malformed_header_line_not_utf8",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) {
					_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n\xff\xfe" + strings.Repeat("q", 50<<10) + "\r\n\r\n"))
				}
			},
			// Go's error quotes the whole line: 50 KB in the outcome of the attempt, the retry and
			// the dead letter, unless cut.
			class: pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR,
			check: func(t *testing.T, a *pb.Attempt, _ *rawServer) {
				require.Contains(t, a.Outcome.Error, "malformed MIME header", "the log says why")
				require.True(t, strings.HasSuffix(a.Outcome.Error, "…(cut)") || strings.Contains(a.Outcome.Error, "…(cut) (after"),
					"the cut is marked: %q", a.Outcome.Error)
			},
		},
		{
			name: "informational_flood",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) {
					forever(func() error { _, err := c.Write([]byte("HTTP/1.1 102 Processing\r\nX-A: b\r\n\r\n")); return err })
				}
			},
			// Go counts 1xx headers against MaxResponseHeaderBytes: the flood is cut there.
			class: pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR,
		},
		{
			// 101 hands the connection over to the caller: Go's client stops applying the
			// request's deadline to it, so reading the "body" could wait forever.
			name: "switches_protocols_then_silence",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) {
					_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: hostile\r\n\r\n"))
				}
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE,
		},
		{
			name: "informational_trickle",
			behave: func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(c, br) {
					forever(func() error {
						time.Sleep(50 * time.Millisecond)
						_, err := c.Write([]byte("HTTP/1.1 102 Processing\r\n\r\n"))
						return err
					})
				}
			},
			class: pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT,
		},
	}
}

// TestHostileEndpointsDoNotHurtAHealthyOne runs each hostile receiver beside a healthy webhook on
// the same partition and checks what a user would: every healthy delivery arrives promptly; every
// attempt, healthy and hostile, is recorded on `delivery-attempts` readable (as the ClickHouse
// sink decodes it) and bounded; each hostile attempt ends in its outcome class within the
// delivery timeout, with its response cut and marked; retries and dead letters are readable too;
// memory stays bounded; and no connection or goroutine is left behind.
func TestHostileEndpointsDoNotHurtAHealthyOne(t *testing.T) {
	for _, c := range hostileCases(t) {
		t.Run(c.name, func(t *testing.T) { runHostileCase(t, c) })
	}
}

func runHostileCase(t *testing.T, c hostileCase) {
	const hostileN, healthyN = 3, 12
	h := newHarness(t, []time.Duration{time.Second}, func(cfg *delivery.Config) {
		cfg.Timeout = hostileTimeout
		cfg.Kafka.Partitions = 1 // the hostile endpoint's deliveries sit among the healthy one's
		cfg.DrainTimeout = 2 * hostileTimeout
	})
	hostile := newRawServer(t, c.behave)

	var mu sync.Mutex
	sent := map[string]time.Time{}
	arrived := map[string]time.Duration{}
	healthy := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get("webhook-id")
		arrived[id] = time.Since(sent[id])
	}))
	t.Cleanup(healthy.Close) // also when a check fails: its idle connections would outlive the case
	h.webhook("wh_hostile", hostile.url)
	h.webhook("wh_healthy", healthy.URL)
	before := clientGoroutines() // another test's leftovers are not this case's
	peak := heapPeak()
	h.start()

	h.deliver("wh_hostile", hostileN, "hostile")
	for i := range healthyN { // spread over the hostile attempts
		id := fmt.Sprintf("healthy-%d", i)
		d := &pb.Delivery{DeliveryId: id, EventId: "evt-" + id, WebhookId: "wh_healthy", ProjectId: "p1",
			EventType: "nps.scored", Body: []byte(`{}`), Attempt: 1}
		v, err := proto.Marshal(d)
		require.NoError(t, err)
		mu.Lock()
		sent[id] = time.Now()
		mu.Unlock()
		require.NoError(t, h.cl.ProduceSync(h.ctx, &kgo.Record{Topic: h.cfg.Kafka.Topics.Deliveries, Key: []byte("wh_healthy"), Value: v}).FirstErr())
		time.Sleep(100 * time.Millisecond)
	}

	// A retried hostile delivery gets its second attempt a tier (1 s) after the first, then is
	// dead: the retry record had to be readable for that second attempt to happen.
	perHostile := 2
	if c.class == pb.OutcomeClass_OUTCOME_CLASS_SUCCESS {
		perHostile = 1
	}
	as := attempts(h, healthyN+hostileN*perHostile)
	var dead []*pb.Delivery
	if perHostile == 2 {
		dead = collect(h, h.cfg.Kafka.Topics.Dead, func() *pb.Delivery { return &pb.Delivery{} },
			func(d []*pb.Delivery) bool { return len(d) >= hostileN })
		for _, d := range dead {
			require.Equal(t, "wh_hostile", d.WebhookId)
			require.Equal(t, c.class, d.LastOutcome.Class)
			requireBoundedText(t, d.LastOutcome.Error)
			require.LessOrEqual(t, proto.Size(d), 64<<10, "a dead letter carries the delivery and a short outcome")
		}
	}

	mu.Lock()
	require.Len(t, arrived, healthyN, "every healthy delivery arrives")
	var slowest time.Duration
	for id, l := range arrived {
		// Waiting behind a hostile request would take the delivery timeout.
		require.Less(t, l, hostileTimeout, "healthy delivery %s took %s", id, l)
		slowest = max(slowest, l)
	}
	mu.Unlock()

	storeAsTheSink(t, h.ctx, as, dead)

	var healthyAttempts, hostileAttempts int
	for _, a := range as {
		require.NotEmpty(t, a.AttemptId, "the sink skips an attempt without an id")
		require.LessOrEqual(t, proto.Size(a), h.cfg.MaxAttemptBytes, "attempt %s", a.AttemptId)
		require.LessOrEqual(t, int64(len(a.ResponseBody)), h.cfg.MaxResponseBytes)
		require.LessOrEqual(t, len(a.ResponseHeaders), 101, "at most 100 headers and the mark")
		for k, v := range a.ResponseHeaders {
			require.True(t, utf8.ValidString(k) && utf8.ValidString(v), "header %q", k)
			if k != delivery.TruncatedMark {
				require.LessOrEqual(t, len(v), 4<<10)
			}
		}
		requireBoundedText(t, a.Outcome.Error)
		require.LessOrEqual(t, time.Duration(a.LatencyUs)*time.Microsecond, hostileTimeout+time.Second,
			"the attempt ended within the delivery timeout")
		switch a.WebhookId {
		case "wh_healthy":
			healthyAttempts++
			require.Equal(t, pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, a.Outcome.Class, "healthy %s: %s", a.DeliveryId, a.Outcome.Error)
		case "wh_hostile":
			hostileAttempts++
			require.Equal(t, c.class.String(), a.Outcome.Class.String(), "attempt %d: %s", a.Attempt, a.Outcome.Error)
			want := pb.Disposition_DISPOSITION_DELIVERED
			if perHostile == 2 {
				want = map[int32]pb.Disposition{1: pb.Disposition_DISPOSITION_RETRY, 2: pb.Disposition_DISPOSITION_DEAD}[a.Attempt]
			}
			require.Equal(t, want, a.Outcome.Disposition, "attempt %d", a.Attempt)
			if c.check != nil {
				c.check(t, a, hostile)
			}
		default:
			t.Fatalf("an attempt of an unknown webhook %q", a.WebhookId)
		}
	}
	require.Equal(t, healthyN, healthyAttempts, "every healthy attempt is recorded, once")
	require.Equal(t, hostileN*perHostile, hostileAttempts, "every hostile attempt is recorded, once")

	// The client hung up on every hostile connection it opened.
	require.Eventually(t, func() bool { return hostile.live.Load() == 0 }, hostileTimeout+3*time.Second, 20*time.Millisecond,
		"%d connections to the hostile receiver are still open", hostile.live.Load())
	if c.after != nil {
		c.after(t, hostile)
	}
	grew := peak()
	require.Less(t, grew, uint64(64<<20), "the heap grew by %d MiB", grew>>20)

	h.stop()
	healthy.Close()
	hostile.close()
	stuck := newGoroutines(before, 5*time.Second)
	require.Empty(t, stuck, "goroutines left behind:\n%s", strings.Join(stuck, "\n\n"))
	var said string // what the log tells the subscriber about the hostile receiver
	for _, a := range as {
		if a.WebhookId == "wh_hostile" {
			said = fmt.Sprintf("%s %d %q", a.Outcome.Class, a.Outcome.StatusCode, a.Outcome.Error)
			break
		}
	}
	t.Logf("%s: %s; slowest healthy delivery %s, %d bytes written by the hostile receiver, heap +%d KiB",
		c.name, said, slowest, hostile.written.Load(), grew>>10)
}

// storeAsTheSink writes the attempts and dead letters read from Kafka to a ClickHouse database of
// the test's own with the attempt log's store (what the sink does with each batch), then reads
// every attempt back through the log's API: a record the sink could decode but ClickHouse refused
// would be an attempt lost from the log.
func storeAsTheSink(t *testing.T, ctx context.Context, as []*pb.Attempt, dead []*pb.Delivery) {
	t.Helper()
	store, err := attemptlog.Open(ctx, chtest.Addr(t), chtest.Database(t))
	require.NoError(t, err)
	defer store.Close()
	require.NoError(t, store.Migrate(ctx))
	src := make([]attemptlog.Source, len(as))
	for i := range as {
		src[i] = attemptlog.Source{Partition: 0, Offset: int64(i)}
	}
	require.NoError(t, store.InsertAttempts(ctx, as, src), "ClickHouse refused the attempts")
	if len(dead) > 0 {
		raw := make([][]byte, len(dead))
		for i, d := range dead {
			raw[i], err = proto.Marshal(d)
			require.NoError(t, err)
		}
		require.NoError(t, store.InsertDeadLetters(ctx, dead, raw, src[:len(dead)]), "ClickHouse refused the dead letters")
	}
	for _, a := range as {
		got, err := store.GetAttempt(ctx, a.ProjectId, a.AttemptId)
		require.NoError(t, err, "attempt %s of %s is not in the log", a.AttemptId, a.WebhookId)
		require.Equal(t, a.ResponseTruncated, got.ResponseTruncated)
		require.Equal(t, string(a.ResponseBody), got.ResponseBody)
		require.Equal(t, len(a.ResponseHeaders), len(got.ResponseHeaders))
	}
}

// requireBoundedText checks an error text as the log stores it: UTF-8 (a protobuf string) and short.
func requireBoundedText(t *testing.T, s string) {
	t.Helper()
	require.True(t, utf8.ValidString(s), "error text is not UTF-8: %q", s)
	require.LessOrEqual(t, len(s), 2<<10, "error text of %d bytes", len(s))
}
