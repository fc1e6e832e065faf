package tokenrevoke

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func withPlaces(c *Config) {
	c.TokenCookies = []string{"access_token", "jwt"}
	c.TokenHeaders = []string{"X-Forwarded-Access-Token", "X-Auth-Token"}
}

func getWith(header, value string) func(string) *http.Request {
	return func(tok string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
		// As Go's server (and so Traefik) stores it: under the canonical key.
		r.Header.Add(header, strings.ReplaceAll(value, "{T}", tok))
		return r
	}
}

func placeCases() []bypassCase {
	return []bypassCase{
		{"token header, bare", getWith("X-Forwarded-Access-Token", "{T}"), 401},
		{"token header, with a scheme", getWith("X-Auth-Token", "Bearer {T}"), 401},
		{"token header, lower case", getWith("x-auth-token", "{T}"), 401},
		{"token header, underscores (WSGI reads X_Auth_Token as X-Auth-Token)", getWith("X_AUTH_TOKEN", "{T}"), 401},
		{"token header, mixed separators", getWith("x-forwarded_ACCESS-token", "{T}"), 401},
		{"token header, padded", getWith("X-Auth-Token", "  {T} "), 401},
		{"token header, malformed bearer", getWith("X-Auth-Token", "Bearer\t{T}"), 400},
		{"token header twice", func(tok string) *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
			r.Header["X-Auth-Token"] = []string{"fine"}
			r.Header["X_auth_token"] = []string{tok}
			return r
		}, 400},
		{"token header over maxBodyCheck", getWith("X-Auth-Token", "{T} "+strings.Repeat("a", 70<<10)), 431},
		{"cookie", getWith("Cookie", "access_token={T}"), 401},
		{"second cookie name", getWith("Cookie", "a=1; jwt={T}"), 401},
		{"cookie, quoted", getWith("Cookie", `access_token="{T}"`), 401},
		{"cookie, quoted with a backslash (Python reads escapes)", getWith("Cookie", `access_token="\{T}"`), 400},
		{"cookie, spaces around", getWith("Cookie", "x=1;  access_token = {T} ;y=2"), 401},
		{"cookie, comma separated", getWith("Cookie", "x=1,access_token={T}"), 401},
		{"cookie, encoded name (PHP decodes it)", getWith("Cookie", "%61ccess_token={T}"), 401},
		{"cookie, dotted name (PHP reads _)", getWith("Cookie", "access.token={T}"), 401},
		{"cookie, second of two", getWith("Cookie", "access_token=fine; access_token={T}"), 401},
		{"cookie, in a second Cookie header", func(tok string) *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
			r.Header["Cookie"] = []string{"a=1", "access_token=" + tok}
			return r
		}, 401},
		{"cookie, with a fine bearer header", func(tok string) *http.Request {
			r := getWith("Cookie", "access_token={T}")(tok)
			r.Header.Set("Authorization", "Bearer fine")
			return r
		}, 401},
		{"too many cookies of the name", getWith("Cookie", strings.Repeat("access_token=x; ", maxCandidates)+"access_token={T}"), 400},
		{"Cookie header over maxBodyCheck", getWith("Cookie", "access_token={T}; p="+strings.Repeat("a", 70<<10)), 431},
	}
}

func TestBypassPlaces(t *testing.T) {
	m, b := newTestMiddleware(t, withPlaces)
	toks := []string{"2YotnFZFEjr1zCsicMWpAA", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln", "tok+with/slash=="}
	for _, tok := range toks {
		if rec := serve(m, revokeReq("token="+url.QueryEscape(tok), basic("portal", "s3cret"))); rec.Code != http.StatusOK {
			t.Fatalf("revoke: %d", rec.Code)
		}
	}
	for _, tc := range placeCases() {
		for _, tok := range toks {
			before := b.count()
			rec := serve(m, tc.req(tok))
			if rec.Code != tc.status || b.count() != before {
				t.Errorf("%s (%.10s…): status %d (backend reached: %v), want %d (%s)", tc.name, tok, rec.Code, b.count() != before, tc.status, rec.Body.String())
				continue
			}
			if tc.status == http.StatusUnauthorized {
				if rec := serve(m, tc.req("fine-token")); rec.Code != http.StatusTeapot {
					t.Errorf("%s with a token that is not revoked: %d, want the backend", tc.name, rec.Code)
				}
			}
		}
	}
	// A cookie value percent-encoded (cookie-parser decodes it; '+' stays a '+').
	rec := serve(m, getWith("Cookie", "access_token=tok%2Bwith%2Fslash%3D%3D")(""))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("percent-encoded cookie: %d, want 401", rec.Code)
	}
	// Without the configuration, the same places are not read (and pass untouched).
	plain, pb := newTestMiddleware(t, nil)
	serve(plain, revokeReq("token="+toks[0], basic("portal", "s3cret")))
	if rec := serve(plain, getWith("Cookie", "access_token={T}")(toks[0])); rec.Code != http.StatusTeapot || pb.count() != 1 {
		t.Errorf("cookie without tokenCookies: %d", rec.Code)
	}
}

// The fast path must not pass a remembered bearer token when a configured place
// carries a revoked one.
func TestPlacesBeatTheFastPath(t *testing.T) {
	m, _ := newTestMiddleware(t, withPlaces)
	serve(m, revokeReq("token=revoked-one", basic("portal", "s3cret")))
	fine := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
	fine.Header.Set("Authorization", "Bearer live-token")
	for i := 0; i < 2; i++ { // the second request takes the fast path
		if rec := serve(m, fine); rec.Code != http.StatusTeapot {
			t.Fatalf("live token: %d", rec.Code)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
	r.Header.Set("Authorization", "Bearer live-token")
	r.Header.Set("Cookie", "access_token=revoked-one")
	if rec := serve(m, r); rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoked cookie beside a remembered bearer token: %d, want 401", rec.Code)
	}
	r.Header.Del("Cookie")
	r.Header.Set("X-Auth-Token", "revoked-one")
	if rec := serve(m, r); rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoked token header beside a remembered bearer token: %d, want 401", rec.Code)
	}
}

func TestPlacesConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		mutate func(c *Config)
		want   string
	}{
		{func(c *Config) { c.TokenCookies = []string{"a=b"} }, "tokenCookies[0]"},
		{func(c *Config) { c.TokenCookies = []string{"ok", " "} }, "tokenCookies[1]"},
		{func(c *Config) { c.TokenHeaders = []string{"X Auth"} }, "tokenHeaders[0]"},
		{func(c *Config) { c.TokenHeaders = []string{"authorization"} }, "tokenHeaders[0]: Authorization"},
		{func(c *Config) { c.TokenHeaders = []string{"Cookie"} }, "tokenHeaders[0]"},
		{func(c *Config) { c.TokenHeaders = []string{"a-b-c-d-e-f-g"} }, "tokenHeaders[0]"},
	} {
		c := CreateConfig()
		c.Clients = []ClientConfig{{ID: "portal", Secret: "s3cret"}}
		tc.mutate(c)
		_, err := parseConfig(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one naming %q", err, tc.want)
		}
	}
}

func TestHeaderSpellings(t *testing.T) {
	got := headerSpellings("x-auth_token")
	want := []string{"X-Auth-Token", "X-Auth_token", "X_auth-Token", "X_auth_token"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("spellings %v, want %v", got, want)
	}
}
