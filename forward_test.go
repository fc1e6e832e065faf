package tokenrevoke

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// provider is a small RFC 7009 revocation endpoint standing in for the identity
// provider behind the router: it authenticates rp:rp-secret (HTTP Basic or body), and
// records every request it gets, byte for byte. down makes it answer as Traefik does
// when the provider cannot be reached.
type provider struct {
	mu      sync.Mutex
	methods []string
	headers []http.Header
	bodies  []string
	down    bool
}

func (p *provider) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	p.mu.Lock()
	p.methods = append(p.methods, req.Method)
	p.headers = append(p.headers, req.Header.Clone())
	p.bodies = append(p.bodies, string(body))
	down := p.down
	p.mu.Unlock()
	if down {
		rw.WriteHeader(http.StatusBadGateway)
		_, _ = rw.Write([]byte("Bad Gateway"))
		return
	}
	if req.Method != http.MethodPost {
		rw.Header().Set("Allow", "POST")
		rw.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	form, _ := url.ParseQuery(string(body))
	id, secret, ok := req.BasicAuth()
	if !ok {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id != "rp" || secret != "rp-secret" {
		rw.Header().Set("WWW-Authenticate", `Basic realm="provider"`)
		rw.Header().Set("Content-Type", "application/json; charset=utf-8")
		rw.Header().Set("X-Provider", "1")
		rw.WriteHeader(http.StatusUnauthorized)
		_, _ = rw.Write([]byte(`{"error":"invalid_client","error_description":"client authentication failed"}`))
		return
	}
	if form.Get("token") == "" {
		rw.Header().Set("Content-Type", "application/json; charset=utf-8")
		rw.WriteHeader(http.StatusBadRequest)
		_, _ = rw.Write([]byte(`{"error":"invalid_request","error_description":"missing required parameter 'token'"}`))
		return
	}
	rw.Header().Set("X-Provider", "1")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(http.StatusOK)
}

func (p *provider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.bodies)
}

// newForwardMiddleware is newTestMiddleware in forward mode with the provider as next
// (no clients unless mutate adds some).
func newForwardMiddleware(t testing.TB, next http.Handler, mutate func(c *Config)) *Middleware {
	t.Helper()
	c := CreateConfig()
	c.RevokeMode = "forward"
	if mutate != nil {
		mutate(c)
	}
	return middlewareFor(t, c, next, "fwd")
}

func TestForwardConfig(t *testing.T) {
	bad := []struct {
		name   string
		mutate func(c *Config)
		key    string
	}{
		{"unknown mode", func(c *Config) { c.RevokeMode = "proxy" }, "revokeMode"},
		{"local without clients", func(c *Config) { c.RevokeMode = "local"; c.Clients = nil }, "clients"},
		{"forward, statusPath without clients", func(c *Config) {
			// separate statements: yaegi v0.16.1 panics on nil in a tuple assignment
			c.RevokeMode = "forward"
			c.Clients = nil
			c.StatusPath = "/status"
		}, "statusPath"},
		{"relative tokenPath", func(c *Config) { c.TokenPath = "token" }, "tokenPath"},
		{"tokenPath is revokePath", func(c *Config) { c.TokenPath = c.RevokePath }, "tokenPath"},
		{"tokenPath is metricsPath", func(c *Config) { c.TokenPath, c.MetricsPath = "/m", "/m" }, "tokenPath"},
		{"backchannelLogoutPath is tokenPath", func(c *Config) {
			c.TokenPath, c.BackchannelLogoutPath = "/t", "/t"
			c.Issuers = []IssuerConfig{{Issuer: "https://idp", JWKSURL: "https://idp/jwks", Audience: "gw"}}
		}, "backchannelLogoutPath"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := CreateConfig()
			c.Clients = []ClientConfig{{ID: "portal", Secret: "topsecret-value"}}
			tc.mutate(c)
			_, err := New(context.Background(), http.NotFoundHandler(), c, "cfg")
			if err == nil {
				t.Fatal("New accepted a bad config")
			}
			if !strings.Contains(err.Error(), tc.key) || strings.Contains(err.Error(), "topsecret-value") {
				t.Errorf("error %q: want it to name %s and hold no secret", err, tc.key)
			}
		})
	}
	c := CreateConfig()
	c.RevokeMode, c.TokenPath, c.RefreshRevokesSession = " Forward ", " /token ", true
	if _, err := parseConfig(c); err == nil || !strings.Contains(err.Error(), "refreshRevokesSession") {
		t.Fatalf("refreshRevokesSession without issuers: %v", err)
	}
	c.Issuers = []IssuerConfig{{Issuer: "https://idp", JWKSURL: "https://idp/jwks", Audience: "gw"}}
	s, err := parseConfig(c)
	if err != nil {
		t.Fatalf("forward mode without clients: %v", err)
	}
	if !s.forward || s.tokenPath != "/token" || !s.refreshRevokesSession {
		t.Errorf("settings: forward %v tokenPath %q refreshRevokesSession %v", s.forward, s.tokenPath, s.refreshRevokesSession)
	}
	c = CreateConfig()
	c.Clients = []ClientConfig{{ID: "a", Secret: "b"}}
	if s, err := parseConfig(c); err != nil || s.forward || s.tokenPath != "" || s.refreshRevokesSession {
		t.Errorf("defaults: %+v, %v", s, err)
	}
}

