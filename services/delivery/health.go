package delivery

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/operational"
	"github.com/surveyhooks/surveyhooks/pkg/registry"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// healthPolicy is when a failing webhook is reported and when it is disabled (issue 16).
type healthPolicy struct {
	NotifyAfter          int           // consecutive failures that make it "failing" (webhook.failing)
	DisableAfter         time.Duration // every attempt failed for this long: disabled; 0: never by time
	DisableAfterFailures int           // this many consecutive failures: disabled; 0: never by count
}

// healthState is one webhook's failing streak.
type healthState struct {
	FailingSinceMs int64 // end of the streak's first failed attempt; 0: healthy
	Failures       int32 // failed attempts in a row
	Disabled       bool  // disabled by this streak: nothing more to judge until re-enabled
}

// healthChange is what one attempt does to its webhook's health.
type healthChange struct {
	State   healthState
	Persist bool     // write the state onto the webhook record (it changed in a way a restart must keep)
	Disable bool     // disable the webhook with reason "failing"
	Events  []string // operational events to emit, in order
}

// judgeHealth is the auto-disable policy, in one pure function: given a webhook's streak and
// whether its latest attempt succeeded, the next streak and what to emit. A success ends the
// streak (webhook.recovered when webhook.failing was sent); a failure extends it, reports it once
// at NotifyAfter, and disables at DisableAfterFailures or once it has lasted DisableAfter.
func judgeHealth(pol healthPolicy, st healthState, success bool, nowMs int64) healthChange {
	if st.Disabled {
		return healthChange{State: st}
	}
	notified := st.Failures >= int32(pol.NotifyAfter)
	if success {
		if st.Failures == 0 {
			return healthChange{}
		}
		ch := healthChange{Persist: notified}
		if notified {
			ch.Events = []string{operational.WebhookRecovered}
		}
		return ch
	}
	next := healthState{FailingSinceMs: st.FailingSinceMs, Failures: st.Failures + 1}
	if next.FailingSinceMs == 0 {
		next.FailingSinceMs = nowMs
	}
	ch := healthChange{State: next}
	if !notified && next.Failures >= int32(pol.NotifyAfter) {
		ch.Persist, ch.Events = true, []string{operational.WebhookFailing}
	}
	byCount := pol.DisableAfterFailures > 0 && next.Failures >= int32(pol.DisableAfterFailures)
	byTime := pol.DisableAfter > 0 && nowMs-next.FailingSinceMs >= pol.DisableAfter.Milliseconds()
	if byCount || byTime {
		if !notified && len(ch.Events) == 0 {
			ch.Events = []string{operational.WebhookFailing} // never disabled unannounced
		}
		ch.Events = append(ch.Events, operational.WebhookDisabled)
		ch.State.Disabled, ch.Persist, ch.Disable = true, true, true
	}
	return ch
}

// health tracks every webhook this worker delivers to: its failing streak (in memory, and on the
// webhook record at each change a restart must keep), and the operational events its attempts
// cause. One worker owns a webhook's partition, so one health owns its streak; a worker that
// gains the partition starts from what the record says.
type health struct {
	pol    healthPolicy
	topics struct{ deliveries, webhooks string }
	reg    *registry.Registry

	mu    sync.Mutex
	state map[string]*tracked
}

// tracked is a webhook's streak and the revision of the record it was read from or written to:
// a later revision (re-enabled, edited) is read again.
type tracked struct {
	healthState
	revision int64
}

func newHealth(pol healthPolicy, deliveries, webhooks string, reg *registry.Registry) *health {
	h := &health{pol: pol, reg: reg, state: map[string]*tracked{}}
	h.topics.deliveries, h.topics.webhooks = deliveries, webhooks
	return h
}

