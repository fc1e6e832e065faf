package tokenrevoke

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
	"time"
)

const testRevokePath = "/api/id/v1/auth/token/revoke"

// backend records what reaches the next handler.
type backend struct {
	mu   sync.Mutex
	seen []*http.Request
	body []string
}

func (b *backend) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	data, _ := io.ReadAll(req.Body)
	b.mu.Lock()
	b.seen = append(b.seen, req)
	b.body = append(b.body, string(data))
	b.mu.Unlock()
	rw.Header().Set("X-Backend", "yes")
	rw.WriteHeader(http.StatusTeapot)
	_, _ = rw.Write([]byte("backend:" + string(data)))
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

var testDomainSeq int

// newTestMiddleware builds a middleware with its own domain (cache), so tests do not
// share revocations through the process-wide registry.
func newTestMiddleware(t testing.TB, mutate func(c *Config)) (*Middleware, *backend) {
	t.Helper()
	c := CreateConfig()
	c.Clients = []ClientConfig{
		{ID: "portal", Secret: "s3cret"},
		{ID: "hashed", SecretSha256: sha256Hex("other-secret")},
	}
	if mutate != nil {
		mutate(c)
	}
	b := &backend{}
	return middlewareFor(t, c, b, "test"), b
}

// middlewareFor builds a middleware for c in front of next, with its own domain.
func middlewareFor(t testing.TB, c *Config, next http.Handler, prefix string) *Middleware {
	t.Helper()
	s, err := parseConfig(c)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	testDomainSeq++
	name := fmt.Sprintf("%s-%d", prefix, testDomainSeq)
	log := newLogger(name)
	return newMiddleware(next, name, s, newDomain(s.cacheSize, log), log)
}

func sha256Hex(s string) string {
	sum := hashToken(s)
	const digits = "0123456789abcdef"
	out := make([]byte, 64)
	for i, c := range sum {
		out[2*i] = digits[c>>4]
		out[2*i+1] = digits[c&15]
	}
	return string(out)
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func revokeReq(form string, auth string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, testRevokePath, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

// serve sends req to m as the handler New returns would (through placesMiddleware when
// tokenCookies or tokenHeaders are set).
func serve(m *Middleware, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	var h http.Handler = m
	if m.places != nil {
		h = &placesMiddleware{m: m}
	}
	h.ServeHTTP(rec, req)
	return rec
}

func bearerReq(tok string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/api/orders?x=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	return req
}

// checkError asserts the documented error shape: status, JSON content type, no-store,
// and a body with exactly the keys error and errorDescription.
func checkError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d (body %s)", rec.Code, status, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var body map[string]interface{}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", rec.Body.String(), err)
	}
	if len(body) != 2 {
		t.Errorf("body has keys %v, want exactly error and errorDescription", body)
	}
	if body["error"] != code {
		t.Errorf("error = %v, want %s", body["error"], code)
	}
	if d, ok := body["errorDescription"].(string); !ok || d == "" {
		t.Errorf("errorDescription = %v, want a non-empty string", body["errorDescription"])
	}
}

