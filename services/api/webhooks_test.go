package api_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/surveyhooks/surveyhooks/pkg/registry"
	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

func fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

func TestProjectsNeedTheAdminTokenAndStoreOnlyTheKeyHash(t *testing.T) {
	s := startStack(t)
	s.must(http.StatusUnauthorized, "POST", "/v1/projects", "", map[string]any{"name": "Acme"})
	s.must(http.StatusUnauthorized, "POST", "/v1/projects", adminToken+"x", map[string]any{"name": "Acme"})
	require.Equal(t, "name", s.must(http.StatusBadRequest, "POST", "/v1/projects", adminToken, map[string]any{"name": " "}).errField())

	r := s.must(http.StatusCreated, "POST", "/v1/projects", adminToken, map[string]any{"name": "Acme"})
	id, key := r.str("id"), r.str("api_key")
	require.True(t, strings.HasPrefix(id, "prj_"), id)
	require.True(t, strings.HasPrefix(key, "shk_"), key)
	require.Equal(t, key[:10], r.str("api_key_prefix"))

	// A project key is not the admin token.
	s.must(http.StatusUnauthorized, "POST", "/v1/projects", key, map[string]any{"name": "Other"})
	s.must(http.StatusUnauthorized, "GET", "/v1/projects/"+id, key, nil)
	got := s.must(http.StatusOK, "GET", "/v1/projects/"+id, adminToken, nil)
	require.Equal(t, "Acme", got.str("name"))
	require.NotContains(t, got.body, "api_key", "the key is shown only once")
	s.must(http.StatusNotFound, "GET", "/v1/projects/prj_nope", adminToken, nil)

	rec := s.lastRecord(s.cfg.Kafka.Topics.Projects, id, func(*kgo.Record) bool { return true })
	p := decode(t, rec.Value, &pb.Project{})
	require.Equal(t, secrets.HashAPIKey(key), p.ApiKeyHash)
	require.False(t, bytes.Contains(rec.Value, []byte(key)), "the API key itself must not reach the topic")

	// The key works at once (read-your-writes through the registry).
	s.must(http.StatusOK, "GET", "/v1/webhooks", key, nil)
}

func TestCreatedWebhookIsInTheTopicWithASealedSecretWhenTheCallReturns(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	// A second reader, as fan-out and delivery are, started before the write.
	other, err := registry.New(s.cfg.Kafka, nil)
	require.NoError(t, err)
	s.run("registry", other.Run)

	r := s.webhook(key, map[string]any{"name": "CRM", "url": "https://example.com/hook",
		"events": []string{"survey.completed", "nps.scored", "nps.scored"}, "description": "to the CRM",
		"event_toggles": map[string]bool{"nps.scored": false}, "user_properties": []string{"plan"},
		"company_properties": []string{"size"}, "filter": `event.nps.score >= 9`, "transform": `{"id": event.event_id}`,
		"format": "screeb", "rate_limit_per_s": 5, "headers": map[string]string{"x-team": "growth"}})
	id, secret := r.str("id"), r.str("secret")
	require.True(t, strings.HasPrefix(id, "wh_"), id)
	require.NoError(t, secrets.ValidateWebhookSecret(secret))
	require.Equal(t, []any{"nps.scored", "survey.completed"}, r.body["events"], "sorted, de-duplicated")
	require.Equal(t, true, r.body["enabled"])
	require.Equal(t, "1", r.body["payload_version"])
	require.Equal(t, map[string]any{"X-Team": "growth"}, r.body["headers"])
	require.Equal(t, "/v1/webhooks/"+id, r.header.Get("Location"))

	// No waiting: the record is in the topic, and another registry reaches it.
	require.NoError(t, other.WaitFresh(s.ctx))
	wh := other.Webhook(id)
	require.NotNil(t, wh)
	require.Equal(t, "https://example.com/hook", wh.Url)
	require.Equal(t, map[string]bool{"nps.scored": false}, wh.EventToggles)
	require.Equal(t, "event.nps.score >= 9", wh.Filter)
	require.Equal(t, `{"id": event.event_id}`, wh.Transform)
	require.Equal(t, "screeb", wh.Format)
	require.EqualValues(t, 5, wh.RateLimitPerS)
	require.EqualValues(t, 1, wh.Revision)
	require.Len(t, wh.Secrets, 1)
	opened, err := s.box.Open(wh.Secrets[0].Sealed)
	require.NoError(t, err)
	require.Equal(t, secret, opened)
	rec := s.lastRecord(s.cfg.Kafka.Topics.Webhooks, id, func(*kgo.Record) bool { return true })
	require.False(t, bytes.Contains(rec.Value, []byte(secret)), "the secret must be sealed in the topic")
	require.False(t, bytes.Contains(rec.Value, []byte(strings.TrimPrefix(secret, "whsec_"))))

	// Reads show metadata only, never the secret.
	for _, got := range []reply{s.must(http.StatusOK, "GET", "/v1/webhooks/"+id, key, nil),
		{body: s.must(http.StatusOK, "GET", "/v1/webhooks", key, nil).list()[0], raw: nil}} {
		require.NotContains(t, got.body, "secret")
		secretsMeta := got.body["secrets"].([]any)
		require.Len(t, secretsMeta, 1)
		require.Equal(t, fingerprint(secret), secretsMeta[0].(map[string]any)["fingerprint"])
	}
	require.NotContains(t, string(s.must(http.StatusOK, "GET", "/v1/webhooks/"+id, key, nil).raw), strings.TrimPrefix(secret, "whsec_"))

	// A secret of the subscriber's choosing is kept as given.
	mine := secrets.NewWebhookSecret()
	r = s.webhook(key, map[string]any{"url": "http://example.com/2", "secret": mine, "enabled": false})
	require.Equal(t, mine, r.str("secret"))
	require.Equal(t, false, r.body["enabled"])
}

