// Package produce is the load generator's producer: it writes survey events into `survey-events`
// with segmentio/kafka-go, the client a survey platform's own producer would typically use, either
// at a target rate (open loop) or as fast as the pipeline drains them (closed loop, a bounded
// backlog). Every event carries its send time in properties.sent_at_ns, which the pipeline delivers
// under payload.properties so the receiver can compute end-to-end latency. It must never write to
// any topic but the one it was given.
package produce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// EventType is what the load generator sends: every bench webhook subscribes to it.
const EventType = "nps.scored"

// Event is one survey event as a survey platform writes it to `survey-events`.
type Event struct {
	ProjectID string
	EventID   string
	UserID    string
	Score     int
	SentAt    time.Time // set by Run when zero
}

type wireEvent struct {
	ProjectID  string         `json:"project_id"`
	EventID    string         `json:"event_id"`
	EventType  string         `json:"event_type"`
	User       wireUser       `json:"user"`
	NPS        wireNPS        `json:"nps"`
	Properties wireProperties `json:"properties"`
}

type wireUser struct {
	ID string `json:"id"`
}

type wireNPS struct {
	Score int `json:"score"`
}

type wireProperties struct {
	SentAtNs int64  `json:"sent_at_ns"`
	Source   string `json:"source"`
}

// JSON is the record value: the producer-facing JSON shape ingest accepts.
func (e Event) JSON() []byte {
	b, _ := json.Marshal(wireEvent{ // cannot fail: plain strings and numbers
		ProjectID: e.ProjectID, EventID: e.EventID, EventType: EventType,
		User: wireUser{ID: e.UserID}, NPS: wireNPS{Score: e.Score},
		Properties: wireProperties{SentAtNs: e.SentAt.UnixNano(), Source: "surveyhooks-loadgen"},
	})
	return b
}

// Message is the Kafka record for e: keyed by project id, JSON content type.
func (e Event) Message() kafkago.Message {
	return kafkago.Message{Key: []byte(e.ProjectID), Value: e.JSON(),
		Headers: []kafkago.Header{{Key: "content-type", Value: []byte("application/json")}}}
}

// Producer writes events to one topic.
type Producer struct {
	w *kafkago.Writer
}

// New returns a producer for topic on brokers. Records are spread round-robin over the topic's
// partitions (DESIGN allows any key's placement on `survey-events`), so one busy project does not
// pin ingest to one partition.
func New(brokers []string, topic string) *Producer {
	return &Producer{w: &kafkago.Writer{
		Addr:         kafkago.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafkago.RoundRobin{},
		BatchSize:    1000,
		BatchBytes:   4 << 20,
		BatchTimeout: 2 * time.Millisecond,
		RequiredAcks: kafkago.RequireAll,
		MaxAttempts:  5,
		WriteTimeout: 10 * time.Second,
	}}
}

// Write sends evs and waits until the broker acknowledged them.
func (p *Producer) Write(ctx context.Context, evs []Event) error {
	msgs := make([]kafkago.Message, len(evs))
	for i, e := range evs {
		msgs[i] = e.Message()
	}
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("writing %d events to %s: %w", len(evs), p.w.Topic, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }

// Plan says how many events to send and how fast.
type Plan struct {
	// Rate is events per second; 0 sends as fast as MaxBacklog allows.
	Rate float64
	// Count stops after that many events; 0 runs until ctx is done.
	Count int
	// Batch is the most events per write; 500 when zero.
	Batch int
	// Outstanding, when set, reports how much of what was sent is still on its way; sending pauses
	// while it is MaxBacklog or more. It keeps a closed-loop run from queueing without bound.
	Outstanding func(sent int64) int64
	MaxBacklog  int64
}

// Run sends the events next makes (next(i) for the i-th, SentAt stamped at send time) following
// plan, and returns how many were acknowledged. It returns nil when ctx ends the run.
func (p *Producer) Run(ctx context.Context, plan Plan, next func(i int) Event) (int, error) {
	if plan.Batch <= 0 {
		plan.Batch = 500
	}
	if plan.Rate <= 0 && plan.Outstanding == nil && plan.Count == 0 {
		return 0, errors.New("an unpaced run needs a Count or an Outstanding bound")
	}
	start := time.Now()
	sent := 0
	batch := make([]Event, 0, plan.Batch)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil && (plan.Count == 0 || sent < plan.Count) {
		n := plan.Batch
		if plan.Count > 0 {
			n = min(n, plan.Count-sent)
		}
		if plan.Rate > 0 {
			due := int(plan.Rate*time.Since(start).Seconds()) - sent
			n = min(n, due)
		}
		if plan.Outstanding != nil {
			n = min(n, int(plan.MaxBacklog-plan.Outstanding(int64(sent))))
		}
		if n <= 0 {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			continue
		}
		now := time.Now()
		batch = batch[:0]
		for i := range n {
			e := next(sent + i)
			if e.SentAt.IsZero() {
				e.SentAt = now
			}
			batch = append(batch, e)
		}
		if err := p.Write(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return sent, nil
			}
			return sent, err
		}
		sent += n
	}
	return sent, nil
}
