package telemetry_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/telemetry"
)

// BenchmarkDeliverySpansNotRecording is the span work of one delivery when no exporter is
// configured: the "deliver" span of the consumed record and the webhook request's client span.
func BenchmarkDeliverySpansNotRecording(b *testing.B) {
	tel, err := telemetry.Setup(context.Background(), "delivery")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	rec := &kgo.Record{Topic: "deliveries", Partition: 3, Offset: 42, Headers: []kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")}}}
	req, _ := http.NewRequest(http.MethodPost, "https://hooks.example.com:8443/in", nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx, span := tel.StartRecordSpan(context.Background(), rec, "deliver")
		r := req.WithContext(ctx)
		r.Header = http.Header{}
		end := telemetry.StartClientSpan(r)
		end(&http.Response{StatusCode: 200}, nil)
		span.End()
	}
}