func TestInvalidWebhooksAreRefusedNamingTheField(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	valid := func() map[string]any {
		return map[string]any{"name": "n", "url": "https://example.com/h", "events": []string{"survey.completed"}}
	}
	props := make([]string, 11)
	for i := range props {
		props[i] = fmt.Sprintf("p%d", i)
	}
	cases := []struct {
		name  string
		set   map[string]any
		field string
		code  string
	}{
		{"no name", map[string]any{"name": ""}, "name", "invalid_field"},
		{"name of the wrong type", map[string]any{"name": 5}, "name", "invalid_field"},
		{"no url", map[string]any{"url": nil}, "url", "invalid_field"},
		{"ftp url", map[string]any{"url": "ftp://example.com/x"}, "url", "invalid_field"},
		{"relative url", map[string]any{"url": "/hook"}, "url", "invalid_field"},
		{"url without host", map[string]any{"url": "https:///x"}, "url", "invalid_field"},
		{"url with credentials", map[string]any{"url": "https://u:p@example.com/"}, "url", "invalid_field"},
		{"url too long", map[string]any{"url": "https://example.com/" + strings.Repeat("a", 2030)}, "url", "invalid_field"},
		{"no events", map[string]any{"events": []string{}}, "events", "invalid_field"},
		{"unknown event", map[string]any{"events": []string{"nps.scored", "survey.finished"}}, "events[1]", "invalid_field"},
		{"test event is not subscribable", map[string]any{"events": []string{"webhook.test"}}, "events[0]", "invalid_field"},
		{"unknown toggle", map[string]any{"event_toggles": map[string]bool{"nps.maybe": true}}, "event_toggles.nps.maybe", "invalid_field"},
		{"eleven properties", map[string]any{"user_properties": props[:6], "company_properties": props[6:]}, "user_properties", "invalid_field"},
		{"empty property", map[string]any{"company_properties": []string{""}}, "company_properties[0]", "invalid_field"},
		{"unknown payload version", map[string]any{"payload_version": "2"}, "payload_version", "invalid_field"},
		{"unknown format", map[string]any{"format": "xml"}, "format", "invalid_field"},
		{"negative rate limit", map[string]any{"rate_limit_per_s": -1}, "rate_limit_per_s", "invalid_field"},
		{"webhook- header", map[string]any{"headers": map[string]string{"Webhook-Id": "x"}}, "headers.Webhook-Id", "invalid_field"},
		{"hop-by-hop header", map[string]any{"headers": map[string]string{"Connection": "close"}}, "headers.Connection", "invalid_field"},
		{"content-type header", map[string]any{"headers": map[string]string{"content-type": "text/plain"}}, "headers.Content-Type", "invalid_field"},
		{"signature header", map[string]any{"headers": map[string]string{"X-Webhook-Signature": "x"}}, "headers.X-Webhook-Signature", "invalid_field"},
		{"bad header name", map[string]any{"headers": map[string]string{"Bad Header": "x"}}, "headers.Bad Header", "invalid_field"},
		{"header value with a newline", map[string]any{"headers": map[string]string{"X-A": "a\r\nX-B: b"}}, "headers.X-A", "invalid_field"},
		{"filter too long", map[string]any{"filter": strings.Repeat("x", 5000)}, "filter", "invalid_field"},
		{"filter that does not parse", map[string]any{"filter": `event.nps.score <=`}, "filter", "invalid_field"},
		{"filter on an unknown field", map[string]any{"filter": `event.nps.grade == 3`}, "filter", "invalid_field"},
		{"filter that is not a bool", map[string]any{"filter": `event.nps.score`}, "filter", "invalid_field"},
		{"transform that does not parse", map[string]any{"transform": `{"a": `}, "transform", "invalid_field"},
		{"transform that is not an object", map[string]any{"transform": `"text"`}, "transform", "invalid_field"},
		{"bad secret", map[string]any{"secret": "hunter2"}, "secret", "invalid_field"},
		{"masking path with an empty segment", map[string]any{"masking": []map[string]any{{"path": "payload.user.email", "action": "hash"},
			{"path": "payload..email", "action": "drop"}}}, "masking[1].path", "invalid_field"},
		{"masking path with an index", map[string]any{"masking": []map[string]any{{"path": "items[0].value", "action": "drop"}}}, "masking[0].path", "invalid_field"},
		{"masking without a path", map[string]any{"masking": []map[string]any{{"action": "drop"}}}, "masking[0].path", "invalid_field"},
		{"unknown masking action", map[string]any{"masking": []map[string]any{{"path": "payload.user.email", "action": "encrypt"}}}, "masking[0].action", "invalid_field"},
		{"masking keep out of range", map[string]any{"masking": []map[string]any{{"path": "payload.user.email", "action": "mask", "keep": 100}}}, "masking[0].keep", "invalid_field"},
		{"unknown field", map[string]any{"colour": "red"}, "colour", "unknown_field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := valid()
			for k, v := range c.set {
				if v == nil {
					delete(body, k)
				} else {
					body[k] = v
				}
			}
			r := s.must(http.StatusBadRequest, "POST", "/v1/webhooks", key, body)
			require.Equal(t, c.code, r.errCode(), "%s", r)
			require.Equal(t, c.field, r.errField(), "%s", r)
		})
	}
	bad := valid()
	bad["filter"] = `event.type == "nps.scored" && event.nps.score <=`
	r := s.must(http.StatusBadRequest, "POST", "/v1/webhooks", key, bad)
	require.Contains(t, string(r.raw), "Syntax error", "the parser's own message reaches the caller: %s", r)
	bad["filter"] = `event.nps.grade == 3`
	r = s.must(http.StatusBadRequest, "POST", "/v1/webhooks", key, bad)
	require.Contains(t, string(r.raw), "grade", "the message names the unknown field: %s", r)
	require.Equal(t, "invalid_json", s.must(http.StatusBadRequest, "POST", "/v1/webhooks", key, "[1]").errCode())
	require.Equal(t, "invalid_json", s.must(http.StatusBadRequest, "POST", "/v1/webhooks", key, "{").errCode())
	require.Empty(t, s.must(http.StatusOK, "GET", "/v1/webhooks", key, nil).list(), "nothing invalid was stored")
}

