package ingest

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRecordWithoutEventIDGetsTheSameIDEachTimeItIsProcessed(t *testing.T) {
	r := &kgo.Record{Topic: "survey-events", Partition: 3, Offset: 1234}
	id := recordEventID(r)
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, id, "a name-based (version 5) UUID")
	require.Equal(t, id, recordEventID(&kgo.Record{Topic: "survey-events", Partition: 3, Offset: 1234}), "reprocessing gives the same id")
	require.NotEqual(t, id, recordEventID(&kgo.Record{Topic: "survey-events", Partition: 3, Offset: 1235}))
	require.NotEqual(t, id, recordEventID(&kgo.Record{Topic: "survey-events", Partition: 4, Offset: 1234}))
	require.NotEqual(t, newEventID(), newEventID(), "HTTP events without an id get a random one each")
}
