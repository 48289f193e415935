package fanout

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/envelope"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// Bounds of one user's remembered answers (a `respondents` record).
const (
	// MaxRespondentAnswers is how many answers are remembered per user; the newest win.
	MaxRespondentAnswers = 100
	// MaxRespondentBytes caps an encoded Respondent: the oldest answers are forgotten until it fits.
	MaxRespondentBytes = 64 << 10
	// maxAnswerBytes caps one answer (key and value): a longer one is shown in its own event's
	// `response.data` but not remembered, so that one essay cannot push out every other answer.
	maxAnswerBytes = 8 << 10
)

// EraseEventType is the event type of an erasure request on `events`: fan-out forgets the user's
// remembered answers and writes a tombstone to `respondents`, in order with the user's events.
// Producers cannot send it (it is not in the catalogue); EraseRespondent writes it.
const EraseEventType = "surveyhooks.respondent_erased"

// respondents is what fan-out remembers of the users of projects that have a Refiner-format
// webhook, per `events` partition this process owns: every answer received for each user, which
// Refiner's `attributes` carries on each later event. `events` is keyed project/user, so one
// user's events are all on one partition and arrive here in order; the state of `events`
// partition p is kept on partition p of the compacted `respondents` topic (kafka.SamePartition),
// written in the batch's transaction, and read back by whichever process next owns p.
//
// As with the de-duplication windows, a batch's changes reach the committed state only once its
// transaction committed: an aborted batch is polled again and applied again to the same state.
type respondents struct {
	topic string
	cfg   kafka.Config
	log   *slog.Logger
	stats *Stats
	adm   *kadm.Client

	mu    sync.Mutex
	parts map[int32]map[string][]byte // committed state: user key → encoded Respondent
	gen   atomic.Uint64               // bumped on every revocation: a rebuild that raced one is discarded

	// The current batch's changes, per partition; a nil Respondent is an erasure (a tombstone).
	pending map[int32]map[string]*pb.Respondent
	// lost is set when the batch needed a partition's state after it was revoked: what the batch
	// would write is built on nothing, so flush fails and the batch is aborted.
	lost bool
}

func newRespondents(cfg kafka.Config, log *slog.Logger, stats *Stats, adm *kadm.Client) *respondents {
	return &respondents{topic: cfg.Topics.Respondents, cfg: cfg, log: log, stats: stats, adm: adm,
		parts: map[int32]map[string][]byte{}, pending: map[int32]map[string]*pb.Respondent{}}
}

// respondentKey is the user's key on `respondents`: the key ingest gives their events (project id
// + "/" + user id, else anonymous id); "" for an event without a user, which has nobody to remember.
func respondentKey(projectID string, u *pb.User) (key, who string) {
	who = u.GetId()
	if who == "" {
		who = u.GetAnonymousId()
	}
	if who == "" {
		return "", ""
	}
	return projectID + "/" + who, who
}

// drop forgets the partitions this process lost: whoever owns them next reads them back.
func (s *respondents) drop(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	ps := lost[s.cfg.Topics.Events]
	if len(ps) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1)
	for _, p := range ps {
		delete(s.parts, p)
	}
}