func TestRevokeEndpointErrors(t *testing.T) {
	good := basic("portal", "s3cret")
	cases := []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
		header [2]string // a header the answer must carry
	}{
		{"GET", func() *http.Request { return httptest.NewRequest(http.MethodGet, testRevokePath, nil) }, 405, errInvalidRequest, [2]string{"Allow", "POST"}},
		{"PUT", func() *http.Request { r := revokeReq("token=a", good); r.Method = http.MethodPut; return r }, 405, errInvalidRequest, [2]string{"Allow", "POST"}},
		{"json content type", func() *http.Request {
			r := revokeReq(`{"token":"a"}`, good)
			r.Header.Set("Content-Type", "application/json")
			return r
		}, 400, errInvalidRequest, [2]string{}},
		{"no content type", func() *http.Request { r := revokeReq("token=a", good); r.Header.Del("Content-Type"); return r }, 400, errInvalidRequest, [2]string{}},
		{"missing token", func() *http.Request { return revokeReq("token_type_hint=access_token", good) }, 400, errInvalidRequest, [2]string{}},
		{"empty token", func() *http.Request { return revokeReq("token=", good) }, 400, errInvalidRequest, [2]string{}},
		{"malformed body", func() *http.Request { return revokeReq("token=%zz", good) }, 400, errInvalidRequest, [2]string{}},
		{"repeated token", func() *http.Request { return revokeReq("token=a&token=b", good) }, 400, errInvalidRequest, [2]string{}},
		{"thousands of parameters", func() *http.Request { return revokeReq("token=a"+strings.Repeat("&p", 5000), good) }, 400, errInvalidRequest, [2]string{}},
		{"both auth methods", func() *http.Request {
			return revokeReq("token=a&client_id=portal&client_secret=s3cret", good)
		}, 400, errInvalidRequest, [2]string{}},
		{"unsupported hint", func() *http.Request { return revokeReq("token=a&token_type_hint=id_token", good) }, 400, errUnsupportedTokenType, [2]string{}},
		{"no credentials", func() *http.Request { return revokeReq("token=a", "") }, 401, errInvalidClient, [2]string{"WWW-Authenticate", `Basic realm="tokenrevoke"`}},
		{"wrong basic secret", func() *http.Request { return revokeReq("token=a", basic("portal", "nope")) }, 401, errInvalidClient, [2]string{"WWW-Authenticate", `Basic realm="tokenrevoke"`}},
		{"unknown basic client", func() *http.Request { return revokeReq("token=a", basic("ghost", "s3cret")) }, 401, errInvalidClient, [2]string{}},
		{"malformed basic", func() *http.Request { return revokeReq("token=a", "Basic !!!notbase64") }, 401, errInvalidClient, [2]string{}},
		{"basic without colon", func() *http.Request {
			return revokeReq("token=a", "Basic "+base64.StdEncoding.EncodeToString([]byte("portal")))
		}, 401, errInvalidClient, [2]string{}},
		{"wrong form secret", func() *http.Request { return revokeReq("token=a&client_id=portal&client_secret=x", "") }, 401, errInvalidClient, [2]string{}},
		{"form id without secret", func() *http.Request { return revokeReq("token=a&client_id=portal", "") }, 401, errInvalidClient, [2]string{}},
		{"bearer is not client auth", func() *http.Request { return revokeReq("token=a", "Bearer s3cret") }, 401, errInvalidClient, [2]string{}},
		{"content-length too large", func() *http.Request {
			return revokeReq("token="+strings.Repeat("a", maxRevokeBody+1), good)
		}, 413, errInvalidRequest, [2]string{}},
		{"chunked too large", func() *http.Request {
			r := revokeReq("token="+strings.Repeat("a", maxRevokeBody+1), good)
			r.ContentLength = -1
			return r
		}, 413, errInvalidRequest, [2]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, b := newTestMiddleware(t, nil)
			rec := serve(m, tc.req())
			checkError(t, rec, tc.status, tc.code)
			if tc.header[0] != "" && rec.Header().Get(tc.header[0]) != tc.header[1] {
				t.Errorf("%s = %q, want %q", tc.header[0], rec.Header().Get(tc.header[0]), tc.header[1])
			}
			if b.count() != 0 {
				t.Errorf("the backend saw the revoke request")
			}
			if n := m.cache.len(); n != 0 {
				t.Errorf("a rejected request changed the store: %d entries", n)
			}
		})
	}
}

