package hooktest_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/pkg/signature"
)

func post(t *testing.T, c *http.Client, url string, body string) (int, error) {
	t.Helper()
	resp, err := c.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func start(t *testing.T, opts hooktest.Options) *hooktest.Server {
	t.Helper()
	srv, err := hooktest.Start("127.0.0.1:0", opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func TestFastEndpointRecordsEndToEndLatencyFromSentAt(t *testing.T) {
	srv := start(t, hooktest.Options{})
	ep := srv.Endpoint("fast", hooktest.Fast)
	sent := time.Now().Add(-250 * time.Millisecond)
	body := fmt.Sprintf(`{"event_id":"e1","payload":{"properties":{"sent_at_ns":%d}}}`, sent.UnixNano())
	code, err := post(t, http.DefaultClient, srv.URL()+"/fast", body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)

	require.EqualValues(t, 1, ep.Received())
	s := ep.Samples(time.Time{})
	require.Len(t, s, 1)
	require.Equal(t, "e1", s[0].EventID)
	require.GreaterOrEqual(t, s[0].Latency, 250*time.Millisecond)
	require.Less(t, s[0].Latency, 5*time.Second)
	require.JSONEq(t, body, string(ep.SampleBody()))
}

func TestFailingEndpointAnswers500AndRecordsNothing(t *testing.T) {
	srv := start(t, hooktest.Options{})
	ep := srv.Endpoint("down", hooktest.Failing)
	code, err := post(t, http.DefaultClient, srv.URL()+"/down", `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusInternalServerError, code)
	require.EqualValues(t, 0, ep.Received())
	require.EqualValues(t, 1, ep.Requests())
}

func TestSlowEndpointTakesItsDelay(t *testing.T) {
	srv := start(t, hooktest.Options{SlowDelay: 150 * time.Millisecond})
	srv.Endpoint("slow", hooktest.Slow)
	began := time.Now()
	code, err := post(t, http.DefaultClient, srv.URL()+"/slow", `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.GreaterOrEqual(t, time.Since(began), 150*time.Millisecond)
}

func TestHangingEndpointHoldsRequestsUntilTheClientGivesUpOrItIsReleased(t *testing.T) {
	srv := start(t, hooktest.Options{})
	ep := srv.Endpoint("hang", hooktest.Hanging)

	_, err := post(t, &http.Client{Timeout: 200 * time.Millisecond}, srv.URL()+"/hang", `{}`)
	require.Error(t, err, "a hanging endpoint must not answer before the client's timeout")
	require.Eventually(t, func() bool { return ep.InFlight() == 0 }, 5*time.Second, 10*time.Millisecond)

	done := make(chan int, 1)
	go func() {
		code, _ := post(t, http.DefaultClient, srv.URL()+"/hang", `{"event_id":"late"}`)
		done <- code
	}()
	require.Eventually(t, func() bool { return ep.InFlight() == 1 }, 5*time.Second, 10*time.Millisecond)
	require.EqualValues(t, 1, ep.PeakInFlight())
	ep.SetMode(hooktest.Fast)
	ep.Release()
	select {
	case code := <-done:
		require.Equal(t, http.StatusOK, code, "a released request is answered as a late success")
	case <-time.After(5 * time.Second):
		t.Fatal("Release did not answer the held request")
	}
	require.EqualValues(t, 1, ep.Received())
}

func TestClosingTheServerDropsHeldRequestsWithoutA200(t *testing.T) {
	srv, err := hooktest.Start("127.0.0.1:0", hooktest.Options{})
	require.NoError(t, err)
	ep := srv.Endpoint("hang", hooktest.Hanging)
	errc := make(chan error, 1)
	go func() {
		code, err := post(t, http.DefaultClient, srv.URL()+"/hang", `{}`)
		if err == nil {
			err = fmt.Errorf("answered %d", code)
		}
		errc <- err
	}()
	require.Eventually(t, func() bool { return ep.InFlight() == 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, srv.Close())
	select {
	case err := <-errc:
		require.Error(t, err)
		require.NotContains(t, err.Error(), "answered 200")
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not let go of the held request")
	}
}

func TestUnknownPathsGoToTheDefaultEndpointOr404(t *testing.T) {
	srv := start(t, hooktest.Options{})
	code, err := post(t, http.DefaultClient, srv.URL()+"/nobody", `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code)

	all := hooktest.NewEndpoint("all", hooktest.Fast)
	srv2 := start(t, hooktest.Options{Default: all})
	code, err = post(t, http.DefaultClient, srv2.URL()+"/any/path", `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.EqualValues(t, 1, all.Received())
}

func TestOnlyLoopbackAddressesAreAccepted(t *testing.T) {
	_, err := hooktest.Start("0.0.0.0:0", hooktest.Options{})
	require.ErrorContains(t, err, "loopback")
	_, err = hooktest.ParseMode("sometimes")
	require.Error(t, err)
}

func TestForgetDropsOldSamples(t *testing.T) {
	srv := start(t, hooktest.Options{})
	ep := srv.Endpoint("fast", hooktest.Fast)
	for range 3 {
		_, err := post(t, http.DefaultClient, srv.URL()+"/fast", `{}`)
		require.NoError(t, err)
	}
	ep.Forget(time.Now().Add(time.Second))
	require.Empty(t, ep.Samples(time.Time{}))
	require.EqualValues(t, 3, ep.Received())
}

func TestDuplicatesCountsRepeatedEventIDs(t *testing.T) {
	srv := start(t, hooktest.Options{})
	ep := srv.Endpoint("fast", hooktest.Fast)
	for _, id := range []string{"a", "b", "a", "a"} {
		_, err := post(t, http.DefaultClient, srv.URL()+"/fast", `{"event_id":"`+id+`"}`)
		require.NoError(t, err)
	}
	require.EqualValues(t, 2, ep.Duplicates())
}

func TestVerifyingEndpointRefusesABadSignatureAndAcceptsAGoodOne(t *testing.T) {
	srv := hooktest.StartT(t, hooktest.Options{})
	ep := srv.Endpoint("signed", hooktest.Fast)
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ep.Verify(secret)
	ep.Record(false)
	key, err := signature.Key(secret)
	require.NoError(t, err)
	body := []byte(`{"event_id":"e1","event_type":"survey.completed"}`)
	send := func(sig string) int {
		req, _ := http.NewRequest("POST", srv.URL()+"/signed", bytes.NewReader(body))
		now := time.Now()
		req.Header.Set("webhook-id", "msg_1")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusBadRequest, send("v1,bm90IGEgc2lnbmF0dXJl"))
	require.Len(t, ep.Refused(), 1)
	require.Equal(t, http.StatusOK, send(signature.Standard("msg_1", time.Now(), body, [][]byte{key})))
	require.EqualValues(t, 1, ep.Received())
	recs := ep.Records()
	require.Len(t, recs, 2)
	require.Equal(t, []int{400, 200}, []int{recs[0].Status, recs[1].Status})
	require.Equal(t, "e1", recs[1].EventID)
	require.Equal(t, "survey.completed", recs[1].EventType)
	require.Equal(t, "msg_1", recs[1].WebhookID)
}

func TestAnswerFunctionChoosesEachAnswerAndRecordsShowOpenAndAbandonedRequests(t *testing.T) {
	srv := hooktest.StartT(t, hooktest.Options{})
	ep := srv.Endpoint("chosen", hooktest.Fast)
	ep.Record(true)
	ep.AnswerWith(func(r *hooktest.Request) hooktest.Answer {
		if r.EventID == "slow" {
			return hooktest.Answer{Status: 200, Delay: 2 * time.Second}
		}
		return hooktest.Answer{Status: 429, Header: http.Header{"Retry-After": {"7"}}}
	})
	resp, err := http.Post(srv.URL()+"/chosen", "application/json", bytes.NewBufferString(`{"event_id":"limited"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "7", resp.Header.Get("Retry-After"))

	c := &http.Client{Timeout: 300 * time.Millisecond} // hangs up before the slow answer
	_, err = c.Post(srv.URL()+"/chosen", "application/json", bytes.NewBufferString(`{"event_id":"slow"}`))
	require.Error(t, err)
	require.Eventually(t, func() bool { return len(ep.Records()) == 2 && len(ep.Open()) == 0 }, 5*time.Second, 10*time.Millisecond)
	recs := ep.Records()
	require.Equal(t, 429, recs[0].Status)
	require.Equal(t, "slow", recs[1].EventID)
	require.Equal(t, 0, recs[1].Status, "a request whose client hung up is recorded unanswered")
	require.False(t, recs[1].Delivered())
	require.JSONEq(t, `{"event_id":"slow"}`, string(recs[1].Body))
	require.EqualValues(t, 0, ep.Received())
}
