package delivery

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestAttemptRecordIsBoundedAtTheLimit(t *testing.T) {
	const limit = 64 << 10
	base := func(req, resp int) *pb.Attempt {
		return &pb.Attempt{AttemptId: "att_1", DeliveryId: "d1", WebhookId: "wh_1", Attempt: 1,
			RequestHeaders: map[string]string{"webhook-id": "d1"}, ResponseHeaders: map[string]string{"content-type": "text/plain"},
			RequestBody: bytes.Repeat([]byte("q"), req), ResponseBody: bytes.Repeat([]byte("r"), resp),
			Outcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS}}
	}
	fixed := proto.Size(base(0, 0))
	for _, c := range []struct {
		name      string
		req, resp int
		cut       bool
	}{
		{"small: unchanged", 100, 100, false},
		{"exactly at the limit: unchanged", 1000, limit - fixed - 1000 - 8, false},
		{"one byte over: the response body is cut", 1000, limit - fixed - 1000 - 7, true},
		{"a huge response body", 1000, 10 << 20, true},
		{"a huge request body too", 10 << 20, 10 << 20, true},
		{"a huge request body alone", 10 << 20, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := base(c.req, c.resp)
			before := proto.Size(a)
			if strings.HasPrefix(c.name, "exactly") {
				require.Equal(t, limit, before, "the case sits at the boundary")
			}
			require.Equal(t, c.cut, boundAttempt(a, limit))
			require.LessOrEqual(t, proto.Size(a), limit)
			if !c.cut {
				require.Equal(t, before, proto.Size(a))
				return
			}
			require.True(t, a.ResponseTruncated || a.RequestHeaders[TruncatedMark] != "", "what was cut is marked")
			require.Greater(t, proto.Size(a), limit/2, "it keeps as much as fits")
		})
	}
}

func TestRecordedHeadersAreCappedAndMarked(t *testing.T) {
	for _, c := range []struct {
		name   string
		n, len int
		kept   int
		marked bool
	}{
		{"a few headers are kept whole", 10, 20, 10, false},
		{"more than 100 names: 100 kept", 500, 10, maxRecordedHeaders, true},
		{"2,000 of 1 KiB: 16 KiB kept", 2000, 1024, 15, true},
		{"one huge value is cut", 1, 100 << 10, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for i := range c.n {
				h.Set(fmt.Sprintf("X-H-%04d", i), strings.Repeat("v", c.len))
			}
			got := recordHeaders(h)
			mark, marked := got[TruncatedMark]
			require.Equal(t, c.marked, marked, mark)
			delete(got, TruncatedMark)
			require.Len(t, got, c.kept)
			size := 0
			for k, v := range got {
				size += len(k) + len(v)
			}
			require.LessOrEqual(t, size, maxRecordedHeaderBytes)
		})
	}
	require.Equal(t, "[redacted]", recordHeaders(http.Header{"Authorization": {"Bearer x"}})["Authorization"], "credentials never reach the log")
}

func TestMarshalAttemptEncodesWhatProtoMarshalDoes(t *testing.T) {
	for _, c := range []struct {
		name string
		body int
	}{{"unchanged", 100}, {"cut to the limit", 100 << 10}} {
		t.Run(c.name, func(t *testing.T) {
			a := &pb.Attempt{AttemptId: "att_1", DeliveryId: "d1", RequestBody: bytes.Repeat([]byte("q"), c.body),
				RequestHeaders: map[string]string{"Webhook-Id": "d1", "Content-Type": "application/json"},
				Outcome:        &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, Error: strings.Repeat("e", 10)}}
			v := marshalAttempt(a, 64<<10)
			require.LessOrEqual(t, len(v), 64<<10)
			got := &pb.Attempt{}
			require.NoError(t, proto.Unmarshal(v, got))
			require.True(t, proto.Equal(a, got))
		})
	}
}