func TestRevokeSuccess(t *testing.T) {
	cases := []struct {
		name string
		req  func(tok string) *http.Request
	}{
		{"basic", func(tok string) *http.Request {
			return revokeReq("token="+url.QueryEscape(tok), basic("portal", "s3cret"))
		}},
		{"basic lowercase scheme", func(tok string) *http.Request {
			r := revokeReq("token="+url.QueryEscape(tok), "")
			r.Header.Set("Authorization", "basic "+base64.StdEncoding.EncodeToString([]byte("portal:s3cret")))
			return r
		}},
		{"form credentials", func(tok string) *http.Request {
			return revokeReq("token="+url.QueryEscape(tok)+"&client_id=portal&client_secret=s3cret", "")
		}},
		{"hashed secret client", func(tok string) *http.Request {
			return revokeReq("token="+url.QueryEscape(tok), basic("hashed", "other-secret"))
		}},
		{"basic plus matching client_id", func(tok string) *http.Request {
			return revokeReq("token="+url.QueryEscape(tok)+"&client_id=portal", basic("portal", "s3cret"))
		}},
		{"charset parameter and hint", func(tok string) *http.Request {
			r := revokeReq("token="+url.QueryEscape(tok)+"&token_type_hint=refresh_token", basic("portal", "s3cret"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
			return r
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, b := newTestMiddleware(t, nil)
			tok := "opaque-" + strings.ReplaceAll(tc.name, " ", "-")
			if rec := serve(m, bearerReq(tok)); rec.Code != http.StatusTeapot {
				t.Fatalf("before revocation: status %d, want the backend's 418", rec.Code)
			}
			rec := serve(m, tc.req(tok))
			if rec.Code != http.StatusOK {
				t.Fatalf("revoke: status %d, body %s", rec.Code, rec.Body.String())
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("200 without Cache-Control: no-store")
			}
			if b.count() != 1 {
				t.Errorf("backend saw %d requests, want 1 (the pre-revocation probe only)", b.count())
			}
			rec = serve(m, bearerReq(tok))
			checkError(t, rec, http.StatusUnauthorized, errInvalidToken)
			want := `Bearer error="invalid_token", error_description="The access token has been revoked"`
			if got := rec.Header().Get("WWW-Authenticate"); got != want {
				t.Errorf("WWW-Authenticate = %q, want %q", got, want)
			}
			if rec := serve(m, bearerReq(tok+"x")); rec.Code != http.StatusTeapot {
				t.Errorf("another token: status %d, want it to pass", rec.Code)
			}
		})
	}
}

func TestRevokeUnknownOrMalformedTokenIs200(t *testing.T) {
	m, _ := newTestMiddleware(t, nil)
	for _, tok := range []string{"never-issued", "a.b.c", "eyJhbGciOi.!!!.x", "\x00\xff", strings.Repeat("z", 8000)} {
		rec := serve(m, revokeReq("token="+url.QueryEscape(tok), basic("portal", "s3cret")))
		if rec.Code != http.StatusOK {
			t.Errorf("token %q: status %d, want 200", tok[:1], rec.Code)
		}
	}
}

func TestBasicCredentialsFormEncoded(t *testing.T) {
	m, _ := newTestMiddleware(t, func(c *Config) {
		c.Clients = []ClientConfig{{ID: "app:1", Secret: "p+ss word%"}}
	})
	// RFC 6749 §2.3.1: encoded before base64.
	rec := serve(m, revokeReq("token=t1", basic("app:1", "p+ss word%")))
	if rec.Code != http.StatusOK {
		t.Fatalf("form-encoded Basic: status %d %s", rec.Code, rec.Body.String())
	}
	// Clients such as curl -u send the secret as is.
	m2, _ := newTestMiddleware(t, func(c *Config) { c.Clients = []ClientConfig{{ID: "app", Secret: "p+ss"}} })
	raw := "Basic " + base64.StdEncoding.EncodeToString([]byte("app:p+ss"))
	if rec := serve(m2, revokeReq("token=t1", raw)); rec.Code != http.StatusOK {
		t.Fatalf("raw Basic: status %d %s", rec.Code, rec.Body.String())
	}
}

func TestEnforcementPassesEverythingElseUntouched(t *testing.T) {
	m, b := newTestMiddleware(t, nil)
	serve(m, revokeReq("token=revoked-one", basic("portal", "s3cret")))
	req := httptest.NewRequest(http.MethodPatch, "/x/y?q=1&r=2", strings.NewReader("payload-bytes"))
	req.Header.Set("Authorization", "Bearer fine-token")
	req.Header.Set("X-Custom", "v")
	rec := serve(m, req)
	if rec.Code != http.StatusTeapot || rec.Body.String() != "backend:payload-bytes" || rec.Header().Get("X-Backend") != "yes" {
		t.Fatalf("pass-through answer changed: %d %q", rec.Code, rec.Body.String())
	}
	got := b.seen[len(b.seen)-1]
	if got.Method != http.MethodPatch || got.URL.RawQuery != "q=1&r=2" || got.Header.Get("X-Custom") != "v" ||
		got.Header.Get("Authorization") != "Bearer fine-token" || b.body[len(b.body)-1] != "payload-bytes" {
		t.Fatalf("backend got a changed request: %s %s %v", got.Method, got.URL, got.Header)
	}
	// No Authorization at all, other schemes, and a scheme without a token pass. (A
	// revoked token under another scheme does not: TestBypassHeader.)
	for _, auth := range []string{"", "Basic abc", "Bearer", "Bearer ", "Token not-revoked"} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if rec := serve(m, r); rec.Code != http.StatusTeapot {
			t.Errorf("Authorization %q: status %d, want pass", auth, rec.Code)
		}
	}
}

func TestEnforcementVariants(t *testing.T) {
	m, _ := newTestMiddleware(t, nil)
	serve(m, revokeReq("token=tok-123", basic("portal", "s3cret")))
	cases := []struct {
		name string
		req  func() *http.Request
	}{
		{"Bearer", func() *http.Request { return bearerReq("tok-123") }},
		{"lowercase scheme", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Authorization", "bearer tok-123")
			return r
		}},
		{"upper scheme, extra spaces", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Authorization", "BEARER   tok-123")
			return r
		}},
		{"access_token query parameter", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/data?access_token=tok-123", nil)
		}},
		{"POST with body", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/upload", bytes.NewReader([]byte("x")))
			r.Header.Set("Authorization", "Bearer tok-123")
			return r
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkError(t, serve(m, tc.req()), http.StatusUnauthorized, errInvalidToken)
		})
	}
}

