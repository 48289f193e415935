package masking

import (
	"bytes"
	"encoding/json"
)

// A minimal JSON tree that keeps members in their order and every untouched scalar and key as its
// original bytes, so masking one field leaves the rest of a body byte for byte as rendered.
// The parser runs only on input json.Valid accepted.

type kind uint8

const (
	scalar kind = iota
	object
	array
)

type member struct {
	rawKey []byte // the key as written, quotes included
	name   string // the key decoded
	val    node
}

type node struct {
	kind    kind
	raw     []byte // scalar: its JSON text
	members []member
	elems   []node
}

// text is what hash and mask act on: a string's decoded value, any other value's JSON text.
func (n *node) text() string {
	if n.kind == scalar && len(n.raw) > 0 && n.raw[0] == '"' {
		var s string
		if json.Unmarshal(n.raw, &s) == nil {
			return s
		}
	}
	var b bytes.Buffer
	n.write(&b)
	return b.String()
}

func (n *node) write(b *bytes.Buffer) {
	switch n.kind {
	case scalar:
		b.Write(n.raw)
	case object:
		b.WriteByte('{')
		for i := range n.members {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(n.members[i].rawKey)
			b.WriteByte(':')
			n.members[i].val.write(b)
		}
		b.WriteByte('}')
	case array:
		b.WriteByte('[')
		for i := range n.elems {
			if i > 0 {
				b.WriteByte(',')
			}
			n.elems[i].write(b)
		}
		b.WriteByte(']')
	}
}

type parser struct {
	b []byte
	i int
}

func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value() node {
	p.space()
	switch p.b[p.i] {
	case '{':
		p.i++
		n := node{kind: object}
		for {
			p.space()
			if p.b[p.i] == '}' {
				p.i++
				return n
			}
			if p.b[p.i] == ',' {
				p.i++
				p.space()
			}
			raw := p.str()
			var name string
			_ = json.Unmarshal(raw, &name)
			p.space()
			p.i++ // ':'
			n.members = append(n.members, member{rawKey: raw, name: name, val: p.value()})
		}
	case '[':
		p.i++
		n := node{kind: array}
		for {
			p.space()
			if p.b[p.i] == ']' {
				p.i++
				return n
			}
			if p.b[p.i] == ',' {
				p.i++
			}
			n.elems = append(n.elems, p.value())
		}
	case '"':
		return node{kind: scalar, raw: p.str()}
	default:
		start := p.i
		for p.i < len(p.b) {
			c := p.b[p.i]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			p.i++
		}
		return node{kind: scalar, raw: p.b[start:p.i]}
	}
}

// str reads a string at p.i and returns it as written, quotes included.
func (p *parser) str() []byte {
	start := p.i
	p.i++ // opening quote
	for p.b[p.i] != '"' {
		if p.b[p.i] == '\\' {
			p.i++
		}
		p.i++
	}
	p.i++
	return p.b[start:p.i]
}
