package attemptlog_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/attemptlog"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

// An engine opens a store on a database of its own, with the given options.
type engine struct {
	name string
	form attemptlog.Form // the schema form the engine must choose
	open func(t testing.TB, opts ...attemptlog.Option) *attemptlog.Store
}

// engines lists every engine the conformance suite runs on: the server at CLICKHOUSE_ADDR (Debian's
// 18.16 in `make test`) here, and libchdb (ClickHouse 26.x, in-process) when built with -tags chdb.
var engines = []engine{{name: "server", form: attemptlog.Legacy, open: openServer}}

func openServer(t testing.TB, opts ...attemptlog.Option) *attemptlog.Store {
	addr := os.Getenv("CLICKHOUSE_ADDR")
	if addr == "" {
		t.Skip("CLICKHOUSE_ADDR is not set")
	}
	ctx := context.Background()
	db := testDatabase(t)
	st, err := attemptlog.Open(ctx, addr, db, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	if v := st.ServerVersion(); !strings.HasPrefix(v, "18.") {
		t.Logf("server at %s is %s, not 18.16: the legacy form is expected only there", addr, v)
	}
	return st
}

func testDatabase(t testing.TB) string {
	name := strings.NewReplacer("/", "_", "-", "_", "#", "_").Replace(strings.ToLower(t.Name()))
	return fmt.Sprintf("t_%s_%d", name[:min(len(name), 40)], time.Now().UnixNano()%1_000_000)
}

// TestConformance runs the schema and every query of the package on every engine: the same rows
// in, the same answers out.
func TestConformance(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Run("Schema", func(t *testing.T) { testSchema(t, e) })
			t.Run("Attempts", func(t *testing.T) { testAttempts(t, e) })
			t.Run("Stats", func(t *testing.T) { testStats(t, e) })
			t.Run("ConcurrencyLimits", func(t *testing.T) { testConcurrencyLimits(t, e) })
			t.Run("DeadLetters", func(t *testing.T) { testDeadLetters(t, e) })
			t.Run("Retention", func(t *testing.T) { testRetention(t, e) })
			t.Run("Erasure", func(t *testing.T) { testErasure(t, e) })
			t.Run("Replay", func(t *testing.T) { testReplay(t, e) })
		})
	}
}

func migrated(t testing.TB, e engine, opts ...attemptlog.Option) *attemptlog.Store {
	st := e.open(t, opts...)
	if e.name == "server" && !strings.HasPrefix(st.ServerVersion(), "18.") {
		e.form = st.Form()
	}
	require.Equal(t, e.form, st.Form(), "schema form chosen on %s", st.ServerVersion())
	require.NoError(t, st.Migrate(context.Background()))
	return st
}

func testSchema(t *testing.T, e engine) {
	ctx := context.Background()
	st := migrated(t, e)
	require.NoError(t, st.Migrate(ctx), "the schema applies twice")
	require.NoError(t, st.Ping(ctx))
}

var base = time.Now().UTC().Truncate(time.Hour).Add(-5 * time.Hour)

func attempt(id, project, webhook, event string, at time.Time, status int, class pb.OutcomeClass) *pb.Attempt {
	return &pb.Attempt{AttemptId: id, DeliveryId: "dl-" + event + "-" + webhook, EventId: event, WebhookId: webhook,
		ProjectId: project, EventType: "nps.scored", Attempt: 1, StartedAtMs: at.UnixMilli(), LatencyUs: int64(status) * 1000,
		Outcome:         &pb.Outcome{Class: class, Disposition: pb.Disposition_DISPOSITION_DELIVERED, StatusCode: int32(status)},
		RequestUrl:      "https://example.com/hook?q='x'",
		RequestHeaders:  map[string]string{"Webhook-Id": "dl-" + event, "Content-Type": "application/json"},
		RequestBody:     []byte(`{"event_id":"` + event + `","payload":{"user":{"id":"u-1","email":"ada@example.com"},"note":"it's a \\ back"}}`),
		ResponseHeaders: map[string]string{"X-Ok": "1"}, ResponseBody: []byte("ok\n\x00\xff"), Worker: "w1", TraceId: "tr"}
}

