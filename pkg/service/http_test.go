package service

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestServeHTTPDrainsInFlightRequestsThenCutsThoseBeyondTheGrace(t *testing.T) {
	for _, c := range []struct {
		name    string
		handler time.Duration
		grace   time.Duration
		want    error
		status  int
	}{
		{"a request that finishes within the grace is answered", 100 * time.Millisecond, 5 * time.Second, nil, http.StatusOK},
		{"a request still running after the grace is cut", 5 * time.Second, 100 * time.Millisecond, context.DeadlineExceeded, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			started := make(chan struct{})
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				select {
				case <-time.After(c.handler):
				case <-r.Context().Done():
				}
			})}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- ServeHTTP(ctx, srv, ln, c.grace) }()
			status := make(chan int, 1)
			go func() {
				resp, err := http.Get("http://" + ln.Addr().String())
				if err != nil {
					status <- 0
					return
				}
				resp.Body.Close()
				status <- resp.StatusCode
			}()
			<-started
			cancel()
			require.ErrorIs(t, <-done, c.want)
			require.Equal(t, c.status, <-status)
		})
	}
}

func TestServeHTTPReturnsWhyServingFailed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln.Close()
	err = ServeHTTP(context.Background(), &http.Server{}, ln, time.Second)
	require.ErrorContains(t, err, "serving HTTP on "+ln.Addr().String())
}
