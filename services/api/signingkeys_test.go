package api_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

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
