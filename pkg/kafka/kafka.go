// Package kafka is the one way surveyhooks talks to Kafka: client construction from
// configuration, topic names and creation, and the transactional consume→produce→commit loop.
// Services never build franz-go clients by hand. It must never hold service-specific logic.
package kafka

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

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
	return nil
}

// NewClient builds a franz-go client for the cluster with surveyhooks' defaults; opts add to or
// override them.
func NewClient(cfg Config, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.ProducerLinger(2 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(4 << 20),
		kgo.MaxBufferedRecords(100_000),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 on the key, like the Java client
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka client for %v: %w", cfg.Brokers, err)
	}
	return cl, nil
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
