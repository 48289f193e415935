package fanout_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

// producerEvent decodes a catalogue example (a producer event) onto the protobuf Event; the
// examples' free-form objects travel as JSON bytes.
func producerEvent(t *testing.T, example string) *pb.Event {
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(example), &m))
	if u, ok := m["user"].(map[string]any); ok && u["traits"] != nil {
		b, err := json.Marshal(u["traits"])
		require.NoError(t, err)
		u["traits"] = base64.StdEncoding.EncodeToString(b)
	}
	raw, err := json.Marshal(m)
	require.NoError(t, err)
	ev := &pb.Event{}
	require.NoError(t, protojson.Unmarshal(raw, ev))
	return ev
}

// TestEveryQueuedBodyMeetsTheRegistrysSchema sends the catalogue's example and the registry's
// sample event of every type through fan-out to one webhook per body shape (each envelope
// version, each format), and validates every body fan-out queues — the bytes delivery sends —
// against the JSON Schema GET /v1/event-types serves for that type and shape.
func TestEveryQueuedBodyMeetsTheRegistrysSchema(t *testing.T) {
	cfg := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := kafkatest.Client(t, ctx, cfg)

	f := fanout.New(fanout.Config{Kafka: cfg, Group: "fanout-schemas"}, nil)
	fctx, fcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(fctx) }()
	t.Cleanup(func() { fcancel(); <-done })

	put := func(rs ...*kgo.Record) { require.NoError(t, cl.ProduceSync(ctx, rs...).FirstErr()) }
	shapes := map[string]envelope.Body{}
	for i, b := range envelope.Bodies() {
		id := fmt.Sprintf("wh_%d", i)
		shapes[id] = b
		v, _ := proto.Marshal(&pb.Webhook{Id: id, ProjectId: "p1", Enabled: true, EventTypes: []string{"*"},
			Format: b.Format, PayloadVersion: b.Version})
		put(&kgo.Record{Topic: cfg.Topics.Webhooks, Key: []byte(id), Value: v})
	}
	n := 0
	for i, et := range envelope.Catalogue {
		for j, ev := range []*pb.Event{producerEvent(t, et.Example), envelope.ExampleEvent(et)} {
			ev.ProjectId, ev.EventId, ev.TimeMs = "p1", fmt.Sprintf("e%d_%d", i, j), time.Now().UnixMilli()
			v, _ := proto.Marshal(ev)
			put(&kgo.Record{Topic: cfg.Topics.Events, Key: []byte("p1"), Value: v})
			n++
		}
	}

	rd, err := kafka.NewClient(cfg, kgo.ConsumeTopics(cfg.Topics.Deliveries), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	require.NoError(t, err)
	defer rd.Close()
	compiled := map[string]*jsonschema.Schema{}
	seen := 0
	for seen < n*len(shapes) {
		fs := rd.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "%d of %d deliveries", seen, n*len(shapes))
		fs.EachRecord(func(r *kgo.Record) {
			d := &pb.Delivery{}
			require.NoError(t, proto.Unmarshal(r.Value, d))
			b := shapes[d.WebhookId]
			k := d.EventType + "/" + d.WebhookId
			if compiled[k] == nil {
				s, err := envelope.BodySchema(d.EventType, b)
				require.NoError(t, err)
				raw, _ := json.Marshal(s)
				doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
				require.NoError(t, err)
				c := jsonschema.NewCompiler()
				require.NoError(t, c.AddResource("body.json", doc))
				compiled[k], err = c.Compile("body.json")
				require.NoError(t, err)
			}
			body, err := jsonschema.UnmarshalJSON(bytes.NewReader(d.Body))
			require.NoError(t, err)
			require.NoError(t, compiled[k].Validate(body), "%s in %+v: %s", d.EventType, b, d.Body)
			seen++
		})
	}
}
