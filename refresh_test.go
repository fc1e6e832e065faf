package tokenrevoke

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const testTokenPath = "/token"

// refreshFixture: a local-mode middleware with tokenPath, and the refresh token
// "rt-revoked" revoked through its endpoint.
func refreshFixture(t *testing.T) (*Middleware, *backend) {
	t.Helper()
	m, b := newTestMiddleware(t, func(c *Config) { c.TokenPath = testTokenPath; c.MaxBodyCheck = 4096 })
	if rec := serve(m, revokeReq("token=rt-revoked&token_type_hint=refresh_token", basic("portal", "s3cret"))); rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d", rec.Code)
	}
	return m, b
}

func tokenReq(method, target, ct, body string) *http.Request {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Authorization", basic("rp", "rp-secret"))
	return req
}

const form = "application/x-www-form-urlencoded"

// The spellings of a refresh grant that a provider (oidc-provider's URLSearchParams,
// Go's PostFormValue, Python's form or merged query, PHP, JSON bodies) would read as
// the revoked refresh token.
func TestRefreshRevokedIsRefusedAtTheEdge(t *testing.T) {
	chunked := tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token=rt-revoked")
	chunked.ContentLength = -1
	cases := []*http.Request{
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, form+"; charset=UTF-8", "refresh_token=rt-revoked&grant_type=refresh_token"),
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh%5Ftoken=rt%2Drevoked"),
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&Refresh_Token=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh.token=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token[]=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token=rt-other&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token=rt-revoked&refresh_token=rt-other"),
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token;refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token=+rt-revoked%20"),
		tokenReq(http.MethodPost, testTokenPath, form, "grant_type=authorization_code&grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, "", "grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, "text/plain", "grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, "application/x-www-form-urlencoded, text/plain", "grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, testTokenPath, "application/json", `{"grant_type":"refresh_token","refresh_token":"rt-revoked"}`),
		tokenReq(http.MethodPost, testTokenPath, "application/json", ` {"grant_type":"refresh_token","REFRESH_TOKEN":"rt\u002drevoked"}`),
		tokenReq(http.MethodPost, testTokenPath, "application/json", `{"refresh_token":["rt-other","rt-revoked"]}`),
		tokenReq(http.MethodPost, testTokenPath+"?grant_type=refresh_token&refresh_token=rt-revoked", "", ""),
		tokenReq(http.MethodGet, testTokenPath+"?grant_type=refresh_token&refresh_token=rt-revoked", "", ""),
		tokenReq(http.MethodPost, testTokenPath+"?refresh_token=rt-revoked", form, "grant_type=refresh_token&refresh_token=rt-other"),
		chunked,
		tokenReq(http.MethodPost, "/TOKEN", form, "grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, "/token/", form, "grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, "//token", form, "grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, "/x/../token", form, "grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, "/token;jsessionid=1", form, "grant_type=refresh_token&refresh_token=rt-revoked"),
		tokenReq(http.MethodPost, "/%74oken", form, "grant_type=refresh_token&refresh_token=rt-revoked"),
	}
	m, b := refreshFixture(t)
	for i, req := range cases {
		rec := serve(m, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("case %d (%s %s): %d, want 400 invalid_grant", i, req.Method, req.URL, rec.Code)
			continue
		}
		checkError(t, rec, http.StatusBadRequest, errInvalidGrant)
	}
	if b.count() != 0 {
		t.Fatalf("the provider saw %d refresh grants with the revoked token", b.count())
	}
}

