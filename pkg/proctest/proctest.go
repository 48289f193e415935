// Package proctest is the harness the end-to-end tests, the component tests and the bench share
// for processes and HTTP: free loopback addresses, waiting for an HTTP endpoint to answer, and
// built binaries run as processes (start with an environment, signal, kill -9, wait for the exit
// code, restart as started, read the log). It never listens beyond 127.0.0.1, and a process it
// starts never outlives the one that started it.
package proctest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// FreeAddr returns a free 127.0.0.1 port, as "127.0.0.1:port".
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Addr is FreeAddr for a test: it fails t when no port is free.
func Addr(t testing.TB) string {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// WaitHTTP polls url every 100 ms until it answers 200 (nil), ctx ends, timeout passes, or alive
// (nil for none) returns an error, which is returned: the process that should answer has died.
func WaitHTTP(ctx context.Context, url string, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if r, err := http.DefaultClient.Do(req); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer 200 within %s", url, timeout)
}

// WaitHTTPOK is WaitHTTP for a test: it fails t unless url answers 200 within timeout.
func WaitHTTPOK(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := WaitHTTP(context.Background(), url, timeout, nil); err != nil {
		t.Fatal(err)
	}
}
