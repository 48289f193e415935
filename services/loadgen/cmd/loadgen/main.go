// Command loadgen produces survey events into Kafka with segmentio/kafka-go, as a survey
// platform's producer would: at a fixed rate or as fast as it can, for a count or until stopped.
// Each event carries its send time (properties.sent_at_ns) for the receiver's latency figures.
//
//	go run ./services/loadgen/cmd/loadgen -brokers 127.0.0.1:9092 -project prj_… -rate 500 -count 10000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	topic := flag.String("topic", "survey-events", "topic to produce to")
	rate := flag.Float64("rate", 0, "events per second; 0 is as fast as possible")
	count := flag.Int("count", 1000, "events to send; 0 runs until interrupted (needs -rate)")
	project := flag.String("project", "", "project id the events belong to (required)")
	batch := flag.Int("batch", 500, "most events per write")
	flag.Parse()
	if *project == "" {
		log.Fatal("loadgen: -project is required")
	}
	if *count == 0 && *rate <= 0 {
		log.Fatal("loadgen: -count 0 (run until interrupted) needs a -rate")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	p := produce.New(strings.Split(*brokers, ","), *topic)
	defer p.Close()
	prefix := fmt.Sprintf("loadgen-%d", time.Now().UnixNano())
	start := time.Now()
	n, err := p.Run(ctx, produce.Plan{Rate: *rate, Count: *count, Batch: *batch}, func(i int) produce.Event {
		return produce.Event{ProjectID: *project, EventID: fmt.Sprintf("%s-%d", prefix, i),
			UserID: fmt.Sprintf("user-%d", i%1000), Score: i % 11}
	})
	el := time.Since(start)
	fmt.Printf("sent %d events to %s in %s (%.0f/s)\n", n, *topic, el.Round(time.Millisecond), float64(n)/el.Seconds())
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
