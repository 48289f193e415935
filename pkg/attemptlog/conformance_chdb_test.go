//go:build chdb

package attemptlog_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	"github.com/surveyhooks/surveyhooks/pkg/attemptlog/chdbengine"
)

func init() {
	engines = append(engines, engine{name: "chdb", form: attemptlog.Current, open: openChdb})
}

func openChdb(t testing.TB, opts ...attemptlog.Option) *attemptlog.Store {
	db := testDatabase(t)
	conn, err := chdbengine.Open(db)
	require.NoError(t, err)
	st, err := attemptlog.New(context.Background(), conn, db, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	return st
}
