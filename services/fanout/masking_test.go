package fanout_test

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

func emailed(id, project, email string) *pb.Event {
	ev := nps(id, 9)
	ev.ProjectId, ev.User.Email = project, email
	return ev
}

func userEmail(t *testing.T, d *pb.Delivery) string {
	t.Helper()
	var b struct {
		Payload struct {
			User struct {
				Email *string `json:"email"`
			} `json:"user"`
		} `json:"payload"`
	}
	require.NoError(t, json.Unmarshal(d.Body, &b), string(d.Body))
	require.NotNil(t, b.Payload.User.Email, "payload.user.email is in %s", d.Body)
	return *b.Payload.User.Email
}

// The "done when": a webhook with a masking rule receives a hashed e-mail while another
// receives it in clear; the hash is the same for the same e-mail within a project, and another
// project's hash of it differs.
func TestHashRuleHidesTheEmailFromOneWebhookOnly(t *testing.T) {
	p := startPipeline(t)
	hash := []*pb.MaskingRule{{Path: "payload.user.email", Action: "hash"}}
	p.webhooks(
		&pb.Webhook{Id: "wh_hashed", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1, Masking: hash},
		&pb.Webhook{Id: "wh_clear", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1},
		&pb.Webhook{Id: "wh_masked", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1,
			Masking: []*pb.MaskingRule{{Path: "payload.user.email", Action: "mask", Keep: 3}, {Path: "payload.user.id", Action: "drop"}}},
		&pb.Webhook{Id: "wh_other_project", ProjectId: "p2", Enabled: true, EventTypes: []string{"*"}, Revision: 1, Masking: hash},
	)
	p.events(emailed("e1", "p1", "ada@example.com"), emailed("e2", "p1", "ada@example.com"),
		emailed("e3", "p1", "grace@example.com"), emailed("e4", "p2", "ada@example.com"))
	ds := p.deliveries(3*3 + 1)
	require.Len(t, ds, 10)

	clear, hashed, masked := byEvent(ds, "wh_clear"), byEvent(ds, "wh_hashed"), byEvent(ds, "wh_masked")
	require.Equal(t, "ada@example.com", userEmail(t, clear["e1"]))
	require.Equal(t, "grace@example.com", userEmail(t, clear["e3"]))

	h1, h2, h3 := userEmail(t, hashed["e1"]), userEmail(t, hashed["e2"]), userEmail(t, hashed["e3"])
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{64}$`), h1)
	require.Equal(t, h1, h2, "the same e-mail hashes the same way within a project")
	require.NotEqual(t, h1, h3)
	for _, d := range hashed {
		require.NotContains(t, string(d.Body), "@example.com")
	}
	require.NotEqual(t, h1, userEmail(t, byEvent(ds, "wh_other_project")["e4"]), "another project hashes differently")

	require.Equal(t, "ada***", userEmail(t, masked["e1"]))
	require.NotContains(t, string(masked["e1"].Body), `"u_e1"`, "the dropped user id")
	require.Contains(t, string(clear["e1"].Body), `"u_e1"`)
	require.Equal(t, 3, p.f.CachedRenderers(), "rules are compiled once per webhook revision")
}

// Without key material, a hash rule cannot be applied: nothing is sent in clear instead.
func TestHashRuleWithoutAKeySendsNothing(t *testing.T) {
	p := startPipeline(t, func(c *fanout.Config) { c.EncryptionKey = "" })
	p.webhooks(
		&pb.Webhook{Id: "wh_hashed", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1,
			Masking: []*pb.MaskingRule{{Path: "payload.user.email", Action: "hash"}}},
		&pb.Webhook{Id: "wh_clear", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}},
	)
	p.events(emailed("e1", "p1", "ada@example.com"))
	ds := p.deliveries(1)
	require.Len(t, ds, 1)
	require.Equal(t, "wh_clear", ds[0].WebhookId)
	require.EqualValues(t, 1, p.f.Stats.BadConfig.Load())
}

func TestABadEncryptionKeyStopsFanOutNamingTheVariable(t *testing.T) {
	cfg := fanout.Config{Group: "g", DedupWindow: time.Hour, DedupMaxIDs: 1000, EncryptionKey: "c2hvcnQ="}
	require.ErrorContains(t, cfg.Validate(), "SURVEYHOOKS_ENCRYPTION_KEY")
}