func TestForwardRevokesWhatTheProviderAccepted(t *testing.T) {
	p := &provider{}
	m := newForwardMiddleware(t, p, nil)
	fl := &fakeLink{}
	m.domain.link = fl
	exp := time.Now().Unix() + 3600
	jwt := "eyJhbGciOiJub25lIn0." + b64u([]byte(fmt.Sprintf(`{"exp":%d}`, exp))) + ".sig"
	form := "token=" + url.QueryEscape(jwt) + "&token_type_hint=access_token"
	req := revokeReq(form, basic("rp", "rp-secret"))
	req.Header.Set("X-Trace", "abc")
	rec := serve(m, req)
	if rec.Code != http.StatusOK || rec.Header().Get("X-Provider") != "1" || rec.Body.Len() != 0 {
		t.Fatalf("answer %d %v %q, want the provider's 200", rec.Code, rec.Header(), rec.Body.String())
	}
	if p.count() != 1 || p.bodies[0] != form || p.methods[0] != http.MethodPost ||
		p.headers[0].Get("X-Trace") != "abc" || p.headers[0].Get("Authorization") != basic("rp", "rp-secret") {
		t.Fatalf("the provider got %v %v %q, want the request byte for byte", p.methods, p.headers, p.bodies)
	}
	if r := serve(m, bearerReq(jwt)); r.Code != http.StatusUnauthorized {
		t.Fatalf("the revoked token passes: %d", r.Code)
	}
	// Same key and expiry as a local revocation of the token.
	key, kind := tokenKey(jwt)
	if len(fl.sent) != 1 || fl.sent[0].sum != key || fl.sent[0].kind != kind || fl.sent[0].exp != exp+60 ||
		fl.sent[0].hint != "access_token" || fl.sent[0].client != "rp" {
		t.Fatalf("published %+v", fl.sent)
	}
	// Client credentials in the body work the same way.
	rec = serve(m, revokeReq("token=opaque-1&client_id=rp&client_secret=rp-secret", ""))
	if rec.Code != http.StatusOK || serve(m, bearerReq("opaque-1")).Code != http.StatusUnauthorized {
		t.Fatalf("body credentials: %d", rec.Code)
	}
}

