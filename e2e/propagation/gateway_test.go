// Package propagation tests revocation sharing between gateways: each gateway is the
// plugin loaded in its own yaegi interpreter (as in its own Traefik process), joined by
// a real, embedded nats-server; nats.go is the reference peer.
package propagation

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/yaegiload"
)

const revokePath = "/api/id/v1/auth/token/revoke"

// gateway is one plugin instance in its own interpreter.
type gateway struct {
	t      testing.TB
	plugin *yaegiload.Plugin
	h      http.Handler
	mu     sync.Mutex
	out    bytes.Buffer // what the plugin logged
}

func (g *gateway) Write(b []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.Write(b)
}

func (g *gateway) logged() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.String()
}

var okBackend = http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusOK) })

func natsConfig(servers []string, name string, extra map[string]interface{}) map[string]interface{} {
	n := map[string]interface{}{
		"servers": toIface(servers),
		"subject": "tokens.revoked",
		"name":    name,
	}
	for k, v := range extra {
		n[k] = v
	}
	return map[string]interface{}{
		"clients":    []interface{}{map[string]interface{}{"id": "portal", "secret": "s3cret"}},
		"defaultTTL": "1h",
		"statusPath": "/api/id/v1/auth/token/revoke/status",
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

func newGateway(t testing.TB, cfg map[string]interface{}) *gateway {
	t.Helper()
	g := &gateway{t: t}
	p, err := yaegiload.Load(t.TempDir(), yaegiload.Options{Stdout: g, Stderr: g})
	if err != nil {
		t.Fatalf("load plugin: %v", err)
	}
	g.plugin = p
	h, err := p.New(context.Background(), okBackend, cfg, "revoke@file")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	g.h = h
	return g
}

func (g *gateway) revoke(tok string) int {
	req := httptest.NewRequest(http.MethodPost, revokePath, strings.NewReader("token="+url.QueryEscape(tok)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("portal:s3cret")))
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, req)
	return rec.Code
}

func (g *gateway) call(tok string) int {
	req := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, req)
	return rec.Code
}

// status reads the plugin's status document.
func (g *gateway) status() string {
	req := httptest.NewRequest(http.MethodGet, "/api/id/v1/auth/token/revoke/status", nil)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("portal:s3cret")))
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, req)
	return rec.Body.String()
}

func (g *gateway) waitConnected(timeout time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(g.status(), `"connected":true`) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.t.Fatalf("gateway not connected to NATS after %s: %s\nlog:\n%s", timeout, g.status(), g.logged())
}

// waitRejected polls until the gateway answers 401 for tok.
func (g *gateway) waitRejected(tok string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if g.call(tok) == http.StatusUnauthorized {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}
