package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// The event-type registry: GET /v1/event-types lists envelope.Catalogue with, for every body a
// webhook can receive (each payload version, each compatible format), the JSON Schema of that body
// and an example rendered by the same renderer fan-out uses. It is the same for every caller.

type eventTypeOut struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Example     json.RawMessage `json:"example"` // the smallest valid producer event
	Bodies      []eventBodyOut  `json:"bodies"`
}

type eventBodyOut struct {
	Format    string          `json:"format"`
	Version   string          `json:"version"`
	EventName string          `json:"event_name"` // what this body calls the event type
	Schema    envelope.Schema `json:"schema"`
	Example   json.RawMessage `json:"example"`
}

// eventTypesAnswer is the answer, built once: it depends only on the code.
var eventTypesAnswer = sync.OnceValues(func() ([]byte, error) {
	out := make([]eventTypeOut, 0, len(envelope.Catalogue))
	for _, et := range envelope.Catalogue {
		t := eventTypeOut{Name: et.Name, Description: et.Description, Example: json.RawMessage(et.Example)}
		for _, b := range envelope.Bodies() {
			s, err := envelope.BodySchema(et.Name, b)
			if err != nil {
				return nil, fmt.Errorf("schema of %s in %+v: %w", et.Name, b, err)
			}
			ex, err := envelope.Render(envelope.ExampleEvent(et),
				&pb.Webhook{Id: "wh_example", Format: b.Format, PayloadVersion: b.Version})
			if err != nil {
				return nil, fmt.Errorf("example of %s in %+v: %w", et.Name, b, err)
			}
			name, _ := envelope.EventName(b.Format, et.Name)
			t.Bodies = append(t.Bodies, eventBodyOut{Format: b.Format, Version: b.Version, EventName: name, Schema: s, Example: ex})
		}
		out = append(out, t)
	}
	return json.Marshal(map[string]any{"data": out})
})

// anyCredential authorises read-only calls about no project in particular: the admin token, or
// any valid (not revoked, not expired) project key, whatever its scopes.
func (s *Server) anyCredential(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := httpapi.BearerToken(r)
		if !s.isAdmin(tok) {
			if p, _ := s.reg.APIKey(tok, time.Now()); tok == "" || p == nil {
				httpapi.WriteError(w, httpapi.Errorf(http.StatusUnauthorized, "unauthorized", "",
					"the admin token or a valid project API key is required: Authorization: Bearer <api_key>"))
				return
			}
		}
		s.serve(w, r, h)
	}
}

func (s *Server) listEventTypes(w http.ResponseWriter, _ *http.Request) error {
	body, err := eventTypesAnswer()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	return nil
}
