package sender

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"

	"golang.org/x/net/proxy"
)

// ParseProxyURL checks an egress proxy URL: "http://[user:pass@]host:port" (HTTP CONNECT) or
// "socks5://[user:pass@]host:port". Empty means no proxy.
func ParseProxyURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "socks5" {
		return nil, fmt.Errorf("scheme must be http (CONNECT) or socks5, got %q", u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("must name the proxy's host and port")
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("must not have a path")
	}
	return u, nil
}

// proxyDialer connects through an egress proxy. The guard judges both ends: the proxy's own
// address at connect time (the forward dialer's Control: it must be public or allow-listed), and
// the destination before the proxy is asked for it — resolved here, each address checked, and the
// checked address (never the name) handed to the proxy, so the proxy's own DNS cannot send the
// request somewhere the guard would refuse.
type proxyDialer struct {
	proxy   *url.URL
	guard   *Guard
	forward *net.Dialer // guarded: dials the proxy itself
	socks   proxy.ContextDialer
}

func newProxyDialer(u *url.URL, g *Guard, forward *net.Dialer) *proxyDialer {
	pd := &proxyDialer{proxy: u, guard: g, forward: forward}
	if u.Scheme == "socks5" {
		var auth *proxy.Auth
		if u.User != nil {
			pass, _ := u.User.Password()
			auth = &proxy.Auth{User: u.User.Username(), Password: pass}
		}
		d, _ := proxy.SOCKS5("tcp", u.Host, auth, forward) // fails only for a network other than tcp/udp
		pd.socks = d.(proxy.ContextDialer)
	}
	return pd
}

// DialContext is the transport's dialer: address is the request's host:port.
func (pd *proxyDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	target, err := pd.resolve(ctx, address)
	if err != nil {
		return nil, err
	}
	if pd.socks != nil {
		return pd.socks.DialContext(ctx, "tcp", target)
	}
	conn, err := pd.forward.DialContext(ctx, "tcp", pd.proxy.Host)
	if err != nil {
		return nil, fmt.Errorf("connecting to the proxy: %w", err)
	}
	if err := pd.connect(ctx, conn, target); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// resolve turns host:port into the first allowed ip:port, or ErrBlockedDestination when no
// address of the host may be reached.
func (pd *proxyDialer) resolve(ctx context.Context, address string) (string, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return "", err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
		return "", err
	}
	for _, a := range addrs {
		if pd.guard.Allowed(a) {
			return net.JoinHostPort(a.Unmap().String(), port), nil
		}
	}
	return "", fmt.Errorf("%w: %s resolves only to addresses that are not allowed", ErrBlockedDestination, host)
}

// connect asks an HTTP proxy for a tunnel to target (RFC 9110, CONNECT).
func (pd *proxyDialer) connect(ctx context.Context, conn net.Conn, target string) error {
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: target}, Host: target, Header: http.Header{}}
	if u := pd.proxy.User; u != nil {
		pass, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	// The dial's context bounds the exchange: a proxy that never answers must not hang the attempt.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("asking the proxy for a tunnel: %w", err)
	}
	// Nothing follows the proxy's answer until we speak (TLS's ClientHello, or the request), so
	// the reader buffers no byte of the tunnel.
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), req)
	if err != nil {
		return fmt.Errorf("reading the proxy's answer: %w", err)
	}
	// A 2xx answer to CONNECT has no body (RFC 9110, 9.3.6): the tunnel starts right after it.
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("proxy refused the tunnel: %s", strconv.Itoa(resp.StatusCode)+" "+http.StatusText(resp.StatusCode))
	}
	return nil
}
