package delivery

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func TestAReplayCarriesAHeaderNamingWhatItReplays(t *testing.T) {
	configured := map[string]string{"X-Team": "growth"}
	for _, c := range []struct {
		name string
		d    *pb.Delivery
		want map[string]string
	}{
		{"original", &pb.Delivery{}, map[string]string{"X-Team": "growth"}},
		{"replay job", &pb.Delivery{ReplayJobId: "rp_1"}, map[string]string{"X-Team": "growth", ReplayHeader: "rp_1"}},
		{"dead-letter replay", &pb.Delivery{ReplayOf: "msg_1.6"}, map[string]string{"X-Team": "growth", ReplayHeader: "msg_1.6"}},
		{"both: the job", &pb.Delivery{ReplayJobId: "rp_1", ReplayOf: "msg_1.6"}, map[string]string{"X-Team": "growth", ReplayHeader: "rp_1"}},
	} {
		require.Equal(t, c.want, replayHeaders(configured, c.d), c.name)
	}
	require.Equal(t, map[string]string{"X-Team": "growth"}, configured, "the webhook's own headers are not changed")
	require.Equal(t, map[string]string{ReplayHeader: "rp_2"}, replayHeaders(nil, &pb.Delivery{ReplayJobId: "rp_2"}))
}
