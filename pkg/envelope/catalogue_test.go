package envelope_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
)

// TestCatalogueTableIsDocumented requires the catalogue table of docs/events.md to be the one
// the code's Catalogue gives (an element family on one row), so the page cannot drift from what
// ingest requires.
func TestCatalogueTableIsDocumented(t *testing.T) {
	var b strings.Builder
	b.WriteString("| event type | also requires |\n|---|---|\n")
	for i := 0; i < len(envelope.Catalogue); {
		et := envelope.Catalogue[i]
		names := []string{"`" + et.Name + "`"}
		j := i + 1
		for ; et.Element != "" && j < len(envelope.Catalogue) && envelope.Catalogue[j].Element == et.Element; j++ {
			names = append(names, "`"+envelope.Catalogue[j].Name+"`")
		}
		b.WriteString("| " + strings.Join(names, ", ") + " | " + et.Requires() + " |\n")
		i = j
	}
	doc, err := os.ReadFile("../../docs/events.md")
	require.NoError(t, err)
	require.Contains(t, string(doc), b.String(), "the catalogue table in docs/events.md differs from envelope.Catalogue; it should read:\n%s", b.String())
}

func TestEveryCatalogueEntryIsDescribed(t *testing.T) {
	for _, et := range envelope.Catalogue {
		require.NotEmpty(t, et.Description, et.Name)
		require.Contains(t, et.Example, `"event_type":"`+et.Name+`"`, et.Name)
		got, ok := envelope.LookupEventType(et.Name)
		require.True(t, ok)
		require.Equal(t, et, got)
		require.True(t, envelope.KnownEventType(et.Name))
	}
	require.False(t, envelope.KnownEventType(envelope.TestEventType), "only Send Test makes %s", envelope.TestEventType)
}
