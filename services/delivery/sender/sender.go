// Package sender makes the outbound webhook request: it signs the body (Standard Webhooks and Ask
// Users headers; or ed25519 `v1a` with "whsk_" keys), POSTs it — directly or through an egress
// proxy, with the webhook's client certificate when it has one — through a transport that refuses
// private, loopback and other internal addresses at dial time (so neither DNS, redirects nor the
// proxy can get around it), reads at most a capped response body and response headers. What a
// result means is the delivery worker's decision, not the sender's. It never follows redirects
// and never logs; secrets and keys only pass through to the HMAC, the signer and TLS.
package sender

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	"github.com/surveyhooks/surveyhooks/pkg/signature"
)

// ErrBlockedDestination is returned when the guard refuses the address.
var ErrBlockedDestination = errors.New("destination address is not allowed")

// ErrInvalidRequest is returned when no request can be built (for instance a malformed URL).
var ErrInvalidRequest = errors.New("invalid request")

// Options configure a Sender.
type Options struct {
	Timeout          time.Duration // per attempt; 30 s when zero
	MaxResponseBytes int64         // response body kept; 64 KiB when zero
	// MaxResponseHeaderBytes bounds the response header block (Go's default is 10 MiB: a hostile
	// receiver could make every attempt that large); 64 KiB when zero.
	MaxResponseHeaderBytes int64
	Allow                  []netip.Prefix // destinations allowed despite the guard
	UserAgent              string
	MaxConnsPerHost        int // 0: unlimited
	// MaxIdleConnsPerHost is how many connections to one host are kept open between requests;
	// 512 when zero. It must cover the requests the worker runs at once to one host (its sending
	// slots): beyond it, every finished request closes its connection and the next dials a new
	// one, and under that churn requests a fast receiver already accepted time out and are sent
	// again (the bench's many_endpoints: 10,000 webhooks on one receiver, 5,000 sending slots).
	MaxIdleConnsPerHost int
	// StartSpan, when set, is called with each request just before it is sent (tracing: it
	// starts the client span and sets the traceparent header the subscriber and the attempt log
	// see) and returns the function that ends the span with the outcome.
	StartSpan func(*http.Request) (end func(*http.Response, error))
	// Proxy, when set, carries every request: "http://host:port" tunnels with CONNECT,
	// "socks5://host:port" through SOCKS5 (see ParseProxyURL). The guard still judges the final
	// destination, resolved here; the proxy's own address must be public or in Allow.
	Proxy *url.URL
	// RootCAs, when set, replaces the system roots that receivers' certificates are checked
	// against (tests; a private CA in front of every receiver). Nil: the system roots.
	RootCAs *x509.CertPool
}

// Sender sends webhook requests. It is safe for concurrent use.
type Sender struct {
	opts   Options
	client *http.Client
	guard  *Guard
	tr     *http.Transport
	// mtls holds one client per client certificate: Go's pool shares a connection between
	// requests to one host, so connections made with a certificate must stay apart.
	mu   sync.Mutex
	mtls map[string]mtlsClient // by ClientCert.Owner
}

type mtlsClient struct {
	version string
	client  *http.Client
	tr      *http.Transport
}

// New returns a Sender with one shared, pooled transport.
func New(opts Options) *Sender {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 64 << 10
	}
	if opts.MaxResponseHeaderBytes <= 0 {
		opts.MaxResponseHeaderBytes = 64 << 10
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "surveyhooks/1"
	}
	if opts.MaxIdleConnsPerHost <= 0 {
		opts.MaxIdleConnsPerHost = 512
	}
	g := &Guard{Allow: opts.Allow}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	tr := &http.Transport{
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           max(4096, opts.MaxIdleConnsPerHost),
		MaxIdleConnsPerHost:    opts.MaxIdleConnsPerHost,
		MaxConnsPerHost:        opts.MaxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		ResponseHeaderTimeout:  opts.Timeout,
		MaxResponseHeaderBytes: opts.MaxResponseHeaderBytes,
		Proxy:                  nil, // the transport's own proxying would bypass the guard: see proxyDialer
		TLSClientConfig:        &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
	}
	if opts.Proxy != nil {
		tr.DialContext = newProxyDialer(opts.Proxy, g, d).DialContext
	}
	return &Sender{opts: opts, guard: g, tr: tr, client: newClient(tr), mtls: map[string]mtlsClient{}}
}

