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
		"nope":                     "24 to 128 characters of your own; got 4",
		"whsec_!!!":                "standard base64",
		"whsec_c2hvcnQ=":           "24 to 64 bytes",
		secrets.NewWebhookSecret(): "",
		// Customer-chosen secrets (Userpilot, Refiner): 24 to 128 printable ASCII characters.
		"correct-horse-battery-st":                     "",
		"correct-horse-battery-s":                      "got 23 characters",
		"Tr0ub4dor&3!{}~[]|\\^`'\"<>?/.,;:=+_-)(*%$#@": "",
		strings.Repeat("k", 128):                       "",
		strings.Repeat("k", 129):                       "got 129 characters",
		"correct horse battery staple":                 "printable ASCII without spaces (character 8",
		"correct-horse-battery-staple\n":               "(character 29",
		"correct-horse-battery-stäple":                 "printable ASCII",
		"correct-horse-battery-\x00staple":             "printable ASCII",
	} {
		err := secrets.ValidateWebhookSecret(in)
		if want == "" {
			require.NoError(t, err, in)
			continue
		}
		require.ErrorContains(t, err, want, in)
		if len(in) > 8 {
			require.NotContains(t, err.Error(), in[:8], "the error never repeats the secret")
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

func TestSigningKeyPairsMatchAndParse(t *testing.T) {
	private, public := secrets.NewSigningKey()
	require.True(t, strings.HasPrefix(private, "whsk_"))
	require.True(t, strings.HasPrefix(public, "whpk_"))
	got, err := secrets.PublicKeyOf(private)
	require.NoError(t, err)
	require.Equal(t, public, got)
	_, err = secrets.ParseSigningKey("whsk_c2hvcnQ=")
	require.Error(t, err)
	_, err = secrets.ParseSigningKey(secrets.NewWebhookSecret())
	require.Error(t, err)
}
