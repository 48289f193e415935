package fanout

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/kafka"
)

// readCommitted reads partition p of topic from begin up to end (exclusive), committed records
// only, and calls fn for each; it returns how many it gave fn. It stops as soon as a fetch says
// the partition's last stable offset is reached, so it never waits for a record that may never
// come (the end of a transaction aborted without a marker). Both of fan-out's rebuilds — the
// de-duplication window and the respondents' state — read their partition back with it.
func readCommitted(ctx context.Context, cfg kafka.Config, topic string, p int32, begin, end int64, fn func(*kgo.Record)) (int, error) {
	cl, err := kafka.NewClient(cfg,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(begin)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // markers move the position past aborted records
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	n, pos := 0, begin
	for pos < end {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := fetches.Err(); err != nil {
			return 0, err
		}
		caughtUp := false
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				pos = max(pos, r.Offset+1)
				if r.Offset >= end || r.Attrs.IsControl() {
					continue
				}
				n++
				fn(r)
			}
			if fp.LastStableOffset >= 0 && pos >= fp.LastStableOffset {
				caughtUp = true
			}
		})
		if caughtUp {
			break
		}
	}
	return n, nil
}
