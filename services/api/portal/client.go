package portal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
)

// call runs an API operation for the session's project and decodes its answer into out (nil: ignore).
func (p *Portal) call(r *http.Request, s *session, method, target string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encoding %s %s: %w", method, target, err)
		}
	}
	status, resp := p.cfg.Backend.Do(r.Context(), s.ProjectID, method, target, body)
	if status >= 300 {
		var e struct {
			Error httpapi.Error `json:"error"`
		}
		if err := json.Unmarshal(resp, &e); err != nil || e.Error.Message == "" {
			return fmt.Errorf("%s %s answered %d: %.200s", method, target, status, resp)
		}
		e.Error.Status = status
		return &e.Error
	}
	if out == nil || len(bytes.TrimSpace(resp)) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp, out); err != nil {
		return fmt.Errorf("decoding %s %s: %w", method, target, err)
	}
	return nil
}

func notFoundError(what, id string) error {
	return &httpapi.Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf("%s %q not found", what, id)}
}

// The API's answers, as far as the pages use them.

// query builds a target with its non-empty parameters.
func query(path string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}
