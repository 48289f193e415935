// Package masking hides fields of a JSON body by rules: a path in a small language over the body
// and an action (hash, mask, drop). Fan-out applies a webhook's rules to the body it renders for
// that webhook; the sink applies a project's storage rules to the bodies it stores. Rules are
// compiled once (Compile) and applied to many bodies (Masker.Apply). Applying never reorders,
// re-escapes or re-formats what no rule touches, and never logs a value.
//
// The path language: dot-separated member names, each optionally followed by "[*]" (every element
// of the array there), e.g. "payload.user.email" or
// "payload.response.items[*].answer.fields[*].value". A name is any text without ".", "[" or "]"
// (so trait names with spaces work). A path that is not in a body changes nothing.
package masking

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// The actions.
const (
	Hash = "hash"
	Mask = "mask"
	Drop = "drop"
)

// Limits of a rule list.
const (
	MaxRules      = 20
	MaxPathLength = 300
	MaxKeep       = 64
)

// FieldError is a rule's problem, naming the field as the API reports it ("masking[2].path").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// step is one segment of a path: a member name, then how many "[*]" follow it.
type step struct {
	name string
	all  int
}

type rule struct {
	steps  []step
	action string
	keep   int
}

// Masker is a compiled rule list; the zero of *Masker (nil) masks nothing.
type Masker struct {
	rules    []rule
	needsKey bool
}

// Compile checks and compiles rules; field is the name the errors use ("masking",
// "storage_masking").
func Compile(field string, rules []*pb.MaskingRule) (*Masker, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	if len(rules) > MaxRules {
		return nil, &FieldError{field, fmt.Sprintf("at most %d rules, got %d", MaxRules, len(rules))}
	}
	m := &Masker{}
	for i, r := range rules {
		at := fmt.Sprintf("%s[%d]", field, i)
		steps, err := parsePath(r.GetPath())
		if err != nil {
			return nil, &FieldError{at + ".path", err.Error()}
		}
		switch r.GetAction() {
		case Hash:
			m.needsKey = true
		case Mask, Drop:
		default:
			return nil, &FieldError{at + ".action", fmt.Sprintf("unknown action %q; available: hash, mask, drop", r.GetAction())}
		}
		if r.GetKeep() < 0 || r.GetKeep() > MaxKeep {
			return nil, &FieldError{at + ".keep", fmt.Sprintf("keep must be between 0 and %d, got %d", MaxKeep, r.GetKeep())}
		}
		if r.GetKeep() != 0 && r.GetAction() != Mask {
			return nil, &FieldError{at + ".keep", "keep applies to the mask action only"}
		}
		m.rules = append(m.rules, rule{steps: steps, action: r.GetAction(), keep: int(r.GetKeep())})
	}
	return m, nil
}

func parsePath(p string) ([]step, error) {
	if p == "" {
		return nil, errors.New("path is required, e.g. \"payload.user.email\"")
	}
	if len(p) > MaxPathLength {
		return nil, fmt.Errorf("path is at most %d characters, got %d", MaxPathLength, len(p))
	}
	var steps []step
	for i, seg := range strings.Split(p, ".") {
		s := step{}
		name := seg
		for strings.HasSuffix(name, "[*]") {
			name = strings.TrimSuffix(name, "[*]")
			s.all++
		}
		if name == "" {
			return nil, fmt.Errorf("segment %d of %q is empty: write dotted member names, each optionally followed by [*]", i+1, p)
		}
		if strings.ContainsAny(name, "[]") {
			return nil, fmt.Errorf("segment %q of %q: the only bracket form is [*] after a name (every element of an array)", seg, p)
		}
		s.name = name
		steps = append(steps, s)
	}
	return steps, nil
}

// NeedsKey reports whether a rule hashes, so Apply needs a project key.
func (m *Masker) NeedsKey() bool { return m != nil && m.needsKey }

