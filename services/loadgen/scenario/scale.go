package scenario

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/surveyhooks/surveyhooks/pkg/hooktest"
	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
	"github.com/surveyhooks/surveyhooks/services/loadgen/stack"
)

// ManyEndpoints: 1,000 projects × 10 webhooks, events spread evenly over the projects.
type ManyEndpoints struct {
	Projects      int     `json:"projects"`
	Webhooks      int     `json:"webhooks"`
	SetupSeconds  float64 `json:"setup_s"` // creating them through the API
	DeliveriesPS  float64 `json:"deliveries_per_s"`
	DeliveryRSSMB float64 `json:"delivery_rss_mb"`      // at the end of the window
	DeliveryHWMMB float64 `json:"delivery_peak_rss_mb"` // VmHWM since the delivery process started
	Duplicates    int64   `json:"duplicates"`
}

// ScaleOut: 3 delivery workers and 2 fan-out processes on one broker.
type ScaleOut struct {
	Deliveries   int              `json:"delivery_workers"`
	Fanouts      int              `json:"fanout_processes"`
	Events       int64            `json:"events"`
	Delivered    int64            `json:"delivered"`
	Duplicates   int64            `json:"duplicates"`
	DeliveriesPS float64          `json:"deliveries_per_s"`
	Partitions   map[string][]int `json:"partitions_per_member"` // group → partitions each member owns
	Balanced     bool             `json:"balanced"`              // every member within one partition of the others
}

const (
	manyProjects           = 1000
	manyWebhooksPerProject = 10
)

// runManyEndpoints creates 1,000 projects with 10 webhooks each (each its own receiver endpoint)
// and measures deliveries per second, closed loop, with events spread evenly over the projects,
// and the delivery process's memory.
func (b *bench) runManyEndpoints(ctx context.Context) error {
	m := &b.res.ManyEndpoints
	m.Projects, m.Webhooks = manyProjects, manyProjects*manyWebhooksPerProject
	began := time.Now()
	projects := make([]project, manyProjects)
	targets := make([]target, manyProjects*manyWebhooksPerProject)
	err := parallel(ctx, 16, manyProjects, func(i int) error {
		p, err := b.api.createProject(ctx, fmt.Sprintf("bench many %04d", i))
		if err != nil {
			return err
		}
		projects[i] = p
		for j := range manyWebhooksPerProject {
			name := fmt.Sprintf("many-%04d-%02d", i, j)
			ep := b.rx.Endpoint(name, hooktest.Fast)
			w, err := b.api.createWebhook(ctx, p, name, b.rx.URL()+"/"+name)
			if err != nil {
				return err
			}
			targets[i*manyWebhooksPerProject+j] = target{p: p, w: w, ep: ep}
		}
		return nil
	})
	m.SetupSeconds = round2(time.Since(began).Seconds())
	if err != nil {
		return fmt.Errorf("creating %d projects × %d webhooks: %w", manyProjects, manyWebhooksPerProject, err)
	}
	b.say("many_endpoints: %d webhooks created in %.0f s", m.Webhooks, m.SetupSeconds)
	eps := endpoints(targets)
	gen := func(i int) produce.Event {
		return b.events(projects[i%manyProjects], "many")(i)
	}
	base := received(eps)
	stop := b.closedLoop(ctx, eps, manyWebhooksPerProject, gen)
	sleep(ctx, b.opts.Warmup)
	r0, t0 := received(eps), time.Now()
	sleep(ctx, b.opts.Window)
	r1, t1 := received(eps), time.Now()
	if p := b.st.Proc("delivery"); p != nil {
		if mem, err := stack.ReadMemory(p.PID()); err == nil {
			m.DeliveryRSSMB, m.DeliveryHWMMB = mib(mem.RSS), mib(mem.Peak)
		}
	}
	sent, perr := stop()
	m.DeliveriesPS = round2(float64(r1-r0) / t1.Sub(t0).Seconds())
	b.say("many_endpoints: %.0f deliveries/s, delivery RSS %.1f MiB (peak %.1f)", m.DeliveriesPS, m.DeliveryRSSMB, m.DeliveryHWMMB)
	if perr != nil {
		return fmt.Errorf("producing: %w", perr)
	}
	derr := b.drain(ctx, eps, base, sent*manyWebhooksPerProject, 90*time.Second)
	m.Duplicates = duplicates(eps)
	return derr
}

// scaleOut's extra processes, beside the stack's "delivery" and "fanout".
var scaleOutExtra = []struct{ name, bin string }{{"delivery-2", "delivery"}, {"delivery-3", "delivery"}, {"fanout-2", "fanout"}}

