package apitest_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/apitest"
)

// echo answers with what it got: method, token, a chosen header, content type and body.
func echo(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/text" {
			_, _ = io.WriteString(w, "plain words")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"method":"`+r.Method+`","auth":"`+r.Header.Get("Authorization")+`","key":"`+
			r.Header.Get("Idempotency-Key")+`","type":"`+r.Header.Get("Content-Type")+`","len":`+strconv.Itoa(len(b))+`}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDoSendsJSONWithTokenAndHeadersAndReadsTheObject(t *testing.T) {
	base := echo(t)
	r, err := apitest.Do(context.Background(), nil, apitest.Request{Method: "POST", URL: base + "/x", Token: "tok",
		Header: map[string]string{"Idempotency-Key": "k1"}, Body: map[string]any{"a": 1}})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, r.Status)
	require.Equal(t, map[string]any{"method": "POST", "auth": "Bearer tok", "key": "k1", "type": "application/json", "len": float64(7)}, r.Body)

	r, err = apitest.Do(context.Background(), nil, apitest.Request{Method: "GET", URL: base + "/text"})
	require.NoError(t, err)
	require.Nil(t, r.Body, "an answer that is not a JSON object has no Body")
	require.Equal(t, "plain words", string(r.Raw))
}

func TestCallReturnsTheObjectAndFailsOnAnotherStatus(t *testing.T) {
	base := echo(t)
	got := apitest.Call(t, "PUT", base+"/x", "", `{"raw":true}`, http.StatusCreated)
	require.Equal(t, "PUT", got["method"])
	require.Equal(t, float64(12), got["len"], "a string body is sent as is")

	ft := &fakeT{TB: t}
	func() {
		defer func() { _ = recover() }()
		apitest.Call(ft, "GET", base+"/x", "", nil, http.StatusOK)
	}()
	require.True(t, ft.failed, "a status other than the wanted one fails the test")
}

// fakeT records a Fatalf instead of ending the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}