// ProjectKey derives a project's hashing key from the service's key material (the decoded
// SURVEYHOOKS_ENCRYPTION_KEY): the same value hashes the same way within a project, and
// differently in another project.
func ProjectKey(material []byte, projectID string) []byte {
	mac := hmac.New(sha256.New, material)
	mac.Write([]byte("surveyhooks masking v1\x00" + projectID))
	return mac.Sum(nil)
}

// HashValue is what the hash action writes for a value whose text is text: lower-case hex
// HMAC-SHA256 under the project key. Erasure uses it to find a respondent's hashed identifiers.
func HashValue(key []byte, text string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(text))
	return hex.EncodeToString(mac.Sum(nil))
}

// ErrNoKey is returned by Apply when a rule hashes and no key was given.
var ErrNoKey = errors.New("a masking rule hashes but no project key is configured")

// Apply returns body with every rule applied in order; key is the project's key (ProjectKey),
// needed only when a rule hashes. A body that is not JSON, or that no rule touches, comes back as
// it is.
func (m *Masker) Apply(body []byte, key []byte) ([]byte, error) {
	if m == nil || len(m.rules) == 0 {
		return body, nil
	}
	if m.needsKey && len(key) == 0 {
		return nil, ErrNoKey
	}
	if !json.Valid(body) {
		return nil, errors.New("body is not JSON: masking rules cannot apply")
	}
	p := parser{b: body}
	root := p.value()
	changed := false
	for _, r := range m.rules {
		if r.apply(&root, r.steps, key) {
			changed = true
		}
	}
	if !changed {
		return body, nil
	}
	var out bytes.Buffer
	out.Grow(len(body))
	root.write(&out)
	return out.Bytes(), nil
}

// apply applies r at the node n following steps; true when something changed.
func (r rule) apply(n *node, steps []step, key []byte) bool {
	if n.kind != object || len(steps) == 0 {
		return false
	}
	s := steps[0]
	changed := false
	for i := 0; i < len(n.members); i++ {
		mb := &n.members[i]
		if mb.name != s.name {
			continue
		}
		if s.all == 0 && len(steps) == 1 {
			if r.action == Drop {
				n.members = append(n.members[:i], n.members[i+1:]...)
				i--
				changed = true
				continue
			}
			changed = r.replace(&mb.val, key) || changed
			continue
		}
		changed = r.elements(&mb.val, s.all, steps[1:], key) || changed
	}
	return changed
}

// elements descends depth levels of arrays from n, then applies the rest of the path (or, when
// none is left, the action to each element).
func (r rule) elements(n *node, depth int, rest []step, key []byte) bool {
	if depth == 0 {
		return r.apply(n, rest, key)
	}
	if n.kind != array {
		return false
	}
	changed := false
	for i := 0; i < len(n.elems); i++ {
		if depth == 1 && len(rest) == 0 {
			if r.action == Drop {
				n.elems = append(n.elems[:i], n.elems[i+1:]...)
				i--
				changed = true
				continue
			}
			changed = r.replace(&n.elems[i], key) || changed
			continue
		}
		changed = r.elements(&n.elems[i], depth-1, rest, key) || changed
	}
	return changed
}

// replace hashes or masks the value n; null is left alone (there is nothing to hide).
func (r rule) replace(n *node, key []byte) bool {
	if n.kind == scalar && string(n.raw) == "null" {
		return false
	}
	text := n.text()
	var out string
	switch r.action {
	case Hash:
		out = HashValue(key, text)
	case Mask:
		out = maskText(text, r.keep)
	}
	raw, _ := json.Marshal(out)
	*n = node{kind: scalar, raw: raw}
	return true
}

// maskText keeps the first keep characters and appends "***"; a value no longer than keep
// becomes "***" alone, so a mask never shows a whole value.
func maskText(s string, keep int) string {
	if utf8.RuneCountInString(s) <= keep {
		return "***"
	}
	i := 0
	for range keep {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + "***"
}
