package api

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
)

func TestFailedErasureMessagesNameNoIdentifier(t *testing.T) {
	who := attemptlog.Respondent{UserID: "u-42", Email: "Ada@Example.com", Also: []string{"c0ffee"}}
	msg := redact(`erasing attempts: code: 62, message: Syntax error: ... position(request_body, '"u-42"') OR positionCaseInsensitive(request_body, '"ada@example.COM"') OR position(request_body, '"c0ffee"')`, who)
	require.NotContains(t, msg, "u-42")
	require.NotContains(t, msg, "c0ffee")
	require.NotContains(t, msg, "example")
	require.Contains(t, msg, `position(request_body, '"[identifier]"')`)
	require.Equal(t, "nothing to hide", redact("nothing to hide", attemptlog.Respondent{}))
}
