package envelope

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Every body leaves in the bytes JavaScript's JSON.stringify(JSON.parse(body)) gives back, so that
// receivers that re-serialise before checking a signature — as Ask Users' own Node.js recipe does —
// compute the HMAC of exactly the bytes that were signed. Go's encoder differs from JSON.stringify
// in ways common answers hit: it escapes & < > and U+2028/U+2029 (JSON.stringify writes them as
// they are), and raw values copied from producers keep their spelling (`9.0`, `1E3`, `"\u00e9"`,
// keys "2" after "1"…) where JavaScript normalises. stringify applies JavaScript's rules:
//
//   - strings: only " \ and the control characters U+0000–U+001F are escaped, as \" \\ \b \f \n
//     \r \t or \u00xx (lower-case hex); a lone UTF-16 surrogate stays \udxxx; everything else,
//     & < > U+2028 U+2029 and emoji included, is written as UTF-8;
//   - numbers: the shortest form that reads back to the same double, as Number.prototype.toString
//     writes it (1e+21, 1e-7, 0.000001, no "-0"); one too large for a double becomes null;
//   - objects: keys that are array indices ("0" … "4294967294") first, in ascending order, then the
//     others in the order given; a repeated key keeps its first place and its last value;
//   - no whitespace.
//
// Every JSON parser reads the same values from the result as from the input (key order carries no
// meaning in JSON); only a number beyond a double's precision is rounded, as every JavaScript
// receiver rounds it anyway.

var errTrailing = errors.New("trailing data after the JSON value")

// stringify rewrites the JSON document doc as JSON.stringify(JSON.parse(doc)) would.
func stringify(doc []byte) ([]byte, error) {
	w := jsWriter{in: doc, out: make([]byte, 0, len(doc)+16)}
	w.space()
	if err := w.value(0); err != nil {
		return nil, fmt.Errorf("re-serialising the body: %w", err)
	}
	w.space()
	if w.i != len(w.in) {
		return nil, fmt.Errorf("re-serialising the body: %w", errTrailing)
	}
	return w.out, nil
}

// maxNesting bounds recursion. It must exceed what ingest lets through — encoding/json's own limit
// of 10000 levels, inside free-form objects — plus the few levels of a body around them: a body
// that could not be written would never be delivered.
const maxNesting = 10100

type jsWriter struct {
	in  []byte
	i   int
	out []byte
}

func (w *jsWriter) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: %s", w.i, fmt.Sprintf(format, args...))
}

func (w *jsWriter) space() {
	for w.i < len(w.in) {
		switch w.in[w.i] {
		case ' ', '\t', '\r', '\n':
			w.i++
		default:
			return
		}
	}
}

func (w *jsWriter) value(depth int) error {
	if depth > maxNesting {
		return w.errorf("nested too deeply")
	}
	if w.i >= len(w.in) {
		return w.errorf("unexpected end")
	}
	switch c := w.in[w.i]; c {
	case '{':
		return w.object(depth)
	case '[':
		return w.array(depth)
	case '"':
		return w.str()
	case 't':
		return w.literal("true")
	case 'f':
		return w.literal("false")
	case 'n':
		return w.literal("null")
	default:
		return w.number()
	}
}

func (w *jsWriter) literal(lit string) error {
	if !bytes.HasPrefix(w.in[w.i:], []byte(lit)) {
		return w.errorf("invalid literal")
	}
	w.i += len(lit)
	w.out = append(w.out, lit...)
	return nil
}

func (w *jsWriter) number() error {
	start := w.i
	for w.i < len(w.in) {
		c := w.in[w.i]
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			break
		}
		w.i++
	}
	f, err := strconv.ParseFloat(string(w.in[start:w.i]), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return w.errorf("invalid number %q", w.in[start:w.i])
	}
	w.out = appendJSNumber(w.out, f)
	return nil
}

