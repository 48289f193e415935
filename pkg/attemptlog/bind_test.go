package attemptlog

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBindRendersValuesAsLiteralsThatCannotEscape(t *testing.T) {
	at := time.Date(2026, 11, 29, 18, 0, 1, 250e6, time.UTC)
	for _, c := range []struct {
		name, query string
		args        []any
		want        string
	}{
		{"string", "a = ?", []any{"x"}, "a = 'x'"},
		{"quote and backslash", "a = ?", []any{`it's \'`}, `a = 'it\'s \\\''`},
		{"nul byte", "a = ?", []any{"a\x00b"}, `a = 'a\0b'`},
		{"numbers", "? ? ? ?", []any{uint16(7), int64(-3), 1.5, true}, "7 -3 1.5 1"},
		{"time in UTC, milliseconds when any", "t >= ? AND u < ?", []any{at, at.Truncate(time.Second).In(time.FixedZone("x", 3600))},
			"t >= '2026-11-29 18:00:01.250' AND u < '2026-11-29 18:00:01'"},
		{"array", "has(?, id)", []any{[]string{"a", "b'"}}, `has(['a','b\''], id)`},
		{"placeholder in a literal is text", "a = '?' AND b = ?", []any{"x"}, "a = '?' AND b = 'x'"},
		{"escaped quote in a literal", `a = 'it\'s ?' AND b = ?`, []any{"x"}, `a = 'it\'s ?' AND b = 'x'`},
	} {
		got, err := Bind(c.query, c.args...)
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, got, c.name)
	}
	_, err := Bind("a = ? AND b = ?", "x")
	require.Error(t, err, "too few arguments")
	_, err = Bind("a = ?", "x", "y")
	require.Error(t, err, "too many arguments")
	_, err = Bind("a = ?", struct{}{})
	require.Error(t, err, "a type without a literal")
}
