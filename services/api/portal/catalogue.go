package portal

import (
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// descriptions says in one line what each catalogue type means to a subscriber choosing it;
// catalogue_test.go checks every type of envelope.EventTypes has one.
var descriptions = map[string]string{
	"survey.displayed":         "A survey was shown to a user.",
	"survey.question_answered": "A user answered one question of a survey.",
	"survey.completed":         "A user finished a survey.",
	"survey.dismissed":         "A user closed a survey without finishing it.",
	"form.submitted":           "A form was submitted (by a known user or an anonymous visitor).",
	"nps.scored":               "A user gave an NPS score from 0 to 10.",
	"nps.feedback":             "A user wrote feedback after an NPS score.",
	"nps.dismissed":            "A user closed the NPS question without a score.",
	"nps.ask_later":            "A user asked to be asked the NPS question later.",
	"flow.seen":                "A product flow was shown.",
	"flow.completed":           "A user finished a product flow.",
	"flow.dismissed":           "A user closed a product flow.",
	"checklist.seen":           "A checklist was shown.",
	"checklist.completed":      "A user completed a checklist.",
	"checklist.dismissed":      "A user closed a checklist.",
	"feature_tag.clicked":      "A user clicked a tagged feature.",
	"feature_tag.hovered":      "A user hovered over a tagged feature.",
	"feature_tag.text_input":   "A user typed into a tagged field.",
	"button.tracked":           "A user pressed a tracked button.",
	"user.identified":          "A user was identified with your user id.",
}

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
	out := make([]eventChoice, 0, len(envelope.EventTypes))
	for _, t := range envelope.EventTypes {
		c := eventChoice{Name: t, Description: descriptions[t], Example: example(t, format, version)}
		for _, x := range chosen {
			if x == t || x == "*" {
				c.Checked = true
			}
		}
		out = append(out, c)
	}
	return out
}