func src(n int) []attemptlog.Source {
	out := make([]attemptlog.Source, n)
	for i := range out {
		out[i] = attemptlog.Source{Partition: int32(i % 2), Offset: int64(100 + i)}
	}
	return out
}

func ids(as []attemptlog.AttemptSummary) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.AttemptID
	}
	return out
}

func testAttempts(t *testing.T, e engine) {
	ctx := context.Background()
	st := migrated(t, e)
	ok, retry := pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE
	in := []*pb.Attempt{
		attempt("a1", "p1", "wh1", "e1", base.Add(1*time.Minute), 200, ok),
		attempt("a2", "p1", "wh1", "e2", base.Add(2*time.Minute), 503, retry),
		attempt("a3", "p1", "wh2", "e1", base.Add(3*time.Minute), 200, ok),
		attempt("a4", "p1", "wh1", "e2", base.Add(4*time.Minute+500*time.Millisecond), 200, ok),
		attempt("a5", "p2", "wh9", "e1", base.Add(5*time.Minute), 200, ok),
	}
	require.NoError(t, st.InsertAttempts(ctx, in, src(len(in))))

	all, next, err := st.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: "p1"})
	require.NoError(t, err)
	require.Equal(t, []string{"a4", "a3", "a2", "a1"}, ids(all), "newest first, one project only")
	require.Empty(t, next)
	require.Equal(t, base.Add(4*time.Minute+500*time.Millisecond), all[0].StartedAt, "milliseconds kept")
	require.Equal(t, 200.0, all[0].LatencyMs)

	for _, c := range []struct {
		name string
		q    attemptlog.AttemptQuery
		want []string
	}{
		{"webhook", attemptlog.AttemptQuery{WebhookID: "wh2"}, []string{"a3"}},
		{"event id", attemptlog.AttemptQuery{EventID: "e2"}, []string{"a4", "a2"}},
		{"event type", attemptlog.AttemptQuery{EventType: "survey.completed"}, []string{}},
		{"outcome", attemptlog.AttemptQuery{Outcome: "http_retryable"}, []string{"a2"}},
		{"status", attemptlog.AttemptQuery{StatusCode: 503}, []string{"a2"}},
		{"from/to", attemptlog.AttemptQuery{From: base.Add(2 * time.Minute), To: base.Add(4 * time.Minute)}, []string{"a3", "a2"}},
	} {
		c.q.ProjectID = "p1"
		got, _, err := st.ListAttempts(ctx, c.q)
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, ids(got), c.name)
	}

	var paged []string
	cursor := ""
	for range 3 {
		page, next, err := st.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: "p1", Limit: 3, Cursor: cursor})
		require.NoError(t, err)
		paged = append(paged, ids(page)...)
		if cursor = next; cursor == "" {
			break
		}
	}
	require.Equal(t, []string{"a4", "a3", "a2", "a1"}, paged, "cursors walk every row once")
	_, _, err = st.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: "p1", Cursor: "!!"})
	require.ErrorIs(t, err, attemptlog.ErrBadCursor)

	d, err := st.GetAttempt(ctx, "p1", "a2")
	require.NoError(t, err)
	require.Equal(t, in[1].RequestUrl, d.RequestURL)
	require.Equal(t, string(in[1].RequestBody), d.RequestBody, "quotes and backslashes survive")
	require.Equal(t, string(in[1].ResponseBody), d.ResponseBody, "bytes survive")
	require.Equal(t, in[1].RequestHeaders, d.RequestHeaders)
	require.Equal(t, 503, d.StatusCode)
	_, err = st.GetAttempt(ctx, "p2", "a2")
	require.ErrorIs(t, err, attemptlog.ErrNotFound, "another project's attempt")

	stored, err := st.StoredAttemptIDs(ctx, []*pb.Attempt{in[0], attempt("zz", "p1", "wh1", "e1", base, 200, ok)})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"a1": true}, stored)

	offs, err := st.MaxOffsets(ctx, "delivery_attempts")
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 104, 1: 103}, offs)
}

