package fanout_test

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/masking"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

// Every delivery names its respondent by keyed hashes only, the ones an erasure of that person
// publishes, so a delivery worker can drop it without reading the body.
func TestDeliveriesCarryTheRespondentsKeyedHashesNotTheIdentifiers(t *testing.T) {
	p := startPipeline(t)
	p.webhooks(&pb.Webhook{Id: "wh_1", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1},
		&pb.Webhook{Id: "wh_2", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1})
	ev := emailed("e1", "p1", "Ada@Example.com")
	ev.User.AnonymousId = "anon-7"
	p.events(ev)
	ds := p.deliveries(2)
	require.Len(t, ds, 2)

	material, err := base64.StdEncoding.DecodeString(testEncryptionKey)
	require.NoError(t, err)
	key := masking.ProjectKey(material, "p1")
	want := masking.RespondentHashes(key, ev.User.Id, "anon-7", "ada@example.com")
	require.Len(t, want, 3)
	for _, d := range ds {
		require.ElementsMatch(t, want, d.RespondentHashes, d.WebhookId)
		d.Body = nil
		wire, err := proto.Marshal(d)
		require.NoError(t, err)
		for _, id := range []string{ev.User.Id, "anon-7", "Ada@Example.com", "ada@example.com"} {
			require.NotContains(t, string(wire), id, "only the body (cleared here) holds an identifier")
		}
	}
}

// Without key material there is nothing to hash with: deliveries carry no hashes.
func TestDeliveriesCarryNoHashesWithoutAKey(t *testing.T) {
	p := startPipeline(t, func(c *fanout.Config) { c.EncryptionKey = "" })
	p.webhooks(&pb.Webhook{Id: "wh_1", ProjectId: "p1", Enabled: true, EventTypes: []string{"*"}, Revision: 1})
	p.events(emailed("e1", "p1", "ada@example.com"))
	ds := p.deliveries(1)
	require.Len(t, ds, 1)
	require.Empty(t, ds[0].RespondentHashes)
}