func TestRefreshUnreadableRequestsAreRefused(t *testing.T) {
	m, b := refreshFixture(t)
	gz := tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token=rt-other")
	gz.Header.Set("Content-Encoding", "gzip")
	two := tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token=rt-other")
	two.Header.Add("Content-Type", "text/plain")
	mp := tokenReq(http.MethodPost, testTokenPath, "multipart/form-data; boundary=B",
		"--B\r\nContent-Disposition: form-data; name=\"refresh_token\"\r\n\r\nrt-revoked\r\n--B--\r\n")
	cases := []struct {
		req  *http.Request
		want int
	}{
		{gz, http.StatusBadRequest},
		{two, http.StatusBadRequest},
		{mp, http.StatusBadRequest},
		{tokenReq(http.MethodPost, testTokenPath, form+"; charset=utf-16le", "g\x00=\x00r\x00"), http.StatusBadRequest},
		{tokenReq(http.MethodPost, testTokenPath, form+"; charset=", "grant_type=refresh_token"), http.StatusBadRequest},
		{tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token=rt-other&pad="+strings.Repeat("x", 4096)), http.StatusRequestEntityTooLarge},
		// Queries longer than maxBodyCheck (4 KiB here) are refused before they are read.
		{tokenReq(http.MethodPost, testTokenPath+"?grant_type=refresh_token&refresh_token="+strings.Repeat("a", maxTokenLength+1), "", ""), http.StatusRequestURITooLong},
		{tokenReq(http.MethodPost, testTokenPath+"?refresh_token=x"+strings.Repeat("&a", maxParams), "", ""), http.StatusRequestURITooLong},
		{tokenReq(http.MethodPost, testTokenPath+"?refresh_token=x"+strings.Repeat("&refresh_token=y", maxCandidates), "", ""), http.StatusBadRequest},
		// JSON that Go's parser refuses while it may name refresh_token (Python's json
		// takes NaN), and JSON in UTF-16 (Python's json detects it).
		{tokenReq(http.MethodPost, testTokenPath, "application/json", `{"refresh_token":"rt-revoked","n":NaN}`), http.StatusBadRequest},
		{tokenReq(http.MethodPost, testTokenPath, "application/json", "\xff\xfe{\x00}\x00"), http.StatusBadRequest},
	}
	for i, tc := range cases {
		rec := serve(m, tc.req)
		if rec.Code != tc.want {
			t.Errorf("case %d: %d, want %d", i, rec.Code, tc.want)
			continue
		}
		checkError(t, rec, tc.want, errInvalidRequest)
	}
	if b.count() != 0 {
		t.Fatalf("the provider saw %d requests the gateway could not read", b.count())
	}
}

func TestRefreshEverythingElsePassesByteForByte(t *testing.T) {
	m, b := refreshFixture(t)
	bodies := []struct{ path, ct, body string }{
		{testTokenPath, form + "; charset=UTF-8", "grant_type=refresh_token&refresh_token=rt-other"},
		{testTokenPath, form, "grant_type=refresh_token&refresh_token=rt-other"},
		{testTokenPath, form, "grant_type=authorization_code&code=abc&redirect_uri=http%3A%2F%2Fx%2Fcb&code_verifier=v"},
		{testTokenPath, "application/json", `{"grant_type":"refresh_token","refresh_token":"rt-other"}`},
		{testTokenPath, "application/json", `{"grant_type":"authorization_code","code":`}, // not JSON: the provider refuses it
		{"/api/other", form, "refresh_token=rt-revoked"},                                  // not the token endpoint
		{"/token/revocation", form, "refresh_token=rt-revoked"},                           // nor is this
	}
	for i, c := range bodies {
		req := tokenReq(http.MethodPost, c.path, c.ct, c.body)
		if i == 1 {
			req.ContentLength = -1 // chunked
		}
		rec := serve(m, req)
		if rec.Code != http.StatusTeapot {
			t.Fatalf("case %d: %d %s, want the backend's answer", i, rec.Code, rec.Body.String())
		}
		if got := b.body[len(b.body)-1]; got != c.body {
			t.Fatalf("case %d: backend got %q, want %q", i, got, c.body)
		}
	}
	// Other requests still get the usual rules there: a revoked bearer token.
	req := tokenReq(http.MethodPost, testTokenPath, form, "grant_type=client_credentials")
	req.Header.Set("Authorization", "Bearer rt-revoked")
	if rec := serve(m, req); rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoked bearer at tokenPath: %d", rec.Code)
	}
	// Without tokenPath, the refresh grant is not looked at (today's behaviour).
	m2, b2 := newTestMiddleware(t, nil)
	serve(m2, revokeReq("token=rt-revoked", basic("portal", "s3cret")))
	if rec := serve(m2, tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token=rt-revoked")); rec.Code != http.StatusTeapot || b2.count() != 1 {
		t.Fatalf("without tokenPath: %d", rec.Code)
	}
}

