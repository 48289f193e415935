package envelope

import (
	"encoding/json"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// The "segmanta" format. Segmanta's document (seeds/002) describes two hooks, "on question
// completion" and "on survey completion", with "the answer data that has changed/been given, with
// supporting metadata to allow you to correlate this webhook request", JSON only, and shows no
// body. This shape is ours, documented in docs/payloads.md:
//
//	{event, event_id, timestamp, survey{id, name},
//	 session{id, locale, completion, started_at, completed_at, parameters},
//	 respondent{id, email, name, attributes},
//	 answer{…}        (question.completed: the answer just given)
//	 answers[{…}]}    (survey.completed: every answer of the session)
//
// where an answer is {question_id, question_type, question_title, value, text, answered_at}.

func renderSegmanta(ev *pb.Event, wh *pb.Webhook) ([]byte, error) {
	name := eventName(FormatSegmanta, ev.GetEventType())
	s, r, u := ev.GetSurvey(), ev.GetResponse(), ev.GetUser()
	completed := r.GetCompletedAtMs()
	if completed == 0 && name == "survey.completed" {
		completed = ev.GetTimeMs()
	}
	body := object{
		{"event", name},
		{"event_id", ev.GetEventId()},
		{"timestamp", timeString(ev.GetTimeMs())},
		{"survey", object{{"id", s.GetId()}, {"name", s.GetName()}}},
		{"session", object{{"id", r.GetId()}, {"locale", r.GetLocale()}, {"completion", r.GetCompletion()},
			{"started_at", nullTime(r.GetTimeMs(), isoMillis)}, {"completed_at", nullTime(completed, isoMillis)},
			{"parameters", objectOrEmpty(r.GetHiddenFields())}}},
		{"respondent", object{{"id", u.GetId()}, {"email", u.GetEmail()}, {"name", u.GetName()},
			{"attributes", objectOrEmpty(chosenTraits(u.GetTraits(), wh.GetUserProperties()))}}},
	}
	if name == "survey.completed" {
		answers := []object{}
		for _, it := range allItems(ev) {
			answers = append(answers, segmantaAnswer(it))
		}
		body = append(body, member{"answers", answers})
	} else if it := currentItem(ev); it != nil {
		body = append(body, member{"answer", segmantaAnswer(it)})
	}
	if e := ev.GetElement(); e != nil && ev.GetEventType() != "form.submitted" {
		body = append(body, member{"element", object{{"type", e.Type}, {"id", e.Id}, {"name", e.Name},
			{"action", e.Action}, {"text", e.Text}}})
	}
	return json.Marshal(body)
}

func segmantaAnswer(it *pb.Item) object {
	q, a := it.GetQuestion(), it.GetAnswer()
	return object{{"question_id", q.GetId()}, {"question_type", q.GetType()}, {"question_title", q.GetTitle()},
		{"value", answerJSON(a)}, {"text", answerText(a)}, {"answered_at", nullTime(a.GetRepliedAtMs(), isoMillis)}}
}
