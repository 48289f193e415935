package fanout_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/fanout"
)

// respondentStack is a broker, a producer writing `events` as ingest does (keyed project/user), a
// reader of every delivery, and fan-out processes started and stopped at will.
type respondentStack struct {
	t   *testing.T
	ctx context.Context
	cfg kafka.Config
	cl  *kgo.Client

	mu  sync.Mutex
	got map[string]*pb.Delivery // "event id→webhook id"
}

func newRespondentStack(t *testing.T) *respondentStack {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	cfg := kafkatest.Start(t)
	require.NoError(t, kafka.EnsureTopics(ctx, cfg))
	cl, err := kafka.NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	s := &respondentStack{t: t, ctx: ctx, cfg: cfg, cl: cl, got: map[string]*pb.Delivery{}}
	rd, err := kafka.NewClient(cfg, kgo.ConsumeTopics(cfg.Topics.Deliveries), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(50*time.Millisecond))
	require.NoError(t, err)
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := rd.PollFetches(rctx)
			if rctx.Err() != nil {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				d := &pb.Delivery{}
				if proto.Unmarshal(r.Value, d) == nil {
					s.mu.Lock()
					s.got[d.EventId+"→"+d.WebhookId] = d
					s.mu.Unlock()
				}
			})
		}
	}()
	t.Cleanup(func() { rcancel(); <-done; rd.Close() })
	return s
}

// fanOut starts a fan-out process; the returned function stops it and waits until it has.
func (s *respondentStack) fanOut() (stop func()) {
	f := fanout.New(fanout.Config{Kafka: s.cfg, Group: "fanout-respondents"}, nil)
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); require.NoError(s.t, <-done) }) }
	s.t.Cleanup(stop)
	return stop
}

func (s *respondentStack) webhook(wh *pb.Webhook) {
	v, _ := proto.Marshal(wh)
	require.NoError(s.t, s.cl.ProduceSync(s.ctx, &kgo.Record{Topic: s.cfg.Topics.Webhooks, Key: []byte(wh.Id), Value: v}).FirstErr())
}

func (s *respondentStack) event(ev *pb.Event) {
	v, _ := proto.Marshal(ev)
	key := ev.ProjectId + "/" + ev.User.GetId()
	require.NoError(s.t, s.cl.ProduceSync(s.ctx, &kgo.Record{Topic: s.cfg.Topics.Events, Key: []byte(key), Value: v}).FirstErr())
}

// delivery waits for the delivery of event id to webhook wh.
func (s *respondentStack) delivery(id, wh string) *pb.Delivery {
	var d *pb.Delivery
	require.Eventually(s.t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		d = s.got[id+"→"+wh]
		return d != nil
	}, 30*time.Second, 20*time.Millisecond, "no delivery of %s to %s", id, wh)
	return d
}

// attributes is what a receiver written against Refiner's document reads: `attributes`.
func (s *respondentStack) attributes(id, wh string) map[string]any {
	var body struct {
		Attributes map[string]any `json:"attributes"`
	}
	require.NoError(s.t, json.Unmarshal(s.delivery(id, wh).Body, &body))
	return body.Attributes
}