func TestRefreshFailClosed(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) {
		c.TokenPath = testTokenPath
		c.FailClosed = true
		c.NATS = &NATSConfig{Servers: []string{"nats://127.0.0.1:1"}, Stream: "REVOCATIONS"}
	})
	fl := &fakeLink{}
	m.domain.link = fl
	fc := &failClosedMiddleware{m: m, next: m}
	do := func(req *http.Request) int {
		rec := httptest.NewRecorder()
		fc.ServeHTTP(rec, req)
		return rec.Code
	}
	refresh := func() *http.Request {
		req := httptest.NewRequest(http.MethodPost, testTokenPath, strings.NewReader("grant_type=refresh_token&refresh_token=rt-1&client_id=rp"))
		req.Header.Set("Content-Type", form)
		return req
	}
	if code := do(refresh()); code != http.StatusServiceUnavailable {
		t.Fatalf("refresh grant while unsynced: %d, want 503", code)
	}
	code := httptest.NewRequest(http.MethodPost, testTokenPath, strings.NewReader("grant_type=authorization_code&code=c&client_id=rp"))
	code.Header.Set("Content-Type", form)
	if c := do(code); c != http.StatusTeapot {
		t.Fatalf("code grant while unsynced: %d, want it passed", c)
	}
	fl.isSynced = true
	if c := do(refresh()); c != http.StatusTeapot {
		t.Fatalf("refresh grant once synced: %d", c)
	}
	data, _ := io.ReadAll(strings.NewReader(b.body[len(b.body)-1]))
	if string(data) != "grant_type=refresh_token&refresh_token=rt-1&client_id=rp" {
		t.Fatalf("body changed: %q", data)
	}
}

// A session ended by a rule (a back-channel logout, or an operator's revoke-session)
// also ends its JWT refresh tokens at tokenPath: otherwise a client would refresh its way
// to new access tokens (issued after the cutoff) of the ended session.
func TestRefreshOfAnEndedSessionIsRefused(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) { c.TokenPath = testTokenPath })
	now := time.Now().Unix()
	m.cache.addRule(ruleSID, ruleKey(testIss, "ended"), now-60, now+3600, now)
	refresh := func(sid string, iat int64) string {
		return signToken(t, "ES256", testKeys(t).p256, map[string]interface{}{"kid": "e256", "typ": "refresh+jwt"},
			map[string]interface{}{"iss": testIss, "sub": testSub, "sid": sid, "iat": iat, "exp": iat + 86400})
	}
	grant := func(rt string) *httptest.ResponseRecorder {
		return serve(m, tokenReq(http.MethodPost, testTokenPath, form, "grant_type=refresh_token&refresh_token="+url.QueryEscape(rt)))
	}
	rec := grant(refresh("ended", now-120))
	checkError(t, rec, http.StatusBadRequest, errInvalidGrant)
	if b.count() != 0 {
		t.Fatal("the provider saw the ended session's refresh token")
	}
	for name, rt := range map[string]string{"another session": refresh("open", now-120), "issued after the cutoff": refresh("ended", now-30)} {
		if rec := grant(rt); rec.Code != http.StatusTeapot {
			t.Errorf("%s: %d, want it passed to the provider", name, rec.Code)
		}
	}
}
