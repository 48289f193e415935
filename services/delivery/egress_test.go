package delivery_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/config"
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

// testCA is a certificate authority made in the test.
type testCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "surveyhooks test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and PEM PKCS #8 key signed by the CA.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, ips ...net.IP) (certPEM, keyPEM []byte) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	require.NoError(t, err)
	k, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
}

// TestClientCertificateIsPresentedToAReceiverThatRequiresIt: a TLS receiver on 127.0.0.1 demands
// a client certificate signed by its CA. The webhook with one configured is delivered (through the
// egress proxy too) and the receiver sees that certificate; a webhook without one is refused by
// the receiver's TLS handshake and never reaches its handler.
func TestClientCertificateIsPresentedToAReceiverThatRequiresIt(t *testing.T) {
	ca := newTestCA(t)
	serverCert, serverKey := ca.issue(t, "receiver", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	pair, err := tls.X509KeyPair(serverCert, serverKey)
	require.NoError(t, err)
	clients := x509.NewCertPool()
	clients.AddCert(ca.cert)
	type hit struct{ webhook, clientCN string }
	got := make(chan hit, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- hit{r.URL.Path, r.TLS.PeerCertificates[0].Subject.CommonName}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.pem, 0o600))
	proxy := startConnectProxy(t, "127.0.0.1:0")
	h := newHarness(t, []time.Duration{time.Minute}, func(c *delivery.Config) {
		c.RootCAsFile = caFile // trust the test CA for the receiver's certificate
		c.ProxyURL = proxy.URL
	})
	clientCert, clientKey := ca.issue(t, "surveyhooks-client", x509.ExtKeyUsageClientAuth)
	h.webhook("wh_mtls", srv.URL+"/mtls", func(wh *pb.Webhook) {
		wh.ClientCertificate = string(clientCert)
		wh.ClientKeySealed = h.box.Seal(string(clientKey))
	})
	h.webhook("wh_nocert", srv.URL+"/nocert")
	h.start()
	h.deliver("wh_mtls", 2, "m")
	h.deliver("wh_nocert", 1, "c")
	as := attempts(h, 3)
	byWebhook := map[string][]*pb.Attempt{}
	for _, a := range as {
		byWebhook[a.WebhookId] = append(byWebhook[a.WebhookId], a)
	}
	require.Len(t, byWebhook["wh_mtls"], 2)
	for _, a := range byWebhook["wh_mtls"] {
		require.Equal(t, pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, a.Outcome.Class, a.Outcome)
	}
	require.Len(t, byWebhook["wh_nocert"], 1)
	require.NotEqual(t, pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, byWebhook["wh_nocert"][0].Outcome.Class)
	require.Equal(t, pb.Disposition_DISPOSITION_RETRY, byWebhook["wh_nocert"][0].Outcome.Disposition)
	close(got)
	var hits []hit
	for h := range got {
		hits = append(hits, h)
	}
	require.Equal(t, []hit{{"/mtls", "surveyhooks-client"}, {"/mtls", "surveyhooks-client"}}, hits)
	require.NotEmpty(t, proxy.tunnels(), "TLS went through the proxy's tunnels")
}

// startSOCKS5 is a minimal SOCKS5 server (RFC 1928: no authentication, CONNECT) on 127.0.0.1
// that records each connection's target as the client named it.
func startSOCKS5(t *testing.T) (url string, targets func() []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	var mu sync.Mutex
	var seen []string
	serve := func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 262)
		if _, err := io.ReadFull(c, buf[:2]); err != nil || buf[0] != 5 {
			return
		}
		if _, err := io.ReadFull(c, buf[:buf[1]]); err != nil {
			return
		}
		_, _ = c.Write([]byte{5, 0}) // no authentication
		if _, err := io.ReadFull(c, buf[:4]); err != nil || buf[1] != 1 {
			return
		}
		var host string
		switch buf[3] {
		case 1: // IPv4
			_, _ = io.ReadFull(c, buf[:4])
			host = net.IP(buf[:4]).String()
		case 3: // a name
			_, _ = io.ReadFull(c, buf[:1])
			n := int(buf[0])
			_, _ = io.ReadFull(c, buf[:n])
			host = string(buf[:n])
		case 4: // IPv6
			_, _ = io.ReadFull(c, buf[:16])
			host = net.IP(buf[:16]).String()
		}
		_, _ = io.ReadFull(c, buf[:2])
		target := net.JoinHostPort(host, strconv.Itoa(int(buf[0])<<8|int(buf[1])))
		mu.Lock()
		seen = append(seen, target)
		mu.Unlock()
		up, err := net.Dial("tcp", target)
		if err != nil {
			_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
			return
		}
		defer up.Close()
		_, _ = c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		_, _ = io.Copy(c, up)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return "socks5://" + ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// TestRequestsGoThroughASOCKS5Proxy: with a socks5:// DELIVERY_PROXY_URL the request reaches the
// receiver through the SOCKS5 server, which is handed the checked address, not the name.
func TestRequestsGoThroughASOCKS5Proxy(t *testing.T) {
	got := make(chan received, 1)
	srv := httptest.NewServer(receiver(t, got))
	t.Cleanup(srv.Close)
	proxyURL, targets := startSOCKS5(t)
	h := newHarness(t, []time.Duration{time.Second}, func(c *delivery.Config) { c.ProxyURL = proxyURL })
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	h.webhook("wh_socks", "http://localhost:"+port+"/")
	h.start()
	h.deliver("wh_socks", 1, "s")
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatalf("the request did not arrive; attempts: %v", attempts(h, 1))
	}
	require.Equal(t, []string{"127.0.0.1:" + port}, targets())
}

func TestProxyURLIsValidatedNamingTheVariable(t *testing.T) {
	for _, bad := range []string{"ftp://proxy:21", "http://proxy", "socks5://:1080", "http://proxy:3128/path", "::"} {
		var cfg delivery.Config
		require.NoError(t, config.Defaults(&cfg))
		cfg.EncryptionKey = base64.StdEncoding.EncodeToString(make([]byte, 32))
		cfg.ProxyURL = bad
		err := cfg.Validate()
		require.ErrorContains(t, err, "DELIVERY_PROXY_URL", bad)
	}
}
