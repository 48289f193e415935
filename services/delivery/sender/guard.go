package sender

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// blocked are the ranges no webhook may reach unless allow-listed: loopback, private, link-local,
// CGNAT, multicast, unspecified, benchmarking, reserved, and IPv6 unique-local and friends.
var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
		"::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32", "fc00::/7",
		"fe80::/10", "fec0::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Guard decides which addresses outbound requests may reach.
type Guard struct {
	Allow []netip.Prefix
}

// ParseAllowList parses a comma-separated list of CIDRs or addresses.
func ParseAllowList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %v", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Allowed reports whether addr may be reached.
func (g *Guard) Allowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range g.Allow {
		if p.Contains(addr) {
			return true
		}
	}
	if addr.Is4In6() || !addr.IsValid() {
		return false
	}
	// IPv4-compatible and NAT64 forms embed an IPv4 address: judge that one too.
	if addr.Is6() {
		b := addr.As16()
		if b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0 && b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0 && b[8] == 0 && b[9] == 0 && b[10] == 0 && b[11] == 0 {
			if v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}); v4 != netip.IPv4Unspecified() && !g.Allowed(v4) {
				return false
			}
		}
	}
	for _, p := range blocked {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// CheckHost refuses, before any DNS lookup, a host written as an address in any spelling the C
// library would accept (dotted, decimal "2130706433", hex "0x7f000001", octal, short forms) or as
// an IPv6 literal, when that address is not allowed. Names are checked at dial time.
func (g *Guard) CheckHost(host string) error {
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i]
	}
	addr, ok := parseLooseIPv4(host)
	if !ok {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return nil
		}
		addr = a
	}
	if !g.Allowed(addr) {
		return fmt.Errorf("%w: %s", ErrBlockedDestination, addr)
	}
	return nil
}

// control runs for every connection after DNS: the address actually dialled.
func (g *Guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparseable %s", ErrBlockedDestination, address)
	}
	if !g.Allowed(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrBlockedDestination, ap.Addr())
	}
	return nil
}

// parseLooseIPv4 parses inet_aton's forms: a, a.b, a.b.c, a.b.c.d, each part decimal, 0x-hex
// or 0-octal.
func parseLooseIPv4(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, false
		}
		base := 10
		switch {
		case strings.HasPrefix(p, "0x") || strings.HasPrefix(p, "0X"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	last := len(vals) - 1
	for i := 0; i < last; i++ {
		if vals[i] > 255 {
			return netip.Addr{}, false
		}
		n |= vals[i] << (8 * (3 - i))
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}
