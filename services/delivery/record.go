package delivery

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// What one attempt record keeps of the request's and the response's headers. A receiver decides
// what it answers; the record must stay writable whatever that is (DESIGN §5).
const (
	maxRecordedHeaders     = 100      // header names kept per request or response
	maxRecordedHeaderBytes = 16 << 10 // names and values kept per request or response
	maxRecordedHeaderValue = 4 << 10  // one header's value
	// TruncatedMark is the header added to a recorded request or response from which headers or
	// the body were dropped: it says what was kept.
	TruncatedMark = "surveyhooks-truncated"
)

// recordHeaders keeps headers for the attempt log: credentials hidden, at most
// maxRecordedHeaders names and maxRecordedHeaderBytes bytes (in name order, so the same answer is
// recorded the same way), a mark when anything was dropped.
func recordHeaders(h http.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make(map[string]string, min(len(h), maxRecordedHeaders))
	size, dropped, valuesCut := 0, 0, 0
	for _, k := range names {
		// Go's client accepts any bytes in a header value (Latin-1 is common), but a protobuf
		// string must be UTF-8: the sink could not read the attempt. Cut at a character
		// boundary for the same reason.
		v := strings.ToValidUTF8(redactedValue(k, h[k]), "\uFFFD")
		if len(v) > maxRecordedHeaderValue {
			i := maxRecordedHeaderValue
			for i > 0 && !utf8.RuneStart(v[i]) {
				i--
			}
			v, valuesCut = v[:i], valuesCut+1
		}
		if len(out) >= maxRecordedHeaders || size+len(k)+len(v) > maxRecordedHeaderBytes {
			dropped++
			continue
		}
		out[k] = v
		size += len(k) + len(v)
	}
	if dropped > 0 || valuesCut > 0 {
		out[TruncatedMark] = fmt.Sprintf("headers: kept %d of %d, %d values cut to %d bytes", len(out), len(h), valuesCut, maxRecordedHeaderValue)
	}
	return out
}

// redactedValue is a header's value for the log, hiding credentials.
func redactedValue(name string, v []string) string {
	switch {
	case strings.EqualFold(name, "authorization"), strings.EqualFold(name, "proxy-authorization"),
		strings.EqualFold(name, "cookie"), strings.EqualFold(name, "set-cookie"),
		containsFold(name, "token"), containsFold(name, "secret"), containsFold(name, "api-key"), containsFold(name, "apikey"):
		return "[redacted]"
	}
	return strings.Join(v, ", ")
}

// containsFold reports whether s contains the lower-case ASCII word sub, in any case, without
// the copy strings.ToLower makes of every header name.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// boundAttempt makes a's encoding at most limit bytes, so that it is always writable to the
// attempts topic: it cuts the response body first, then the request body, then drops the
// headers, marking what it cut. It reports whether anything was cut.
func boundAttempt(a *pb.Attempt, limit int) bool {
	over := proto.Size(a) - limit
	if over <= 0 {
		return false
	}
	if n := len(a.ResponseBody); n > 0 {
		keep := max(0, n-over-64) // 64: slack for the length prefix and the mark
		a.ResponseBody, a.ResponseTruncated = a.ResponseBody[:keep], true
		if over = proto.Size(a) - limit; over <= 0 {
			return true
		}
	}
	if n := len(a.RequestBody); n > 0 {
		keep := max(0, n-over-128)
		a.RequestBody = a.RequestBody[:keep]
		if a.RequestHeaders == nil {
			a.RequestHeaders = map[string]string{}
		}
		a.RequestHeaders[TruncatedMark] = fmt.Sprintf("request body: kept %d of %d bytes", keep, n)
		if over = proto.Size(a) - limit; over <= 0 {
			return true
		}
	}
	a.RequestHeaders = map[string]string{TruncatedMark: "request headers and body dropped: the record was too large"}
	a.ResponseHeaders = map[string]string{TruncatedMark: "response headers dropped: the record was too large"}
	a.RequestBody, a.ResponseBody, a.ResponseTruncated = nil, nil, true
	if a.Outcome != nil && len(a.Outcome.Error) > 1024 {
		a.Outcome.Error = a.Outcome.Error[:1024]
	}
	return true
}

// marshalAttempt bounds a to limit bytes (boundAttempt) and encodes it. boundAttempt measured a:
// unless it cut something after, the encoding reuses that size instead of walking the header
// maps (reflection, an allocation per entry) once more.
func marshalAttempt(a *pb.Attempt, limit int) []byte {
	cut := boundAttempt(a, limit)
	v, _ := proto.MarshalOptions{UseCachedSize: !cut}.Marshal(a)
	return v
}
