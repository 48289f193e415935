package envelope

import "slices"

// EventTypes is the event catalogue producers may send (DESIGN §1); webhooks subscribe to these
// or to "*". TestEventType is not among them: only Send Test makes it.
var EventTypes = []string{
	"survey.displayed", "survey.question_answered", "survey.completed", "survey.dismissed",
	"form.submitted",
	"nps.scored", "nps.feedback", "nps.dismissed", "nps.ask_later",
	"flow.seen", "flow.completed", "flow.dismissed",
	"checklist.seen", "checklist.completed", "checklist.dismissed",
	"feature_tag.clicked", "feature_tag.hovered", "feature_tag.text_input",
	"button.tracked",
	"user.identified",
}

// KnownEventType reports whether t is in the catalogue.
func KnownEventType(t string) bool { return slices.Contains(EventTypes, t) }