// observe judges one decided attempt and returns the records it causes: the webhook's next
// revision (streak persisted, or disabled) and operational deliveries. Test deliveries, requests
// never made, and the platform's own operational webhooks (no events about themselves: no loop)
// teach it nothing; dead letters and a 410's disable are reported whatever the streak.
func (h *health) observe(d *pb.Delivery, wh *pb.Webhook, sent *sender.Result, dec decision, now time.Time) []*kgo.Record {
	if h == nil || d.Test || d.ProjectId == operational.PlatformProject {
		return nil
	}
	if wh == nil { // deleted: its streak goes with it
		h.forget(d.WebhookId)
		return nil
	}
	if wh.ProjectId == operational.PlatformProject {
		return nil
	}
	nowMs := now.UnixMilli()
	out := dec.Outcome
	var recs []*kgo.Record
	last := operational.Payload{ProjectID: wh.ProjectId, WebhookID: wh.Id, WebhookName: wh.Name,
		LastStatusCode: out.GetStatusCode(), LastError: out.GetError()}
	if dec.Dead != nil && out.GetClass() != pb.OutcomeClass_OUTCOME_CLASS_WEBHOOK_DISABLED {
		p := last
		p.DeliveryID, p.EventID, p.EventType, p.Attempts = d.DeliveryId, d.EventId, d.EventType, d.Attempt
		recs = append(recs, h.announce(operational.DeliveryDeadLettered, "dead/"+d.DeliveryId+"/"+strconv.Itoa(int(d.Attempt)), nowMs, p)...)
	}
	if dec.Disable != nil { // a 410: decide disabled it, with reason "gone"
		p := last
		p.Reason = dec.Disable.DisabledReason
		recs = append(recs, h.announce(operational.WebhookDisabled, "disabled/"+wh.Id+"/"+strconv.FormatInt(dec.Disable.Revision, 10), nowMs, p)...)
		h.forget(wh.Id)
		return recs
	}
	if sent == nil || errors.Is(sent.Err, errSecret) {
		return recs
	}
	success := out.GetClass() == pb.OutcomeClass_OUTCOME_CLASS_SUCCESS

	h.mu.Lock()
	tr := h.state[wh.Id]
	if tr == nil || wh.Revision > tr.revision {
		// First attempt seen, or the record changed since (re-enabled, edited, another worker's
		// write): the record's streak is the truth.
		tr = &tracked{revision: wh.Revision, healthState: healthState{FailingSinceMs: wh.FailingSinceMs,
			Failures: wh.ConsecutiveFailures, Disabled: !wh.Enabled}}
		h.state[wh.Id] = tr
	}
	prev := tr.healthState
	ch := judgeHealth(h.pol, prev, success, nowMs)
	tr.healthState = ch.State
	var next *pb.Webhook
	if ch.Persist {
		next = proto.Clone(wh).(*pb.Webhook)
		next.FailingSinceMs, next.ConsecutiveFailures = ch.State.FailingSinceMs, ch.State.Failures
		if ch.Disable {
			next.Enabled, next.DisabledReason, next.DisabledAtMs = false, "failing", nowMs
		}
		next.Revision, next.UpdatedAtMs = max(wh.Revision, tr.revision)+1, max(nowMs, wh.UpdatedAtMs)
		tr.revision = next.Revision
	}
	h.mu.Unlock()

	if next != nil {
		v, _ := proto.Marshal(next)
		recs = append(recs, &kgo.Record{Topic: h.topics.webhooks, Key: []byte(wh.Id), Value: v})
	}
	streak := ch.State
	if success {
		streak = prev // recovered: say how long it had been failing
	}
	for _, typ := range ch.Events {
		p := last
		p.ConsecutiveFailures, p.FailingSinceMs = streak.Failures, streak.FailingSinceMs
		if typ == operational.WebhookDisabled {
			p.Reason = "failing"
		}
		if typ == operational.WebhookRecovered {
			p.LastStatusCode, p.LastError = 0, ""
		}
		recs = append(recs, h.announce(typ, typ+"/"+wh.Id+"/"+strconv.FormatInt(streak.FailingSinceMs, 10), nowMs, p)...)
	}
	return recs
}

// forget drops a webhook's streak (disabled by a 410): its record is read again next time.
func (h *health) forget(id string) {
	h.mu.Lock()
	delete(h.state, id)
	h.mu.Unlock()
}

// announce makes one operational event's deliveries: one per enabled operational webhook that
// subscribes to its type, on `deliveries` like any other — the same worker, retries and attempt
// log, each operational endpoint isolated as every endpoint is. The ids derive from what the event
// is about (seed), so a worker that repeats an attempt after a crash repeats the same webhook-id.
func (h *health) announce(typ, seed string, atMs int64, p operational.Payload) []*kgo.Record {
	var recs []*kgo.Record
	eventID := "evt_op_" + hashID(typ+"\x00"+seed)
	var body []byte
	for _, ow := range h.reg.Webhooks(operational.PlatformProject) {
		if !ow.Enabled || !(slices.Contains(ow.EventTypes, typ) || slices.Contains(ow.EventTypes, "*")) {
			continue
		}
		if body == nil {
			body = operational.Body(eventID, typ, atMs, p)
		}
		d := &pb.Delivery{DeliveryId: "msg_" + hashID(eventID+"\x00"+ow.Id), EventId: eventID, WebhookId: ow.Id,
			ProjectId: operational.PlatformProject, EventType: typ, Body: body, Attempt: 1, CreatedAtMs: atMs,
			EventTimeMs: atMs, WebhookRevision: ow.Revision}
		v, _ := proto.Marshal(d)
		recs = append(recs, &kgo.Record{Topic: h.topics.deliveries, Key: []byte(ow.Id), Value: v})
	}
	return recs
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// hashID is a stable 128-bit id of s, as fan-out makes delivery ids.
func hashID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return idEncoding.EncodeToString(sum[:16])
}