func TestJWTExpiry(t *testing.T) {
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	hdr := seg(`{"alg":"RS256","typ":"JWT"}`)
	now := time.Unix(1700000000, 0)
	s := &settings{defaultTTL: 24 * time.Hour, clockSkew: time.Minute, maxTTL: 90 * 24 * time.Hour}
	cases := []struct {
		name string
		tok  string
		want int64
	}{
		{"exp integer", hdr + "." + seg(`{"sub":"a","exp":1700003600}`) + ".sig", 1700003600 + 60},
		{"exp float", hdr + "." + seg(`{"exp":1700003600.2}`) + ".sig", 1700003601 + 60},
		{"padded payload", hdr + "." + base64.URLEncoding.EncodeToString([]byte(`{"exp":1700000100}`)) + ".sig", 1700000100 + 60},
		{"no exp", hdr + "." + seg(`{"sub":"a"}`) + ".sig", 1700000000 + 86400},
		{"exp string", hdr + "." + seg(`{"exp":"soon"}`) + ".sig", 1700000000 + 86400},
		{"negative exp", hdr + "." + seg(`{"exp":-5}`) + ".sig", 1700000000 + 86400},
		{"huge exp: capped at maxTTL", hdr + "." + seg(`{"exp":1e300}`) + ".sig", 1700000000 + 90*86400},
		{"exp beyond maxTTL", hdr + "." + seg(`{"exp":1800000000}`) + ".sig", 1700000000 + 90*86400},
		{"opaque", "2YotnFZFEjr1zCsicMWpAA", 1700000000 + 86400},
		{"two segments", hdr + "." + seg(`{"exp":1700003600}`), 1700000000 + 86400},
		{"five segments (JWE)", "a.b.c.d.e", 1700000000 + 86400},
		{"payload not base64", hdr + ".***.sig", 1700000000 + 86400},
		{"payload not JSON", hdr + "." + seg("hello") + ".sig", 1700000000 + 86400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := revocationExpiry(tc.tok, now, s); got != tc.want {
				t.Errorf("expiry = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestExpiredJWTRevocationIs200AndStoresNothing(t *testing.T) {
	m, _ := newTestMiddleware(t, nil)
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tok := seg(`{"alg":"none"}`) + "." + seg(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(-time.Hour).Unix())) + ".x"
	if rec := serve(m, revokeReq("token="+tok, basic("portal", "s3cret"))); rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if m.cache.len() != 0 {
		t.Fatalf("an already expired token was stored")
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *Config)
		key    string
	}{
		{"no clients", func(c *Config) { c.Clients = nil }, "clients"},
		{"client without secret", func(c *Config) { c.Clients = []ClientConfig{{ID: "a"}} }, "clients[0].secret"},
		{"client without id", func(c *Config) { c.Clients = []ClientConfig{{Secret: "a"}} }, "clients[0].id"},
		{"duplicate id", func(c *Config) { c.Clients = []ClientConfig{{ID: "a", Secret: "x"}, {ID: "a", Secret: "y"}} }, "clients[1].id"},
		{"bad sha256", func(c *Config) { c.Clients = []ClientConfig{{ID: "a", SecretSha256: "abc"}} }, "clients[0].secretSha256"},
		{"cacheSize 0", func(c *Config) { c.CacheSize = 0 }, "cacheSize"},
		{"cacheSize negative", func(c *Config) { c.CacheSize = -3 }, "cacheSize"},
		{"bad ttl", func(c *Config) { c.DefaultTTL = "soon" }, "defaultTTL"},
		{"zero ttl", func(c *Config) { c.DefaultTTL = "0s" }, "defaultTTL"},
		{"bad skew", func(c *Config) { c.ClockSkew = "x" }, "clockSkew"},
		{"relative path", func(c *Config) { c.RevokePath = "revoke" }, "revokePath"},
		{"nats without servers", func(c *Config) { c.NATS = &NATSConfig{} }, "nats.servers"},
		{"nats bad scheme", func(c *Config) { c.NATS = &NATSConfig{Servers: []string{"http://x:1"}} }, "nats.servers[0]"},
		{"nats wildcard subject", func(c *Config) { c.NATS = &NATSConfig{Servers: []string{"nats://x:1"}, Subject: "a.>"} }, "nats.subject"},
		{"nats two auth methods", func(c *Config) {
			c.NATS = &NATSConfig{Servers: []string{"nats://x:1"}, Token: "t", User: "u", Password: "p"}
		}, "nats"},
		{"failClosed without stream", func(c *Config) { c.FailClosed = true }, "failClosed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := CreateConfig()
			c.Clients = []ClientConfig{{ID: "portal", Secret: "topsecret-value"}}
			tc.mutate(c)
			_, err := New(context.Background(), http.NotFoundHandler(), c, "cfg")
			if err == nil {
				t.Fatalf("New accepted a bad config")
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q does not name %s", err, tc.key)
			}
			if strings.Contains(err.Error(), "topsecret-value") {
				t.Errorf("error leaks a secret: %q", err)
			}
		})
	}
}

func TestConfigDurationsAndDefaults(t *testing.T) {
	c := CreateConfig()
	if c.RevokePath != testRevokePath || c.CacheSize != 1000000 || c.DefaultTTL != "24h" {
		t.Fatalf("defaults changed: %+v", c)
	}
	c.Clients = []ClientConfig{{ID: "a", Secret: "b"}}
	c.DefaultTTL = "3600"
	s, err := parseConfig(c)
	if err != nil || s.defaultTTL != time.Hour {
		t.Fatalf("seconds as ttl: %v %v", s, err)
	}
	c.DefaultTTL = "90m"
	if s, err = parseConfig(c); err != nil || s.defaultTTL != 90*time.Minute {
		t.Fatalf("90m: %v", err)
	}
}

func TestSharedDomainAcrossNewCalls(t *testing.T) {
	// Traefik calls New per router and per reload; revocations must survive both.
	c := CreateConfig()
	c.Clients = []ClientConfig{{ID: "portal", Secret: "s3cret"}}
	h1, err := New(context.Background(), &backend{}, c, "r1")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h1.ServeHTTP(rec, revokeReq("token=shared-tok", basic("portal", "s3cret")))
	if rec.Code != 200 {
		t.Fatalf("revoke: %d", rec.Code)
	}
	h2, err := New(context.Background(), &backend{}, c, "r2")
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	h2.ServeHTTP(rec, bearerReq("shared-tok"))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("second middleware instance accepted a token revoked through the first: %d", rec.Code)
	}
}

