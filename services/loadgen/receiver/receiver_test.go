package receiver_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/services/loadgen/receiver"
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

func start(t *testing.T, opts receiver.Options) *receiver.Server {
	t.Helper()
	srv, err := receiver.Start("127.0.0.1:0", opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func TestFastEndpointRecordsEndToEndLatencyFromSentAt(t *testing.T) {
	srv := start(t, receiver.Options{})
	ep := srv.Endpoint("fast", receiver.Fast)
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
	srv := start(t, receiver.Options{})
	ep := srv.Endpoint("down", receiver.Failing)
	code, err := post(t, http.DefaultClient, srv.URL()+"/down", `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusInternalServerError, code)
	require.EqualValues(t, 0, ep.Received())
	require.EqualValues(t, 1, ep.Requests())
}

func TestSlowEndpointTakesItsDelay(t *testing.T) {
	srv := start(t, receiver.Options{SlowDelay: 150 * time.Millisecond})
	srv.Endpoint("slow", receiver.Slow)
	began := time.Now()
	code, err := post(t, http.DefaultClient, srv.URL()+"/slow", `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.GreaterOrEqual(t, time.Since(began), 150*time.Millisecond)
}

func TestHangingEndpointHoldsRequestsUntilTheClientGivesUpOrItIsReleased(t *testing.T) {
	srv := start(t, receiver.Options{})
	ep := srv.Endpoint("hang", receiver.Hanging)

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
	ep.SetMode(receiver.Fast)
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
	srv, err := receiver.Start("127.0.0.1:0", receiver.Options{})
	require.NoError(t, err)
	ep := srv.Endpoint("hang", receiver.Hanging)
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
	srv := start(t, receiver.Options{})
	code, err := post(t, http.DefaultClient, srv.URL()+"/nobody", `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code)

	all := receiver.NewEndpoint("all", receiver.Fast)
	srv2 := start(t, receiver.Options{Default: all})
	code, err = post(t, http.DefaultClient, srv2.URL()+"/any/path", `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.EqualValues(t, 1, all.Received())
}

func TestOnlyLoopbackAddressesAreAccepted(t *testing.T) {
	_, err := receiver.Start("0.0.0.0:0", receiver.Options{})
	require.ErrorContains(t, err, "loopback")
	_, err = receiver.ParseMode("sometimes")
	require.Error(t, err)
}

func TestForgetDropsOldSamples(t *testing.T) {
	srv := start(t, receiver.Options{})
	ep := srv.Endpoint("fast", receiver.Fast)
	for range 3 {
		_, err := post(t, http.DefaultClient, srv.URL()+"/fast", `{}`)
		require.NoError(t, err)
	}
	ep.Forget(time.Now().Add(time.Second))
	require.Empty(t, ep.Samples(time.Time{}))
	require.EqualValues(t, 3, ep.Received())
}

func TestDuplicatesCountsRepeatedEventIDs(t *testing.T) {
	srv := start(t, receiver.Options{})
	ep := srv.Endpoint("fast", receiver.Fast)
	for _, id := range []string{"a", "b", "a", "a"} {
		_, err := post(t, http.DefaultClient, srv.URL()+"/fast", `{"event_id":"`+id+`"}`)
		require.NoError(t, err)
	}
	require.EqualValues(t, 2, ep.Duplicates())
}