// prepare loads the state of every partition in need that this process has none of yet, before
// the batch produces anything (a long read must not keep a transaction open).
func (s *respondents) prepare(ctx context.Context, need map[int32]bool) error {
	clear(s.pending)
	s.lost = false
	gen := s.gen.Load()
	for p := range need {
		s.mu.Lock()
		_, ok := s.parts[p]
		s.mu.Unlock()
		if ok {
			continue
		}
		if s.gen.Load() != gen {
			return errRevokedMidBatch
		}
		start := time.Now()
		state, n, err := s.rebuild(ctx, p)
		if err != nil {
			return fmt.Errorf("reading %s/%d: %w", s.topic, p, err)
		}
		s.mu.Lock()
		if s.gen.Load() != gen {
			s.mu.Unlock()
			return errRevokedMidBatch
		}
		s.parts[p] = state
		s.mu.Unlock()
		s.log.Info("respondents read back", "partition", p, "records", n, "users", len(state),
			"took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// rebuild reads partition p of `respondents` from its start to its last stable offset (committed
// records only, tombstones erasing): the state the partition's previous owner committed. Like the
// de-duplication rebuild it never waits for an offset that may never appear.
func (s *respondents) rebuild(ctx context.Context, p int32) (map[string][]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, rebuildTimeout)
	defer cancel()
	state := map[string][]byte{}
	lookup := func(l kadm.ListedOffsets, err error) (int64, error) {
		if err == nil {
			err = l.Error()
		}
		if err != nil {
			return 0, err
		}
		o, ok := l.Lookup(s.topic, p)
		if !ok {
			return 0, fmt.Errorf("%s has no partition %d", s.topic, p)
		}
		return o.Offset, nil
	}
	begin, err := lookup(s.adm.ListStartOffsets(ctx, s.topic))
	if err != nil {
		return nil, 0, fmt.Errorf("listing start offsets: %w", err)
	}
	end, err := lookup(s.adm.ListCommittedOffsets(ctx, s.topic)) // the last stable offset
	if err != nil {
		return nil, 0, fmt.Errorf("listing last stable offsets: %w", err)
	}
	if begin >= end {
		return state, 0, nil
	}
	n, err := readCommitted(ctx, s.cfg, s.topic, p, begin, end, func(r *kgo.Record) {
		if r.Value == nil {
			delete(state, string(r.Key))
		} else {
			// A copy: the value is a slice of the whole fetched batch.
			state[string(r.Key)] = bytes.Clone(r.Value)
		}
	})
	if err != nil {
		return nil, 0, err
	}
	return state, n, nil
}

// current is the user's state as of the batch so far: its pending change, else the committed one.
func (s *respondents) current(p int32, key string) *pb.Respondent {
	if r, ok := s.pending[p][key]; ok {
		return r
	}
	s.mu.Lock()
	state, ok := s.parts[p]
	b := state[key]
	s.mu.Unlock()
	if !ok {
		s.lost = true
		return nil
	}
	if b == nil {
		return nil
	}
	r := &pb.Respondent{}
	if err := proto.Unmarshal(b, r); err != nil {
		s.log.Error("unreadable respondents record: starting the user afresh", "partition", p, "err", err)
		return nil
	}
	return r
}

// update applies ev's answers to its user's state and returns the state (nil: nobody to
// remember, or nothing remembered yet).
func (s *respondents) update(p int32, ev *pb.Event) *pb.Respondent {
	key, who := respondentKey(ev.GetProjectId(), ev.GetUser())
	if key == "" {
		return nil
	}
	cur := s.current(p, key)
	next, changed, skipped := remember(cur, envelope.RefinerAnswers(ev), ev.GetTimeMs(), ev.GetSurvey().GetId())
	s.stats.RespondentAnswersSkipped.Add(int64(skipped))
	if !changed {
		return cur
	}
	next.ProjectId, next.User = ev.GetProjectId(), who
	s.note(p, key, next)
	return next
}

// erase forgets ev's user: a tombstone goes out with the batch.
func (s *respondents) erase(p int32, ev *pb.Event) {
	if key, _ := respondentKey(ev.GetProjectId(), ev.GetUser()); key != "" {
		s.note(p, key, nil)
	}
}

func (s *respondents) note(p int32, key string, r *pb.Respondent) {
	if s.pending[p] == nil {
		s.pending[p] = map[string]*pb.Respondent{}
	}
	s.pending[p][key] = r
}

// flush produces the batch's changes, one record per changed user, on the partition number of
// their `events` partition.
func (s *respondents) flush(produce func(*kgo.Record)) error {
	if s.lost {
		return errRevokedMidBatch
	}
	for p, users := range s.pending {
		for key, r := range users {
			rec := &kgo.Record{Topic: s.topic, Partition: p, Key: []byte(key)}
			if r != nil {
				rec.Value, _ = proto.Marshal(r)
			}
			produce(rec)
			s.stats.RespondentRecords.Add(1)
		}
	}
	return nil
}

// ended applies a committed batch's changes to the committed state.
func (s *respondents) ended(committed bool) {
	if committed {
		s.mu.Lock()
		for p, users := range s.pending {
			state := s.parts[p]
			if state == nil {
				continue // revoked meanwhile: the next owner reads it back
			}
			for key, r := range users {
				if r == nil {
					delete(state, key)
					continue
				}
				state[key], _ = proto.Marshal(r)
			}
		}
		s.mu.Unlock()
	}
	clear(s.pending)
}

// remember adds answers to a user's state: a question answered again moves to the end with its
// new answer; past MaxRespondentAnswers or MaxRespondentBytes the oldest are forgotten; an answer
// over maxAnswerBytes is not remembered (counted in skipped). cur is not modified.
func remember(cur *pb.Respondent, answers []envelope.Answer, timeMs int64, surveyID string) (next *pb.Respondent, changed bool, skipped int) {
	next = &pb.Respondent{}
	if cur != nil {
		next = proto.Clone(cur).(*pb.Respondent)
	}
	for _, a := range answers {
		if len(a.Key)+len(a.Value) > maxAnswerBytes {
			skipped++
			continue
		}
		i := slices.IndexFunc(next.Answers, func(o *pb.RespondentAnswer) bool { return o.Key == a.Key })
		if i >= 0 && string(next.Answers[i].Value) == string(a.Value) && next.Answers[i].SurveyId == surveyID {
			continue // the same answer again (a later event of the same response): nothing new
		}
		if i >= 0 {
			next.Answers = slices.Delete(next.Answers, i, i+1)
		}
		next.Answers = append(next.Answers, &pb.RespondentAnswer{Key: a.Key, Value: a.Value, TimeMs: timeMs, SurveyId: surveyID})
		changed = true
	}
	if !changed {
		return cur, false, skipped
	}
	next.UpdatedAtMs = timeMs
	if n := len(next.Answers) - MaxRespondentAnswers; n > 0 {
		next.Answers = slices.Delete(next.Answers, 0, n)
	}
	for len(next.Answers) > 1 && proto.Size(next) > MaxRespondentBytes-respondentKeyRoom {
		next.Answers = slices.Delete(next.Answers, 0, 1)
	}
	return next, true, skipped
}

// respondentKeyRoom is kept free under MaxRespondentBytes for the project and user ids, set after
// remember.
const respondentKeyRoom = 1 << 10

// eventProject reads the project id (field 2) of an encoded Event without decoding the rest.
func eventProject(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return ""
			}
			return string(v)
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return ""
		}
		b = b[m:]
	}
	return ""
}

// EraseRespondent asks fan-out to forget what it remembers of a user (their survey answers on
// `respondents`): it writes an erasure request to `events`, keyed like the user's events so that
// it is handled in order with them, and fan-out writes the tombstone in its transaction. user is
// the user id, or the anonymous id of a user without one. It returns once Kafka acknowledged the
// request. This is the hook for an erasure job (DESIGN §5): nothing calls it yet but tests.
//
// Writing the tombstone straight to `respondents` would not do: the fan-out process that owns the
// user holds their state in memory and would write it back with the user's next answer.
func EraseRespondent(ctx context.Context, cl *kgo.Client, topics kafka.Topics, projectID, user string) error {
	if projectID == "" || user == "" {
		return fmt.Errorf("erasing a respondent: project and user are required")
	}
	now := time.Now()
	v, err := proto.Marshal(&pb.Event{EventId: "erase_" + uuid.NewString(), ProjectId: projectID,
		EventType: EraseEventType, TimeMs: now.UnixMilli(), ReceivedAtMs: now.UnixMilli(), User: &pb.User{Id: user}})
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: topics.Events, Key: []byte(projectID + "/" + user), Value: v, Timestamp: now}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("erasing respondent %s/%s: %w", projectID, user, err)
	}
	return nil
}