func TestFailClosedUntilSynced(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) {
		c.FailClosed = true
		c.NATS = &NATSConfig{Servers: []string{"nats://127.0.0.1:1"}, Stream: "REVOCATIONS"}
	})
	fl := &fakeLink{}
	m.domain.link = fl
	fc := &failClosedMiddleware{m: m, next: m}
	serve := func(_ *Middleware, req *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		fc.ServeHTTP(rec, req)
		return rec
	}
	rec := serve(m, bearerReq("any"))
	checkError(t, rec, http.StatusServiceUnavailable, errUnavailable)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	// Requests without a bearer token are not affected.
	if rec := serve(m, httptest.NewRequest(http.MethodGet, "/public", nil)); rec.Code != http.StatusTeapot {
		t.Errorf("anonymous request: %d", rec.Code)
	}
	fl.isSynced = true
	if rec := serve(m, bearerReq("any")); rec.Code != http.StatusTeapot {
		t.Fatalf("after sync: %d", rec.Code)
	}
	if b.count() != 2 {
		t.Errorf("backend saw %d requests, want 2", b.count())
	}
	fl.isSynced = false // the consumer stalled
	checkError(t, serve(m, bearerReq("any")), http.StatusServiceUnavailable, errUnavailable)
	// The endpoints stay available while unsynced.
	if rec := serve(m, revokeReq("token=x", basic("portal", "s3cret"))); rec.Code != http.StatusOK {
		t.Errorf("revoke while unsynced: %d", rec.Code)
	}
	// New returns the fail-closed wrapper only when asked to.
	c := CreateConfig()
	c.Clients = []ClientConfig{{ID: "a", Secret: "b"}}
	if h, err := New(context.Background(), http.NotFoundHandler(), c, "plain"); err != nil {
		t.Fatal(err)
	} else if _, ok := h.(*Middleware); !ok {
		t.Errorf("New returned %T without failClosed", h)
	}
}