func testStats(t *testing.T, e engine) {
	ctx := context.Background()
	st := migrated(t, e)
	ok, retry := pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE
	in := []*pb.Attempt{
		attempt("s1", "p1", "wh1", "e1", base.Add(10*time.Minute), 200, ok),
		attempt("s2", "p1", "wh1", "e2", base.Add(20*time.Minute), 503, retry),
		attempt("s3", "p1", "wh1", "e3", base.Add(70*time.Minute), 200, ok),
		attempt("s4", "p1", "wh1", "e4", base.Add(190*time.Minute), 404, pb.OutcomeClass_OUTCOME_CLASS_HTTP_PERMANENT),
		attempt("s5", "p2", "wh1", "e5", base.Add(10*time.Minute), 200, ok),
	}
	require.NoError(t, st.InsertAttempts(ctx, in, src(len(in))))

	hourly, err := st.Stats(ctx, attemptlog.StatsQuery{ProjectID: "p1", WebhookID: "wh1", From: base, To: base.Add(4 * time.Hour), Step: time.Hour})
	require.NoError(t, err)
	require.Len(t, hourly, 3)
	require.Equal(t, base, hourly[0].Start)
	require.Equal(t, uint64(2), hourly[0].Count)
	require.Equal(t, uint64(1), hourly[0].Success)
	require.Equal(t, uint64(1), hourly[0].Status5xx)
	require.Equal(t, 0.5, hourly[0].SuccessRate)
	require.Equal(t, base.Add(3*time.Hour), hourly[2].Start)
	require.Equal(t, uint64(1), hourly[2].Status4xx)
	require.InDelta(t, 404.0, hourly[2].P99Ms, 1)

	_, err = st.Stats(ctx, attemptlog.StatsQuery{ProjectID: "p1", WebhookID: "wh1", From: base, To: base.Add(time.Hour), Step: time.Minute})
	require.Error(t, err, "steps are whole hours")

	totals, err := st.EndpointTotals(ctx, base)
	require.NoError(t, err)
	got := map[string]attemptlog.EndpointTotals{}
	for _, tt := range totals {
		got[tt.ProjectID+"/"+tt.WebhookID] = tt
	}
	require.Len(t, got, 2)
	require.Equal(t, uint64(4), got["p1/wh1"].Attempts)
	require.Equal(t, uint64(2), got["p1/wh1"].Success)
	require.Equal(t, uint64(1), got["p2/wh1"].Attempts)
}

