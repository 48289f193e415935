package operational_test

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/operational"
)

// TestOperationalEventsAreDocumented keeps docs/events.md's "Operational events" honest: every
// type has a row, a heading and its example verbatim, and each example has the shape
// OperationalBody renders (same members, time and time_ms agreeing).
func TestOperationalEventsAreDocumented(t *testing.T) {
	raw, err := os.ReadFile("../../docs/events.md")
	require.NoError(t, err)
	doc := string(raw)
	_, section, ok := strings.Cut(doc, "## Operational events")
	require.True(t, ok, "docs/events.md has no Operational events section")
	for _, o := range operational.Catalogue {
		require.Contains(t, section, "| `"+o.Name+"` | "+o.Description+" |")
		require.Contains(t, section, "### "+o.Name+"\n\n```jsonc\n"+o.Example+"\n```")

		var ex map[string]any
		require.NoError(t, json.Unmarshal([]byte(o.Example), &ex), o.Name)
		require.Equal(t, o.Name, ex["event_type"])
		at, err := time.Parse(time.RFC3339, ex["time"].(string))
		require.NoError(t, err)
		require.EqualValues(t, at.UnixMilli(), ex["time_ms"], "%s: time and time_ms agree", o.Name)

		payload := ex["payload"].(map[string]any)
		var p operational.Payload
		b, _ := json.Marshal(payload)
		require.NoError(t, json.Unmarshal(b, &p))
		var rendered map[string]any
		require.NoError(t, json.Unmarshal(operational.Body(ex["event_id"].(string), o.Name, at.UnixMilli(), p), &rendered))
		require.Equal(t, slices.Sorted(maps.Keys(ex)), slices.Sorted(maps.Keys(rendered)), o.Name)
		require.Equal(t, payload, rendered["payload"], "%s: the example is what OperationalBody writes", o.Name)
		require.True(t, operational.Known(o.Name))
	}
}
