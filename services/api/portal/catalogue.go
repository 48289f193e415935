package portal

import (
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// eventChoice is one line of the event-type picker.
type eventChoice struct {
	Name, Description, Example string
	Checked                    bool
}

// example renders the body a webhook in format/version would receive for a sample event of type t:
// the same renderer fan-out uses, on Send Test's sample event.
func example(t, format, version string) string {
	ev := envelope.TestEvent("prj_example", time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC))
	ev.EventType, ev.EventId = t, "evt_example"
	body, err := envelope.Render(ev, &pb.Webhook{Id: "wh_example", PayloadVersion: version, Format: format})
	if err != nil {
		return "(no example: " + err.Error() + ")"
	}
	return indent(body)
}

func eventChoices(chosen []string, format, version string) []eventChoice {
	out := make([]eventChoice, 0, len(envelope.Catalogue))
	for _, et := range envelope.Catalogue {
		t := et.Name
		c := eventChoice{Name: t, Description: et.Description, Example: example(t, format, version)}
		for _, x := range chosen {
			if x == t || x == "*" {
				c.Checked = true
			}
		}
		out = append(out, c)
	}
	return out
}
