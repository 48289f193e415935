package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/surveyhooks/surveyhooks/pkg/apitest"
)

// nodeReceiver is a subscriber endpoint written in Node.js from the documents alone: it checks
// X-Webhook-Signature with Ask Users' own recipe — HMAC of JSON.stringify(the parsed body), as an
// Express app with express.json() computes it — and webhook-signature as docs/payloads.md says
// (Standard Webhooks; a whsec_ secret's decoded bytes, any other secret's own bytes). It answers
// 200 when both verify and 401 otherwise, and lists what it received at GET /received.
const nodeReceiver = `
const http = require('http');
const crypto = require('crypto');
let secret = process.env.SECRET || '';
const received = [];

// Ask Users' "Verification example (Node.js)", with the secret passed in instead of read from
// process.env.ASKUSERS_WEBHOOK_SECRET.
function verifySignature(payload, signature) {
  const payloadString = JSON.stringify(payload);
  const expectedSignature = crypto
    .createHmac('sha256', secret)
    .update(payloadString)
    .digest('hex');
  // The document calls timingSafeEqual directly, which throws on a length mismatch.
  return typeof signature === 'string' && signature.length === expectedSignature.length &&
    crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expectedSignature));
}

function verifyStandard(headers, raw) {
  const key = secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret, 'utf8');
  const signed = headers['webhook-id'] + '.' + headers['webhook-timestamp'] + '.' + raw.toString('utf8');
  const want = 'v1,' + crypto.createHmac('sha256', key).update(signed).digest('base64');
  return (headers['webhook-signature'] || '').split(' ').includes(want);
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', c => chunks.push(c)).on('end', () => {
    const raw = Buffer.concat(chunks);
    if (req.method === 'PUT' && req.url === '/secret') { secret = raw.toString('utf8'); res.end(); return; }
    if (req.method === 'GET' && req.url === '/received') {
      res.setHeader('content-type', 'application/json'); res.end(JSON.stringify(received)); return;
    }
    const body = JSON.parse(raw.toString('utf8')); // what express.json() hands the handler as req.body
    const r = { path: req.url, askusers: verifySignature(body, req.headers['x-webhook-signature']),
      standard: verifyStandard(req.headers, raw), body };
    received.push(r);
    res.statusCode = r.askusers && r.standard ? 200 : 401;
    res.end(res.statusCode === 200 ? 'OK' : 'Invalid signature');
  });
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });
`

type nodeDelivery struct {
	Path     string         `json:"path"`
	AskUsers bool           `json:"askusers"`
	Standard bool           `json:"standard"`
	Body     map[string]any `json:"body"`
}

// startNodeReceiver runs nodeReceiver with secret and returns its base URL.
func startNodeReceiver(t *testing.T, secret string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err, "the receivers are real Node.js programs: install Node.js (apt-get install nodejs)")
	script := filepath.Join(t.TempDir(), "receiver.js")
	require.NoError(t, os.WriteFile(script, []byte(nodeReceiver), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(), "SECRET="+secret)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "the receiver prints its port")
	return "http://127.0.0.1:" + strings.TrimSpace(line)
}

func nodeReceived(t *testing.T, base string) []nodeDelivery {
	t.Helper()
	resp, err := http.Get(base + "/received")
	require.NoError(t, err)
	defer resp.Body.Close()
	var got []nodeDelivery
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	return got
}

// waitNode waits until the receiver got a request on path.
func waitNode(t *testing.T, base, path string) nodeDelivery {
	t.Helper()
	var found *nodeDelivery
	require.Eventually(t, func() bool {
		for _, d := range nodeReceived(t, base) {
			if d.Path == path {
				found = &d
				return true
			}
		}
		return false
	}, 60*time.Second, 100*time.Millisecond, "no delivery reached %s", path)
	return *found
}

// withPipeline adds ingest and fan-out to a stack that runs delivery: events posted to ingest
// travel the real pipeline to the receivers. It returns ingest's base URL.
func withPipeline(t *testing.T, s *stack) string {
	t.Helper()
	return startIngest(t, s, true)
}

