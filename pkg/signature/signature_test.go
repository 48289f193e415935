package signature_test

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	"github.com/surveyhooks/surveyhooks/pkg/signature"
)

// The Standard Webhooks specification's published test vector.
func TestStandardMatchesTheSpecificationVector(t *testing.T) {
	key, err := signature.Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	got := signature.Standard("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0),
		[]byte(`{"test": 2432232314}`), [][]byte{key})
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

func TestVerifyAcceptsAnyOfSeveralSignaturesAndRejectsTampering(t *testing.T) {
	old, cur := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQga2V5ISEh"
	k1, _ := signature.Key(old)
	k2, _ := signature.Key(cur)
	now := time.Now()
	body := []byte(`{"a":1}`)
	sig := signature.Standard("id1", now, body, [][]byte{k1, k2})
	ts := now.Unix()
	require.NoError(t, signature.VerifyStandard(old, "id1", itoa(ts), sig, body, time.Minute))
	require.NoError(t, signature.VerifyStandard(cur, "id1", itoa(ts), sig, body, time.Minute))
	require.ErrorIs(t, signature.VerifyStandard(cur, "id1", itoa(ts), sig, []byte(`{"a":2}`), time.Minute), signature.ErrInvalid)
	require.Error(t, signature.VerifyStandard(cur, "id1", itoa(ts-3600), sig, body, time.Minute))

	au := signature.AskUsers(body, cur)
	require.Len(t, au, 64)
	require.NoError(t, signature.VerifyAskUsers(cur, body, au))
	require.ErrorIs(t, signature.VerifyAskUsers(old, body, au), signature.ErrInvalid)
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// A secret the customer typed (not "whsec_…") keys webhook-signature with its own bytes, as the
// Standard Webhooks libraries' raw-key option does, and X-Webhook-Signature with the same string,
// as Ask Users' recipe (createHmac('sha256', secret)) does.
func TestCustomerChosenSecretKeysBothSignaturesWithItsOwnBytes(t *testing.T) {
	secret := "my-own-Userpilot-token-2024!"
	key, err := signature.Key(secret)
	require.NoError(t, err)
	require.Equal(t, []byte(secret), key)

	body, ts := []byte(`{"type":"flows.seen"}`), time.Unix(1679578625, 0)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("msg_1.1679578625." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	require.Equal(t, want, signature.Standard("msg_1", ts, body, [][]byte{key}))
	require.NoError(t, signature.VerifyStandard(secret, "msg_1", "1679578625", want, body, 0))

	mac = hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	require.Equal(t, hex.EncodeToString(mac.Sum(nil)), signature.AskUsers(body, secret))

	_, err = signature.Key("whsec_not base64!")
	require.Error(t, err, "a whsec_ secret is always base64")
}

func BenchmarkSignBothWays(b *testing.B) {
	key, _ := signature.Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	body := make([]byte, 400)
	ts := time.Unix(1614265330, 0)
	b.ReportAllocs()
	for b.Loop() {
		signature.Standard("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body, [][]byte{key})
		signature.AskUsers(body, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	}
}

// v1a entries verify with crypto/ed25519 over "{id}.{timestamp}.{body}", one per key, in order.
func TestAsymmetricSignsTheStandardWebhooksContentPerKey(t *testing.T) {
	k1 := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 1
	k2 := ed25519.NewKeyFromSeed(seed)
	body := []byte(`{"test": 2432232314}`)
	got := signature.Asymmetric("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), body, []ed25519.PrivateKey{k1, k2})
	entries := strings.Fields(got)
	require.Len(t, entries, 2)
	signed := []byte("msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330." + string(body))
	for i, k := range []ed25519.PrivateKey{k1, k2} {
		b64, ok := strings.CutPrefix(entries[i], "v1a,")
		require.True(t, ok, entries[i])
		sig, err := base64.StdEncoding.DecodeString(b64)
		require.NoError(t, err)
		require.True(t, ed25519.Verify(k.Public().(ed25519.PublicKey), signed, sig))
		require.False(t, ed25519.Verify(k.Public().(ed25519.PublicKey), append(signed, ' '), sig))
	}
}

func TestVerifyAsymmetricAcceptsItsKeysSignatureOnly(t *testing.T) {
	private, public := secrets.NewSigningKey()
	k, err := secrets.ParseSigningKey(private)
	require.NoError(t, err)
	ts := time.Now()
	body := []byte(`{"a":1}`)
	sig := signature.Asymmetric("msg_1", ts, body, []ed25519.PrivateKey{k})
	unix := strconv.FormatInt(ts.Unix(), 10)
	require.NoError(t, signature.VerifyAsymmetric(public, "msg_1", unix, "v1,xyz= "+sig, body, time.Minute))
	require.ErrorIs(t, signature.VerifyAsymmetric(public, "msg_2", unix, sig, body, time.Minute), signature.ErrInvalid)
	_, other := secrets.NewSigningKey()
	require.ErrorIs(t, signature.VerifyAsymmetric(other, "msg_1", unix, sig, body, time.Minute), signature.ErrInvalid)
}
