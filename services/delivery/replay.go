package delivery

import (
	"cmp"
	"maps"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// ReplayHeader tells a receiver a request is a replay, and of what: the replay job
// (Delivery.replay_job_id) or the dead letter (Delivery.replay_of).
const ReplayHeader = "surveyhooks-replay"

// replayHeaders are the webhook's extra headers, plus ReplayHeader on a replay.
func replayHeaders(h map[string]string, d *pb.Delivery) map[string]string {
	of := cmp.Or(d.ReplayJobId, d.ReplayOf)
	if of == "" {
		return h
	}
	out := make(map[string]string, len(h)+1)
	maps.Copy(out, h)
	out[ReplayHeader] = of
	return out
}
