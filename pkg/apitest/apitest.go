// Package apitest is how tests talk to surveyhooks' JSON APIs (ingest, management, portal): one
// request helper instead of one per test file, so every test sends the same headers and reads
// answers the same way.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// Reply is one answer: its status, headers, raw body and, when the body is a JSON object, the
// object.
type Reply struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// String shows the status and body, for failure messages.
func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Raw)) }

// Request is one call: Body is JSON-encoded unless it is a string or []byte (sent as is) or nil;
// Token, when set, is sent as a bearer token; Header adds headers.
type Request struct {
	Method, URL, Token string
	Header             map[string]string
	Body               any
}

// Do sends r with client (http.DefaultClient when nil) and reads the whole answer. An answer
// that is not JSON keeps Body nil and Raw as sent.
func Do(ctx context.Context, client *http.Client, r Request) (Reply, error) {
	var rd io.Reader
	switch b := r.Body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return Reply{}, fmt.Errorf("encoding the body of %s %s: %w", r.Method, r.URL, err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, rd)
	if err != nil {
		return Reply{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return Reply{}, fmt.Errorf("reading the answer to %s %s: %w", r.Method, r.URL, err)
	}
	out := Reply{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 && raw[0] == '{' {
		_ = json.Unmarshal(raw, &out.Body)
	}
	return out, nil
}

// Call sends a JSON request with a bearer token, requires the answer's status to be want, and
// returns the answer's JSON object (empty, never nil, when it has none).
func Call(t testing.TB, method, url, token string, body any, want int) map[string]any {
	t.Helper()
	r, err := Do(context.Background(), nil, Request{Method: method, URL: url, Token: token, Body: body})
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if r.Status != want {
		t.Fatalf("%s %s: want %d, got %s", method, url, want, r)
	}
	if r.Body == nil {
		return map[string]any{}
	}
	return r.Body
}
