package masking_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/masking"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
)

var key = masking.ProjectKey([]byte("0123456789abcdef0123456789abcdef"), "prj_a")

func apply(t *testing.T, body string, rules ...*pb.MaskingRule) string {
	t.Helper()
	m, err := masking.Compile("masking", rules)
	require.NoError(t, err)
	out, err := m.Apply([]byte(body), key)
	require.NoError(t, err)
	return string(out)
}

func TestRulesHideOnlyTheirFieldsAndKeepTheRestAsRendered(t *testing.T) {
	const items = `{"payload":{"response":{"items":[{"answer":{"fields":[{"value":"Ada","id":1},{"value":"x@y.z"}]}},{"answer":{"fields":[{"value":7}]}}]}}}`
	for _, tc := range []struct {
		name, body string
		rule       *pb.MaskingRule
		want       string
	}{
		{"drop a member", `{"a":1,"payload":{"user":{"id":"u1","email":"ada@example.com"}},"z":"<&>"}`,
			&pb.MaskingRule{Path: "payload.user.email", Action: "drop"},
			`{"a":1,"payload":{"user":{"id":"u1"}},"z":"<&>"}`},
		{"mask keeps a prefix", `{"payload":{"user":{"email":"ada@example.com"}}}`,
			&pb.MaskingRule{Path: "payload.user.email", Action: "mask", Keep: 3},
			`{"payload":{"user":{"email":"ada***"}}}`},
		{"mask never shows a whole short value", `{"e":"ab"}`,
			&pb.MaskingRule{Path: "e", Action: "mask", Keep: 3}, `{"e":"***"}`},
		{"mask counts characters, not bytes", `{"e":"éèêë"}`,
			&pb.MaskingRule{Path: "e", Action: "mask", Keep: 2}, `{"e":"éè***"}`},
		{"[*] reaches every element, at every level", items,
			&pb.MaskingRule{Path: "payload.response.items[*].answer.fields[*].value", Action: "mask"},
			`{"payload":{"response":{"items":[{"answer":{"fields":[{"value":"***","id":1},{"value":"***"}]}},{"answer":{"fields":[{"value":"***"}]}}]}}}`},
		{"drop array elements", `{"tags":["a","b"],"n":1}`,
			&pb.MaskingRule{Path: "tags[*]", Action: "drop"}, `{"tags":[],"n":1}`},
		{"a missing path changes nothing, byte for byte", "{\"a\": 1,\n \"b\": [1, 2]}",
			&pb.MaskingRule{Path: "payload.user.email", Action: "hash"}, "{\"a\": 1,\n \"b\": [1, 2]}"},
		{"null stays null", `{"e":null}`, &pb.MaskingRule{Path: "e", Action: "hash"}, `{"e":null}`},
		{"names may hold spaces", `{"traits":{"how big":"10+"}}`,
			&pb.MaskingRule{Path: "traits.how big", Action: "drop"}, `{"traits":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, apply(t, tc.body, tc.rule))
		})
	}
}

func TestHashIsKeyedPerProject(t *testing.T) {
	rule := &pb.MaskingRule{Path: "payload.user.email", Action: "hash"}
	a := apply(t, `{"payload":{"user":{"email":"ada@example.com"}}}`, rule)
	require.NotContains(t, a, "ada@example.com")
	require.Regexp(t, `^\{"payload":\{"user":\{"email":"[0-9a-f]{64}"\}\}\}$`, a)
	require.Equal(t, a, apply(t, `{"payload":{"user":{"email":"ada@example.com"}}}`, rule), "the same value, the same hash")

	m, err := masking.Compile("masking", []*pb.MaskingRule{rule})
	require.NoError(t, err)
	other, err := m.Apply([]byte(`{"payload":{"user":{"email":"ada@example.com"}}}`),
		masking.ProjectKey([]byte("0123456789abcdef0123456789abcdef"), "prj_b"))
	require.NoError(t, err)
	require.NotEqual(t, a, string(other), "another project hashes differently")

	_, err = m.Apply([]byte(`{}`), nil)
	require.ErrorIs(t, err, masking.ErrNoKey)
}

func TestBadRulesNameTheirField(t *testing.T) {
	for _, tc := range []struct {
		rule  *pb.MaskingRule
		field string
	}{
		{&pb.MaskingRule{Path: "", Action: "drop"}, "masking[1].path"},
		{&pb.MaskingRule{Path: "a..b", Action: "drop"}, "masking[1].path"},
		{&pb.MaskingRule{Path: "a[0].b", Action: "drop"}, "masking[1].path"},
		{&pb.MaskingRule{Path: "a.b", Action: "encrypt"}, "masking[1].action"},
		{&pb.MaskingRule{Path: "a.b", Action: "mask", Keep: -1}, "masking[1].keep"},
		{&pb.MaskingRule{Path: "a.b", Action: "hash", Keep: 3}, "masking[1].keep"},
	} {
		_, err := masking.Compile("masking", []*pb.MaskingRule{{Path: "ok", Action: "drop"}, tc.rule})
		var fe *masking.FieldError
		require.True(t, errors.As(err, &fe), "%v", tc.rule)
		require.Equal(t, tc.field, fe.Field)
	}
}

func TestRespondentHashesNameTheSamePersonWhoeverComputesThem(t *testing.T) {
	fromEvent := masking.RespondentHashes(key, "u-42", "anon-7", "Ada@Example.com")
	require.Len(t, fromEvent, 3)
	require.Subset(t, fromEvent, masking.RespondentHashes(key, "", "", "ada@example.COM"), "an e-mail in any case")
	require.Subset(t, fromEvent, masking.RespondentHashes(key, "u-42", "", ""))
	require.NotContains(t, fromEvent, masking.RespondentHashes(key, "u-4", "", "")[0])
	require.Empty(t, masking.RespondentHashes(key, " ", "", ""), "blank identifiers name nobody")
	require.Nil(t, masking.RespondentHashes(nil, "u-42", "", ""), "no key, no hash")
	other := masking.RespondentHashes(masking.ProjectKey([]byte("0123456789abcdef0123456789abcdef"), "prj_b"), "u-42", "", "")
	require.NotContains(t, fromEvent, other[0], "keyed per project")
	for _, h := range fromEvent {
		require.Regexp(t, "^[0-9a-f]{64}$", h, "a hash, never the identifier")
	}
}
