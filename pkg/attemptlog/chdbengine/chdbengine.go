//go:build chdb

// Package chdbengine runs the attempt log on a current ClickHouse in-process: libchdb (npm
// @chdb/lib-linux-x64-gnu, installed by `make chdb`) loaded by chdb-go. It exists for the
// conformance suite and must never be imported by a service: loading libchdb (CHDB_LIB_PATH) happens
// when the package is initialised, and the library is 560 MB. Built only with -tags chdb.
//
// libchdb takes SQL text and returns a formatted buffer, so arguments are rendered with
// attemptlog.Bind, inserts become INSERT … VALUES, and results are read as
// RowBinaryWithNamesAndTypes, which carries every column's type and exact bytes.
package chdbengine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/chdb-io/chdb-go/chdb"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
)

// libchdb holds one session per process; every Conn shares it, one statement at a time.
var (
	mu      sync.Mutex
	session *chdb.Session
)

// Conn is a database in the in-process engine.
type Conn struct{ db string }

// Open returns a connection whose default database is database, created when missing.
func Open(database string) (*Conn, error) {
	mu.Lock()
	defer mu.Unlock()
	if session == nil {
		s, err := chdb.NewSession()
		if err != nil {
			return nil, fmt.Errorf("starting libchdb: %w", err)
		}
		session = s
	}
	if _, err := (&Conn{db: "default"}).run("CREATE DATABASE IF NOT EXISTS `"+database+"`", "CSV"); err != nil {
		return nil, fmt.Errorf("creating database %s: %w", database, err)
	}
	return &Conn{db: database}, nil
}

func (c *Conn) run(q, format string) ([]byte, error) {
	// Every statement runs in the connection's database, in UTC, whatever ran before it.
	r, err := session.Query("USE `"+c.db+"`; SET session_timezone = 'UTC'", "CSV")
	if err == nil {
		err = r.Error()
		r.Free()
	}
	if err != nil {
		return nil, fmt.Errorf("selecting database %s: %w", c.db, err)
	}
	r, err = session.Query(q, format)
	if err != nil {
		return nil, err
	}
	defer r.Free()
	if err := r.Error(); err != nil {
		return nil, err
	}
	return append([]byte(nil), r.Buf()...), nil
}

// Exec runs a statement.
func (c *Conn) Exec(_ context.Context, q string, args ...any) error {
	sql, err := attemptlog.Bind(q, args...)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	_, err = c.run(sql, "CSV")
	return err
}

// Query runs a query and returns its rows.
func (c *Conn) Query(_ context.Context, q string, args ...any) (attemptlog.Rows, error) {
	sql, err := attemptlog.Bind(q, args...)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	buf, err := c.run(sql, "RowBinaryWithNamesAndTypes")
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	return decode(buf)
}

// Insert writes rows as one INSERT … VALUES statement.
func (c *Conn) Insert(_ context.Context, insert string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString(insert)
	b.WriteString(" VALUES ")
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for j, v := range r {
			if j > 0 {
				b.WriteByte(',')
			}
			lit, err := attemptlog.Literal(v)
			if err != nil {
				return fmt.Errorf("row %d, value %d: %w", i, j, err)
			}
			b.WriteString(lit)
		}
		b.WriteByte(')')
	}
	mu.Lock()
	defer mu.Unlock()
	_, err := c.run(b.String(), "CSV")
	return err
}

// Ping checks the engine answers.
func (c *Conn) Ping(ctx context.Context) error { return c.Exec(ctx, "SELECT 1") }

// Close drops nothing: the session lives as long as the process.
func (c *Conn) Close() error { return nil }

var errShort = errors.New("RowBinary: result ends inside a value")
