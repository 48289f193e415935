package sender_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// TestSenderKeepsAConnectionPerRequestItRunsAtOnce: more requests at once to one host than the
// default idle pool (512) must not close and redial connections after every round. The bench's
// many_endpoints (10,000 webhooks on one receiver, 5,000 sending slots) churned through new
// connections; requests the fast receiver had already accepted timed out and were sent again
// (hundreds of duplicates).
func TestSenderKeepsAConnectionPerRequestItRunsAtOnce(t *testing.T) {
	const concurrent = 600
	idlePerHost := concurrent // what the worker sets: its sending slots
	if os.Getenv("SENDER_TEST_DEFAULT_IDLE") != "" {
		idlePerHost = 0 // the default pool alone (512): shows the churn this test is about
	}
	var dialed atomic.Int64
	var mu sync.Mutex
	arrived, release := 0, make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// every request of a round is open at once: the last to arrive lets them all answer
		mu.Lock()
		wait := release
		if arrived++; arrived == concurrent {
			close(release)
			arrived, release = 0, make(chan struct{})
		}
		mu.Unlock()
		<-wait
		w.WriteHeader(http.StatusOK)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s := sender.New(sender.Options{Timeout: 10 * time.Second, MaxIdleConnsPerHost: idlePerHost,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	round := func() {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := s.Send(context.Background(), sender.Request{MessageID: "msg", URL: srv.URL, Body: []byte(`{}`)})
				require.NoError(t, res.Err)
			}()
		}
		wg.Wait()
	}
	round()
	first := dialed.Load()
	require.LessOrEqual(t, first, int64(concurrent))
	round()
	require.Equal(t, first, dialed.Load(), "the second round of %d requests at once dialed new connections", concurrent)
}