func TestForwardRelaysEverythingElse(t *testing.T) {
	p := &provider{}
	m := newForwardMiddleware(t, p, nil)
	fl := &fakeLink{}
	m.domain.link = fl
	direct := httptest.NewRecorder()
	p.ServeHTTP(direct, revokeReq("token=tok-a", basic("rp", "wrong")))
	cases := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"wrong secret", revokeReq("token=tok-a", basic("rp", "wrong")), http.StatusUnauthorized},
		{"no credentials", revokeReq("token=tok-a", ""), http.StatusUnauthorized},
		{"no token", revokeReq("token_type_hint=access_token", basic("rp", "rp-secret")), http.StatusBadRequest},
		{"OPTIONS", httptest.NewRequest(http.MethodOptions, testRevokePath, nil), http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		rec := serve(m, tc.req)
		if rec.Code != tc.want {
			t.Errorf("%s: %d, want the provider's %d", tc.name, rec.Code, tc.want)
		}
	}
	// The provider's 401, relayed unchanged: status, headers and body.
	rec := serve(m, revokeReq("token=tok-a", basic("rp", "wrong")))
	if rec.Code != direct.Code || rec.Body.String() != direct.Body.String() ||
		fmt.Sprint(rec.Header()) != fmt.Sprint(direct.Header()) {
		t.Errorf("relayed %d %v %q, the provider answers %d %v %q", rec.Code, rec.Header(), rec.Body.String(),
			direct.Code, direct.Header(), direct.Body.String())
	}
	// The provider cannot be reached: Traefik's 502 is relayed and nothing is revoked.
	p.down = true
	if rec := serve(m, revokeReq("token=tok-a", basic("rp", "rp-secret"))); rec.Code != http.StatusBadGateway || rec.Body.String() != "Bad Gateway" {
		t.Errorf("provider down: %d %q", rec.Code, rec.Body.String())
	}
	if r := serve(m, bearerReq("tok-a")); r.Code == http.StatusUnauthorized || len(fl.sent) != 0 || m.cache.len() != 0 {
		t.Fatalf("something was revoked: bearer %d, published %d, stored %d", r.Code, len(fl.sent), m.cache.len())
	}
}

func TestForwardRefusesWhatItCannotRead(t *testing.T) {
	p := &provider{}
	m := newForwardMiddleware(t, p, func(c *Config) { c.MaxBodyCheck = 2048 })
	gz := revokeReq("token=tok-a", basic("rp", "rp-secret"))
	gz.Header.Set("Content-Encoding", "gzip")
	json := revokeReq(`{"token":"tok-a"}`, basic("rp", "rp-secret"))
	json.Header.Set("Content-Type", "application/json")
	utf16 := revokeReq("t\x00o\x00k\x00e\x00n\x00=\x00a\x00", basic("rp", "rp-secret"))
	utf16.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-16le")
	two := revokeReq("token=tok-a", basic("rp", "rp-secret"))
	two.Header.Add("Content-Type", "text/plain")
	cases := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"repeated token", revokeReq("token=tok-b&token=tok-a", basic("rp", "rp-secret")), http.StatusBadRequest},
		{"malformed escape", revokeReq("token=tok-a%zz", basic("rp", "rp-secret")), http.StatusBadRequest},
		{"semicolon", revokeReq("token=tok-b;token=tok-a", basic("rp", "rp-secret")), http.StatusBadRequest},
		{"gzip", gz, http.StatusBadRequest},
		{"json", json, http.StatusBadRequest},
		{"utf-16", utf16, http.StatusBadRequest},
		{"two content types", two, http.StatusBadRequest},
		{"token in the query", func() *http.Request {
			r := revokeReq("token=tok-b", basic("rp", "rp-secret"))
			r.URL.RawQuery = "%54oken=tok-a"
			return r
		}(), http.StatusBadRequest},
		{"over maxBodyCheck", revokeReq("token=tok-a&pad="+strings.Repeat("x", 2048), basic("rp", "rp-secret")), http.StatusRequestEntityTooLarge},
		{"query over maxBodyCheck", func() *http.Request {
			r := revokeReq("token=tok-a", basic("rp", "rp-secret"))
			r.URL.RawQuery = "pad=" + strings.Repeat("+", 2048)
			return r
		}(), http.StatusRequestURITooLong},
	}
	for _, tc := range cases {
		rec := serve(m, tc.req)
		checkError(t, rec, tc.want, errInvalidRequest)
	}
	get := httptest.NewRequest(http.MethodGet, testRevokePath+"?token=tok-a", nil)
	get.Header.Set("Authorization", basic("rp", "rp-secret"))
	rec := serve(m, get)
	checkError(t, rec, http.StatusMethodNotAllowed, errInvalidRequest)
	if rec.Header().Get("Allow") != "POST" {
		t.Errorf("405 without Allow: POST")
	}
	if p.count() != 0 {
		t.Fatalf("the provider got %d requests the gateway could not read", p.count())
	}
	// A chunked body of the same size is cut off at the limit too.
	req := revokeReq("", basic("rp", "rp-secret"))
	req.Body = io.NopCloser(strings.NewReader("token=tok-a&pad=" + strings.Repeat("x", 2048)))
	req.ContentLength = -1
	checkError(t, serve(m, req), http.StatusRequestEntityTooLarge, errInvalidRequest)
	if p.count() != 0 {
		t.Fatal("an oversize chunked body was forwarded")
	}
	// A harmless query string passes.
	q := revokeReq("token=tok-q", basic("rp", "rp-secret"))
	q.URL.RawQuery = "trace=1"
	if rec := serve(m, q); rec.Code != http.StatusOK || serve(m, bearerReq("tok-q")).Code != http.StatusUnauthorized {
		t.Fatalf("query without a token parameter: %d", rec.Code)
	}
}

