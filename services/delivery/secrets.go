package delivery

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/secrets"
	pb "github.com/surveyhooks/surveyhooks/proto/surveyhooks/v1"
	"github.com/surveyhooks/surveyhooks/services/delivery/sender"
)

// secretCache opens each webhook's sealed secrets (and its mTLS client key) once per revision:
// AES-GCM on every request would cost more than the HMAC.
type secretCache struct {
	box *secrets.Box
	mu  sync.Mutex
	m   map[string]*openSecrets
}

type openSecrets struct {
	revision int64
	plain    []string
	expires  []int64
	cert     *sender.ClientCert
}

func newSecretCache(box *secrets.Box) *secretCache {
	return &secretCache{box: box, m: map[string]*openSecrets{}}
}

// open returns the webhook's unexpired secrets, newest first, and its client certificate (nil:
// none). The slice may be shared: read it only.
func (c *secretCache) open(wh *pb.Webhook, now time.Time) ([]string, *sender.ClientCert, error) {
	c.mu.Lock()
	os := c.m[wh.Id]
	c.mu.Unlock()
	if os == nil || os.revision != wh.Revision {
		os = &openSecrets{revision: wh.Revision}
		for _, s := range wh.Secrets {
			p, err := c.box.Open(s.Sealed)
			if err != nil {
				return nil, nil, fmt.Errorf("opening webhook secret: %w", err)
			}
			os.plain = append(os.plain, p)
			os.expires = append(os.expires, s.ExpiresAtMs)
		}
		if wh.ClientCertificate != "" {
			key, err := c.box.Open(wh.ClientKeySealed)
			if err != nil {
				return nil, nil, fmt.Errorf("opening the webhook's client key: %w", err)
			}
			pair, err := tls.X509KeyPair([]byte(wh.ClientCertificate), []byte(key))
			if err != nil {
				return nil, nil, fmt.Errorf("loading the webhook's client certificate: %w", err)
			}
			// Connections with this certificate are pooled apart, per webhook and revision.
			os.cert = &sender.ClientCert{Owner: wh.Id, Version: strconv.FormatInt(wh.Revision, 10), Certificate: pair}
		}
		c.mu.Lock()
		c.m[wh.Id] = os
		c.mu.Unlock()
	}
	if !slices.ContainsFunc(os.expires, func(e int64) bool { return e != 0 }) {
		return os.plain, os.cert, nil // none expires (the common case): no copy per attempt
	}
	out := make([]string, 0, len(os.plain))
	for i, p := range os.plain {
		if os.expires[i] == 0 || os.expires[i] > now.UnixMilli() {
			out = append(out, p)
		}
	}
	return out, os.cert, nil
}
