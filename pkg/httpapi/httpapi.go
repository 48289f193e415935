// Package httpapi holds what ingest's and the API's HTTP handlers share: the JSON error shape
// `{"error":{"code","message","field"}}`, bearer-token extraction, and strict JSON decoding with
// a size cap. It never logs request bodies or credentials.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// Error is an API error as the client sees it.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s (field %s)", e.Code, e.Message, e.Field)
	}
	return e.Code + ": " + e.Message
}

// Errorf builds an Error.
func Errorf(status int, code, field, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes err as `{"error":{…}}`; an error that is not an *Error is a 500 whose detail
// is not shown to the client.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	WriteJSON(w, e.Status, map[string]*Error{"error": e})
}

// BearerToken returns the token of an `Authorization: Bearer …` header, or "".
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// ReadJSONBody reads at most limit bytes of a JSON request body, answering 415 for another
// content type and 413 when the body is larger.
func ReadJSONBody(r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "",
				"Content-Type must be application/json, got %q", ct)
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "unreadable_body", "", "reading request body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "", "request body exceeds %d bytes", limit)
	}
	return body, nil
}

// DecodeStrict unmarshals body into v, rejecting unknown fields, with an error naming the field.
func DecodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return JSONError(err)
	}
	if dec.More() {
		return Errorf(http.StatusBadRequest, "invalid_json", "", "unexpected data after the JSON value")
	}
	return nil
}

// JSONError turns an encoding/json error into a 400 naming the field where it can.
func JSONError(err error) *Error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return Errorf(http.StatusBadRequest, "invalid_field", te.Field, "%s must be %s, got %s", te.Field, te.Type, te.Value)
	case errors.As(err, &se):
		return Errorf(http.StatusBadRequest, "invalid_json", "", "malformed JSON at byte %d: %v", se.Offset, se)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return Errorf(http.StatusBadRequest, "unknown_field", f, "unknown field %q", f)
	case errors.Is(err, io.EOF):
		return Errorf(http.StatusBadRequest, "invalid_json", "", "request body is empty")
	default:
		return Errorf(http.StatusBadRequest, "invalid_json", "", "%v", err)
	}
}