const (
	scaleOutEndpoints = 60
	scaleOutEvents    = 12_000
)

// runScaleOut starts two more delivery workers and a second fan-out on the same broker, waits
// until their groups have them all, sends events to 60 endpoints (spread over the partitions) and
// checks that every event is delivered once and that partitions are shared evenly. Throughput
// cannot grow on two cores; this proves the scale-out path, not its speed.
func (b *bench) runScaleOut(ctx context.Context) error {
	so := &b.res.ScaleOut
	so.Deliveries, so.Fanouts = 3, 2
	targets := make([]target, scaleOutEndpoints)
	if err := parallel(ctx, 8, scaleOutEndpoints, func(i int) error {
		p, err := b.api.createProject(ctx, fmt.Sprintf("bench scale %02d", i))
		if err != nil {
			return err
		}
		name := fmt.Sprintf("scale-%02d", i)
		ep := b.rx.Endpoint(name, hooktest.Fast)
		w, err := b.api.createWebhook(ctx, p, name, b.rx.URL()+"/"+name)
		targets[i] = target{p: p, w: w, ep: ep}
		return err
	}); err != nil {
		return fmt.Errorf("creating the scale-out webhooks: %w", err)
	}
	for _, x := range scaleOutExtra {
		if _, err := b.st.StartAs(x.name, x.bin); err != nil {
			return err
		}
	}
	defer func() {
		for _, x := range scaleOutExtra {
			if b.st.Stop(x.name, stopGrace) {
				b.res.note("scale_out: %s did not exit within %s of SIGTERM and was killed", x.name, stopGrace)
			}
		}
	}()
	lags, err := newLagSampler(b.brokers)
	if err != nil {
		return err
	}
	defer lags.close()
	want := map[string]int{"surveyhooks-delivery": 3, "surveyhooks-fanout": 2}
	topicOf := map[string]string{"surveyhooks-delivery": "deliveries", "surveyhooks-fanout": "events"}
	var parts map[string][]int
	if !waitFor(ctx, 90*time.Second, func() bool {
		parts = b.memberPartitions(ctx, lags.adm, topicOf)
		for g, n := range want {
			if len(parts[g]) != n {
				return false
			}
		}
		return true
	}) {
		b.res.note("scale_out: the groups did not reach %v members within 90 s: %v", want, parts)
	}
	eps := endpoints(targets)
	dup0 := duplicates(eps)
	base := received(eps)
	gen := func(i int) produce.Event { return b.events(targets[i%scaleOutEndpoints].p, "scale")(i) }
	t0 := time.Now()
	if _, err := b.prod.Run(ctx, produce.Plan{Count: scaleOutEvents, Rate: 2000}, gen); err != nil {
		return fmt.Errorf("producing: %w", err)
	}
	derr := b.drain(ctx, eps, base, scaleOutEvents, 90*time.Second)
	el := time.Since(t0).Seconds()
	time.Sleep(time.Second) // a duplicate would be close behind
	so.Events, so.Delivered = scaleOutEvents, received(eps)-base
	so.Duplicates = duplicates(eps) - dup0
	so.DeliveriesPS = round2(float64(so.Delivered) / el)
	so.Partitions = b.memberPartitions(ctx, lags.adm, topicOf)
	so.Balanced = true
	for _, ps := range so.Partitions {
		if len(ps) > 0 && ps[len(ps)-1]-ps[0] > 1 {
			so.Balanced = false
		}
	}
	b.say("scale_out: %d of %d delivered, %d duplicates, partitions per member %v", so.Delivered, so.Events, so.Duplicates, so.Partitions)
	return derr
}

// memberPartitions lists, per group, how many partitions of its input topic each member owns,
// sorted.
func (b *bench) memberPartitions(ctx context.Context, adm *kadm.Client, topicOf map[string]string) map[string][]int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	groups := make([]string, 0, len(topicOf))
	for g := range topicOf {
		groups = append(groups, g)
	}
	described, err := adm.DescribeGroups(ctx, groups...)
	if err != nil {
		return nil
	}
	out := map[string][]int{}
	for g, d := range described {
		if d.State != "Stable" {
			continue
		}
		var counts []int
		for _, m := range d.Members {
			n := 0
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range a.Topics {
					if t.Topic == topicOf[g] {
						n += len(t.Partitions)
					}
				}
			}
			counts = append(counts, n)
		}
		sort.Ints(counts)
		out[g] = counts
	}
	return out
}