func TestNoSecretOrTokenInLogs(t *testing.T) {
	var buf bytes.Buffer
	logSinkMu.Lock()
	logSink = &buf
	logSinkMu.Unlock()
	defer func() {
		logSinkMu.Lock()
		logSink = nil
		logSinkMu.Unlock()
	}()
	m, _ := newTestMiddleware(t, func(c *Config) { c.CacheSize = 1 })
	for _, tok := range []string{"first-secret-token", "second-secret-token"} {
		serve(m, revokeReq("token="+tok, basic("portal", "s3cret")))
	}
	serve(m, revokeReq("token=x", basic("portal", "wrong-pass")))
	out := buf.String()
	if !strings.Contains(out, "cacheSize") {
		t.Fatalf("eviction was not logged: %q", out)
	}
	for _, secret := range []string{"first-secret-token", "second-secret-token", "s3cret", "wrong-pass"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q: %s", secret, out)
		}
	}
}

// TestFastPathMatchesSlowPath: for some 2,000 request shapes (schemes in other cases,
// padded or tab-separated, one-byte and empty tokens, several headers, query tokens, the
// plugin's own paths, revoked and clean tokens), ServeHTTP, whose fast path decides the
// common cases itself, answers exactly as serveSlow, which applies the full rules.
func TestFastPathMatchesSlowPath(t *testing.T) {
	m, _ := newTestMiddleware(t, func(c *Config) { c.StatusPath = "/tr/status" })
	now := time.Now().Unix()
	revoked := []string{"tokR", "x", "", " tokR", "\ttokR", "tokR ", "eyJh.eyJw.sigR", "eyJh.b.c.d.e", "eR"}
	for _, r := range revoked {
		key, _ := tokenKey(r)
		m.cache.add(key, now+3600, now)
	}
	paths := []string{"/api/orders", m.revokePath, "/tr/status", "", "/"}
	queries := []string{"", "a=1", "access_token=tokR", "access_token=other"}
	prefixes := []string{"Bearer ", "bearer ", "BEARER ", "Bearer  ", "Bearer\t", "Bearer", "Bearer!", "Bearer \t", "Basic ", "Token ", "Bearer x", ""}
	toks := []string{"tokR", "tokOK", "x", "y", "", " tokR", "\ttokR", "tokR ", "eyJh.eyJw.sigR", "eyJh.eyJw.sig2",
		"eyJh.eyJq.sig", "eyJh.b.c.d.e", "eyJh.b.c.d.f", "eR", "eOK", "e.f", "eyJh.eyJw.sigR.x", "tok.R",
		strings.Repeat("a", maxTokenLength), strings.Repeat("a", maxTokenLength+1)}
	var headerSets [][]string
	headerSets = append(headerSets, []string{"NONE"})
	headerSets = append(headerSets, []string{"EMPTY"})
	for _, p := range prefixes {
		for _, tk := range toks {
			headerSets = append(headerSets, []string{p + tk})
		}
	}
	headerSets = append(headerSets, []string{"Bearer tokOK", "Bearer tokR"}, []string{"Bearer tokR", "Bearer tokOK"}, []string{"Bearer tokOK", "Bearer tokOK"})
	n := 0
	for _, p := range paths {
		for _, q := range queries {
			for _, hs := range headerSets {
				mk := func() *http.Request {
					req := httptest.NewRequest(http.MethodGet, "http://gw/x", nil)
					req.URL.RawQuery = q
					if q == "a=1" {
						// A form body instead of a query.
						req = httptest.NewRequest(http.MethodPost, "http://gw/x", strings.NewReader("access_token=tokR"))
						req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					}
					req.URL.Path = p
					switch {
					case hs[0] == "NONE":
					case hs[0] == "EMPTY":
						req.Header["Authorization"] = []string{}
					default:
						c := make([]string, len(hs))
						copy(c, hs)
						req.Header["Authorization"] = c
					}
					return req
				}
				fast := httptest.NewRecorder()
				m.ServeHTTP(fast, mk())
				slow := httptest.NewRecorder()
				serveSlow(m, slow, mk())
				if fast.Code != slow.Code || fast.Body.String() != slow.Body.String() || fast.Header().Get("WWW-Authenticate") != slow.Header().Get("WWW-Authenticate") {
					t.Errorf("path %q query %q headers %q: fast %d %q, slow %d %q", p, q, hs, fast.Code, fast.Body.String(), slow.Code, slow.Body.String())
				}
				n++
			}
		}
	}
	t.Logf("%d request shapes compared", n)
}
