package sender_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/signature"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

func TestGuardRefusesInternalAddressesInEverySpelling(t *testing.T) {
	g := &sender.Guard{}
	for _, host := range []string{
		"127.0.0.1", "127.1", "0x7f000001", "2130706433", "017700000001", "0x7f.0.0.1", "0.0.0.0", "10.1.2.3",
		"172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "224.0.0.1", "::1", "[::1]", "::",
		"::ffff:127.0.0.1", "[::ffff:127.0.0.1]", "::ffff:7f00:1", "fd00::1", "fe80::1", "::127.0.0.1",
	} {
		require.ErrorIs(t, g.CheckHost(host), sender.ErrBlockedDestination, host)
	}
	for _, host := range []string{"8.8.8.8", "example.com", "2606:4700::1111", "1.1.1.1"} {
		require.NoError(t, g.CheckHost(host), host)
	}
	allow, err := sender.ParseAllowList("127.0.0.0/8, ::1")
	require.NoError(t, err)
	g = &sender.Guard{Allow: allow}
	require.NoError(t, g.CheckHost("127.0.0.1"))
	require.NoError(t, g.CheckHost("0x7f000001"))
	require.NoError(t, g.CheckHost("::1"))
	require.ErrorIs(t, g.CheckHost("10.0.0.1"), sender.ErrBlockedDestination)
	_, err = sender.ParseAllowList("10.0.0.0/33")
	require.Error(t, err)
}

func TestSendRefusesLoopbackAtDialTimeEvenThroughAName(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	s := sender.New(sender.Options{Timeout: 2 * time.Second})
	// "localhost" passes the literal check; the dialer sees 127.0.0.1 and refuses.
	res := s.Send(context.Background(), sender.Request{MessageID: "m", URL: "http://localhost:" + port + "/", Timestamp: time.Now()})
	require.ErrorIs(t, res.Err, sender.ErrBlockedDestination)
}

func TestSendSignsCapsAndDoesNotFollowRedirects(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.Write([]byte(strings.Repeat("x", 5000)))
	}))
	defer srv.Close()
	s := sender.New(sender.Options{MaxResponseBytes: 1000, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	body := []byte(`{"hello":"world"}`)
	now := time.Now()
	res := s.Send(context.Background(), sender.Request{MessageID: "msg_1", URL: srv.URL + "/hook", Body: body,
		Secrets: []string{secret}, Timestamp: now, Headers: map[string]string{"X-Team": "crm"}})
	require.NoError(t, res.Err)
	require.Equal(t, 200, res.StatusCode)
	require.Len(t, res.ResponseBody, 1000)
	require.True(t, res.ResponseTruncated)
	require.Equal(t, "crm", got.Get("X-Team"))
	require.NoError(t, signature.VerifyStandard(secret, got.Get("webhook-id"), got.Get("webhook-timestamp"), got.Get("webhook-signature"), body, time.Minute))
	require.NoError(t, signature.VerifyAskUsers(secret, body, got.Get("X-Webhook-Signature")))

	res = s.Send(context.Background(), sender.Request{MessageID: "msg_2", URL: srv.URL + "/redirect", Body: body, Timestamp: now})
	require.Equal(t, http.StatusFound, res.StatusCode)
}

func TestSendTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	s := sender.New(sender.Options{Timeout: 200 * time.Millisecond, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	res := s.Send(context.Background(), sender.Request{MessageID: "m", URL: srv.URL, Timestamp: time.Now()})
	require.True(t, sender.IsTimeout(res.Err), "got %v", res.Err)
}

func TestSendRefusesAHugeResponseHeaderBlock(t *testing.T) {
	// 2,000 headers of 1 KiB: Go's client would accept up to 10 MiB and copy every one.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		v := strings.Repeat("h", 1024)
		for i := range 2000 {
			w.Header().Set(fmt.Sprintf("X-Bomb-%d", i), v)
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	s := sender.New(sender.Options{MaxResponseHeaderBytes: 64 << 10, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	res := s.Send(context.Background(), sender.Request{MessageID: "m", URL: srv.URL, Timestamp: time.Now()})
	require.Error(t, res.Err)
	require.Contains(t, res.Err.Error(), "exceeded")
	require.Nil(t, res.ResponseHeaders)
}
