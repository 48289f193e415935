package fanout

import pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"

// OrderingRespondent is the webhook ordering that keeps each respondent's deliveries in order.
const OrderingRespondent = "respondent"

// OrderingKey is the key whose deliveries a webhook with ordering "respondent" receives one at a
// time, in order: the event's response id, else its user id, else its anonymous id, each with
// its kind so that a user id never equals a response id by accident. Empty — no ordering — for
// other webhooks and for an event that carries none of the three. ingest keys `events` so that
// all events sharing this key are on one partition (services/ingest eventsKey), hence read by
// fan-out in the order ingest accepted them.
func OrderingKey(ev *pb.Event, wh *pb.Webhook) string {
	if wh.GetOrdering() != OrderingRespondent {
		return ""
	}
	switch {
	case ev.GetResponse().GetId() != "":
		return "r:" + ev.GetResponse().GetId()
	case ev.GetUser().GetId() != "":
		return "u:" + ev.GetUser().GetId()
	case ev.GetUser().GetAnonymousId() != "":
		return "a:" + ev.GetUser().GetAnonymousId()
	}
	return ""
}
