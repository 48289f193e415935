package delivery

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// benchBody is about what fan-out renders for the bench's NPS event.
var benchBody = []byte(`{"type":"nps.scored","timestamp":"2026-11-29T18:56:45.123Z","event_id":"evt_01JDXK4Q9V7W3N5P8R2T6Y1Z0A",` +
	`"project_id":"prj_01JDXK4Q9V7W3N5P8R2T6Y1Z0B","data":{"user":{"id":"u_123456","email":"someone@example.com"},` +
	`"nps":9,"properties":{"survey":"q4-nps","channel":"web","sent_at_ns":1764442605123456789}}}`)

// BenchmarkDeliveryHotPath is the delivery worker's CPU for one successful delivery, as
// deliver makes it: decide, sign and send (to a loopback receiver answering 200, as the bench's
// does), decide again, build the attempt record, bound it and marshal it. Kafka is left out
// (franz-go's produce path is its own). "record" is the same without the request, from a result
// kept from one: the part that is ours alone.
func BenchmarkDeliveryHotPath(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)
	snd := sender.New(sender.Options{Timeout: 5 * time.Second, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		StartSpan: telemetry.StartClientSpan})
	wh := &pb.Webhook{Id: "wh_01JDXK4Q9V7W3N5P8R2T6Y1Z0C", ProjectId: "prj_01JDXK4Q9V7W3N5P8R2T6Y1Z0B", Url: srv.URL + "/hook",
		Enabled: true, Revision: 1}
	keys := []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
	d := &pb.Delivery{DeliveryId: "dlv_01JDXK4Q9V7W3N5P8R2T6Y1Z0D", EventId: "evt_01JDXK4Q9V7W3N5P8R2T6Y1Z0A",
		WebhookId: wh.Id, ProjectId: wh.ProjectId, EventType: "nps.scored", Attempt: 1, Body: benchBody}
	schedule := []time.Duration{time.Second, 2 * time.Second}
	one := func(send func(start time.Time) sender.Result) int {
		in := input{Delivery: d, Webhook: wh, BreakerThreshold: 5, Schedule: schedule, Now: time.Now()}
		dec := decide(in)
		start := time.Now()
		res := send(start)
		in.Sent, in.Now = &res, time.Now()
		dec = decide(in)
		a := attemptRecord(in, dec, "delivery-bench", start)
		return len(marshalAttempt(a, 512<<10))
	}
	ctx := context.Background()
	sendNow := func(start time.Time) sender.Result {
		return snd.Send(ctx, sender.Request{MessageID: d.DeliveryId, URL: wh.Url, Body: d.Body, Secrets: keys, Timestamp: start})
	}
	b.Run("send+record", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			one(sendNow)
		}
	})
	kept := sendNow(time.Now())
	if kept.Err != nil || kept.StatusCode != http.StatusOK {
		b.Fatalf("send: %v %d", kept.Err, kept.StatusCode)
	}
	b.Run("record", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			n = one(func(time.Time) sender.Result { return kept })
		}
		b.ReportMetric(float64(n), "attempt-bytes")
	})
}
