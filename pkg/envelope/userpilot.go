package envelope

import (
	"encoding/json"
	"strings"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// The "userpilot" format: Userpilot's webhook body (seeds/004):
// {type, timestamp (seconds), app_token, data{type, action, id, hostname, pathname, user, company}},
// with NPS events carrying the survey question, score, follow-up question and feedback instead of
// type and id. user and company carry only the properties the webhook chose, as Userpilot does.

// userpilotKinds is data.type per Userpilot event family (the part of its name before the dot).
var userpilotKinds = map[string]string{
	"flows":                "flow",
	"checklist":            "checklist",
	"forms":                "forms",
	"feature_tag":          "feature_tag",
	"button_tracked_event": "button_tracked_event",
}

func renderUserpilot(ev *pb.Event, wh *pb.Webhook) ([]byte, error) {
	name := eventName(FormatUserpilot, ev.GetEventType())
	family, action, _ := strings.Cut(name, ".")
	ctx := ev.GetContext()
	data := object{}
	if family == "nps" {
		data = append(data, member{"action", action})
		if n := ev.GetNps(); n != nil {
			if n.Question != "" {
				data = append(data, member{"survey_question", n.Question})
			}
			if n.Score != nil {
				data = append(data, member{"score", *n.Score})
			}
			if n.FollowUpQuestion != "" {
				data = append(data, member{"follow_up_question", n.FollowUpQuestion})
			}
			if n.Feedback != "" {
				data = append(data, member{"feedback", n.Feedback})
			}
		}
	} else {
		kind, ok := userpilotKinds[family]
		if !ok {
			kind = family // an event Userpilot has no name for: its own family and action
		}
		data = append(data, member{"type", kind}, member{"action", action}, member{"id", idValue(userpilotID(ev))})
	}
	data = append(data, member{"hostname", ctx.GetHostname()}, member{"pathname", ctx.GetPathname()})
	if t := ev.GetElement().GetText(); t != "" {
		data = append(data, member{"text", t})
	}
	u := ev.GetUser()
	user := object{{"user_id", u.GetId()}, {"name", u.GetName()}, {"email", u.GetEmail()}}
	user = append(user, chosenMembers(u.GetTraits(), wh.GetUserProperties(), "user_id", "name", "email")...)
	data = append(data, member{"user", user})
	if a := ev.GetAccount(); a != nil {
		company := object{{"id", a.Id}, {"name", a.Name}}
		company = append(company, chosenMembers(a.Traits, wh.GetCompanyProperties(), "id", "name")...)
		data = append(data, member{"company", company})
	}
	return json.Marshal(object{
		{"type", name},
		{"timestamp", ev.GetTimeMs() / 1000},
		{"app_token", ev.GetProjectId()},
		{"data", data},
	})
}

// userpilotID is the id of what the event is about: the element (flow, checklist, tag, button,
// form), else the survey.
func userpilotID(ev *pb.Event) string {
	if id := ev.GetElement().GetId(); id != "" {
		return id
	}
	return ev.GetSurvey().GetId()
}
