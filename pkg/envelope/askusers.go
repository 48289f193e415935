package envelope

import (
	"encoding/json"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// The "askusers" format: Ask Users' webhook body (seeds/003):
// {event_type, event_id, timestamp, data{response{id, survey_id, response_data, completion_status,
// created_at}, survey{id, title}}}. A form submission has the same shape under the names Ask Users'
// event gives it: data{submission{id, form_id, submission_data, status, created_at}, form{id, title}}
// (the document shows no sample for it). Ask Users says the body carries "respondent information":
// data.respondent{id, email, name} when the event has a user.

type askUsersBody struct {
	EventType string `json:"event_type"`
	EventID   string `json:"event_id"`
	Timestamp string `json:"timestamp"`
	Data      object `json:"data"`
}

func renderAskUsers(ev *pb.Event, _ *pb.Webhook) ([]byte, error) {
	r, s := ev.GetResponse(), ev.GetSurvey()
	created := r.GetCompletedAtMs()
	if created == 0 {
		created = ev.GetTimeMs()
	}
	answers := answersByQuestion(allItems(ev), func(a *pb.Answer) any { return answerJSON(a) })
	status := askUsersStatus(ev)
	data := object{}
	if ev.GetEventType() == "form.submitted" {
		data = append(data,
			member{"submission", object{{"id", r.GetId()}, {"form_id", s.GetId()}, {"submission_data", answers},
				{"status", status}, {"created_at", timeString(created)}}},
			member{"form", object{{"id", s.GetId()}, {"title", s.GetName()}}})
	} else {
		if r != nil || len(answers) > 0 {
			data = append(data, member{"response", object{{"id", r.GetId()}, {"survey_id", s.GetId()},
				{"response_data", answers}, {"completion_status", status}, {"created_at", timeString(created)}}})
		}
		if s != nil {
			data = append(data, member{"survey", object{{"id", s.Id}, {"title", s.Name}}})
		}
	}
	if u := ev.GetUser(); u != nil {
		data = append(data, member{"respondent", object{{"id", u.Id}, {"email", u.Email}, {"name", u.Name}}})
	}
	if e := ev.GetElement(); e != nil && ev.GetEventType() != "form.submitted" {
		// Flows, checklists, tags and buttons have no place in Ask Users' body; keep what they were.
		data = append(data, member{"element", object{{"type", e.Type}, {"id", e.Id}, {"name", e.Name},
			{"action", e.Action}, {"text", e.Text}}})
	}
	return json.Marshal(askUsersBody{EventType: eventName(FormatAskUsers, ev.GetEventType()), EventID: ev.GetEventId(),
		Timestamp: timeString(ev.GetTimeMs()), Data: data})
}

// askUsersStatus is completion_status: "completed", "partial" or "not_started".
func askUsersStatus(ev *pb.Event) string {
	switch ev.GetResponse().GetCompletion() {
	case "fully_completed":
		return "completed"
	case "partially_completed":
		return "partial"
	case "not_started":
		return "not_started"
	}
	switch ev.GetEventType() {
	case "survey.completed", "form.submitted":
		return "completed"
	case "survey.displayed":
		return "not_started"
	}
	return "partial"
}
