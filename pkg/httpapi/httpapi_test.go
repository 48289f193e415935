package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/httpapi"
)

func TestDecodeStrictNamesTheField(t *testing.T) {
	var v struct {
		Name  string `json:"name"`
		Score int    `json:"score"`
	}
	for body, want := range map[string]*httpapi.Error{
		`{"name":"a","score":"x"}`: {Code: "invalid_field", Field: "score"},
		`{"nmae":"a"}`:             {Code: "unknown_field", Field: "nmae"},
		`{"name":`:                 {Code: "invalid_json"},
		``:                         {Code: "invalid_json"},
	} {
		err := httpapi.DecodeStrict([]byte(body), &v)
		var e *httpapi.Error
		require.ErrorAs(t, err, &e, body)
		require.Equal(t, want.Code, e.Code, body)
		require.Equal(t, want.Field, e.Field, body)
		require.Equal(t, http.StatusBadRequest, e.Status)
	}
}

func TestReadJSONBodyAnswers415And413(t *testing.T) {
	req := httptest.NewRequest("POST", "/", strings.NewReader("x=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, err := httpapi.ReadJSONBody(req, 10)
	var e *httpapi.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, http.StatusUnsupportedMediaType, e.Status)

	req = httptest.NewRequest("POST", "/", strings.NewReader(`{"a":"0123456789"}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	_, err = httpapi.ReadJSONBody(req, 10)
	require.ErrorAs(t, err, &e)
	require.Equal(t, http.StatusRequestEntityTooLarge, e.Status)
}

func TestWriteErrorHidesInternalDetail(t *testing.T) {
	rec := httptest.NewRecorder()
	httpapi.WriteError(rec, errFake("db password is hunter2"))
	require.Equal(t, 500, rec.Code)
	require.NotContains(t, rec.Body.String(), "hunter2")
	require.JSONEq(t, `{"error":{"code":"internal","message":"internal error"}}`, rec.Body.String())
}

type errFake string

func (e errFake) Error() string { return string(e) }
