package yaegiload

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

const revokePath = "/api/id/v1/auth/token/revoke"

type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.RequestURI()+" "+req.Header.Get("Authorization")+" "+string(body))
	r.mu.Unlock()
	rw.WriteHeader(http.StatusOK)
	_, _ = rw.Write([]byte("from backend"))
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// yamlConfig is what Traefik's file provider hands the plugin for the README's example
// (nested maps and slices of interface{}), with a number given as a string the way
// Docker labels deliver it.
func yamlConfig() map[string]interface{} {
	return map[string]interface{}{
		"revokePath": revokePath,
		"clients": []interface{}{
			map[string]interface{}{"id": "portal", "secret": "s3cret"},
			map[string]interface{}{"id": "hashed", "secretSha256": "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"}, // sha256("secret")
		},
		"cacheSize":  "5000",
		"defaultTTL": "2h",
	}
}

func loadPlugin(t testing.TB) *Plugin {
	t.Helper()
	p, err := Load(t.TempDir(), Options{})
	if err != nil {
		t.Fatalf("the plugin does not load under yaegi: %v", err)
	}
	return p
}

func do(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func revoke(token, auth, extra string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, revokePath, strings.NewReader("token="+url.QueryEscape(token)+extra))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

func bearer(tok string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/orders/7?expand=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	return req
}

func TestPluginUnderYaegiLikeTraefik(t *testing.T) {
	p := loadPlugin(t)
	next := &recorder{}
	h, err := p.New(context.Background(), next, yamlConfig(), "revoke@file")
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	// Before revocation the token passes, untouched.
	if rec := do(h, bearer("tok-A")); rec.Code != 200 || rec.Body.String() != "from backend" {
		t.Fatalf("pass-through: %d %q", rec.Code, rec.Body.String())
	}
	// Revoke with Basic, then with form credentials and the hashed-secret client.
	if rec := do(h, revoke("tok-A", basicAuth("portal", "s3cret"), "&token_type_hint=access_token")); rec.Code != 200 {
		t.Fatalf("revoke (Basic): %d %s", rec.Code, rec.Body.String())
	}
	if rec := do(h, revoke("tok-B", "", "&client_id=hashed&client_secret=secret")); rec.Code != 200 {
		t.Fatalf("revoke (form): %d %s", rec.Code, rec.Body.String())
	}
	for _, tok := range []string{"tok-A", "tok-B"} {
		rec := do(h, bearer(tok))
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("revoked %s: status %d", tok, rec.Code)
		}
		if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token", error_description="The access token has been revoked"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != "invalid_token" || body["errorDescription"] == "" || len(body) != 2 {
			t.Errorf("body = %s", rec.Body.String())
		}
	}
	if rec := do(h, bearer("tok-C")); rec.Code != 200 {
		t.Fatalf("unrelated token rejected: %d", rec.Code)
	}
	// The backend saw the two pass-through requests, never the revoke requests.
	seen := next.seen()
	if len(seen) != 2 {
		t.Fatalf("backend saw %d requests: %q", len(seen), seen)
	}
	for _, s := range seen {
		if strings.Contains(s, revokePath) {
			t.Errorf("backend saw a revoke request: %s", s)
		}
		if !strings.HasPrefix(s, "GET /orders/7?expand=1 Bearer tok-") {
			t.Errorf("backend got an altered request: %q", s)
		}
	}

	// A second New (another router, or a reload) shares the revocations.
	h2, err := p.New(context.Background(), next, yamlConfig(), "revoke@file")
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(h2, bearer("tok-A")); rec.Code != http.StatusUnauthorized {
		t.Fatalf("a reload forgot a revocation: %d", rec.Code)
	}
}

func TestEndpointErrorsUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	next := &recorder{}
	h, err := p.New(context.Background(), next, yamlConfig(), "revoke@file")
	if err != nil {
		t.Fatal(err)
	}
	good := basicAuth("portal", "s3cret")
	cases := []struct {
		name   string
		req    *http.Request
		status int
		code   string
	}{
		{"GET", httptest.NewRequest(http.MethodGet, revokePath, nil), 405, "invalid_request"},
		{"json", func() *http.Request {
			r := revoke("x", good, "")
			r.Header.Set("Content-Type", "application/json")
			return r
		}(), 400, "invalid_request"},
		{"empty token", revoke("", good, ""), 400, "invalid_request"},
		{"both methods", revoke("x", good, "&client_id=portal&client_secret=s3cret"), 400, "invalid_request"},
		{"bad hint", revoke("x", good, "&token_type_hint=id_token"), 400, "unsupported_token_type"},
		{"no credentials", revoke("x", "", ""), 401, "invalid_client"},
		{"wrong secret", revoke("x", basicAuth("portal", "nope"), ""), 401, "invalid_client"},
		{"too large", revoke(strings.Repeat("x", 64*1024+1), good, ""), 413, "invalid_request"},
	}
	for _, tc := range cases {
		rec := do(h, tc.req)
		var body map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != tc.status || body["error"] != tc.code || body["errorDescription"] == "" ||
			rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %v %s", tc.name, rec.Code, rec.Header(), rec.Body.String())
		}
	}
	if n := len(next.seen()); n != 0 {
		t.Errorf("backend saw %d endpoint requests", n)
	}
	// Bad input changed nothing: "x" was never revoked.
	if rec := do(h, bearer("x")); rec.Code != 200 {
		t.Errorf("a rejected revoke request revoked the token: %d", rec.Code)
	}
}

func TestBadConfigUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	cases := map[string]map[string]interface{}{
		"cacheSize":  {"cacheSize": "0", "clients": []interface{}{map[string]interface{}{"id": "a", "secret": "b"}}},
		"defaultTTL": {"defaultTTL": "soon", "clients": []interface{}{map[string]interface{}{"id": "a", "secret": "b"}}},
		"clients":    {"cacheSize": 10},
	}
	// A bus-signing key error names the key and never shows the secret.
	cases["nats.signing.keys[0].hmacSecret (k1)"] = map[string]interface{}{
		"clients": []interface{}{map[string]interface{}{"id": "a", "secret": "b"}},
		"nats": map[string]interface{}{"servers": []interface{}{"nats://127.0.0.1:1"}, "signing": map[string]interface{}{
			"keys": []interface{}{map[string]interface{}{"id": "k1", "hmacSecret": "too-short-secret-xyz"}}, "signWith": "k1"}},
	}
	for key, cfg := range cases {
		_, err := p.New(context.Background(), &recorder{}, cfg, "bad")
		if err == nil || !strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "too-short-secret-xyz") {
			t.Errorf("config with bad %s: err = %v", key, err)
		}
	}
}

func TestNoSecretsInPluginOutput(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(b) })
	p, err := Load(t.TempDir(), Options{Stdout: w, Stderr: w})
	if err != nil {
		t.Fatal(err)
	}
	cfg := yamlConfig()
	cfg["cacheSize"] = 2
	h, err := p.New(context.Background(), &recorder{}, cfg, "small")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		do(h, revoke(fmt.Sprintf("very-secret-token-%d", i), basicAuth("portal", "s3cret"), ""))
	}
	do(h, revoke("x", basicAuth("portal", "wrong-password"), ""))
	mu.Lock()
	s := out.String()
	mu.Unlock()
	if !strings.Contains(s, "WARN") || !strings.Contains(s, "cacheSize") {
		t.Fatalf("evictions were not logged as a warning: %q", s)
	}
	for _, secret := range []string{"very-secret-token", "s3cret", "wrong-password"} {
		if strings.Contains(s, secret) {
			t.Errorf("plugin output contains %q", secret)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
