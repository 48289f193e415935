package proctest_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/proctest"
)

func TestAddrIsAFreeLoopbackPort(t *testing.T) {
	addr := proctest.Addr(t)
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the port is free")
	l.Close()
}

func TestWaitHTTPWaitsFor200AndStopsWhenTheProcessDied(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	require.NoError(t, proctest.WaitHTTP(context.Background(), srv.URL, 10*time.Second, nil))
	require.Equal(t, int32(3), calls.Load(), "until it answers 200")

	died := errors.New("ingest exited")
	require.ErrorIs(t, proctest.WaitHTTP(context.Background(), "http://"+proctest.Addr(t), 10*time.Second,
		func() error { return died }), died)
	require.ErrorContains(t, proctest.WaitHTTP(context.Background(), "http://"+proctest.Addr(t), 300*time.Millisecond, nil),
		"did not answer 200 within")
}