func TestMaskingRulesAreStoredShownAndReplacedByPatch(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	r := s.webhook(key, map[string]any{"url": "https://example.com/h", "events": []string{"nps.scored"},
		"masking": []map[string]any{{"path": "payload.user.email", "action": "hash"},
			{"path": "payload.response.items[*].answer.fields[*].value", "action": "mask", "keep": 2}}})
	id := r.str("id")
	want := []any{map[string]any{"path": "payload.user.email", "action": "hash"},
		map[string]any{"path": "payload.response.items[*].answer.fields[*].value", "action": "mask", "keep": float64(2)}}
	require.Equal(t, want, r.body["masking"])
	require.Equal(t, want, s.must(http.StatusOK, "GET", "/v1/webhooks/"+id, key, nil).body["masking"])
	wh := decode(t, s.lastRecord(s.cfg.Kafka.Topics.Webhooks, id, func(*kgo.Record) bool { return true }).Value, &pb.Webhook{})
	require.Len(t, wh.Masking, 2)
	require.Equal(t, "hash", wh.Masking[0].Action)

	got := s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+id, key, map[string]any{"masking": []map[string]any{{"path": "payload.user.id", "action": "drop"}}})
	require.Equal(t, []any{map[string]any{"path": "payload.user.id", "action": "drop"}}, got.body["masking"])
	require.Equal(t, "masking[0].action", s.must(http.StatusBadRequest, "PATCH", "/v1/webhooks/"+id, key,
		map[string]any{"masking": []map[string]any{{"path": "payload.user.id", "action": "shred"}}}).errField())
	got = s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+id, key, map[string]any{"masking": nil})
	require.Equal(t, []any{}, got.body["masking"])
}

