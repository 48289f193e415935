package api_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// TestV1aWebhookShowsOnlyItsPublicKey: a webhook created with signature_scheme v1a gets an ed25519
// key pair; the API shows the "whpk_…" public key (which matches the sealed private key) and never
// the private key, and a rotation makes a new pair while the previous one keeps signing.
func TestV1aWebhookShowsOnlyItsPublicKey(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	r := s.webhook(key, map[string]any{"url": "https://example.com/h", "signature_scheme": "v1a"})
	id, public := r.str("id"), r.str("public_key")
	require.NotContains(t, r.body, "secret", "a v1a webhook has no secret to show")
	require.Equal(t, "v1a", r.str("signature_scheme"))
	require.True(t, strings.HasPrefix(public, "whpk_"), public)
	pub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(public, "whpk_"))
	require.NoError(t, err)
	require.Len(t, pub, ed25519.PublicKeySize)

	// The sealed private key is the public key's pair, and appears in no answer.
	rec := s.lastRecord(s.cfg.Kafka.Topics.Webhooks, id, func(*kgo.Record) bool { return true })
	wh := decode(t, rec.Value, &pb.Webhook{})
	require.Len(t, wh.Secrets, 1)
	private, err := s.box.Open(wh.Secrets[0].Sealed)
	require.NoError(t, err)
	priv, err := secrets.ParseSigningKey(private)
	require.NoError(t, err)
	require.Equal(t, ed25519.PublicKey(pub), priv.Public())
	rawPriv := strings.TrimPrefix(private, "whsk_")
	require.NotContains(t, string(r.raw), rawPriv)
	got := s.must(http.StatusOK, "GET", "/v1/webhooks/"+id, key, nil)
	require.NotContains(t, string(got.raw), rawPriv)
	require.Equal(t, public, got.str("public_key"))
	require.Equal(t, public, got.body["secrets"].([]any)[0].(map[string]any)["public_key"])
	require.False(t, bytes.Contains(rec.Value, []byte(rawPriv)), "the private key must be sealed in the topic")

	// Rotation: a new pair signs, the previous one still signs until it expires.
	rot := s.must(http.StatusOK, "POST", "/v1/webhooks/"+id+"/secrets/rotate", key, nil)
	require.NotContains(t, rot.body, "secret")
	require.NotEqual(t, public, rot.str("public_key"))
	meta := rot.body["secrets"].([]any)
	require.Len(t, meta, 2)
	require.Equal(t, rot.str("public_key"), meta[0].(map[string]any)["public_key"], "newest first")
	require.Equal(t, public, meta[1].(map[string]any)["public_key"])

	// Bad input names the field.
	require.Equal(t, "signature_scheme", s.must(http.StatusBadRequest, "POST", "/v1/webhooks", key,
		map[string]any{"url": "https://example.com/h", "signature_scheme": "v2"}).errField())
	require.Equal(t, "secret", s.must(http.StatusBadRequest, "POST", "/v1/webhooks", key,
		map[string]any{"url": "https://example.com/h", "signature_scheme": "v1a", "secret": secrets.NewWebhookSecret()}).errField())
	require.Equal(t, "signature_scheme", s.must(http.StatusBadRequest, "PATCH", "/v1/webhooks/"+id, key,
		map[string]any{"signature_scheme": "v1"}).errField())

	// A v1 webhook moves to v1a by a rotation: its HMAC secret keeps signing alongside meanwhile.
	v1 := s.webhook(key, map[string]any{"url": "https://example.com/v1"})
	require.Equal(t, "v1", v1.str("signature_scheme"))
	moved := s.must(http.StatusOK, "POST", "/v1/webhooks/"+v1.str("id")+"/secrets/rotate", key, map[string]any{"signature_scheme": "v1a"})
	require.Equal(t, "v1a", moved.str("signature_scheme"))
	require.True(t, strings.HasPrefix(moved.str("public_key"), "whpk_"))
	require.Len(t, moved.body["secrets"], 2)
}

func selfSigned(t *testing.T, cn string) (certPEM, keyPEM string) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour).Truncate(time.Second),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	require.NoError(t, err)
	k, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}))
}

// TestClientCertificateIsStoredWithItsKeySealedAndNeverShown: a webhook's mTLS certificate is
// shown with its expiry; its key is checked against it, sealed in the topic and in no answer.
func TestClientCertificateIsStoredWithItsKeySealedAndNeverShown(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	cert, certKey := selfSigned(t, "acme-client")
	r := s.webhook(key, map[string]any{"url": "https://example.com/h", "client_certificate": cert, "client_key": certKey})
	id := r.str("id")
	require.Equal(t, strings.TrimSpace(cert), r.str("client_certificate"))
	require.NotEmpty(t, r.str("client_certificate_expires_at"))
	keyBody := strings.Split(certKey, "\n")[1]
	require.NotContains(t, string(r.raw), keyBody)
	require.NotContains(t, string(s.must(http.StatusOK, "GET", "/v1/webhooks/"+id, key, nil).raw), keyBody)
	rec := s.lastRecord(s.cfg.Kafka.Topics.Webhooks, id, func(*kgo.Record) bool { return true })
	require.False(t, bytes.Contains(rec.Value, []byte(keyBody)), "the client key must be sealed in the topic")
	wh := decode(t, rec.Value, &pb.Webhook{})
	opened, err := s.box.Open(wh.ClientKeySealed)
	require.NoError(t, err)
	require.Equal(t, certKey, opened)

	// A PATCH that leaves the certificate alone keeps the key; null removes both.
	s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+id, key, map[string]any{"name": "renamed"})
	got := s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+id, key, map[string]any{"client_certificate": nil})
	require.NotContains(t, got.body, "client_certificate")

	// Bad input names the field, and never echoes the key.
	other, otherKey := selfSigned(t, "other")
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"client_certificate": cert}, "client_key"},
		{map[string]any{"client_certificate": cert, "client_key": otherKey}, "client_key"},
		{map[string]any{"client_certificate": "not a certificate", "client_key": certKey}, "client_certificate"},
		{map[string]any{"client_key": certKey}, "client_key"},
	} {
		c.body["url"] = "https://example.com/h"
		bad := s.must(http.StatusBadRequest, "POST", "/v1/webhooks", key, c.body)
		require.Equal(t, c.field, bad.errField(), c.body)
		require.NotContains(t, string(bad.raw), keyBody)
		require.NotContains(t, string(bad.raw), strings.Split(otherKey, "\n")[1])
	}
	_ = other
}
