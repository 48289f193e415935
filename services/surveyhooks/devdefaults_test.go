package surveyhooks

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/config"
	"github.com/surveyhooks/surveyhooks/services/api"
	"github.com/surveyhooks/surveyhooks/services/delivery"
	"github.com/surveyhooks/surveyhooks/services/fanout"
	"github.com/surveyhooks/surveyhooks/services/sink"
)

// TestDevDefaultsFillTheServicesConfigsNotTheProcessEnvironment: what production must set (admin
// token, encryption key, allow-list) gets a development value in the all-in-one's Env, the
// services' typed configs load it, and the process environment is left alone.
func TestDevDefaultsFillTheServicesConfigsNotTheProcessEnvironment(t *testing.T) {
	for _, k := range []string{"SURVEYHOOKS_ADMIN_TOKEN", "SURVEYHOOKS_ENCRYPTION_KEY", "SURVEYHOOKS_ALLOW_DESTINATIONS"} {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := config.Environ()
	require.NoError(t, devDefaults(Config{DataDir: dir}, e, log))
	require.Equal(t, DevAdminToken, e.Get("SURVEYHOOKS_ADMIN_TOKEN"))
	require.Equal(t, "127.0.0.0/8,::1/128", e.Get("SURVEYHOOKS_ALLOW_DESTINATIONS"))
	key, err := os.ReadFile(filepath.Join(dir, "encryption.key"))
	require.NoError(t, err)
	require.Equal(t, string(key), e.Get("SURVEYHOOKS_ENCRYPTION_KEY"), "the key is kept in the data folder")
	for _, k := range []string{"SURVEYHOOKS_ADMIN_TOKEN", "SURVEYHOOKS_ENCRYPTION_KEY", "SURVEYHOOKS_ALLOW_DESTINATIONS"} {
		require.Empty(t, os.Getenv(k), "%s must not be written to the process environment", k)
	}

	var dcfg delivery.Config
	require.NoError(t, config.LoadEnv(&dcfg, e))
	require.Equal(t, e.Get("SURVEYHOOKS_ENCRYPTION_KEY"), dcfg.EncryptionKey)
	require.Equal(t, "127.0.0.0/8,::1/128", dcfg.AllowDestinations)
	var acfg api.Config
	require.NoError(t, config.LoadEnv(&acfg, e))
	// Fan-out and the sink derive the masking keys from it (docs/privacy.md, Masking).
	var fcfg fanout.Config
	require.NoError(t, config.LoadEnv(&fcfg, e))
	require.Equal(t, e.Get("SURVEYHOOKS_ENCRYPTION_KEY"), fcfg.EncryptionKey)
	require.NoError(t, fcfg.Validate())
	var scfg sink.Config
	require.NoError(t, config.LoadEnv(&scfg, e))
	require.Equal(t, e.Get("SURVEYHOOKS_ENCRYPTION_KEY"), scfg.EncryptionKey)

	again := config.Environ()
	require.NoError(t, devDefaults(Config{DataDir: dir}, again, log))
	require.Equal(t, e.Get("SURVEYHOOKS_ENCRYPTION_KEY"), again.Get("SURVEYHOOKS_ENCRYPTION_KEY"), "the same key after a restart")

	set := config.Env{"SURVEYHOOKS_ADMIN_TOKEN": "mine", "SURVEYHOOKS_ENCRYPTION_KEY": "k", "SURVEYHOOKS_ALLOW_DESTINATIONS": "10.0.0.0/8"}
	require.NoError(t, devDefaults(Config{DataDir: dir}, set, log))
	require.Equal(t, config.Env{"SURVEYHOOKS_ADMIN_TOKEN": "mine", "SURVEYHOOKS_ENCRYPTION_KEY": "k", "SURVEYHOOKS_ALLOW_DESTINATIONS": "10.0.0.0/8"}, set,
		"what is configured wins")
}