func TestPatchMergesLikeAJSONMergePatch(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	r := s.webhook(key, map[string]any{"url": "https://example.com/h", "events": []string{"nps.scored", "nps.feedback"},
		"description": "d", "user_properties": []string{"plan"}, "rate_limit_per_s": 3,
		"headers": map[string]string{"X-A": "1", "X-B": "2"}, "event_toggles": map[string]bool{"nps.scored": false}})
	id := r.str("id")
	path := "/v1/webhooks/" + id

	got := s.must(http.StatusOK, "PATCH", path, key, map[string]any{"name": "renamed", "description": nil,
		"headers": map[string]any{"x-a": nil, "X-C": "3"}, "event_toggles": map[string]any{"nps.feedback": false}})
	require.Equal(t, "renamed", got.str("name"))
	require.Equal(t, "", got.str("description"), "null returns a member to its default")
	require.Equal(t, map[string]any{"X-B": "2", "X-C": "3"}, got.body["headers"], "objects merge key by key, case-insensitively for headers")
	require.Equal(t, map[string]any{"nps.scored": false, "nps.feedback": false}, got.body["event_toggles"])
	require.Equal(t, "https://example.com/h", got.str("url"), "members not given stay")
	require.Equal(t, []any{"plan"}, got.body["user_properties"])
	require.EqualValues(t, 3, got.body["rate_limit_per_s"])
	require.EqualValues(t, 2, got.body["revision"])

	require.Equal(t, false, got.body["retry_client_errors"], "4xx is permanent unless asked")
	got = s.must(http.StatusOK, "PATCH", path, key, map[string]any{"retry_client_errors": true})
	require.Equal(t, true, got.body["retry_client_errors"])
	got = s.must(http.StatusOK, "PATCH", path, key, map[string]any{"retry_client_errors": nil})
	require.Equal(t, false, got.body["retry_client_errors"])

	got = s.must(http.StatusOK, "PATCH", path, key, map[string]any{"user_properties": nil, "rate_limit_per_s": nil,
		"event_toggles": nil, "events": []string{"survey.completed"}})
	require.Equal(t, []any{}, got.body["user_properties"])
	require.EqualValues(t, 0, got.body["rate_limit_per_s"])
	require.Equal(t, map[string]any{}, got.body["event_toggles"])
	require.Equal(t, []any{"survey.completed"}, got.body["events"], "arrays are replaced")

	// Refused patches change nothing.
	require.Equal(t, "secret", s.must(http.StatusBadRequest, "PATCH", path, key, map[string]any{"secret": secrets.NewWebhookSecret()}).errField())
	require.Equal(t, "events", s.must(http.StatusBadRequest, "PATCH", path, key, map[string]any{"events": []string{}}).errField())
	require.Equal(t, "url", s.must(http.StatusBadRequest, "PATCH", path, key, map[string]any{"url": nil}).errField())
	require.Equal(t, "rate_limit_per_s", s.must(http.StatusBadRequest, "PATCH", path, key, map[string]any{"rate_limit_per_s": "fast"}).errField())
	after := s.must(http.StatusOK, "GET", path, key, nil)
	require.EqualValues(t, 5, after.body["revision"])
	require.Equal(t, "https://example.com/h", after.str("url"))
	require.EqualValues(t, 5, s.must(http.StatusOK, "PATCH", path, key, map[string]any{}).body["revision"], "an empty patch changes nothing")
	require.EqualValues(t, 5, s.must(http.StatusOK, "PATCH", path, key, map[string]any{"url": "https://example.com/h"}).body["revision"])

	// The topic holds what the API answered.
	wh := decode(t, s.lastRecord(s.cfg.Kafka.Topics.Webhooks, id, func(r *kgo.Record) bool {
		w := &pb.Webhook{}
		return proto.Unmarshal(r.Value, w) == nil && w.Revision == 5
	}).Value, &pb.Webhook{})
	require.Equal(t, []string{"survey.completed"}, wh.EventTypes)
	require.Equal(t, map[string]string{"X-B": "2", "X-C": "3"}, wh.Headers)
	require.Len(t, wh.Secrets, 1, "a patch keeps the secret")
}