func newClient(tr http.RoundTripper) *http.Client {
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// clientFor returns the client that presents cert (the shared one without a certificate).
func (s *Sender) clientFor(cert *ClientCert) *http.Client {
	if cert == nil {
		return s.client
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.mtls[cert.Owner]
	if !ok || c.version != cert.Version {
		if ok {
			c.tr.CloseIdleConnections() // the previous certificate's connections
		}
		tr := s.tr.Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{cert.Certificate}
		c = mtlsClient{version: cert.Version, client: newClient(tr), tr: tr}
		s.mtls[cert.Owner] = c
	}
	return c.client
}

// ClientCert is a TLS client certificate to present (mTLS).
type ClientCert struct {
	// Owner (the webhook) and Version (of its certificate, e.g. the webhook's revision) name it:
	// requests with the same Owner and Version share connections; a new Version replaces the
	// Owner's previous one, so the pool holds one per webhook.
	Owner, Version string
	Certificate    tls.Certificate
}

// Request is one attempt to send.
type Request struct {
	MessageID  string // the `webhook-id`: the same on every retry
	URL        string
	Body       []byte
	Secrets    []string          // active "whsec_…" (or custom) secrets and "whsk_…" keys, newest first
	Headers    map[string]string // extra headers configured on the webhook
	Timestamp  time.Time         // the attempt's time (webhook-timestamp)
	ClientCert *ClientCert       // presented to a receiver that asks for one; nil: none
}

// fixedHeaders are the headers every request carries, canonical as http.Header.Set makes them,
// in the order Send fills them (webhook-signature only when there is a secret or key,
// X-Webhook-Signature only when there is an HMAC secret).
var fixedHeaders = [...]string{"Content-Type", "User-Agent",
	http.CanonicalHeaderKey(signature.HeaderID), http.CanonicalHeaderKey(signature.HeaderTimestamp),
	http.CanonicalHeaderKey(signature.HeaderSignature), http.CanonicalHeaderKey(signature.HeaderAskUsers)}

// Result is what happened.
type Result struct {
	StatusCode        int
	Err               error
	Latency           time.Duration
	RequestHeaders    http.Header
	ResponseHeaders   http.Header
	ResponseBody      []byte
	ResponseTruncated bool
}

// Send makes one attempt. It never returns an error of its own: failures are in Result.Err.
func (s *Sender) Send(ctx context.Context, req Request) Result {
	var res Result
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	// NewRequestWithContext parses the URL (once: the checks read hr.URL); it fails only on a URL
	// that does not parse.
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, bytesReader(req.Body))
	if err != nil || (hr.URL.Scheme != "http" && hr.URL.Scheme != "https") || hr.URL.Host == "" {
		res.Err = fmt.Errorf("%w: url %q", ErrInvalidRequest, req.URL)
		return res
	}
	if err := s.guard.CheckHost(hr.URL.Hostname()); err != nil {
		res.Err = err
		return res
	}
	// Room for the webhook's headers, ours and traceparent, so the map never grows.
	h := make(http.Header, len(req.Headers)+len(fixedHeaders)+1)
	hr.Header = h
	for k, v := range req.Headers {
		h.Set(k, v)
	}
	// Our headers, set as h.Set would (canonical names, one value each, replacing the webhook's)
	// with their values in one allocation instead of one each.
	vals := make([]string, len(fixedHeaders))
	vals[0], vals[1], vals[2] = "application/json", s.opts.UserAgent, req.MessageID
	vals[3] = strconv.FormatInt(req.Timestamp.Unix(), 10)
	n := 4
	if len(req.Secrets) > 0 {
		keys := make([][]byte, 0, len(req.Secrets))
		var edKeys []ed25519.PrivateKey
		hmacSecret := ""
		for _, sec := range req.Secrets {
			if strings.HasPrefix(sec, secrets.SigningKeyPrefix) { // v1a: ed25519
				if k, err := secrets.ParseSigningKey(sec); err == nil {
					edKeys = append(edKeys, k)
				}
				continue
			}
			if k, err := signature.Key(sec); err == nil {
				keys = append(keys, k)
				if hmacSecret == "" {
					hmacSecret = sec
				}
			}
		}
		sig := signature.Standard(req.MessageID, req.Timestamp, req.Body, keys)
		if len(edKeys) > 0 {
			asym := signature.Asymmetric(req.MessageID, req.Timestamp, req.Body, edKeys)
			if sig != "" {
				asym += " " + sig
			}
			sig = asym
		}
		vals[4] = sig
		n = 5
		if hmacSecret != "" { // Ask Users' header is an HMAC: a v1a-only webhook has no secret for it
			vals[5] = signature.AskUsers(req.Body, hmacSecret)
			n = 6
		}
	}
	for i, k := range fixedHeaders[:n] {
		h[k] = vals[i : i+1 : i+1]
	}
	var endSpan func(*http.Response, error)
	if s.opts.StartSpan != nil {
		endSpan = s.opts.StartSpan(hr)
	}
	res.RequestHeaders = h
	start := time.Now()
	resp, err := s.clientFor(req.ClientCert).Do(hr)
	if endSpan != nil {
		endSpan(resp, err)
	}
	if err != nil {
		res.Latency = time.Since(start)
		res.Err = err
		return res
	}
	defer resp.Body.Close()
	res.StatusCode = resp.StatusCode
	res.ResponseHeaders = resp.Header
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// We never ask for an upgrade. Go hands a 101's connection to the caller as its body,
		// no longer under the request's deadline: reading it would wait for as long as the
		// receiver likes. A 1xx has no body; the answer is recorded as the status it is.
		res.Latency = time.Since(start)
		return res
	}
	// Whatever else the transport does with the body, it is read no longer than the attempt.
	defer context.AfterFunc(ctx, func() { _ = resp.Body.Close() })()
	body, rerr := []byte{}, error(nil) // an empty answer (the common case) costs no read buffer
	if resp.Body != http.NoBody {
		body, rerr = io.ReadAll(io.LimitReader(resp.Body, s.opts.MaxResponseBytes+1))
	}
	if int64(len(body)) > s.opts.MaxResponseBytes {
		body, res.ResponseTruncated = body[:s.opts.MaxResponseBytes], true
		// Drain a little more so the connection can be reused; give up on huge bodies.
		_, _ = io.CopyN(io.Discard, resp.Body, 256<<10)
	}
	if rerr != nil {
		// The status line and headers arrived, so the outcome is the status's; but the body
		// stopped early (the timeout ran out on a body dribbled byte by byte, the receiver reset
		// the connection, the gzip stream was broken): what is kept is only part of it, and the
		// log must say so.
		res.ResponseTruncated = true
	}
	res.ResponseBody = body
	res.Latency = time.Since(start)
	return res
}

