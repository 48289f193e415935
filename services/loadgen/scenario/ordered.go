package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
)

// ordered (issue 19): one project with two webhooks on the same events, to two fast endpoints —
// one with ordering "respondent", one without. A burst of events from 1,000 users is produced at
// once; each webhook's figure is its deliveries divided by the time from the first event produced
// to its last delivery. ordered_rps_ratio is the ordered webhook's rate against the unordered one's:
// what sending each respondent's deliveries one at a time costs (docs/ordering.md).
const orderedEvents = 20_000

// Ordered details.
type Ordered struct {
	Events       int     `json:"events"`
	Respondents  int     `json:"respondents"`
	OrderedRPS   float64 `json:"ordered_rps"`
	UnorderedRPS float64 `json:"unordered_rps"`
	Ratio        float64 `json:"ratio"` // ordered_rps / unordered_rps
}

// runOrdered produces the burst and waits for both endpoints to have every delivery.
func (b *bench) runOrdered(ctx context.Context) error {
	p, err := b.api.createProject(ctx, "bench ordered")
	if err != nil {
		return err
	}
	ord, free := b.rx.Endpoint("ordered", hooktest.Fast), b.rx.Endpoint("ordered-free", hooktest.Fast)
	if _, err := b.api.createWebhookWith(ctx, p, "ordered", b.rx.URL()+"/ordered", map[string]any{"ordering": "respondent"}); err != nil {
		return err
	}
	if _, err := b.api.createWebhook(ctx, p, "ordered-free", b.rx.URL()+"/ordered-free"); err != nil {
		return err
	}
	sleep(ctx, 2*time.Second) // both webhooks reach fan-out's and the worker's registries
	o := &b.res.Ordered
	*o = Ordered{Events: orderedEvents, Respondents: 1000}
	ob, fb := ord.Received(), free.Received()
	start := time.Now()
	if _, err := b.prod.Run(ctx, produce.Plan{Count: orderedEvents}, b.events(p, "ordered")); err != nil {
		return fmt.Errorf("producing: %w", err)
	}
	var freeDone, ordDone time.Time
	ok := waitFor(ctx, 180*time.Second, func() bool {
		now := time.Now()
		if freeDone.IsZero() && free.Received()-fb >= orderedEvents {
			freeDone = now
		}
		if ordDone.IsZero() && ord.Received()-ob >= orderedEvents {
			ordDone = now
		}
		return !freeDone.IsZero() && !ordDone.IsZero()
	})
	if !ok {
		return fmt.Errorf("ordered %d, unordered %d of %d deliveries within 180 s", ord.Received()-ob, free.Received()-fb, orderedEvents)
	}
	o.OrderedRPS = round2(orderedEvents / ordDone.Sub(start).Seconds())
	o.UnorderedRPS = round2(orderedEvents / freeDone.Sub(start).Seconds())
	o.Ratio = round2(o.OrderedRPS / o.UnorderedRPS)
	b.res.OrderedRPS = o.OrderedRPS
	b.say("ordered: %d events from %d users to two webhooks: ordered %.0f deliveries/s, unordered %.0f/s (ratio %.2f)",
		orderedEvents, o.Respondents, o.OrderedRPS, o.UnorderedRPS, o.Ratio)
	return nil
}
