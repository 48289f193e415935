// Package kafka is the one way surveyhooks talks to Kafka: client construction from
// configuration, topic names and creation, and the transactional consume→produce→commit loop.
// Services never build franz-go clients by hand. It must never hold service-specific logic.
package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config locates the cluster and names the topics. Every service embeds it.
type Config struct {
	Brokers           []string `env:"KAFKA_BROKERS" envSeparator:"," envDefault:"127.0.0.1:9092"`
	ClientID          string   `env:"KAFKA_CLIENT_ID" envDefault:"surveyhooks"`
	Partitions        int32    `env:"KAFKA_PARTITIONS" envDefault:"12"`
	ReplicationFactor int16    `env:"KAFKA_REPLICATION_FACTOR" envDefault:"-1"` // -1: the broker's default
	// RetrySchedule is the delay before each retry: one retry tier topic per entry.
	RetrySchedule []time.Duration `env:"SURVEYHOOKS_RETRY_SCHEDULE" envSeparator:"," envDefault:"1m,5m,15m,1h,6h"`
	Topics        Topics
	Group         GroupConfig
	// ProducerBatchMaxBytes caps one produced record batch. 0 (the default): the smallest
	// max.message.bytes of surveyhooks' topics, read when EnsureTopics runs at start (a batch
	// above the topic's limit is refused whole with MESSAGE_TOO_LARGE).
	ProducerBatchMaxBytes int32 `env:"KAFKA_PRODUCER_BATCH_MAX_BYTES" envDefault:"0"`
}

// GroupConfig is how every consumer group member of surveyhooks behaves; one place, so that every
// service's groups recover from a crashed member alike (docs/operations.md explains the choice).
type GroupConfig struct {
	// SessionTimeout is how long the coordinator waits for a silent member before giving its
	// partitions to the others: it bounds how long a kill -9'd process's partitions stand still
	// when no replacement takes its place. Kafka's default is 45 s; 6 s is the brokers' usual
	// group.min.session.timeout.ms.
	SessionTimeout time.Duration `env:"KAFKA_SESSION_TIMEOUT" envDefault:"6s"`
	// HeartbeatInterval is how often a member tells the coordinator it is alive; several fit in a
	// session timeout so that one late heartbeat on a busy machine does not expel a member.
	HeartbeatInterval time.Duration `env:"KAFKA_HEARTBEAT_INTERVAL" envDefault:"1s"`
	// RebalanceTimeout is how long a member may take to give up its partitions in a rebalance. It
	// must cover a delivery worker's drain (DELIVERY_DRAIN_TIMEOUT): a member that takes longer is
	// expelled and the work it finished after that is repeated by the next owner.
	RebalanceTimeout time.Duration `env:"KAFKA_REBALANCE_TIMEOUT" envDefault:"60s"`
	// InstanceID, when set, makes this process a static member (KIP-345) of each of its groups: a
	// restarted process with the same id takes its partitions back at once, without a rebalance and
	// without waiting for the session timeout. It must be stable across restarts and unique among
	// live processes of one service (a StatefulSet's pod name, or "delivery-1", "delivery-2"): a
	// second live process with the same id fences the first. Empty (the default): dynamic
	// membership, where a leaving process hands its partitions over at once.
	InstanceID string `env:"KAFKA_GROUP_INSTANCE_ID"`
}