// testConcurrencyLimits: wh1's sent attempts of the first hour had limits 20, 8, 12 and 14 (the
// last two in the same millisecond: the greater attempt id is the later); later in that hour come
// attempts that were not sent (circuit open, erased, skipped), which carry a limit or 0 but count
// for nothing; another webhook, another project and the next hour have their own. Over more than
// MinLimitRange only the latest is read.
func testConcurrencyLimits(t *testing.T, e engine) {
	ctx := context.Background()
	st := migrated(t, e)
	mk := func(id, project, webhook string, at time.Duration, class pb.OutcomeClass, status, limit int) *pb.Attempt {
		a := attempt(id, project, webhook, "e-"+id, base.Add(at), status, class)
		a.ConcurrencyLimit = int32(limit)
		return a
	}
	ok, retry := pb.OutcomeClass_OUTCOME_CLASS_SUCCESS, pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE
	in := []*pb.Attempt{
		mk("c1", "p1", "wh1", 10*time.Minute, ok, 200, 20),
		mk("c2", "p1", "wh1", 20*time.Minute, retry, 503, 8),
		mk("c3z", "p1", "wh1", 30*time.Minute, pb.OutcomeClass_OUTCOME_CLASS_TIMEOUT, 0, 14),
		mk("c3a", "p1", "wh1", 30*time.Minute, ok, 200, 12),
		mk("c4", "p1", "wh1", 40*time.Minute, pb.OutcomeClass_OUTCOME_CLASS_CIRCUIT_OPEN, 0, 50),
		mk("c5", "p1", "wh1", 45*time.Minute, pb.OutcomeClass_OUTCOME_CLASS_ERASED, 0, 2),
		mk("c6", "p1", "wh1", 50*time.Minute, pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED, 0, 0),
		mk("c7", "p1", "wh1", 55*time.Minute, ok, 200, 0), // stored before attempts recorded the limit
		mk("c8", "p1", "wh2", 50*time.Minute, ok, 200, 3),
		mk("c9", "p2", "wh1", 50*time.Minute, ok, 200, 4),
		mk("c10", "p1", "wh1", 70*time.Minute, ok, 200, 30),
	}
	require.NoError(t, st.InsertAttempts(ctx, in, src(len(in))))

	for _, c := range []struct {
		name     string
		webhook  string
		from, to time.Duration
		want     attemptlog.ConcurrencyLimits
	}{
		{"the latest sent attempt's", "wh1", 0, time.Hour,
			attemptlog.ConcurrencyLimits{Latest: 14, LatestAt: base.Add(30 * time.Minute), Min: 8}},
		{"the window bounds it", "wh1", 15 * time.Minute, 30 * time.Minute,
			attemptlog.ConcurrencyLimits{Latest: 8, LatestAt: base.Add(20 * time.Minute), Min: 8}},
		{"a later window", "wh1", 0, 2 * time.Hour,
			attemptlog.ConcurrencyLimits{Latest: 30, LatestAt: base.Add(70 * time.Minute), Min: 8}},
		{"another webhook", "wh2", 0, time.Hour,
			attemptlog.ConcurrencyLimits{Latest: 3, LatestAt: base.Add(50 * time.Minute), Min: 3}},
		{"no minimum over long ranges", "wh1", -8 * 24 * time.Hour, time.Hour,
			attemptlog.ConcurrencyLimits{Latest: 14, LatestAt: base.Add(30 * time.Minute)}},
		{"only attempts not sent", "wh1", 35 * time.Minute, time.Hour, attemptlog.ConcurrencyLimits{}},
		{"no attempts", "wh1", 3 * time.Hour, 4 * time.Hour, attemptlog.ConcurrencyLimits{}},
	} {
		got, err := st.ConcurrencyLimits(ctx, attemptlog.StatsQuery{ProjectID: "p1", WebhookID: c.webhook,
			From: base.Add(c.from), To: base.Add(c.to)})
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, got, c.name)
	}
	other, err := st.ConcurrencyLimits(ctx, attemptlog.StatsQuery{ProjectID: "p2", WebhookID: "wh1", From: base, To: base.Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, 4, other.Latest, "another project's webhook of the same id")
}

func dead(id, project, webhook string, at time.Time, status int, body string) *pb.Delivery {
	return &pb.Delivery{DeliveryId: id, EventId: "ev-" + id, WebhookId: webhook, ProjectId: project, EventType: "nps.scored",
		Body: []byte(body), Attempt: 6, LastOutcome: &pb.Outcome{Class: pb.OutcomeClass_OUTCOME_CLASS_HTTP_RETRYABLE,
			Disposition: pb.Disposition_DISPOSITION_DEAD, StatusCode: int32(status), AtMs: at.UnixMilli(), Error: "bad gateway"}}
}

func insertDead(t testing.TB, st *attemptlog.Store, ds ...*pb.Delivery) {
	raw := make([][]byte, len(ds))
	for i, d := range ds {
		b, err := proto.Marshal(d)
		require.NoError(t, err)
		raw[i] = b
	}
	require.NoError(t, st.InsertDeadLetters(context.Background(), ds, raw, src(len(ds))))
}

