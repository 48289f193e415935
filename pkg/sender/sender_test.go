package sender_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/sender"
	"github.com/surveyhooks/surveyhooks/pkg/signature"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestClassify(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	hdr := func(k, v string) http.Header { return http.Header{k: []string{v}} }
	const (
		retry = pb.Disposition_DISPOSITION_RETRY
		dead  = pb.Disposition_DISPOSITION_DEAD
		ok    = pb.Disposition_DISPOSITION_DELIVERED
	)
	for _, c := range []struct {
		name       string
		res        sender.Result
		class      pb.OutcomeClass
		disp       pb.Disposition
		retryAfter int64
	}{
		{"200", sender.Result{StatusCode: 200}, pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, ok, 0},
		{"204", sender.Result{StatusCode: 204}, pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, ok, 0},
		{"301 is not followed, retried", sender.Result{StatusCode: 301}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 0},
		{"400", sender.Result{StatusCode: 400}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, dead, 0},
		{"401", sender.Result{StatusCode: 401}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, dead, 0},
		{"404", sender.Result{StatusCode: 404}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT, dead, 0},
		{"408", sender.Result{StatusCode: 408}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 0},
		{"409", sender.Result{StatusCode: 409}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 0},
		{"410 disables", sender.Result{StatusCode: 410}, pb.OutcomeClass_OUTCOME_CLASS_GONE, dead, 0},
		{"425", sender.Result{StatusCode: 425}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 0},
		{"429 seconds", sender.Result{StatusCode: 429, ResponseHeaders: hdr("Retry-After", "120")}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 120_000},
		{"429 date", sender.Result{StatusCode: 429, ResponseHeaders: hdr("Retry-After", now.Add(10*time.Minute).Format(http.TimeFormat))}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 600_000},
		{"429 garbage", sender.Result{StatusCode: 429, ResponseHeaders: hdr("Retry-After", "soon")}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 0},
		{"500", sender.Result{StatusCode: 500}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 0},
		{"503 Retry-After", sender.Result{StatusCode: 503, ResponseHeaders: hdr("Retry-After", "5")}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 5000},
		{"502 ignores Retry-After", sender.Result{StatusCode: 502, ResponseHeaders: hdr("Retry-After", "5")}, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, retry, 0},
		{"timeout", sender.Result{Err: context.DeadlineExceeded}, pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, retry, 0},
		{"connection", sender.Result{Err: errors.New("dial tcp: connection refused")}, pb.OutcomeClass_OUTCOME_CLASS_CONNECTION_ERROR, retry, 0},
		{"blocked", sender.Result{Err: fmt.Errorf("x: %w", sender.ErrBlockedDestination)}, pb.OutcomeClass_OUTCOME_CLASS_BLOCKED_DESTINATION, dead, 0},
		{"invalid", sender.Result{Err: sender.ErrInvalidRequest}, pb.OutcomeClass_OUTCOME_CLASS_INVALID_REQUEST, dead, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := sender.Classify(c.res, now)
			require.Equal(t, c.class, o.Class)
			require.Equal(t, c.disp, o.Disposition)
			require.Equal(t, c.retryAfter, o.RetryAfterMs)
			require.EqualValues(t, c.res.StatusCode, o.StatusCode)
		})
	}
}

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
	require.Equal(t, pb.OutcomeClass_OUTCOME_CLASS_BLOCKED_DESTINATION, sender.Classify(res, time.Now()).Class)
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
	require.Equal(t, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE, sender.Classify(res, now).Class)
}

func TestSendTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	s := sender.New(sender.Options{Timeout: 200 * time.Millisecond, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	res := s.Send(context.Background(), sender.Request{MessageID: "m", URL: srv.URL, Timestamp: time.Now()})
	require.Equal(t, pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, sender.Classify(res, time.Now()).Class)
}