// respondentRecords reads every committed record of `respondents`.
func (s *respondentStack) respondentRecords() []*kgo.Record {
	adm := kadm.NewClient(s.cl)
	ends, err := adm.ListEndOffsets(s.ctx, s.cfg.Topics.Respondents)
	require.NoError(s.t, err)
	rd, err := kafka.NewClient(s.cfg, kgo.ConsumeTopics(s.cfg.Topics.Respondents), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxWait(50*time.Millisecond))
	require.NoError(s.t, err)
	defer rd.Close()
	pos := map[int32]int64{}
	caughtUp := func() bool {
		done := true
		ends.Each(func(o kadm.ListedOffset) { done = done && pos[o.Partition] >= o.Offset })
		return done
	}
	var out []*kgo.Record
	for !caughtUp() {
		fs := rd.PollFetches(s.ctx)
		require.NoError(s.t, s.ctx.Err())
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}

func answered(id, project, user, survey string, answers map[string]string) *pb.Event {
	r := &pb.Response{Id: "r_" + id, Completion: "fully_completed"}
	for q, a := range answers {
		v, _ := json.Marshal(a)
		r.Items = append(r.Items, &pb.Item{Question: &pb.Question{Id: q}, Answer: &pb.Answer{
			Fields: []*pb.Field{{Type: "string", Text: a, Value: v}}}})
	}
	return &pb.Event{EventId: id, ProjectId: project, EventType: "survey.completed", TimeMs: time.Now().UnixMilli(),
		Survey: &pb.Survey{Id: survey, Name: survey}, User: &pb.User{Id: user, Traits: []byte(`{"plan":"enterprise"}`)}, Response: r}
}

func displayed(id, project, user string) *pb.Event {
	return &pb.Event{EventId: id, ProjectId: project, EventType: "survey.displayed", TimeMs: time.Now().UnixMilli(),
		Survey: &pb.Survey{Id: "s3", Name: "s3"}, User: &pb.User{Id: user}}
}

// Refiner: "The attribute object contains all traits which we have on record for the given user
// […] as well as all survey responses we've received for a user."
func TestRefinerAttributesCarryEverySurveyAnsweredByTheUser(t *testing.T) {
	s := newRespondentStack(t)
	s.webhook(&pb.Webhook{Id: "wh_refiner", ProjectId: "pr", Enabled: true, EventTypes: []string{"*"}, Format: envelope.FormatRefiner})
	// Another project whose webhooks use other formats: it must pay nothing.
	s.webhook(&pb.Webhook{Id: "wh_envelope", ProjectId: "pe", Enabled: true, EventTypes: []string{"*"}})
	s.webhook(&pb.Webhook{Id: "wh_screeb", ProjectId: "pe", Enabled: true, EventTypes: []string{"*"}, Format: envelope.FormatScreeb})
	stop := s.fanOut()

	s.event(answered("e1", "pr", "u1", "s1", map[string]string{"team_size": "10+"}))
	require.Equal(t, map[string]any{"plan": "enterprise", "team_size": "10+"}, s.attributes("e1", "wh_refiner"))
	s.event(answered("e2", "pr", "u2", "s1", map[string]string{"team_size": "1-5", "u2_only": "x"}))
	s.event(answered("e3", "pr", "u1", "s2", map[string]string{"heard_news": "yes"}))
	require.Equal(t, map[string]any{"plan": "enterprise", "team_size": "10+", "heard_news": "yes"}, s.attributes("e3", "wh_refiner"),
		"the second survey's delivery carries the first survey's answers too")
	require.Equal(t, map[string]any{"plan": "enterprise", "team_size": "1-5", "u2_only": "x"}, s.attributes("e2", "wh_refiner"),
		"another user's answers never leak")

	// Answering a question again: the newest answer wins.
	s.event(answered("e4", "pr", "u1", "s1", map[string]string{"team_size": "50+"}))
	require.Equal(t, map[string]any{"plan": "enterprise", "team_size": "50+", "heard_news": "yes"}, s.attributes("e4", "wh_refiner"))

	for i, id := range []string{"x1", "x2", "x3"} {
		s.event(answered(id, "pe", "u1", "s1", map[string]string{"q": string(rune('a' + i))}))
		s.delivery(id, "wh_envelope")
		s.delivery(id, "wh_screeb")
	}

	// A restart: the new process reads the state back from `respondents`.
	stop()
	stop = s.fanOut()
	preview := answered("preview", "pr", "u1", "s9", map[string]string{"previewed": "no"})
	preview.Preview = true
	s.event(preview)
	s.event(displayed("e5", "pr", "u1"))
	require.Equal(t, map[string]any{"team_size": "50+", "heard_news": "yes"}, s.attributes("e5", "wh_refiner"),
		"the answers survive a restart; a preview's are not remembered")
	s.event(displayed("e6", "pr", "u2"))
	require.Equal(t, map[string]any{"team_size": "1-5", "u2_only": "x"}, s.attributes("e6", "wh_refiner"))

	recs := s.respondentRecords()
	byKey := map[string]int{}
	for _, r := range recs {
		byKey[string(r.Key)]++
		require.Contains(t, []string{"pr/u1", "pr/u2"}, string(r.Key),
			"keys are project/user, and a project without a Refiner-format webhook writes no respondents record")
	}
	require.GreaterOrEqual(t, byKey["pr/u1"], 1)
	require.LessOrEqual(t, byKey["pr/u1"], 3, "one record per event that changed the user's answers, at most (e1, e3, e4)")
	require.Equal(t, 1, byKey["pr/u2"], "events without new answers (e6) write nothing")

	// Each user's state is on the partition number of their `events` partition.
	evParts := map[string]int32{}
	ecl, err := kafka.NewClient(s.cfg, kgo.ConsumeTopics(s.cfg.Topics.Events), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer ecl.Close()
	for len(evParts) < 2 {
		ecl.PollFetches(s.ctx).EachRecord(func(r *kgo.Record) {
			if strings.HasPrefix(string(r.Key), "pr/") {
				evParts[string(r.Key)] = r.Partition
			}
		})
		require.NoError(t, s.ctx.Err())
	}
	for _, r := range recs {
		require.Equal(t, evParts[string(r.Key)], r.Partition, "%s", r.Key)
	}
}

func TestErasedRespondentIsForgottenEverywhere(t *testing.T) {
	s := newRespondentStack(t)
	s.webhook(&pb.Webhook{Id: "wh_refiner", ProjectId: "pr", Enabled: true, EventTypes: []string{"*"}, Format: envelope.FormatRefiner})
	stop := s.fanOut()
	s.event(answered("e1", "pr", "u1", "s1", map[string]string{"team_size": "10+"}))
	s.event(answered("e2", "pr", "u2", "s1", map[string]string{"team_size": "1-5"}))
	s.delivery("e1", "wh_refiner")
	s.delivery("e2", "wh_refiner")

	require.NoError(t, fanout.EraseRespondent(s.ctx, s.cl, s.cfg.Topics, "pr", "u1"))
	s.event(displayed("e3", "pr", "u1"))
	require.Empty(t, s.attributes("e3", "wh_refiner"), "the erased user's answers are gone")
	s.event(displayed("e4", "pr", "u2"))
	require.Equal(t, map[string]any{"team_size": "1-5"}, s.attributes("e4", "wh_refiner"), "other users keep theirs")

	// The erasure is on the topic (a tombstone, the last record of the key), so a restarted
	// process does not bring the answers back, and compaction removes them from the log.
	var last *kgo.Record
	for _, r := range s.respondentRecords() {
		if string(r.Key) == "pr/u1" {
			last = r
		}
	}
	require.NotNil(t, last)
	require.Nil(t, last.Value, "tombstone")
	stop()
	s.fanOut()
	s.event(displayed("e5", "pr", "u1"))
	require.Empty(t, s.attributes("e5", "wh_refiner"))
	s.event(displayed("e6", "pr", "u2"))
	require.Equal(t, map[string]any{"team_size": "1-5"}, s.attributes("e6", "wh_refiner"))
}

// What a killed fan-out left in an open (later aborted) transaction is not read back; what it
// committed is.
func TestRespondentsReadBackOnlyCommittedState(t *testing.T) {
	s := newRespondentStack(t)
	s.webhook(&pb.Webhook{Id: "wh_refiner", ProjectId: "pr", Enabled: true, EventTypes: []string{"*"}, Format: envelope.FormatRefiner})
	state := func(user, q, a string) []byte {
		v, _ := proto.Marshal(&pb.Respondent{ProjectId: "pr", User: user,
			Answers: []*pb.RespondentAnswer{{Key: q, Value: []byte(`"` + a + `"`)}}})
		return v
	}
	txn, err := kafka.NewClient(s.cfg, kgo.TransactionalID("killed-fanout"), kafka.SamePartition(s.cfg.Topics.Respondents))
	require.NoError(t, err)
	defer txn.Close()
	// Written on every partition, so that whichever holds the user's events has it.
	write := func(commit kgo.TransactionEndTry, key string, v []byte) {
		require.NoError(t, txn.BeginTransaction())
		for p := range s.cfg.Partitions {
			txn.Produce(s.ctx, &kgo.Record{Topic: s.cfg.Topics.Respondents, Partition: p, Key: []byte(key), Value: v}, nil)
		}
		require.NoError(t, txn.Flush(s.ctx))
		require.NoError(t, txn.EndTransaction(s.ctx, commit))
	}
	write(kgo.TryCommit, "pr/u1", state("u1", "kept", "yes"))
	write(kgo.TryAbort, "pr/u1", state("u1", "aborted", "leaked"))
	write(kgo.TryCommit, "pr/u2", state("u2", "erased", "gone"))
	write(kgo.TryCommit, "pr/u2", nil)

	s.fanOut()
	s.event(displayed("e1", "pr", "u1"))
	require.Equal(t, map[string]any{"kept": "yes"}, s.attributes("e1", "wh_refiner"))
	s.event(displayed("e2", "pr", "u2"))
	require.Empty(t, s.attributes("e2", "wh_refiner"), "a tombstone erases the user")
}

// Partitions move between fan-out processes (one joins, one leaves): each user's answers move
// with their partition.
func TestRespondentsFollowTheirPartitionAcrossARebalance(t *testing.T) {
	s := newRespondentStack(t)
	s.webhook(&pb.Webhook{Id: "wh_refiner", ProjectId: "pr", Enabled: true, EventTypes: []string{"*"}, Format: envelope.FormatRefiner})
	stopA := s.fanOut()
	users := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}
	for _, u := range users {
		s.event(answered("a_"+u, "pr", u, "s1", map[string]string{"who": u}))
	}
	for _, u := range users {
		s.delivery("a_"+u, "wh_refiner")
	}
	s.fanOut() // B joins: A gives up some partitions
	s.waitForMembers(2)
	for _, u := range users {
		s.event(answered("b_"+u, "pr", u, "s2", map[string]string{"second": u}))
	}
	for _, u := range users {
		require.Equal(t, map[string]any{"plan": "enterprise", "who": u, "second": u}, s.attributes("b_"+u, "wh_refiner"))
	}
	stopA() // B takes every partition
	s.waitForMembers(1)
	for _, u := range users {
		s.event(displayed("c_"+u, "pr", u))
	}
	for _, u := range users {
		require.Equal(t, map[string]any{"who": u, "second": u}, s.attributes("c_"+u, "wh_refiner"))
	}
}

// waitForMembers waits until the fan-out group is stable with n members, each assigned partitions.
func (s *respondentStack) waitForMembers(n int) {
	adm := kadm.NewClient(s.cl)
	require.Eventually(s.t, func() bool {
		gs, err := adm.DescribeGroups(s.ctx, "fanout-respondents")
		if err != nil {
			return false
		}
		g := gs["fanout-respondents"]
		if g.State != "Stable" || len(g.Members) != n {
			return false
		}
		for _, m := range g.Members {
			if c, ok := m.Assigned.AsConsumer(); !ok || len(c.Topics) == 0 || len(c.Topics[0].Partitions) == 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "the group never had %d members with partitions", n)
}
