//go:build chdb

package chdbengine

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// rows is a decoded RowBinaryWithNamesAndTypes result.
type rows struct {
	data [][]any
	i    int
}

func (r *rows) Next() bool   { r.i++; return r.i <= len(r.data) }
func (r *rows) Err() error   { return nil }
func (r *rows) Close() error { return nil }

// Scan copies the current row into dest pointers, converting as clickhouse-go would.
func (r *rows) Scan(dest ...any) error {
	row := r.data[r.i-1]
	if len(dest) != len(row) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(row))
	}
	for i, d := range dest {
		if err := assign(d, row[i]); err != nil {
			return fmt.Errorf("scan column %d: %w", i+1, err)
		}
	}
	return nil
}

func assign(dest, v any) error {
	switch d := dest.(type) {
	case *time.Time:
		t, ok := v.(time.Time)
		if !ok {
			return fmt.Errorf("%T into *time.Time", v)
		}
		*d = t
		return nil
	case *[]string:
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%T into *[]string", v)
		}
		out := make([]string, len(a))
		for i, e := range a {
			if err := assign(&out[i], e); err != nil {
				return err
			}
		}
		*d = out
		return nil
	case *[]float64:
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%T into *[]float64", v)
		}
		out := make([]float64, len(a))
		for i, e := range a {
			if err := assign(&out[i], e); err != nil {
				return err
			}
		}
		*d = out
		return nil
	}
	rv := reflect.ValueOf(dest)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("destination %T is not a pointer", dest)
	}
	e := rv.Elem()
	switch x := v.(type) {
	case string:
		if e.Kind() == reflect.String {
			e.SetString(x)
			return nil
		}
	case uint64:
		switch e.Kind() {
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			e.SetUint(x)
			return nil
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			e.SetInt(int64(x))
			return nil
		case reflect.Float32, reflect.Float64:
			e.SetFloat(float64(x))
			return nil
		}
	case int64:
		switch e.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			e.SetInt(x)
			return nil
		case reflect.Float32, reflect.Float64:
			e.SetFloat(float64(x))
			return nil
		}
	case float64:
		if e.Kind() == reflect.Float32 || e.Kind() == reflect.Float64 {
			e.SetFloat(x)
			return nil
		}
	}
	return fmt.Errorf("%T into %T", v, dest)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n > len(r.b) || n < 0 {
		r.err = errShort
		return make([]byte, max(n, 0))
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string { return string(r.take(int(r.uvarint()))) }

func decode(buf []byte) (*rows, error) {
	r := &reader{b: buf}
	if len(buf) == 0 {
		return &rows{}, nil
	}
	n := int(r.uvarint())
	names := make([]string, n)
	for i := range names {
		names[i] = r.str()
	}
	types := make([]string, n)
	for i := range types {
		types[i] = r.str()
	}
	out := &rows{}
	for r.err == nil && len(r.b) > 0 {
		row := make([]any, n)
		for i, t := range types {
			v, err := value(r, t)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", names[i], err)
			}
			row[i] = v
		}
		out.data = append(out.data, row)
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// value reads one value of ClickHouse type t: the types this package's queries return.
func value(r *reader, t string) (any, error) {
	if inner, ok := strings.CutPrefix(t, "LowCardinality("); ok {
		t = strings.TrimSuffix(inner, ")")
	}
	if inner, ok := strings.CutPrefix(t, "Array("); ok {
		inner = strings.TrimSuffix(inner, ")")
		n := r.uvarint()
		out := make([]any, 0, n)
		for range n {
			v, err := value(r, inner)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, r.err
	}
	le := binary.LittleEndian
	switch {
	case t == "String":
		return r.str(), r.err
	case t == "UInt8" || t == "Bool":
		return uint64(r.take(1)[0]), r.err
	case t == "UInt16":
		return uint64(le.Uint16(r.take(2))), r.err
	case t == "UInt32":
		return uint64(le.Uint32(r.take(4))), r.err
	case t == "UInt64":
		return le.Uint64(r.take(8)), r.err
	case t == "Int8":
		return int64(int8(r.take(1)[0])), r.err
	case t == "Int16":
		return int64(int16(le.Uint16(r.take(2)))), r.err
	case t == "Int32":
		return int64(int32(le.Uint32(r.take(4)))), r.err
	case t == "Int64":
		return int64(le.Uint64(r.take(8))), r.err
	case t == "Float32":
		return float64(math.Float32frombits(le.Uint32(r.take(4)))), r.err
	case t == "Float64":
		return math.Float64frombits(le.Uint64(r.take(8))), r.err
	case t == "DateTime" || strings.HasPrefix(t, "DateTime("):
		return time.Unix(int64(le.Uint32(r.take(4))), 0).UTC(), r.err
	case strings.HasPrefix(t, "DateTime64("):
		args := strings.Split(strings.TrimSuffix(strings.TrimPrefix(t, "DateTime64("), ")"), ",")
		p, err := strconv.Atoi(strings.TrimSpace(args[0]))
		if err != nil {
			return nil, fmt.Errorf("type %s: %w", t, err)
		}
		ticks := int64(le.Uint64(r.take(8)))
		scale := int64(math.Pow10(9 - p))
		return time.Unix(0, ticks*scale).UTC(), r.err
	}
	return nil, fmt.Errorf("type %s is not read by this engine", t)
}