func testDeadLetters(t *testing.T, e engine) {
	ctx := context.Background()
	st := migrated(t, e)
	insertDead(t, st,
		dead("d1", "p1", "wh1", base.Add(time.Minute), 502, `{"user":{"email":"ada@example.com"}}`),
		dead("d2", "p1", "wh2", base.Add(2*time.Minute), 500, "\x00\x01'\\\xfe"),
		dead("d3", "p1", "wh1", base.Add(3*time.Minute), 502, `{}`),
		dead("d4", "p2", "wh9", base.Add(4*time.Minute), 502, `{}`))

	list := func(q attemptlog.DeadLetterQuery) []string {
		q.ProjectID = "p1"
		ds, _, err := st.ListDeadLetters(ctx, q)
		require.NoError(t, err)
		out := []string{}
		for _, d := range ds {
			out = append(out, d.DeliveryID)
		}
		return out
	}
	require.Equal(t, []string{"d3", "d2", "d1"}, list(attemptlog.DeadLetterQuery{}))
	require.Equal(t, []string{"d3", "d1"}, list(attemptlog.DeadLetterQuery{WebhookID: "wh1"}))
	require.Equal(t, []string{"d2"}, list(attemptlog.DeadLetterQuery{StatusCode: 500}))
	require.Equal(t, []string{"d1"}, list(attemptlog.DeadLetterQuery{EventID: "ev-d1"}))
	require.Equal(t, []string{"d2"}, list(attemptlog.DeadLetterQuery{From: base.Add(2 * time.Minute), To: base.Add(3 * time.Minute)}))

	page, next, err := st.ListDeadLetters(ctx, attemptlog.DeadLetterQuery{ProjectID: "p1", Limit: 2})
	require.NoError(t, err)
	require.Len(t, page, 2)
	require.NotEmpty(t, next)
	rest, next, err := st.ListDeadLetters(ctx, attemptlog.DeadLetterQuery{ProjectID: "p1", Limit: 2, Cursor: next})
	require.NoError(t, err)
	require.Empty(t, next)
	require.Len(t, rest, 1)
	require.Equal(t, "d1", rest[0].DeliveryID)

	d, del, err := st.GetDeadLetter(ctx, "p1", "d2.6")
	require.NoError(t, err)
	require.Equal(t, 500, d.StatusCode)
	require.Equal(t, base.Add(2*time.Minute), d.DeadAt)
	require.Equal(t, "\x00\x01'\\\xfe", string(del.Body), "the delivery to replay is stored byte for byte")
	_, _, err = st.GetDeadLetter(ctx, "p2", "d2.6")
	require.ErrorIs(t, err, attemptlog.ErrNotFound)

	open, err := st.OpenDeadLetters(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{"p1": 3, "p2": 1}, open)

	require.NoError(t, st.MarkReplayed(ctx, "p1", []string{"d1.6"}))
	require.Equal(t, []string{"d3", "d2"}, list(attemptlog.DeadLetterQuery{}), "replayed ones are hidden")
	all, _, err := st.ListDeadLetters(ctx, attemptlog.DeadLetterQuery{ProjectID: "p1", IncludeReplayed: true})
	require.NoError(t, err)
	require.Len(t, all, 3)
	require.True(t, all[2].Replayed)
	open, err = st.OpenDeadLetters(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{"p1": 2, "p2": 1}, open)
}