// Topics are the topic names of DESIGN §2; each can be renamed through the environment.
type Topics struct {
	SurveyEvents         string `env:"TOPIC_SURVEY_EVENTS" envDefault:"survey-events"`
	SurveyEventsRejected string `env:"TOPIC_SURVEY_EVENTS_REJECTED" envDefault:"survey-events-rejected"`
	Events               string `env:"TOPIC_EVENTS" envDefault:"events"`
	Projects             string `env:"TOPIC_PROJECTS" envDefault:"projects"`
	Webhooks             string `env:"TOPIC_WEBHOOKS" envDefault:"webhooks"`
	Deliveries           string `env:"TOPIC_DELIVERIES" envDefault:"deliveries"`
	RetryPrefix          string `env:"TOPIC_RETRY_PREFIX" envDefault:"deliveries-retry-"`
	Dead                 string `env:"TOPIC_DELIVERIES_DEAD" envDefault:"deliveries-dead"`
	Attempts             string `env:"TOPIC_DELIVERY_ATTEMPTS" envDefault:"delivery-attempts"`
	// Held parks the later deliveries of an ordered webhook's key while its head waits on a
	// retry tier (compacted), partition p beside `deliveries` partition p (docs/ordering.md).
	Held string `env:"TOPIC_DELIVERIES_HELD" envDefault:"deliveries-held"`
	// Respondents is fan-out's per-user state (compacted), partition p holding the users of
	// `events` partition p: it needs at least as many partitions as Events.
	Respondents string `env:"TOPIC_RESPONDENTS" envDefault:"respondents"`
	// Idempotency holds the API's stored answers to writes with an Idempotency-Key (sealed).
	Idempotency string `env:"TOPIC_IDEMPOTENCY" envDefault:"idempotency-keys"`
	// Erasures lists erased respondents by keyed hash (compacted): the delivery workers drop
	// their pending deliveries.
	Erasures string `env:"TOPIC_ERASURES" envDefault:"erasures"`
}

// Retry names the retry tier topic for a delay: 1m → "deliveries-retry-1m", 200ms → "…-200ms".
func (t Topics) Retry(d time.Duration) string { return t.RetryPrefix + DurationName(d) }

// DurationName spells a duration the short way used in topic names: 90s → "90s", 1h → "1h",
// 1h30m → "90m", 250ms → "250ms".
func DurationName(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d >= time.Second && d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	default:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
}

// Validate reports the first configuration error, naming the variable.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 || strings.TrimSpace(c.Brokers[0]) == "" {
		return errors.New("KAFKA_BROKERS: at least one broker address is required")
	}
	if len(c.RetrySchedule) == 0 {
		return errors.New("SURVEYHOOKS_RETRY_SCHEDULE: at least one retry delay is required")
	}
	for i, d := range c.RetrySchedule {
		if d <= 0 || (i > 0 && d <= c.RetrySchedule[i-1]) {
			return fmt.Errorf("SURVEYHOOKS_RETRY_SCHEDULE: delays must be positive and increasing, got %v", c.RetrySchedule)
		}
	}
	if c.Partitions < 1 {
		return fmt.Errorf("KAFKA_PARTITIONS: must be at least 1, got %d", c.Partitions)
	}
	g := c.Group
	if g.SessionTimeout < time.Second {
		return fmt.Errorf("KAFKA_SESSION_TIMEOUT: must be at least 1s, got %v", g.SessionTimeout)
	}
	if g.HeartbeatInterval <= 0 || g.HeartbeatInterval*2 > g.SessionTimeout {
		return fmt.Errorf("KAFKA_HEARTBEAT_INTERVAL: must be positive and at most half of KAFKA_SESSION_TIMEOUT (%v), got %v", g.SessionTimeout, g.HeartbeatInterval)
	}
	if g.RebalanceTimeout < time.Second {
		return fmt.Errorf("KAFKA_REBALANCE_TIMEOUT: must be at least 1s, got %v", g.RebalanceTimeout)
	}
	if c.ProducerBatchMaxBytes < 0 {
		return fmt.Errorf("KAFKA_PRODUCER_BATCH_MAX_BYTES: must not be negative, got %d", c.ProducerBatchMaxBytes)
	}
	if strings.TrimSpace(g.InstanceID) != g.InstanceID {
		return fmt.Errorf("KAFKA_GROUP_INSTANCE_ID: must not start or end with spaces, got %q", g.InstanceID)
	}
	return nil
}

// NewClient builds a franz-go client for the cluster with surveyhooks' defaults; opts add to or
// override them.
func NewClient(cfg Config, opts ...kgo.Opt) (*kgo.Client, error) {
	base := append(baseOpts(cfg),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.MaxBufferedRecords(100_000),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka client for %v: %w", cfg.Brokers, err)
	}
	return cl, nil
}

