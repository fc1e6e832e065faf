// Package gatewaytest drives plugin gateways in tests: each Gateway is the tokenrevoke
// plugin loaded into its own yaegi interpreter through yaegiload (what one Traefik
// process would hold), called in-process through its http.Handler.
//
// There is no way to unload an interpreter: whatever the plugin started (its NATS
// connection, its consumer) keeps running until the test binary exits. Point a gateway
// only at servers the test stops, so that the leftovers go quiet.
package gatewaytest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/yaegiload"
)

// Paths and credentials the configurations built here use.
const (
	RevokePath   = "/api/id/v1/auth/token/revoke"
	StatusPath   = "/api/id/v1/auth/token/revoke/status"
	ClientID     = "portal"
	ClientSecret = "s3cret"
	Subject      = "tokens.revoked"
)

// OKBackend answers 200 to everything the middleware lets through.
var OKBackend = http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusOK) })

// NATSConfig is the plugin configuration map (as Traefik hands it over) of a gateway
// named name, sharing revocations over servers; extra is merged into the "nats" block.
func NATSConfig(servers []string, name string, extra map[string]interface{}) map[string]interface{} {
	n := map[string]interface{}{
		"servers": toIface(servers),
		"subject": Subject,
		"name":    name,
	}
	for k, v := range extra {
		n[k] = v
	}
	return map[string]interface{}{
		"clients":    []interface{}{map[string]interface{}{"id": ClientID, "secret": ClientSecret, "ratePerMinute": -1}},
		"defaultTTL": "1h",
		"statusPath": StatusPath,
		"nats":       n,
	}
}

func toIface(s []string) []interface{} {
	out := make([]interface{}, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// Gateway is one plugin instance in its own interpreter.
type Gateway struct {
	T      testing.TB
	Name   string
	Plugin *yaegiload.Plugin
	H      http.Handler

	mu  sync.Mutex
	out bytes.Buffer // what the plugin wrote to stdout/stderr
}

// New loads the plugin into a fresh interpreter and builds one middleware with cfg.
// The gateway's name is cfg's nats.name when there is one.
func New(t testing.TB, cfg map[string]interface{}) *Gateway {
	t.Helper()
	g := &Gateway{T: t}
	if n, ok := cfg["nats"].(map[string]interface{}); ok {
		g.Name, _ = n["name"].(string)
	}
	p, err := yaegiload.Load(t.TempDir(), yaegiload.Options{Stdout: g, Stderr: g})
	if err != nil {
		t.Fatalf("load plugin: %v", err)
	}
	g.Plugin = p
	h, err := p.New(context.Background(), OKBackend, cfg, "revoke@file")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	g.H = h
	return g
}

// Write collects the plugin's output (the interpreter's Stdout and Stderr).
func (g *Gateway) Write(b []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.Write(b)
}

// Logged returns everything the plugin wrote so far.
func (g *Gateway) Logged() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.String()
}

// LogTail returns the last n lines the plugin wrote.
func (g *Gateway) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(g.Logged(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (g *Gateway) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	g.H.ServeHTTP(rec, req)
	return rec
}

// RevokeBody posts tok to the revoke endpoint (HTTP Basic client authentication) and
// returns the status and the body.
func (g *Gateway) RevokeBody(tok string) (int, string) {
	req := httptest.NewRequest(http.MethodPost, RevokePath, strings.NewReader("token="+url.QueryEscape(tok)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basicAuth())
	rec := g.serve(req)
	return rec.Code, rec.Body.String()
}

// Revoke posts tok to the revoke endpoint and returns the status.
func (g *Gateway) Revoke(tok string) int {
	code, _ := g.RevokeBody(tok)
	return code
}

// Call sends an API request bearing tok and returns the status (200 means the backend
// got it).
func (g *Gateway) Call(tok string) int {
	req := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	return g.serve(req).Code
}

// Status returns the raw status document.
func (g *Gateway) Status() string {
	req := httptest.NewRequest(http.MethodGet, StatusPath, nil)
	req.Header.Set("Authorization", basicAuth())
	return g.serve(req).Body.String()
}

// StatusDoc returns the parsed status document.
func (g *Gateway) StatusDoc() (Status, error) {
	return ParseStatus([]byte(g.Status()))
}

// WaitConnected waits until the status document reports a NATS connection, plus a
// short settle: "connected" means the CONNECT handshake is done, and the server takes a
// moment more to register the subscription sent with it.
func (g *Gateway) WaitConnected(timeout time.Duration) {
	g.T.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(g.Status(), `"connected":true`) {
			time.Sleep(100 * time.Millisecond)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.T.Fatalf("gateway %s not connected to NATS after %s: %s\nlog:\n%s", g.Name, timeout, g.Status(), g.Logged())
}

// WaitSynced waits until the status document reports "synced": true and returns how
// long that took, or an error with the last document.
func (g *Gateway) WaitSynced(timeout time.Duration) (time.Duration, error) {
	return WaitStatus(g.StatusDoc, timeout, func(s Status) bool { return s.Synced })
}

// WaitRejected polls until the gateway answers 401 for tok.
func (g *Gateway) WaitRejected(tok string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if g.Call(tok) == http.StatusUnauthorized {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

func basicAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(ClientID+":"+ClientSecret))
}

// Status is the plugin's status document.
type Status struct {
	Entries   int         `json:"entries"`
	Capacity  int         `json:"capacity"`
	Evictions int64       `json:"evictions"`
	Expired   int64       `json:"expired"`
	Synced    bool        `json:"synced"`
	NATS      *NATSStatus `json:"nats"`
}

// NATSStatus is the "nats" part of the status document.
type NATSStatus struct {
	Connected       bool   `json:"connected"`
	Server          string `json:"server"`
	Stream          string `json:"stream"`
	StreamSequence  uint64 `json:"streamSequence"`
	Synced          bool   `json:"synced"`
	LastError       string `json:"lastError"`
	Received        int64  `json:"received"`
	Dropped         int64  `json:"dropped"`
	Published       int64  `json:"published"`
	PublishFailures int64  `json:"publishFailures"`
	// Snapshot is set in JetStream mode with snapshots on.
	Snapshot *SnapshotStatus `json:"snapshot"`
}

// SnapshotStatus is the "nats.snapshot" part of the status document.
type SnapshotStatus struct {
	LoadedSequence  uint64 `json:"loadedSequence"`
	LoadedEntries   int    `json:"loadedEntries"`
	WrittenSequence uint64 `json:"writtenSequence"`
	WrittenEntries  int    `json:"writtenEntries"`
	LastError       string `json:"lastError"`
}

// ParseStatus decodes a status document.
func ParseStatus(body []byte) (Status, error) {
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("status document is not JSON: %v: %q", err, body)
	}
	return s, nil
}

// String renders the document compactly for messages.
func (s Status) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// WaitStatus polls get until ok accepts the document, and returns how long that took;
// on timeout the error carries the last document (or the last read error).
func WaitStatus(get func() (Status, error), timeout time.Duration, ok func(Status) bool) (time.Duration, error) {
	start := time.Now()
	var last Status
	var lastErr error
	for {
		s, err := get()
		if err == nil && ok(s) {
			return time.Since(start), nil
		}
		last, lastErr = s, err
		if time.Since(start) > timeout {
			if lastErr != nil {
				return 0, fmt.Errorf("after %v: %v", timeout, lastErr)
			}
			return 0, fmt.Errorf("after %v the status is %s", timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Do sends req to the gateway in-process and returns the recorded answer.
func (g *Gateway) Do(req *http.Request) *httptest.ResponseRecorder {
	return g.serve(req)
}
