// Package chtest gives a test its own database on the local ClickHouse server that `make test`
// starts (deploy/clickhouse/local.sh) and names in CLICKHOUSE_ADDR.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Addr returns CLICKHOUSE_ADDR or fails the test with how to get one.
func Addr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("CLICKHOUSE_ADDR")
	if addr == "" {
		t.Fatal("CLICKHOUSE_ADDR is not set: run the tests with `make test`, or start a server with " +
			"`eval \"$(deploy/clickhouse/local.sh start)\"` first")
	}
	return addr
}

// Database creates a fresh database for the test, dropped when it ends, and returns its name.
func Database(t testing.TB) string {
	t.Helper()
	addr := Addr(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test_" + hex.EncodeToString(b)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("connecting to ClickHouse at %s: %v", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
		_ = conn.Close()
	})
	return name
}