// baseOpts are the options every client of surveyhooks starts from: the cluster, the key
// partitioner, and the consumer group behaviour of GroupConfig (harmless for a client without a
// group, so that no service can build a group member without them).
func baseOpts(cfg Config) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 on the key, like the Java client
		kgo.ProducerBatchMaxBytes(producerBatchMaxBytes(cfg)),
	}
	g := cfg.Group
	if g.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(g.SessionTimeout))
	}
	if g.HeartbeatInterval > 0 {
		opts = append(opts, kgo.HeartbeatInterval(g.HeartbeatInterval))
	}
	if g.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(g.RebalanceTimeout))
	}
	if g.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(g.InstanceID))
	}
	return opts
}

// fallbackBatchMaxBytes is used before the topics' limit is known: below both Kafka's default
// max.message.bytes (1,048,588) and its older default (1,000,012).
const fallbackBatchMaxBytes = 1_000_000

// batchOverhead is kept free under a topic's max.message.bytes: the client sizes a batch by its
// records, while the broker's limit also counts the batch header.
const batchOverhead = 512

// learnedLimits holds, per seed broker list, the producer batch limit EnsureTopics learned from
// the topics' max.message.bytes. It is process-wide so that every client a service builds after
// EnsureTopics uses it, whichever package builds it.
var learnedLimits sync.Map // string → int32

func limitKey(cfg Config) string { return strings.Join(cfg.Brokers, ",") }

// producerBatchMaxBytes is the batch limit for clients of cfg: the configured one, else the
// learned one, else the fallback.
func producerBatchMaxBytes(cfg Config) int32 {
	if cfg.ProducerBatchMaxBytes > 0 {
		return cfg.ProducerBatchMaxBytes
	}
	if v, ok := learnedLimits.Load(limitKey(cfg)); ok {
		return v.(int32)
	}
	return fallbackBatchMaxBytes
}

// ProducerBatchMaxBytes reports the producer batch limit clients built from cfg use now.
func ProducerBatchMaxBytes(cfg Config) int32 { return producerBatchMaxBytes(cfg) }

// learnBatchLimit reads max.message.bytes of the named topics and records the smallest, less
// batchOverhead, as the producer batch limit for cfg's cluster.
func learnBatchLimit(ctx context.Context, adm *kadm.Client, cfg Config, topics []string) error {
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return fmt.Errorf("describing topic configs: %w", err)
	}
	limit := int64(math.MaxInt32)
	for _, rc := range rcs {
		if rc.Err != nil {
			return fmt.Errorf("describing configs of topic %q: %w", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			v, err := strconv.ParseInt(*c.Value, 10, 32)
			if err != nil {
				return fmt.Errorf("topic %q: max.message.bytes %q: %w", rc.Name, *c.Value, err)
			}
			limit = min(limit, v)
		}
	}
	if limit == math.MaxInt32 {
		return nil // the broker did not say: keep the fallback
	}
	learnedLimits.Store(limitKey(cfg), int32(max(limit-batchOverhead, 1024)))
	return nil
}

// SamePartition makes a producer write records of the named topics to the partition each record
// names (Record.Partition) instead of hashing its key; other topics keep the key partitioner.
// A service that keeps state per input partition uses it to put that state on the same partition
// number of a state topic, whatever the keys look like.
func SamePartition(topics ...string) kgo.Opt {
	return kgo.RecordPartitioner(samePartition{topics: topics, keyed: kgo.StickyKeyPartitioner(nil), manual: kgo.ManualPartitioner()})
}

type samePartition struct {
	topics        []string
	keyed, manual kgo.Partitioner
}

func (p samePartition) ForTopic(t string) kgo.TopicPartitioner {
	if slices.Contains(p.topics, t) {
		return p.manual.ForTopic(t)
	}
	return p.keyed.ForTopic(t)
}

// InstanceID is a process-unique suffix for transactional ids and worker names:
// hostname plus random bytes, so two processes never fence each other.
func InstanceID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// Header returns the value of the first record header named key, or nil.
func Header(r *kgo.Record, key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}
