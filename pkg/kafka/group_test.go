package kafka_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/pkg/kafka"
	"github.com/surveyhooks/surveyhooks/pkg/kafkatest"
)

// groupChildEnv makes the test binary a group member (see TestMain): a real process that the
// test can kill -9, so that it leaves its group without a word, as a crashed service does.
const groupChildEnv = "KAFKA_TEST_GROUP_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(groupChildEnv) != "" {
		os.Exit(groupChild())
	}
	os.Exit(m.Run())
}

// groupChild consumes the topic named by the environment in the group named by it, with the
// defaults of kafka.NewClient, and prints "partition value" for every record.
func groupChild() int {
	var cfg kafka.Config
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cl, err := kafka.NewClient(cfg, kgo.ConsumerGroup(os.Getenv(groupChildEnv)), kgo.ConsumeTopics("work"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cl.Close()
	out := bufio.NewWriter(os.Stdout)
	for {
		f := cl.PollFetches(context.Background())
		f.EachRecord(func(r *kgo.Record) { fmt.Fprintf(out, "%d %s\n", r.Partition, r.Value) })
		if err := out.Flush(); err != nil {
			return 1
		}
	}
}

// member is one group member process.
type member struct {
	name string
	cmd  *exec.Cmd
}

// groupScene is a topic of several partitions consumed by member processes, with a record of
// when each member saw which value.
type groupScene struct {
	t     *testing.T
	cfg   kafka.Config
	group string
	mu    sync.Mutex
	seen  map[string]string // value → member that printed it
}

const sceneParts = 6

func newGroupScene(t *testing.T, group string) *groupScene {
	cfg := kafkatest.Start(t)
	cl, err := kafka.NewClient(cfg)
	require.NoError(t, err)
	defer cl.Close()
	_, err = kadm.NewClient(cl).CreateTopic(context.Background(), sceneParts, 1, nil, "work")
	require.NoError(t, err)
	return &groupScene{t: t, cfg: cfg, group: group, seen: map[string]string{}}
}

func (s *groupScene) start(name string, env ...string) *member {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), groupChildEnv+"="+s.group, "KAFKA_BROKERS="+strings.Join(s.cfg.Brokers, ","))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(s.t, err)
	require.NoError(s.t, cmd.Start())
	m := &member{name: name, cmd: cmd}
	s.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, v, _ := strings.Cut(sc.Text(), " ")
			s.mu.Lock()
			s.seen[v] = name
			s.mu.Unlock()
		}
	}()
	return m
}

// round produces one record to every partition, tagged tag, and reports how long until every one
// was consumed and by whom (up to limit).
func (s *groupScene) round(tag string, limit time.Duration) (time.Duration, map[string]int) {
	began := time.Now()
	cl, err := kafka.NewClient(s.cfg, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(s.t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for p := range int32(sceneParts) {
		require.NoError(s.t, cl.ProduceSync(ctx, &kgo.Record{Topic: "work", Partition: p, Value: []byte(tag + "-" + strconv.Itoa(int(p)))}).FirstErr())
	}
	for {
		by := map[string]int{}
		s.mu.Lock()
		for p := range sceneParts {
			if m, ok := s.seen[tag+"-"+strconv.Itoa(p)]; ok {
				by[m]++
			}
		}
		s.mu.Unlock()
		if len(by) > 0 && sum(by) == sceneParts {
			return time.Since(began), by
		}
		if time.Since(began) > limit {
			return time.Since(began), by
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitHolding produces rounds until the member named name consumes part of one, and reports how
// long that took; it fails the test after limit.
func (s *groupScene) waitHolding(name string, limit time.Duration) time.Duration {
	began := time.Now()
	for i := 0; ; i++ {
		_, by := s.round(fmt.Sprintf("hold-%s-%d", name, i), limit)
		if by[name] > 0 {
			return time.Since(began)
		}
		require.Less(s.t, time.Since(began), limit, "%s holds no partition after %v: %v", name, limit, by)
		time.Sleep(100 * time.Millisecond)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestGroupBackAtWorkSoonAfterAMemberIsKilled kills a member process (kill -9: it never leaves
// the group) and starts a replacement; every partition must be consumed again within 10 s, with
// the replacement at work. Dynamic membership (the default) waits for the session timeout; a
// static member (KAFKA_GROUP_INSTANCE_ID) that comes back takes its partitions at once.
func TestGroupBackAtWorkSoonAfterAMemberIsKilled(t *testing.T) {
	for _, tc := range []struct {
		name   string
		static bool
	}{{"dynamic", false}, {"static", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newGroupScene(t, "g-"+tc.name)
			env := func(id string) []string {
				if tc.static {
					return []string{"KAFKA_GROUP_INSTANCE_ID=" + id}
				}
				return nil
			}
			s.start("a", env("a")...)
			s.start("b", env("b")...)
			victim := s.start("c", env("c")...)
			for i, phase := range []string{"stable", "joining"} {
				if phase == "stable" {
					s.waitHolding(victim.name, 60*time.Second)
				} else {
					time.Sleep(500 * time.Millisecond) // the replacement is still joining
				}
				require.NoError(t, victim.cmd.Process.Signal(syscall.SIGKILL))
				_, _ = victim.cmd.Process.Wait()
				victim = s.start(fmt.Sprintf("c%d", i+1), env("c")...)
				took, by := s.round(fmt.Sprintf("after-kill-%d", i), 30*time.Second)
				t.Logf("%s, killed while %s: every partition consumed again after %v (%v)", tc.name, phase, took.Round(10*time.Millisecond), by)
				require.Equal(t, sceneParts, sum(by), "partitions still idle %v after a member was killed while %s: %v", took, phase, by)
				require.Less(t, took, 10*time.Second, "killed while %s", phase)
			}
			// The last replacement is at work too, within the same bound.
			took := s.waitHolding(victim.name, 10*time.Second)
			t.Logf("%s: the replacement consumes after %v", tc.name, took.Round(10*time.Millisecond))
		})
	}
}