// appendJSNumber writes f as JavaScript's Number.prototype.toString does (what JSON.stringify
// uses): fixed notation from 1e-6 up to 1e21, exponent notation (1e+21, 1.5e-7) outside; -0 is 0;
// an infinity (a literal too large for a double) is null, as JSON.stringify writes it.
func appendJSNumber(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 0) || math.IsNaN(f):
		return append(b, "null"...)
	case f == 0:
		return append(b, '0')
	}
	format := byte('f')
	if a := math.Abs(f); a < 1e-6 || a >= 1e21 {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if n := len(b); format == 'e' && n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1] // Go writes e-07, JavaScript e-7
		b = b[:n-1]
	}
	return b
}

func (w *jsWriter) array(depth int) error {
	w.i++ // [
	w.out = append(w.out, '[')
	for n := 0; ; n++ {
		w.space()
		if w.i >= len(w.in) {
			return w.errorf("unexpected end in an array")
		}
		if w.in[w.i] == ']' {
			w.i++
			w.out = append(w.out, ']')
			return nil
		}
		if n > 0 {
			if w.in[w.i] != ',' {
				return w.errorf("expected , in an array")
			}
			w.i++
			w.space()
			w.out = append(w.out, ',')
		}
		if err := w.value(depth + 1); err != nil {
			return err
		}
	}
}

// jsMember is where one object member was written in out: key (with its quotes) and value.
type jsMember struct {
	key, end int // out[key:colon] is the key, out[colon+1:end] the value
	colon    int
	index    uint32 // the array index the key names, when isIndex
	isIndex  bool
}

func (w *jsWriter) object(depth int) error {
	w.i++ // {
	w.out = append(w.out, '{')
	start := len(w.out)
	var small [16]jsMember // no allocation for the usual object
	ms := small[:0]
	reorder := false
	for {
		w.space()
		if w.i >= len(w.in) {
			return w.errorf("unexpected end in an object")
		}
		if w.in[w.i] == '}' {
			w.i++
			break
		}
		if len(ms) > 0 {
			if w.in[w.i] != ',' {
				return w.errorf("expected , in an object")
			}
			w.i++
			w.space()
			w.out = append(w.out, ',')
		}
		if w.i >= len(w.in) || w.in[w.i] != '"' {
			return w.errorf("expected a key")
		}
		m := jsMember{key: len(w.out)}
		if err := w.str(); err != nil {
			return err
		}
		m.colon = len(w.out)
		m.index, m.isIndex = arrayIndex(w.out[m.key+1 : m.colon-1])
		w.space()
		if w.i >= len(w.in) || w.in[w.i] != ':' {
			return w.errorf("expected :")
		}
		w.i++
		w.space()
		w.out = append(w.out, ':')
		if err := w.value(depth + 1); err != nil {
			return err
		}
		m.end = len(w.out)
		if m.isIndex && (len(ms) > 0 && (!ms[len(ms)-1].isIndex || ms[len(ms)-1].index >= m.index)) {
			reorder = true // an index after a name, or indices out of order (or repeated)
		}
		ms = append(ms, m)
	}
	if !reorder && len(ms) > 1 && w.hasRepeat(ms) {
		reorder = true
	}
	if reorder {
		w.reorder(start, ms)
	}
	w.out = append(w.out, '}')
	return nil
}

