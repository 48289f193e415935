// Command receiver is a subscriber endpoint for load tests: every path answers in the chosen mode
// (fast, slow, failing, hanging) and each second it prints deliveries received and the end-to-end
// latency of those that carry their send time (events from loadgen do).
//
//	go run ./services/loadgen/cmd/receiver -addr 127.0.0.1:9999 -mode fast
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9999", "listen address (loopback only)")
	modeName := flag.String("mode", "fast", "fast, slow, failing or hanging")
	delay := flag.Duration("delay", 100*time.Millisecond, "how long a slow answer takes")
	hang := flag.Duration("hang", 5*time.Minute, "longest a hanging request is held")
	flag.Parse()
	mode, err := hooktest.ParseMode(*modeName)
	if err != nil {
		log.Fatal("receiver: ", err)
	}
	ep := hooktest.NewEndpoint("all", mode)
	srv, err := hooktest.Start(*addr, hooktest.Options{SlowDelay: *delay, HangMax: *hang, Default: ep})
	if err != nil {
		log.Fatal("receiver: ", err)
	}
	defer srv.Close()
	fmt.Printf("receiver (%s) listening on %s — any path\n", mode, srv.URL())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastReq, since := int64(0), int64(0), time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Printf("received %d deliveries (%d requests)\n", ep.Received(), ep.Requests())
			return
		case now := <-tick.C:
			got, req := ep.Received(), ep.Requests()
			var lat []time.Duration
			for _, s := range ep.Samples(since) {
				if s.Latency > 0 {
					lat = append(lat, s.Latency)
				}
			}
			ep.Forget(since)
			since = now
			line := fmt.Sprintf("%s  %6d ok/s  %6d requests/s  %6d open", now.Format(time.TimeOnly), got-last, req-lastReq, ep.InFlight())
			if len(lat) > 0 {
				slices.Sort(lat)
				q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
				line += fmt.Sprintf("  latency p50 %s p99 %s", q(0.5).Round(time.Millisecond/10), q(0.99).Round(time.Millisecond/10))
			}
			fmt.Fprintln(os.Stdout, line)
			last, lastReq = got, req
		}
	}
}