// IsTimeout reports whether err is a deadline or network timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// isRefused reports a refused or reset connection (for error messages).
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// maxErrorText bounds ErrorText: the text travels in the attempt, and in every retry and dead
// letter of the delivery.
const maxErrorText = 512

// ErrorText is a short, secret-free description of a send error: valid UTF-8 and at most
// maxErrorText bytes, because Go's errors quote what the receiver sent (a malformed header line
// comes back whole: up to the header limit, in whatever bytes the receiver chose), and protobuf
// strings that are not UTF-8 make the attempt, retry and dead-letter records unreadable.
func ErrorText(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrBlockedDestination), errors.Is(err, ErrInvalidRequest):
		return boundText(err.Error())
	case IsTimeout(err):
		return "timed out waiting for the endpoint"
	case isRefused(err):
		return "connection refused or reset"
	}
	// Drop the `Post "<url>": ` and transport wrappers (the URL is in the attempt already) but
	// keep what went wrong: cutting at the last ": " instead left only the receiver's quoted
	// bytes of a malformed header line, without saying they were one.
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = ue.Err.Error()
	}
	msg = strings.TrimPrefix(strings.TrimPrefix(msg, "net/http: HTTP/1.x transport connection broken: "), "net/http: ")
	return boundText(msg)
}

// boundText makes s valid UTF-8 and cuts it, at a character boundary, to maxErrorText bytes,
// marking the cut.
func boundText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxErrorText {
		return s
	}
	const mark = " …(cut)"
	i := maxErrorText - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}
