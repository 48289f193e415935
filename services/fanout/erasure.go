package fanout

import (
	"github.com/surveyhooks/surveyhooks/pkg/masking"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// respondentHashes names ev's respondent on its deliveries (Delivery.respondent_hashes) by keyed
// hashes of their identifiers, so that the delivery workers can drop the deliveries of a
// respondent erased meanwhile (the `erasures` topic) without reading bodies. Without the key
// material (SURVEYHOOKS_ENCRYPTION_KEY) there are none, and an erasure cannot stop them. The
// hashes are computed for the event's first delivery and kept in *done for the others.
func (f *FanOut) respondentHashes(ev *pb.Event, done *[]string) []string {
	if *done != nil || f.material == nil {
		return *done
	}
	u := ev.GetUser()
	*done = masking.RespondentHashes(masking.ProjectKey(f.material, ev.ProjectId), u.GetId(), u.GetAnonymousId(), u.GetEmail())
	return *done
}
