package delivery_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery"
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

// connectProxy is an HTTP CONNECT proxy on addr (127.0.0.x:0) that records each tunnel's target.
type connectProxy struct {
	URL     string
	mu      sync.Mutex
	targets []string
}

func startConnectProxy(t *testing.T, addr string) *connectProxy {
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	p := &connectProxy{URL: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		p.mu.Lock()
		p.targets = append(p.targets, r.Host)
		p.mu.Unlock()
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		down, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		_, _ = io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { _, _ = io.Copy(up, down); up.Close() }()
		go func() { _, _ = io.Copy(down, up); down.Close() }()
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

func (p *connectProxy) tunnels() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.targets)
}

// TestEveryRequestGoesThroughTheEgressProxy: with DELIVERY_PROXY_URL set, the webhook's requests
// reach the receiver only through CONNECT tunnels of the proxy, each to the resolved address.
func TestEveryRequestGoesThroughTheEgressProxy(t *testing.T) {
	got := make(chan received, 3)
	srv := httptest.NewServer(receiver(t, got))
	t.Cleanup(srv.Close)
	proxy := startConnectProxy(t, "127.0.0.1:0")
	h := newHarness(t, []time.Duration{time.Second}, func(c *delivery.Config) { c.ProxyURL = proxy.URL })
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	h.webhook("wh_px", "http://localhost:"+port+"/hook") // a name: resolved and checked before the proxy
	h.start()
	h.deliver("wh_px", 3, "px")
	for range 3 {
		select {
		case r := <-got:
			require.NotEmpty(t, r.header.Get("webhook-signature"))
		case <-time.After(20 * time.Second):
			t.Fatalf("not every request arrived; attempts: %v", attempts(h, 1))
		}
	}
	tunnels := proxy.tunnels()
	require.NotEmpty(t, tunnels, "requests must go through the proxy")
	for _, target := range tunnels {
		require.Equal(t, "127.0.0.1:"+port, target, "the proxy is handed the checked address, not the name")
	}
	as := attempts(h, 3)
	for _, a := range as {
		require.Equal(t, pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, a.Outcome.Class, a.Outcome)
	}
}

// TestPrivateDestinationIsRefusedThroughTheProxyToo: the proxy's own address is allowed, the
// receiver's is not; the guard refuses the destination before the proxy is asked for a tunnel.
func TestPrivateDestinationIsRefusedThroughTheProxyToo(t *testing.T) {
	hit := make(chan received, 1)
	srv := httptest.NewServer(receiver(t, hit)) // on 127.0.0.1: not allowed here
	t.Cleanup(srv.Close)
	proxy := startConnectProxy(t, "127.0.0.2:0")
	h := newHarness(t, []time.Duration{100 * time.Millisecond}, func(c *delivery.Config) {
		c.ProxyURL = proxy.URL
		c.AllowDestinations = "127.0.0.2/32" // the proxy only
	})
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	h.webhook("wh_name", "http://localhost:"+port+"/")    // a name resolving to loopback
	h.webhook("wh_literal", "http://127.0.0.1:"+port+"/") // an address
	h.start()
	h.deliver("wh_name", 1, "n")
	h.deliver("wh_literal", 1, "l")
	as := attempts(h, 2)
	for _, a := range as {
		require.Equal(t, pb.OutcomeClass_OUTCOME_CLASS_BLOCKED_DESTINATION, a.Outcome.Class, a.WebhookId)
		require.Equal(t, pb.Disposition_DISPOSITION_DEAD, a.Outcome.Disposition)
	}
	require.Empty(t, proxy.tunnels(), "the proxy must not be asked for a refused destination")
	require.Empty(t, hit)
}