// testRetention: project short keeps 7 days, long 60, others the default 30 (platform maximum 90).
// Rows 10 days old go for short only; rows 40 days old for short and the default; none of long's.
func testRetention(t *testing.T, e engine) {
	ctx := context.Background()
	r := attemptlog.Retention{DefaultDays: 30, MaxDays: 90, Projects: map[string]int{"short": 7, "long": 60}}
	st := migrated(t, e, attemptlog.WithRetention(r))
	now := time.Now().UTC()
	ok := pb.OutcomeClass_OUTCOME_CLASS_SUCCESS
	var in []*pb.Attempt
	var dl []*pb.Delivery
	for _, p := range []string{"short", "long", "other"} {
		for _, age := range []int{1, 10, 40} {
			at := now.AddDate(0, 0, -age)
			in = append(in, attempt(fmt.Sprintf("%s-%d", p, age), p, "wh", fmt.Sprintf("e%d", age), at, 200, ok))
			dl = append(dl, dead(fmt.Sprintf("%s-%d", p, age), p, "wh", at, 500, "{}"))
		}
	}
	require.NoError(t, st.InsertAttempts(ctx, in, src(len(in))))
	insertDead(t, st, dl...)

	run, err := st.EnforceRetention(ctx, now)
	require.NoError(t, err)
	if st.Form() == attemptlog.Current {
		require.NoError(t, st.ApplyTTL(ctx), "TTL, applied at the next merge")
	} else {
		require.Equal(t, attemptlog.RetentionRun{Attempts: 3, DeadLetters: 3}, run)
	}
	want := map[string][]string{"short": {"short-1"}, "long": {"long-1", "long-10", "long-40"}, "other": {"other-1", "other-10"}}
	for p, w := range want {
		got, _, err := st.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: p})
		require.NoError(t, err)
		require.ElementsMatch(t, w, ids(got), "attempts of %s", p)
		ds, _, err := st.ListDeadLetters(ctx, attemptlog.DeadLetterQuery{ProjectID: p})
		require.NoError(t, err)
		var dids []string
		for _, d := range ds {
			dids = append(dids, d.DeliveryID)
		}
		require.ElementsMatch(t, w, dids, "dead letters of %s", p)
	}
	byEvent, _, err := st.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: "long", EventID: "e40"})
	require.NoError(t, err)
	require.Equal(t, []string{"long-40"}, ids(byEvent), "the by-event index keeps what its attempts keep")
}