// arrayIndex reports whether an (already canonical) key is an array index: the decimal form,
// without leading zeros, of an integer from 0 to 2³²−2. JavaScript lists those keys first.
func arrayIndex(k []byte) (uint32, bool) {
	if len(k) == 0 || len(k) > 10 || (len(k) > 1 && k[0] == '0') {
		return 0, false
	}
	var n uint64
	for _, c := range k {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > math.MaxUint32-1 {
		return 0, false
	}
	return uint32(n), true
}

func (w *jsWriter) keyOf(m jsMember) []byte { return w.out[m.key:m.colon] }

// hasRepeat reports whether a key appears twice (canonical keys are equal exactly when the
// strings are).
func (w *jsWriter) hasRepeat(ms []jsMember) bool {
	if len(ms) <= 16 {
		for i := 1; i < len(ms); i++ {
			for j := range i {
				if bytes.Equal(w.keyOf(ms[i]), w.keyOf(ms[j])) {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(ms))
	for _, m := range ms {
		k := string(w.keyOf(m))
		if _, ok := seen[k]; ok {
			return true
		}
		seen[k] = struct{}{}
	}
	return false
}

// reorder rewrites the members written from out[start:] in JavaScript's property order: array
// indices ascending, then names in first-appearance order; a repeated key takes its last value.
func (w *jsWriter) reorder(start int, ms []jsMember) {
	written := slices.Clone(w.out[start:])
	seg := func(from, to int) []byte { return written[from-start : to-start] }
	type prop struct {
		m     jsMember
		first int
	}
	var order []prop
	pos := map[string]int{}
	for i, m := range ms {
		k := string(w.keyOf(m))
		if p, ok := pos[k]; ok {
			order[p].m = m // the last value, at the first place
			continue
		}
		pos[k] = len(order)
		order = append(order, prop{m: m, first: i})
	}
	slices.SortStableFunc(order, func(a, b prop) int {
		switch {
		case a.m.isIndex && b.m.isIndex:
			return int(int64(a.m.index) - int64(b.m.index))
		case a.m.isIndex:
			return -1
		case b.m.isIndex:
			return 1
		}
		return a.first - b.first
	})
	w.out = w.out[:start]
	for i, p := range order {
		if i > 0 {
			w.out = append(w.out, ',')
		}
		w.out = append(w.out, seg(p.m.key, p.m.colon)...)
		w.out = append(w.out, ':')
		w.out = append(w.out, seg(p.m.colon+1, p.m.end)...)
	}
}

// str copies the string at w.i, re-escaped as JSON.stringify escapes it.
func (w *jsWriter) str() error {
	w.i++ // "
	w.out = append(w.out, '"')
	for w.i < len(w.in) {
		c := w.in[w.i]
		switch {
		case c == '"':
			w.i++
			w.out = append(w.out, '"')
			return nil
		case c == '\\':
			if err := w.escape(); err != nil {
				return err
			}
		case c < 0x20:
			return w.errorf("control character in a string")
		case c < utf8.RuneSelf:
			w.out = append(w.out, c)
			w.i++
		default:
			r, size := utf8.DecodeRune(w.in[w.i:])
			// A receiver's UTF-8 decoder turns an invalid byte into U+FFFD; so does this.
			w.out = utf8.AppendRune(w.out, r)
			w.i += size
		}
	}
	return w.errorf("unterminated string")
}

func (w *jsWriter) escape() error {
	if w.i+1 >= len(w.in) {
		return w.errorf("unterminated escape")
	}
	e := w.in[w.i+1]
	w.i += 2
	switch e {
	case '"', '\\':
		w.out = append(w.out, '\\', e)
	case '/':
		w.out = append(w.out, '/')
	case 'b', 'f', 'n', 'r', 't':
		w.out = append(w.out, '\\', e)
	case 'u':
		u, ok := w.hex4(w.i)
		if !ok {
			return w.errorf("invalid \\u escape")
		}
		w.i += 4
		if utf16.IsSurrogate(u) {
			if u < 0xdc00 && w.i+1 < len(w.in) && w.in[w.i] == '\\' && w.in[w.i+1] == 'u' {
				if lo, ok := w.hex4(w.i + 2); ok && lo >= 0xdc00 && lo <= 0xdfff {
					w.i += 6
					w.out = utf8.AppendRune(w.out, utf16.DecodeRune(u, lo))
					return nil
				}
			}
			w.out = appendUnicodeEscape(w.out, u) // a lone surrogate stays escaped
			return nil
		}
		w.out = appendCodeUnit(w.out, u)
	default:
		return w.errorf("invalid escape \\%c", e)
	}
	return nil
}

// appendCodeUnit writes one character that came from a \u escape.
func appendCodeUnit(b []byte, r rune) []byte {
	switch r {
	case '"', '\\':
		return append(b, '\\', byte(r))
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	if r < 0x20 {
		return appendUnicodeEscape(b, r)
	}
	return utf8.AppendRune(b, r)
}

func appendUnicodeEscape(b []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
}

func (w *jsWriter) hex4(i int) (rune, bool) {
	var b [2]byte
	if i+4 > len(w.in) {
		return 0, false
	}
	if _, err := hex.Decode(b[:], w.in[i:i+4]); err != nil {
		return 0, false
	}
	return rune(b[0])<<8 | rune(b[1]), true
}
