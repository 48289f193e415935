// Package ids makes the identifiers surveyhooks assigns: prefixed random ids for its own objects
// (`wh_…`, `att_…`) and UUIDs where a platform's format types an id as one. It is the only place
// that draws random ids; it never derives an id from secret material.
package ids

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/google/uuid"
)

// New returns prefix followed by 24 hex digits (96 random bits): "wh_3f9c…".
func New(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return prefix + hex.EncodeToString(b[:])
}

// UUID returns a random (version 4) UUID in its canonical text form.
func UUID() string { return uuid.NewString() }

// NameUUID returns the name-based (version 5, SHA-1) UUID of name within namespace: the same name
// always gives the same UUID, so an id derived from a stable input (a project id, a Kafka record's
// position) survives reprocessing.
func NameUUID(namespace uuid.UUID, name string) string {
	return uuid.NewSHA1(namespace, []byte(name)).String()
}

// Namespace is surveyhooks' own UUID namespace for NameUUID.
var Namespace = uuid.MustParse("6f0c2a9e-58a4-4d0e-9a57-3c2f5b1e7d41")
