// Package secrets makes and protects credentials: webhook signing secrets ("whsec_…") and ed25519
// signing keys ("whsk_…", v1a), project API keys (only their SHA-256 is stored), and the AES-GCM
// box that seals signing secrets and keys before they reach the `webhooks` topic. Nothing here
// logs or formats a secret.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// SecretPrefix starts every webhook signing secret (Standard Webhooks).
const SecretPrefix = "whsec_"

// NewWebhookSecret returns "whsec_" + base64 of 24 random bytes.
func NewWebhookSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// Bounds of a secret the customer types (Userpilot and Refiner let them choose it).
const (
	// MinCustomSecret is the shortest secret accepted: 24 characters, the least key material
	// Standard Webhooks allows (24 bytes) and, at random, over 150 bits — beyond guessing, as an
	// HMAC key must be, since anyone holding it can forge webhooks.
	MinCustomSecret = 24
	// MaxCustomSecret is the longest: HMAC-SHA256 hashes a key longer than its 64-byte block, so
	// more adds nothing; 128 leaves room for passphrases and concatenated tokens.
	MaxCustomSecret = 128
)

// ValidateWebhookSecret checks a subscriber-chosen secret. Two kinds are accepted:
//   - "whsec_" followed by standard base64 of 24 to 64 bytes (Standard Webhooks' own form; the
//     decoded bytes are the HMAC key of webhook-signature);
//   - any other string of MinCustomSecret to MaxCustomSecret printable ASCII characters without
//     whitespace (what a customer types into Userpilot's or Refiner's secret field; its bytes are
//     the key as they are). Printable ASCII means the same bytes in every config file, environment
//     variable and language, so a receiver's HMAC key is exactly what was typed.
func ValidateWebhookSecret(s string) error {
	raw, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return validateCustomSecret(s)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return errors.New("the part after \"whsec_\" must be standard base64")
	}
	if len(key) < 24 || len(key) > 64 {
		return fmt.Errorf("must decode to 24 to 64 bytes, got %d", len(key))
	}
	return nil
}

func validateCustomSecret(s string) error {
	if n := len(s); n < MinCustomSecret || n > MaxCustomSecret {
		return fmt.Errorf("must be \"whsec_\" + base64, or %d to %d characters of your own; got %d characters",
			MinCustomSecret, MaxCustomSecret, n)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			// Never echo the secret: say where, not what.
			return fmt.Errorf("must be printable ASCII without spaces (character %d is not)", i+1)
		}
	}
	return nil
}

// NewAPIKey returns a new project API key ("shk_" + 32 random bytes, base64url).
func NewAPIKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "shk_" + base64.RawURLEncoding.EncodeToString(b)
}

// HashAPIKey is what is stored and looked up instead of the key.
func HashAPIKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// Box seals and opens small secrets with AES-256-GCM.
type Box struct{ aead cipher.AEAD }

// NewBox takes a 32-byte key, given as standard base64.
func NewBox(keyB64 string) (*Box, error) {
	key, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil {
		return nil, errors.New("encryption key must be standard base64")
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("encryption key must decode to 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext; the nonce is prepended.
func (b *Box) Seal(plaintext string) []byte {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	_, _ = rand.Read(nonce)
	return b.aead.Seal(nonce, nonce, []byte(plaintext), nil)
}

// Open decrypts what Seal produced.
func (b *Box) Open(sealed []byte) (string, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed secret too short")
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", errors.New("sealed secret does not open with this key (wrong SURVEYHOOKS_ENCRYPTION_KEY?)")
	}
	return string(out), nil
}

// Prefixes of Standard Webhooks' asymmetric (v1a, ed25519) keys.
const (
	SigningKeyPrefix = "whsk_" // the private key: sealed, never shown
	PublicKeyPrefix  = "whpk_" // the public key: shown by the API, given to receivers
)

// NewSigningKey returns a new ed25519 key pair for v1a signatures: "whsk_" + base64 of the
// 64-byte private key, and "whpk_" + base64 of the 32-byte public key.
func NewSigningKey() (private, public string) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return SigningKeyPrefix + base64.StdEncoding.EncodeToString(priv),
		PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// PublicKeyOf returns the "whpk_…" public key of a "whsk_…" private key.
func PublicKeyOf(private string) (string, error) {
	priv, err := ParseSigningKey(private)
	if err != nil {
		return "", err
	}
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)), nil
}

// ParseSigningKey decodes a "whsk_…" private key.
func ParseSigningKey(private string) (ed25519.PrivateKey, error) {
	raw, ok := strings.CutPrefix(private, SigningKeyPrefix)
	if !ok {
		return nil, errors.New("not a \"whsk_\" signing key")
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) != ed25519.PrivateKeySize {
		return nil, errors.New("a \"whsk_\" signing key must be base64 of 64 bytes")
	}
	return ed25519.PrivateKey(b), nil
}

// ParsePublicKey decodes a "whpk_…" public key.
func ParsePublicKey(public string) (ed25519.PublicKey, error) {
	raw, ok := strings.CutPrefix(public, PublicKeyPrefix)
	if !ok {
		return nil, errors.New("not a \"whpk_\" public key")
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("a \"whpk_\" public key must be base64 of 32 bytes")
	}
	return ed25519.PublicKey(b), nil
}
