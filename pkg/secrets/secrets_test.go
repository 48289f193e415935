package secrets_test

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
)

func TestGeneratedSecretsAreValidAndDistinct(t *testing.T) {
	a, b := secrets.NewWebhookSecret(), secrets.NewWebhookSecret()
	require.NotEqual(t, a, b)
	require.NoError(t, secrets.ValidateWebhookSecret(a))
	require.True(t, strings.HasPrefix(secrets.NewAPIKey(), "shk_"))
}

func TestValidateWebhookSecretNamesTheProblem(t *testing.T) {
	for in, want := range map[string]string{
		"nope":                     "must start with",
		"whsec_!!!":                "standard base64",
		"whsec_c2hvcnQ=":           "24 to 64 bytes",
		secrets.NewWebhookSecret(): "",
	} {
		err := secrets.ValidateWebhookSecret(in)
		if want == "" {
			require.NoError(t, err)
		} else {
			require.ErrorContains(t, err, want, in)
		}
	}
}

func TestBoxSealsAndOpensAndRefusesTheWrongKey(t *testing.T) {
	key := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	box, err := secrets.NewBox(key())
	require.NoError(t, err)
	sealed := box.Seal("whsec_abc")
	require.NotContains(t, string(sealed), "whsec_abc")
	got, err := box.Open(sealed)
	require.NoError(t, err)
	require.Equal(t, "whsec_abc", got)

	other, err := secrets.NewBox(key())
	require.NoError(t, err)
	_, err = other.Open(sealed)
	require.ErrorContains(t, err, "SURVEYHOOKS_ENCRYPTION_KEY")

	_, err = secrets.NewBox("c2hvcnQ=")
	require.ErrorContains(t, err, "32 bytes")
}