func TestConcurrentPatchesOfOneWebhookAllApply(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	id := s.webhook(key, map[string]any{"url": "https://example.com/h"}).str("id")
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+id, key, map[string]any{"headers": map[string]string{fmt.Sprintf("X-N%d", i): "v"}})
		}()
	}
	wg.Wait()
	got := s.must(http.StatusOK, "GET", "/v1/webhooks/"+id, key, nil)
	require.Len(t, got.body["headers"], 10, "no change was lost: %s", got)
	require.EqualValues(t, 11, got.body["revision"])
}

func TestRotationKeepsAtMostThreeSecretsAndShowsTheNewOneOnce(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	first := secrets.NewWebhookSecret()
	id := s.webhook(key, map[string]any{"url": "https://example.com/h", "secret": first}).str("id")
	rotate := "/v1/webhooks/" + id + "/secrets/rotate"

	r := s.must(http.StatusOK, "POST", rotate, key, nil)
	second := r.str("secret")
	require.NoError(t, secrets.ValidateWebhookSecret(second))
	require.NotEqual(t, first, second)
	meta := r.body["secrets"].([]any)
	require.Len(t, meta, 2)
	require.Equal(t, fingerprint(second), meta[0].(map[string]any)["fingerprint"], "newest first")
	require.NotContains(t, meta[0], "expires_at", "the new secret does not expire")
	require.Equal(t, fingerprint(first), meta[1].(map[string]any)["fingerprint"])
	exp, err := time.Parse(time.RFC3339, meta[1].(map[string]any)["expires_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(24*time.Hour), exp, time.Minute, "the previous secret signs for 24 h by default")

	third := secrets.NewWebhookSecret()
	r = s.must(http.StatusOK, "POST", rotate, key, map[string]any{"secret": third, "expire_previous_in_s": 600})
	require.Equal(t, third, r.str("secret"))
	fourth := s.must(http.StatusOK, "POST", rotate, key, map[string]any{}).str("secret")
	got := s.must(http.StatusOK, "GET", "/v1/webhooks/"+id, key, nil)
	require.NotContains(t, got.body, "secret")
	var fps []any
	for _, m := range got.body["secrets"].([]any) {
		fps = append(fps, m.(map[string]any)["fingerprint"])
	}
	require.Equal(t, []any{fingerprint(fourth), fingerprint(third), fingerprint(second)}, fps, "at most 3, the oldest dropped")

	wh := decode(t, s.lastRecord(s.cfg.Kafka.Topics.Webhooks, id, func(r *kgo.Record) bool {
		w := &pb.Webhook{}
		return proto.Unmarshal(r.Value, w) == nil && w.Revision == 4
	}).Value, &pb.Webhook{})
	var opened []string
	for _, sc := range wh.Secrets {
		o, err := s.box.Open(sc.Sealed)
		require.NoError(t, err)
		opened = append(opened, o)
	}
	require.Equal(t, []string{fourth, third, second}, opened)

	r = s.must(http.StatusOK, "POST", rotate, key, map[string]any{"expire_previous_in_s": 0})
	require.Len(t, r.body["secrets"], 1, "expire_previous_in_s 0 stops the previous secrets at once")
	require.Equal(t, "expire_previous_in_s", s.must(http.StatusBadRequest, "POST", rotate, key, map[string]any{"expire_previous_in_s": -1}).errField())
	require.Equal(t, "secret", s.must(http.StatusBadRequest, "POST", rotate, key, map[string]any{"secret": "whsec_short"}).errField())
}

func TestDeleteWritesATombstone(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	id := s.webhook(key, map[string]any{"url": "https://example.com/h"}).str("id")
	keep := s.webhook(key, map[string]any{"url": "https://example.com/k"}).str("id")
	s.must(http.StatusNoContent, "DELETE", "/v1/webhooks/"+id, key, nil)
	s.lastRecord(s.cfg.Kafka.Topics.Webhooks, id, func(r *kgo.Record) bool { return r.Value == nil })
	s.must(http.StatusNotFound, "GET", "/v1/webhooks/"+id, key, nil)
	s.must(http.StatusNotFound, "DELETE", "/v1/webhooks/"+id, key, nil)
	list := s.must(http.StatusOK, "GET", "/v1/webhooks", key, nil).list()
	require.Len(t, list, 1)
	require.Equal(t, keep, list[0]["id"])
}

func TestUnknownRoutesMethodsAndKeysAnswerJSONErrors(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	require.Equal(t, "not_found", s.must(http.StatusNotFound, "GET", "/v1/nope", key, nil).errCode())
	r := s.must(http.StatusMethodNotAllowed, "PUT", "/v1/webhooks", key, nil)
	require.Equal(t, "method_not_allowed", r.errCode())
	require.Contains(t, r.header.Get("Allow"), "POST")
	require.Equal(t, "unauthorized", s.must(http.StatusUnauthorized, "GET", "/v1/webhooks", "shk_wrong", nil).errCode())
	// The admin token acts for a project only when it names one (keys_test.go).
	require.Equal(t, "X-Surveyhooks-Project", s.must(http.StatusBadRequest, "GET", "/v1/webhooks", adminToken, nil).errField())
	require.Equal(t, "unauthorized", s.must(http.StatusUnauthorized, "GET", "/v1/webhooks", "", nil).errCode())
	require.Equal(t, "limit", s.must(http.StatusBadRequest, "GET", "/v1/webhooks?limit=5", key, nil).errField())
	doc := s.must(http.StatusOK, "GET", "/openapi.json", "", nil)
	require.Equal(t, "3.0.3", doc.str("openapi"))
}

func TestManagementWorksWhileClickHouseIsDownAndQueriesAnswer503(t *testing.T) {
	s := startStack(t) // ClickHouse address: a port nothing listens on
	_, key := s.project("Acme")
	id := s.webhook(key, map[string]any{"url": "https://example.com/h"}).str("id")
	s.must(http.StatusOK, "PATCH", "/v1/webhooks/"+id, key, map[string]any{"name": "still works"})
	for _, path := range []string{"/v1/attempts", "/v1/webhooks/" + id + "/attempts", "/v1/attempts/att_1",
		"/v1/events/evt_1/attempts", "/v1/webhooks/" + id + "/stats", "/v1/dead-letters"} {
		r := s.must(http.StatusServiceUnavailable, "GET", path, key, nil)
		require.Equal(t, "log_unavailable", r.errCode(), path)
		require.Contains(t, r.body["error"].(map[string]any)["message"], "ClickHouse")
	}
	s.must(http.StatusServiceUnavailable, "POST", "/v1/dead-letters/dl_1/replay", key, nil)
	// Bad parameters are still named first.
	require.Equal(t, "limit", s.must(http.StatusBadRequest, "GET", "/v1/attempts?limit=0", key, nil).errField())
}

func TestRetryPolicyIsAPresetShownAndValidated(t *testing.T) {
	s := startStack(t)
	_, key := s.project("Acme")
	r := s.webhook(key, map[string]any{"url": "https://example.com/h", "events": []string{"nps.scored"}})
	require.Equal(t, "default", r.str("retry_policy"), "today's rule unless another is chosen")
	path := "/v1/webhooks/" + r.str("id")
	for _, p := range []string{"screeb", "askusers", "segmanta", "default"} {
		require.Equal(t, p, s.must(http.StatusOK, "PATCH", path, key, map[string]any{"retry_policy": p}).str("retry_policy"))
	}
	bad := s.must(http.StatusBadRequest, "PATCH", path, key, map[string]any{"retry_policy": "forever"})
	require.Contains(t, string(bad.raw), "retry_policy", "the error names the field: %s", bad)
	created := s.webhook(key, map[string]any{"url": "https://example.com/h2", "events": []string{"nps.scored"}, "retry_policy": "askusers"})
	require.Equal(t, "askusers", created.str("retry_policy"))
	require.Equal(t, "askusers", s.must(http.StatusOK, "GET", "/v1/webhooks/"+created.str("id"), key, nil).str("retry_policy"))
}
