package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/surveyhooks/surveyhooks/services/loadgen/produce"
)

// apiClient creates the bench's projects and webhooks through the management API.
type apiClient struct {
	base  string // http://host:port
	admin string // admin token
	http  *http.Client
}

type project struct {
	ID     string `json:"id"`
	APIKey string `json:"api_key"`
}

type webhook struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

func (c *apiClient) call(ctx context.Context, path, token string, body, out any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("POST %s: decoding %s: %w", path, raw, err)
	}
	return nil
}

func (c *apiClient) createProject(ctx context.Context, name string) (project, error) {
	var p project
	err := c.call(ctx, "/v1/projects", c.admin, map[string]any{"name": name}, &p)
	return p, err
}

// createWebhook subscribes url to the load generator's event type.
func (c *apiClient) createWebhook(ctx context.Context, p project, name, url string) (webhook, error) {
	return c.createWebhookWith(ctx, p, name, url, nil)
}

// createWebhookWith is createWebhook with more fields of the webhook (e.g. "ordering").
func (c *apiClient) createWebhookWith(ctx context.Context, p project, name, url string, more map[string]any) (webhook, error) {
	var w webhook
	body := map[string]any{"name": name, "url": url, "events": []string{produce.EventType}}
	for k, v := range more {
		body[k] = v
	}
	err := c.call(ctx, "/v1/webhooks", p.APIKey, body, &w)
	return w, err
}

func newAPIClient(base, admin string) *apiClient {
	return &apiClient{base: base, admin: admin, http: &http.Client{Timeout: 30 * time.Second}}
}
