package delivery_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// received is one request a test receiver got.
type received struct {
	header http.Header
	body   []byte
}

func receiver(t *testing.T, got chan<- received) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		got <- received{header: r.Header.Clone(), body: b}
	})
}

// TestV1aSignatureVerifiesWithTheWebhooksPublicKey checks an ed25519 webhook's requests as a
// receiver would, with Go's crypto/ed25519 and the Standard Webhooks signed content
// "{webhook-id}.{webhook-timestamp}.{body}" — not with the project's own code.
func TestV1aSignatureVerifiesWithTheWebhooksPublicKey(t *testing.T) {
	got := make(chan received, 1)
	srv := httptest.NewServer(receiver(t, got))
	t.Cleanup(srv.Close)
	h := newHarness(t, []time.Duration{time.Second}, nil)
	private, public := secrets.NewSigningKey()
	h.webhook("wh_ed", srv.URL, func(wh *pb.Webhook) {
		wh.SignatureScheme = "v1a"
		wh.Secrets = []*pb.Secret{{Sealed: h.box.Seal(private)}}
	})
	h.start()
	h.deliver("wh_ed", 1, "ed")
	var r received
	select {
	case r = <-got:
	case <-h.ctx.Done():
		t.Fatal("no request arrived")
	}

	pub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(public, "whpk_"))
	require.NoError(t, err)
	require.Len(t, pub, ed25519.PublicKeySize)
	sigs := strings.Fields(r.header.Get("webhook-signature"))
	require.Len(t, sigs, 1, "one key, one signature")
	version, sigB64, ok := strings.Cut(sigs[0], ",")
	require.True(t, ok)
	require.Equal(t, "v1a", version)
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	require.NoError(t, err)
	signed := r.header.Get("webhook-id") + "." + r.header.Get("webhook-timestamp") + "." + string(r.body)
	require.Equal(t, "ed-0", r.header.Get("webhook-id"))
	require.Equal(t, `{"n":0}`, string(r.body))
	require.True(t, ed25519.Verify(ed25519.PublicKey(pub), []byte(signed), sig), "v1a signature must verify")
	require.False(t, ed25519.Verify(ed25519.PublicKey(pub), []byte(signed+" "), sig), "and only over the signed content")
	require.Empty(t, r.header.Get("X-Webhook-Signature"), "no HMAC secret, no Ask Users header")
	require.NotContains(t, strings.Join(r.header.Values("webhook-signature"), " "), strings.TrimPrefix(private, "whsk_"))
}
