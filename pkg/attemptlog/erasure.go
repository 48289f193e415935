package attemptlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Respondent names one person by any of the identifiers a survey platform sends: user id,
// anonymous id, e-mail. Empty fields are not used.
type Respondent struct {
	UserID      string `json:"user_id,omitempty"`
	AnonymousID string `json:"anonymous_id,omitempty"`
	Email       string `json:"email,omitempty"`
}

// Erased is what an erasure removed.
type Erased struct {
	Attempts    uint64 `json:"attempts"`
	DeadLetters uint64 `json:"dead_letters"`
}

// ErrNoIdentifier is returned for a respondent without any identifier.
var ErrNoIdentifier = errors.New("a respondent needs a user_id, anonymous_id or email")

// tokens are the JSON string literals a respondent's identifiers appear as in a rendered body:
// every body format is JSON written by encoding/json, which may escape <, > and & (\u003c…).
// Matching the whole quoted literal, not a substring, keeps user "42" from matching "142".
func (r Respondent) tokens() []string {
	var out []string
	for _, v := range []string{r.UserID, r.AnonymousID, r.Email} {
		if strings.TrimSpace(v) == "" {
			continue
		}
		escaped, _ := json.Marshal(v)
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
		plain := strings.TrimSuffix(b.String(), "\n")
		out = append(out, string(escaped))
		if plain != string(escaped) {
			out = append(out, plain)
		}
	}
	return out
}

// Erase removes a respondent's attempts (request and response included) and dead letters of one
// project and says how many rows went. A row goes when its body holds one of the respondent's
// identifiers as a whole JSON string value, whatever field holds it (the body formats name the
// user differently). The current form deletes with lightweight DELETE, the legacy one with an
// ALTER … DELETE mutation it waits for. The hourly rollup (counts only) and the by-event index
// (ids only) hold no personal data and are kept.
func (s *Store) Erase(ctx context.Context, projectID string, r Respondent) (Erased, error) {
	toks := r.tokens()
	if len(toks) == 0 {
		return Erased{}, ErrNoIdentifier
	}
	if projectID == "" {
		return Erased{}, errors.New("Erase: projectID is required")
	}
	match := func(col string) (string, []any) {
		conds := make([]string, len(toks))
		args := []any{projectID}
		for i, t := range toks {
			conds[i] = "position(" + col + ", ?) > 0"
			args = append(args, t)
		}
		return "project_id = ? AND (" + strings.Join(conds, " OR ") + ")", args
	}
	var out Erased
	where, args := match("request_body")
	n, err := s.deleteWhere(ctx, "delivery_attempts", where, args...)
	if err != nil {
		return out, fmt.Errorf("erasing attempts: %w", err)
	}
	out.Attempts = n
	where, args = match("delivery")
	n, err = s.deleteWhere(ctx, "dead_letters", where, args...)
	if err != nil {
		return out, fmt.Errorf("erasing dead letters: %w", err)
	}
	out.DeadLetters = n
	// The log line names the project and counts only: never the identifiers.
	s.log.Info("respondent erased from the attempt log", "project_id", projectID, "attempts", out.Attempts,
		"dead_letters", out.DeadLetters)
	return out, nil
}