func TestForwardAnswers500WhenNATSDoesNotConfirm(t *testing.T) {
	p := &provider{}
	m := newForwardMiddleware(t, p, nil)
	fl := &fakeLink{err: natsclient.ErrNotConnected}
	m.domain.link = fl
	checkError(t, serve(m, revokeReq("token=tok-n", basic("rp", "rp-secret"))), http.StatusInternalServerError, errServerError)
	if p.count() != 1 {
		t.Fatalf("the provider got %d requests", p.count())
	}
	if r := serve(m, bearerReq("tok-n")); r.Code != http.StatusUnauthorized {
		t.Fatalf("a revocation answered 500 was not kept locally: %d", r.Code)
	}
	fl.err = nil
	if rec := serve(m, revokeReq("token=tok-n", basic("rp", "rp-secret"))); rec.Code != http.StatusOK {
		t.Fatalf("retry: %d", rec.Code)
	}
	if len(fl.sent) != 1 || fl.sent[0].sum != hashToken("tok-n") {
		t.Fatalf("published %+v", fl.sent)
	}
}

func TestForwardRateLimit(t *testing.T) {
	p := &provider{}
	m := newForwardMiddleware(t, p, func(c *Config) {
		c.Clients = []ClientConfig{{ID: "rp", Secret: "unused-here", RatePerMinute: 2}}
	})
	// Wrong secrets claiming rp do not use up rp's rate: only the provider's 200 counts.
	for i := 0; i < 5; i++ {
		if rec := serve(m, revokeReq("token=x", basic("rp", "wrong"))); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: %d", i, rec.Code)
		}
	}
	for i := 0; i < 2; i++ {
		if rec := serve(m, revokeReq(fmt.Sprintf("token=t%d", i), basic("rp", "rp-secret"))); rec.Code != http.StatusOK {
			t.Fatalf("revocation %d: %d", i, rec.Code)
		}
	}
	before := p.count()
	rec := serve(m, revokeReq("token=t3", basic("rp", "rp-secret")))
	checkError(t, rec, http.StatusTooManyRequests, errTooManyRequests)
	if p.count() != before {
		t.Error("a request over the rate was forwarded")
	}
	// A client not listed gets the default rate, keyed by the id it claims.
	if ok, _ := m.domain.limiter.peek("other", m.forwardRate("other"), time.Now()); !ok || m.forwardRate("other") != defaultRatePerMinute {
		t.Errorf("unlisted client: rate %d", m.forwardRate("other"))
	}
}

func TestForwardLargeAnswerAndNoWrite(t *testing.T) {
	big := bytes.Repeat([]byte("x"), maxHeldAnswer+10)
	m := newForwardMiddleware(t, http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		rw.Header().Set("Content-Length", fmt.Sprint(len(big)))
		_, _ = rw.Write(big)
	}), nil)
	rec := serve(m, revokeReq("token=tok-big", ""))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "" {
		t.Fatalf("oversize 200: %d, %d bytes, Content-Length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
	if serve(m, bearerReq("tok-big")).Code != http.StatusUnauthorized {
		t.Fatal("not revoked after the provider's 200")
	}
	m = newForwardMiddleware(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), nil)
	if rec := serve(m, revokeReq("token=tok-silent", "")); rec.Code != http.StatusOK || serve(m, bearerReq("tok-silent")).Code != http.StatusUnauthorized {
		t.Fatalf("a provider that writes nothing answers 200 (net/http): %d", rec.Code)
	}
}