func postEvent(t *testing.T, ingestURL, key string, ev map[string]any) {
	t.Helper()
	apitest.Call(t, http.MethodPost, ingestURL+"/v1/events", key, ev, http.StatusAccepted)
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Issue 18, points 1, 2, 4 and 5: receivers written from the Ask Users, Userpilot, Refiner and
// Screeb documents accept what the real pipeline (ingest → fan-out → delivery) sends them.
func TestReceiversWrittenFromEachDocumentAcceptWhatTheyAreSent(t *testing.T) {
	s := startStack(t, withDelivery())
	ingestURL := withPipeline(t, s)
	const projectName = "R&D <Lab> \u2028 Acme 🚀"
	projectID, key := s.project(projectName)
	projectUUID := s.must(http.StatusOK, "GET", "/v1/projects/"+projectID, adminToken, nil).str("uuid")
	require.Regexp(t, uuidPattern, projectUUID, "the API shows the project's uuid")

	// Answers that Go's encoder would escape and JSON.stringify does not.
	answers := []string{"R&D <team>", "I ❤️ it 😀", "line\u2028separator\u2029paragraph", `<script>alert("&amp;")</script>`}
	completed := func(id string) map[string]any {
		var items []any
		for i, a := range answers {
			items = append(items, map[string]any{"question": map[string]any{"id": "q" + string(rune('1'+i)), "type": "input"},
				"answer": map[string]any{"fields": []any{map[string]any{"text": a}}}})
		}
		return map[string]any{"event_id": id, "event_type": "survey.completed",
			"survey": map[string]any{"id": "s1", "name": "Team & <culture>"},
			"user": map[string]any{"id": "u1", "email": "ada@example.com", "name": "Zoë <Ada> & co",
				"traits": map[string]any{"team": "R&D <team>", "note": "a\u2028b"}},
			"response": map[string]any{"id": "r1", "completion": "fully_completed", "items": items}}
	}

	t.Run("Ask Users: the documented Node.js recipe verifies & < > emoji and U+2028", func(t *testing.T) {
		rc := startNodeReceiver(t, "")
		created := s.webhook(key, map[string]any{"url": rc + "/askusers", "format": "askusers", "events": []string{"survey.completed"}})
		req, err := http.NewRequest(http.MethodPut, rc+"/secret", strings.NewReader(created.str("secret")))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		postEvent(t, ingestURL, key, completed("askusers-1"))
		d := waitNode(t, rc, "/askusers")
		require.True(t, d.AskUsers, "X-Webhook-Signature must verify over JSON.stringify(req.body)")
		require.True(t, d.Standard, "webhook-signature must verify")
		require.Equal(t, "survey.response.created", d.Body["event_type"])
		data := d.Body["data"].(map[string]any)
		rd := data["response"].(map[string]any)["response_data"].(map[string]any)
		for i, a := range answers {
			require.Equal(t, a, rd["q"+string(rune('1'+i))], "answer %d arrives intact", i)
		}
		require.Equal(t, "Team & <culture>", data["survey"].(map[string]any)["title"])
	})

	// Userpilot and Refiner let the customer type the secret token.
	const ownSecret = "typed-by-the-customer:R&D-2024!"
	for _, c := range []struct{ format, event, path string }{
		{"userpilot", "flow.seen", "/userpilot"},
		{"refiner", "survey.completed", "/refiner"},
	} {
		t.Run(c.format+": a secret the customer chose signs both headers", func(t *testing.T) {
			rc := startNodeReceiver(t, ownSecret)
			created := s.webhook(key, map[string]any{"url": rc + c.path, "format": c.format, "events": []string{c.event}, "secret": ownSecret})
			require.Equal(t, ownSecret, created.str("secret"))
			ev := completed(c.format + "-1")
			if c.event == "flow.seen" {
				ev = map[string]any{"event_id": "userpilot-1", "event_type": "flow.seen", "element": map[string]any{"id": "7"},
					"user": map[string]any{"id": "u1", "name": "Zoë <Ada> & co"}, "context": map[string]any{"hostname": "demo.userpilot.io"}}
			}
			postEvent(t, ingestURL, key, ev)
			d := waitNode(t, rc, c.path)
			require.True(t, d.Standard, "webhook-signature keyed with the secret's own bytes")
			require.True(t, d.AskUsers, "X-Webhook-Signature keyed with the secret")
			if c.format == "userpilot" {
				require.Equal(t, "flows.seen", d.Body["type"])
				require.Equal(t, "Zoë <Ada> & co", d.Body["data"].(map[string]any)["user"].(map[string]any)["name"])
				return
			}
			// Refiner's sample shows project_uuid as a UUID.
			require.Equal(t, projectUUID, d.Body["project_uuid"])
			require.Equal(t, "Completed Survey", d.Body["triggered_event"])
			require.Equal(t, "R&D <team>", d.Body["attributes"].(map[string]any)["team"])
		})
	}

	t.Run("Screeb: organization.id is the project's uuid and organization.name its name", func(t *testing.T) {
		rc := startNodeReceiver(t, "")
		created := s.webhook(key, map[string]any{"url": rc + "/screeb", "format": "screeb", "events": []string{"survey.completed"}})
		req, err := http.NewRequest(http.MethodPut, rc+"/secret", strings.NewReader(created.str("secret")))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		postEvent(t, ingestURL, key, completed("screeb-1"))
		d := waitNode(t, rc, "/screeb")
		require.True(t, d.Standard && d.AskUsers)
		require.Equal(t, "response.ended", d.Body["event_type"])
		org := d.Body["payload"].(map[string]any)["organization"].(map[string]any)
		require.Regexp(t, uuidPattern, org["id"], "Screeb's spec types organization.id as a uuid")
		require.Equal(t, projectUUID, org["id"])
		require.Equal(t, projectName, org["name"])
	})
}