// testErasure: ada (user u-ada, ada@example.com) and bob (anonymous anon-7, user u-ada2) in project
// p1, ada again in p2. Erasing ada from p1 removes her attempts and dead letters there only.
func testErasure(t *testing.T, e engine) {
	ctx := context.Background()
	st := migrated(t, e)
	ok := pb.OutcomeClass_OUTCOME_CLASS_SUCCESS
	body := func(user, anon, email string) []byte {
		return []byte(`{"payload":{"user":{"id":"` + user + `","anonymous_id":"` + anon + `","email":"` + email + `"}}}`)
	}
	mk := func(id, project string, b []byte) *pb.Attempt {
		a := attempt(id, project, "wh", "e-"+id, base, 200, ok)
		a.RequestBody = b
		return a
	}
	in := []*pb.Attempt{
		mk("ada-1", "p1", body("u-ada", "", "ada@example.com")),
		mk("ada-2", "p1", body("", "anon-ada", "ada@example.com")),
		mk("ada-3", "p1", body("u-ada", "", "")),
		mk("ada-4", "p1", body("", "", "Ada@Example.COM")),
		mk("bob-1", "p1", body("u-ada2", "anon-7", "bob@example.com")),
		mk("ada-p2", "p2", body("u-ada", "", "ada@example.com")),
	}
	require.NoError(t, st.InsertAttempts(ctx, in, src(len(in))))
	insertDead(t, st,
		dead("dl-ada", "p1", "wh", base, 500, string(body("u-ada", "", "ada@example.com"))),
		dead("dl-bob", "p1", "wh", base, 500, string(body("u-ada2", "", "bob@example.com"))),
		dead("dl-ada-p2", "p2", "wh", base, 500, string(body("u-ada", "", ""))))

	_, err := st.Erase(ctx, "p1", attemptlog.Respondent{})
	require.ErrorIs(t, err, attemptlog.ErrNoIdentifier)

	got, err := st.Erase(ctx, "p1", attemptlog.Respondent{UserID: "u-ada", Email: "ada@example.com"})
	require.NoError(t, err)
	require.Equal(t, attemptlog.Erased{Attempts: 4, DeadLetters: 1}, got, "e-mails match in any case")

	left, _, err := st.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: "p1"})
	require.NoError(t, err)
	require.Equal(t, []string{"bob-1"}, ids(left), "u-ada2 is not u-ada")
	other, _, err := st.ListAttempts(ctx, attemptlog.AttemptQuery{ProjectID: "p2"})
	require.NoError(t, err)
	require.Equal(t, []string{"ada-p2"}, ids(other), "another project's rows stay")
	_, _, err = st.GetDeadLetter(ctx, "p1", "dl-ada.6")
	require.ErrorIs(t, err, attemptlog.ErrNotFound)
	_, _, err = st.GetDeadLetter(ctx, "p1", "dl-bob.6")
	require.NoError(t, err)
	_, _, err = st.GetDeadLetter(ctx, "p2", "dl-ada-p2.6")
	require.NoError(t, err)

	again, err := st.Erase(ctx, "p1", attemptlog.Respondent{UserID: "u-ada", Email: "ada@example.com"})
	require.NoError(t, err)
	require.Equal(t, attemptlog.Erased{}, again, "nothing left to erase")

	// Deliveries the workers stopped for er_1, one of them recorded twice (a redelivery), one for
	// another erasure, one in another project.
	stopped := func(id, project, delivery, erasure string) *pb.Attempt {
		a := attempt(id, project, "wh", "e-"+id, base, 0, pb.OutcomeClass_OUTCOME_CLASS_ERASED)
		a.DeliveryId, a.RequestBody = delivery, nil
		a.Outcome.Disposition, a.Outcome.Error = pb.Disposition_DISPOSITION_ERASED, "not sent: the respondent was erased ("+erasure+")"
		return a
	}
	more := []*pb.Attempt{stopped("s-1", "p1", "d-1", "er_1"), stopped("s-1b", "p1", "d-1", "er_1"),
		stopped("s-2", "p1", "d-2", "er_1"), stopped("s-3", "p1", "d-3", "er_10"), stopped("s-4", "p2", "d-4", "er_1")}
	require.NoError(t, st.InsertAttempts(ctx, more, src(len(more))))
	n, err := st.StoppedByErasure(ctx, "p1", "er_1")
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "each delivery once, of this erasure and project only")

	at := base.Add(time.Minute)
	job := attemptlog.ErasureJob{ID: "er_1", ProjectID: "p1", Status: "running", RequestedAt: base, Sealed: []byte("sealed\x00ids"),
		Erased: attemptlog.Erased{Attempts: 2}}
	require.NoError(t, st.SaveErasure(ctx, job))
	running, err := st.RunningErasures(ctx)
	require.NoError(t, err)
	require.Equal(t, []attemptlog.ErasureJob{job}, running, "a running job is listed with its sealed identifiers, to resume it")
	job.Status, job.Erased, job.FinishedAt, job.Sealed = "done", got, &at, nil
	require.NoError(t, st.SaveErasure(ctx, job))
	saved, err := st.GetErasure(ctx, "p1", "er_1")
	require.NoError(t, err)
	require.Equal(t, job, *saved, "the latest state of the job")
	running, err = st.RunningErasures(ctx)
	require.NoError(t, err)
	require.Empty(t, running)
	sealedRows, err := st.CountWhere(ctx, "erasures", "sealed_respondent != ''")
	require.NoError(t, err)
	require.Zero(t, sealedRows, "no version of a finished job keeps the sealed identifiers")
	_, err = st.GetErasure(ctx, "p2", "er_1")
	require.ErrorIs(t, err, attemptlog.ErrNotFound)
}
