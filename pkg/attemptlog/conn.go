package attemptlog

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Conn is what the store needs of a ClickHouse engine: statements and queries with positional `?`
// arguments, and block inserts. Two engines satisfy it: a server over the native protocol
// (clickhouse-go/v2, Open) and, in tests, a current ClickHouse in-process (libchdb, package
// attemptlog/chdbengine), which has no network endpoint. Every query of this package goes through
// it, so the conformance suite runs the same SQL text on both.
type Conn interface {
	Exec(ctx context.Context, query string, args ...any) error
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// Insert writes rows in one block; insert is "INSERT INTO db.table (columns)" and every row
	// holds one value per column, in order.
	Insert(ctx context.Context, insert string, rows [][]any) error
	Ping(ctx context.Context) error
	Close() error
}

// Rows is a query's result, read row by row.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// native is a ClickHouse server over clickhouse-go/v2's native protocol. Inserts go through
// PrepareBatch with an explicit column list: the one insert form that works from 18.16 on.
type native struct{ conn driver.Conn }

func (n native) Exec(ctx context.Context, q string, args ...any) error {
	return n.conn.Exec(ctx, q, args...)
}

func (n native) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	return n.conn.Query(ctx, q, args...)
}

func (n native) Insert(ctx context.Context, insert string, rows [][]any) error {
	b, err := n.conn.PrepareBatch(ctx, insert)
	if err != nil {
		return fmt.Errorf("preparing batch: %w", err)
	}
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			b.Abort()
			return fmt.Errorf("appending row: %w", err)
		}
	}
	return b.Send()
}

func (n native) Ping(ctx context.Context) error { return n.conn.Ping(ctx) }
func (n native) Close() error                   { return n.conn.Close() }

// queryRow reads the first row of a query into dest; ErrNotFound when there is none.
func queryRow(ctx context.Context, c Conn, q string, args []any, dest ...any) error {
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return ErrNotFound
	}
	return rows.Scan(dest...)
}
