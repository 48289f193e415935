// Command receiver is a subscriber endpoint for trying surveyhooks by hand: it prints every webhook
// it receives and, given the webhook's secret (or, for a v1a webhook, its public key), says whether
// the signatures verify.
//
//	go run ./services/surveyhooks/cmd/receiver -addr 127.0.0.1:9999 -secret whsec_…
//	go run ./services/surveyhooks/cmd/receiver -addr 127.0.0.1:9999 -public-key whpk_…
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/surveyhooks/surveyhooks/pkg/signature"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9999", "listen address")
	secret := flag.String("secret", "", "the webhook's secret (whsec_…), to verify signatures")
	publicKey := flag.String("public-key", "", "a v1a webhook's public key (whpk_…), to verify its ed25519 signatures")
	status := flag.Int("status", http.StatusOK, "status code to answer with")
	flag.Parse()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		fmt.Printf("--- %s %s %s\n", time.Now().Format(time.TimeOnly), r.Method, r.URL.Path)
		for _, h := range []string{"webhook-id", "webhook-timestamp", "webhook-signature", "X-Webhook-Signature"} {
			fmt.Printf("%s: %s\n", h, r.Header.Get(h))
		}
		if *secret != "" {
			fmt.Printf("standard-webhooks signature: %s\n", verdict(signature.VerifyStandard(*secret,
				r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, 5*time.Minute)))
			fmt.Printf("X-Webhook-Signature:         %s\n", verdict(signature.VerifyAskUsers(*secret, body, r.Header.Get("X-Webhook-Signature"))))
		}
		if *publicKey != "" {
			fmt.Printf("standard-webhooks v1a signature: %s\n", verdict(signature.VerifyAsymmetric(*publicKey,
				r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, 5*time.Minute)))
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, body, "", "  ") == nil {
			body = pretty.Bytes()
		}
		fmt.Printf("%s\n", body)
		w.WriteHeader(*status)
	})
	log.Printf("receiver listening on http://%s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}

func verdict(err error) string {
	if err != nil {
		return "INVALID (" + err.Error() + ")"
	}
	return "valid"
}
