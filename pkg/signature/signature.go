// Package signature signs webhook requests and verifies them, the two ways receivers expect:
// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` with an
// HMAC secret, or `v1a,<base64>` with an ed25519 key) and
// Ask Users' `X-Webhook-Signature: <hex HMAC-SHA256 of the raw body>`. It never logs.
package signature

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
)

// Header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
	HeaderAskUsers  = "X-Webhook-Signature"
)

// ErrInvalid means a signature did not verify.
var ErrInvalid = errors.New("signature does not verify")

// Key is the HMAC key of webhook-signature for a secret: for a "whsec_…" secret, the
// base64-decoded part after the prefix (as Standard Webhooks libraries decode it); for a secret the
// customer chose in their own form (see secrets.ValidateWebhookSecret), its bytes as they are —
// what Standard Webhooks libraries take with their "raw" key option.
func Key(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, secrets.SecretPrefix)
	if !ok {
		if secret == "" {
			return nil, errors.New("empty secret")
		}
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding secret: %w", err)
	}
	return key, nil
}

// Standard returns the `webhook-signature` value for id, timestamp and body: one "v1,<base64>"
// entry per key, space-separated (several during a secret rotation). It runs on every attempt:
// the signed prefix, the MAC and its encoding stay in fixed buffers.
func Standard(id string, ts time.Time, body []byte, keys [][]byte) string {
	var buf [96]byte
	prefix := append(buf[:0], id...) // "<id>.<unix>."
	prefix = append(prefix, '.')
	prefix = strconv.AppendInt(prefix, ts.Unix(), 10)
	prefix = append(prefix, '.')
	var sb strings.Builder
	sb.Grow(len(keys) * (len("v1,") + base64.StdEncoding.EncodedLen(sha256.Size) + 1))
	var sum [sha256.Size]byte
	var enc [44]byte // base64 of a SHA-256 MAC
	for i, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write(prefix)
		m.Write(body)
		base64.StdEncoding.Encode(enc[:], m.Sum(sum[:0]))
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString("v1,")
		sb.Write(enc[:])
	}
	return sb.String()
}

// Asymmetric returns the v1a entries of `webhook-signature`: "v1a,<base64 ed25519 signature of
// "{id}.{timestamp}.{body}">" per key, space-separated (several during a key rotation).
func Asymmetric(id string, ts time.Time, body []byte, keys []ed25519.PrivateKey) string {
	msg := make([]byte, 0, len(id)+24+len(body))
	msg = append(msg, id...)
	msg = append(msg, '.')
	msg = strconv.AppendInt(msg, ts.Unix(), 10)
	msg = append(msg, '.')
	msg = append(msg, body...)
	var sb strings.Builder
	for i, k := range keys {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString("v1a,")
		sb.WriteString(base64.StdEncoding.EncodeToString(ed25519.Sign(k, msg)))
	}
	return sb.String()
}

// AskUsers returns the `X-Webhook-Signature` value: hex HMAC-SHA256 of the raw body, keyed with
// the whole secret string as UTF-8 ("whsec_" included), as Ask Users' recipes key it, whatever the
// kind of secret.
func AskUsers(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	var sum [sha256.Size]byte
	var enc [2 * sha256.Size]byte
	hex.Encode(enc[:], m.Sum(sum[:0]))
	return string(enc[:])
}

// VerifyStandard checks a Standard Webhooks request: one of the signature entries must match,
// and the timestamp must be within tolerance of now (0 skips the time check).
func VerifyStandard(secret, id, timestamp, signatures string, body []byte, tolerance time.Duration) error {
	key, err := Key(secret)
	if err != nil {
		return err
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%s %q is not a Unix time", HeaderTimestamp, timestamp)
	}
	ts := time.Unix(sec, 0)
	if tolerance > 0 && (time.Since(ts) > tolerance || time.Until(ts) > tolerance) {
		return fmt.Errorf("%s %s is outside the tolerance of %s", HeaderTimestamp, timestamp, tolerance)
	}
	want := Standard(id, ts, body, [][]byte{key})
	for _, s := range strings.Fields(signatures) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrInvalid
}

// VerifyAsymmetric checks a v1a request with a "whpk_…" public key: one of the `v1a,` entries
// must verify, and the timestamp must be within tolerance of now (0 skips the time check).
func VerifyAsymmetric(publicKey, id, timestamp, signatures string, body []byte, tolerance time.Duration) error {
	pub, err := secrets.ParsePublicKey(publicKey)
	if err != nil {
		return err
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%s %q is not a Unix time", HeaderTimestamp, timestamp)
	}
	ts := time.Unix(sec, 0)
	if tolerance > 0 && (time.Since(ts) > tolerance || time.Until(ts) > tolerance) {
		return fmt.Errorf("%s %s is outside the tolerance of %s", HeaderTimestamp, timestamp, tolerance)
	}
	signed := append([]byte(id+"."+timestamp+"."), body...)
	for _, s := range strings.Fields(signatures) {
		b64, ok := strings.CutPrefix(s, "v1a,")
		if !ok {
			continue
		}
		if sig, err := base64.StdEncoding.DecodeString(b64); err == nil && ed25519.Verify(pub, signed, sig) {
			return nil
		}
	}
	return ErrInvalid
}

// VerifyAskUsers checks an `X-Webhook-Signature` value.
func VerifyAskUsers(secret string, body []byte, sig string) error {
	if hmac.Equal([]byte(AskUsers(body, secret)), []byte(strings.ToLower(sig))) {
		return nil
	}
	return ErrInvalid
}
