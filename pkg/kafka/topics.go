package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TopicSpec is one topic surveyhooks owns.
type TopicSpec struct {
	Name    string
	Configs map[string]*string
}

// Specs lists every topic of DESIGN §2 for the given retry schedule, with their configurations:
// `projects`, `webhooks`, `respondents` `erasures` and `deliveries-held` are compacted (state), the rest are delete-retention logs kept
// at least as long as the longest retry delay needs.
func Specs(t Topics, retry []time.Duration) []TopicSpec {
	s := func(v string) *string { return &v }
	compacted := map[string]*string{"cleanup.policy": s("compact")}
	week := map[string]*string{"cleanup.policy": s("delete"), "retention.ms": s(fmt.Sprint((7 * 24 * time.Hour).Milliseconds()))}
	specs := []TopicSpec{
		{t.SurveyEvents, week}, {t.SurveyEventsRejected, week}, {t.Events, week},
		{t.Projects, compacted}, {t.Webhooks, compacted}, {t.Respondents, compacted}, {t.Held, compacted},
		{t.Deliveries, week}, {t.Attempts, week},
		{t.Dead, map[string]*string{"cleanup.policy": s("delete"), "retention.ms": s(fmt.Sprint((30 * 24 * time.Hour).Milliseconds()))}},
	}
	// Answers to Idempotency-Key writes are kept 24 h: compacted (the latest per key) and deleted
	// after a day and an hour.
	specs = append(specs, TopicSpec{t.Idempotency, map[string]*string{"cleanup.policy": s("compact,delete"),
		"retention.ms": s(fmt.Sprint((25 * time.Hour).Milliseconds()))}})
	// Erased respondents' keyed hashes (never an identifier) are kept, compacted: a delivery
	// created before an erasure can come back to a worker from a retry tier or a replay of a dead
	// letter kept up to the platform's maximum retention.
	specs = append(specs, TopicSpec{t.Erasures, compacted})
	for _, d := range retry {
		specs = append(specs, TopicSpec{t.Retry(d), week})
	}
	return specs
}

// EnsureTopics creates every topic of Specs that does not exist yet. Existing topics are left as
// they are. It then reads the topics' max.message.bytes: every client built from a Config with
// the same brokers afterwards keeps its batches below it. It is safe to call from every service at
// start, and each does before building its clients.
func EnsureTopics(ctx context.Context, cfg Config) error {
	cl, err := NewClient(cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var lastErr error
	for try := 0; try < 300; try++ { // up to a minute: the broker may still be starting
		lastErr = nil
		for _, spec := range Specs(cfg.Topics, cfg.RetrySchedule) {
			resp, err := adm.CreateTopic(ctx, cfg.Partitions, cfg.ReplicationFactor, spec.Configs, spec.Name)
			if err == nil {
				err = resp.Err
			}
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				lastErr = fmt.Errorf("creating topic %q: %w", spec.Name, err)
				break
			}
		}
		if lastErr == nil {
			lastErr = learnBatchLimit(ctx, adm, cfg, specNames(cfg))
		}
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return lastErr
}

// specNames lists the names of Specs.
func specNames(cfg Config) []string {
	var names []string
	for _, s := range Specs(cfg.Topics, cfg.RetrySchedule) {
		names = append(names, s.Name)
	}
	return names
}
