package tokenrevoke

import (
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRuleCutoffOnlyMovesForward(t *testing.T) {
	c := newTokenCache(10, newLogger("t"))
	key := ruleKey("https://idp", "s1")
	const now = 1000
	if held, cut := c.addRule(ruleSID, key, 500, 5000, now); !held || cut != 500 {
		t.Fatalf("first rule: %v %d", held, cut)
	}
	gen := c.ruleGeneration()
	if held, cut := c.addRule(ruleSID, key, 400, 4000, now); !held || cut != 500 {
		t.Fatalf("earlier cutoff: %v %d, want the held 500", held, cut)
	}
	if c.ruleGeneration() != gen {
		t.Fatal("an earlier cutoff changed the generation")
	}
	if held, cut := c.addRule(ruleSID, key, 700, 5700, now); !held || cut != 700 {
		t.Fatalf("later cutoff: %v %d", held, cut)
	}
	if c.ruleGeneration() == gen {
		t.Fatal("a later cutoff did not change the generation")
	}
	if cut, ok := c.ruleCutoff(ruleSID, key, now); !ok || cut != 700 {
		t.Fatalf("cutoff = %d %v", cut, ok)
	}
	// The subject rules are another namespace: same digest, no match.
	if _, ok := c.ruleCutoff(ruleSub, key, now); ok {
		t.Fatal("a session rule matched as a subject rule")
	}
	if held, _ := c.addRule(ruleSub, key, 10, 999, now); held {
		t.Fatal("an already expired rule was held")
	}
	if n := c.ruleCount(); n != 1 {
		t.Fatalf("rules = %d, want 1", n)
	}
}

func TestRuleSetEvictsTheEarliestExpiry(t *testing.T) {
	c := newTokenCache(3, newLogger("t"))
	const now = 1000
	exps := []int64{50000, 30000, 40000, 60000}
	for i, e := range exps {
		c.addRule(ruleSub, ruleKey("iss", string(rune('a'+i))), 900, e, now)
	}
	if n := c.ruleCount(); n != 3 {
		t.Fatalf("rules = %d, want 3", n)
	}
	if _, ok := c.ruleCutoff(ruleSub, ruleKey("iss", "b"), now); ok {
		t.Fatal("the rule expiring first was kept")
	}
	for _, v := range []string{"a", "c", "d"} {
		if _, ok := c.ruleCutoff(ruleSub, ruleKey("iss", v), now); !ok {
			t.Fatalf("rule %s was dropped", v)
		}
	}
	if _, ev := c.ruleStats(); ev != 1 {
		t.Fatalf("rule evictions = %d, want 1", ev)
	}
	// Moving a rule's expiry keeps one entry; the sweep drops what expired.
	c.addRule(ruleSub, ruleKey("iss", "a"), 950, 70000, now)
	c.sweep(45000)
	if n := c.ruleCount(); n != 2 {
		t.Fatalf("after the sweep: rules = %d, want 2 (a moved to 70000, d at 60000)", n)
	}
	c.sweep(80000)
	if n := c.ruleCount(); n != 0 {
		t.Fatalf("after the last sweep: rules = %d", n)
	}
}

// claimsToken signs a JWT (ES256) with the given claims; a claim set to nil is left out.
func claimsToken(t testing.TB, claims map[string]interface{}) string {
	t.Helper()
	for k, v := range claims {
		if v == nil {
			delete(claims, k)
		}
	}
	return signToken(t, "ES256", testKeys(t).p256, map[string]interface{}{"kid": "e256", "typ": "at+jwt"}, claims)
}

// accessClaims are an access token's claims (sid left out when empty).
func accessClaims(iss, sub, sid string, iat int64) map[string]interface{} {
	c := map[string]interface{}{"iss": iss, "sub": sub, "sid": sid, "iat": iat, "exp": iat + 3600, "aud": "api"}
	if sid == "" {
		delete(c, "sid")
	}
	return c
}

func TestSessionAndSubjectRulesDenyTokens(t *testing.T) {
	m, b := newTestMiddleware(t, nil)
	now := time.Now().Unix()
	T := now - 60
	m.cache.addRule(ruleSID, ruleKey(testIss, "sess-1"), T, now+3600, now)
	m.cache.addRule(ruleSub, ruleKey(testIss, "user-2"), T, now+3600, now)

	type tc struct {
		name    string
		claims  map[string]interface{}
		revoked bool
	}
	cases := []tc{
		{"session, issued before the cutoff", accessClaims(testIss, "user-1", "sess-1", T-100), true},
		{"session, issued at the cutoff", accessClaims(testIss, "user-1", "sess-1", T), true},
		{"session, issued after (logged in again)", accessClaims(testIss, "user-1", "sess-1", T+1), false},
		{"other session of the user", accessClaims(testIss, "user-1", "sess-9", T-100), false},
		{"same session id, other issuer", accessClaims(testIss2, "user-1", "sess-1", T-100), false},
		{"subject rule, any session", accessClaims(testIss, "user-2", "sess-5", T-5), true},
		{"subject rule, no sid", accessClaims(testIss, "user-2", "", T-5), true},
		{"subject rule, issued after", accessClaims(testIss, "user-2", "sess-5", T+10), false},
		{"session value given as sub does not match the session rule", accessClaims(testIss, "sess-1", "x", T-5), false},
	}
	noIat := accessClaims(testIss, "user-1", "sess-1", 0)
	noIat["iat"] = nil
	cases = append(cases, tc{"matching rule, no iat", noIat, true})
	strIat := accessClaims(testIss, "user-1", "sess-1", 0)
	strIat["iat"] = "0"
	cases = append(cases, tc{"matching rule, iat a string", strIat, true})
	frac := accessClaims(testIss, "user-1", "sess-1", 0)
	frac["iat"] = float64(T) + 0.5
	cases = append(cases, tc{"matching rule, iat half a second after", frac, false})
	numSub := accessClaims(testIss, "user-2", "sess-1", T-1)
	numSub["sub"] = 12
	cases = append(cases, tc{"a numeric sub still reads the sid", numSub, true})
	fracBefore := accessClaims(testIss, "user-1", "sess-1", 0)
	fracBefore["iat"] = float64(T) - 0.5
	cases = append(cases, tc{"matching rule, iat half a second before", fracBefore, true})

	for _, c := range cases {
		tok := claimsToken(t, c.claims)
		want := http.StatusTeapot
		if c.revoked {
			want = http.StatusUnauthorized
		}
		places := map[string]*http.Request{
			"header":        bearerReq(tok),
			"query":         httptest.NewRequest(http.MethodGet, "/api?access_token="+url.QueryEscape(tok), nil),
			"extra segment": bearerReq(tok + ".x"),
		}
		form := httptest.NewRequest(http.MethodPost, "/api", strings.NewReader("access_token="+url.QueryEscape(tok)))
		form.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		places["body"] = form
		for where, req := range places {
			if where == "extra segment" && !c.revoked {
				continue // refused or passed by other rules; only denial is checked here
			}
			if got := serve(m, req).Code; got != want {
				t.Errorf("%s (%s): status %d, want %d", c.name, where, got, want)
			}
		}
		// The fast path (second request) decides the same.
		if got := serve(m, bearerReq(tok)).Code; got != want {
			t.Errorf("%s (again): status %d, want %d", c.name, got, want)
		}
	}
	if b.count() == 0 {
		t.Fatal("nothing reached the backend")
	}
}

func TestRuleForgetsPassingTokens(t *testing.T) {
	m, _ := newTestMiddleware(t, nil)
	now := time.Now().Unix()
	tok := claimsToken(t, accessClaims(testIss, "user-1", "sess-1", now-10))
	if got := serve(m, bearerReq(tok)).Code; got != http.StatusTeapot {
		t.Fatalf("before the rule: %d", got)
	}
	req := httptest.NewRequest(http.MethodGet, "/api", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if !m.cache.isPassing(hashToken(tok)) {
		t.Fatal("the token was not remembered as passing")
	}
	m.cache.addRule(ruleSID, ruleKey(testIss, "sess-1"), now, now+3600, now)
	if m.cache.isPassing(hashToken(tok)) {
		t.Fatal("the rule did not forget the passing token")
	}
	if got := serve(m, req).Code; got != http.StatusUnauthorized {
		t.Fatalf("fast path after the rule: %d", got)
	}
}

func TestRememberRefusedWhenARuleCameDuringTheCheck(t *testing.T) {
	m, _ := newTestMiddleware(t, nil)
	now := time.Now().Unix()
	tok := claimsToken(t, accessClaims(testIss, "user-1", "sess-1", now-10))
	gen := m.cache.ruleGeneration()
	// A rule arrives between the check and the remembering.
	m.cache.addRule(ruleSub, ruleKey(testIss, "user-1"), now, now+3600, now)
	m.rememberValid(tok, hashToken(tok), gen)
	if m.cache.isPassing(hashToken(tok)) {
		t.Fatal("a token checked before a rule arrived was remembered")
	}
	m.rememberValid(tok, hashToken(tok), m.cache.ruleGeneration())
	if !m.cache.isPassing(hashToken(tok)) {
		t.Fatal("remembering with the current generation failed")
	}
}

func TestRulePayloadEdgeCases(t *testing.T) {
	m, _ := newTestMiddleware(t, nil)
	now := time.Now().Unix()
	m.cache.addRule(ruleSID, ruleKey(testIss, "sess-1"), now, now+3600, now)
	good := claimsToken(t, accessClaims(testIss, "user-1", "sess-1", now-10))
	parts := strings.Split(good, ".")
	cases := map[string]struct {
		tok     string
		revoked bool
	}{
		"padded payload":                            {parts[0] + "." + parts[1] + "==." + parts[2], true},
		"payload not base64url":                     {parts[0] + ".!!!." + parts[2], false},
		"payload not an object":                     {parts[0] + "." + b64u([]byte(`[1]`)) + "." + parts[2], false},
		"payload without issuer":                    {parts[0] + "." + b64u([]byte(`{"sid":"sess-1","iat":1}`)) + "." + parts[2], false},
		"unsigned token (alg none) is still denied": {b64u([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".", true},
	}
	// iat values no issuer should mint count as missing (revoked), and a type error in
	// one claim leaves the claims after it read.
	iss := strconv.Quote(testIss)
	for name, payload := range map[string]string{
		"iat out of range":           `{"iat":1e400,"iss":` + iss + `,"sid":"sess-1"}`,
		"iat null":                   `{"iss":` + iss + `,"sid":"sess-1","iat":null}`,
		"iat an array":               `{"iat":[99999999999],"iss":` + iss + `,"sid":"sess-1"}`,
		"iat an object":              `{"iat":{"v":99999999999},"iss":` + iss + `,"sid":"sess-1"}`,
		"iat negative":               `{"iss":` + iss + `,"sid":"sess-1","iat":-1}`,
		"iat true":                   `{"iss":` + iss + `,"sid":"sess-1","iat":true}`,
		"later iat wins (before)":    `{"iat":99999999999,"iss":` + iss + `,"sid":"sess-1","iat":` + strconv.FormatInt(now-5, 10) + `}`,
		"numeric sid, string sub ok": `{"iss":` + iss + `,"sid":1,"sub":"u","iat":1}`,
	} {
		want := name != "numeric sid, string sub ok"
		cases[name] = struct {
			tok     string
			revoked bool
		}{parts[0] + "." + b64u([]byte(payload)) + "." + parts[2], want}
	}
	cases["later iat wins (after)"] = struct {
		tok     string
		revoked bool
	}{parts[0] + "." + b64u([]byte(`{"iat":1,"iss":`+iss+`,"sid":"sess-1","iat":`+strconv.FormatInt(now+5, 10)+`}`)) + "." + parts[2], false}
	for name, c := range cases {
		if got := m.ruleRevoked(c.tok, now); got != c.revoked {
			t.Errorf("%s: ruleRevoked = %v, want %v", name, got, c.revoked)
		}
	}
}

func TestRuleChunkRoundTrip(t *testing.T) {
	keys := [][32]byte{ruleKey("a", "1"), ruleKey("b", "2")}
	kinds := []uint8{ruleSID, ruleSub}
	cutoffs := []int64{100, 200}
	exps := []int64{1000, 2000}
	data := encodeRuleChunk(keys, kinds, cutoffs, exps)
	k2, kd2, c2, e2, ok := decodeRuleChunk(data)
	if !ok || len(k2) != 2 || k2[1] != keys[1] || kd2[1] != ruleSub || c2[0] != 100 || e2[1] != 2000 {
		t.Fatalf("round trip: %v %v %v %v %v", ok, k2, kd2, c2, e2)
	}
	for name, bad := range map[string][]byte{
		"short":         data[:7],
		"truncated":     data[:len(data)-1],
		"trailing":      append(append([]byte{}, data...), 0),
		"token magic":   append([]byte("TRS2"), data[4:]...),
		"count too big": append(append([]byte("TRR1"), 0xff, 0xff, 0xff, 0x7f), data[8:]...),
	} {
		if _, _, _, _, ok := decodeRuleChunk(bad); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLogoutConfigErrors(t *testing.T) {
	doc := jwksJSON(t, edJWK("ed", testKeys(t).ed.Public().(ed25519.PublicKey), nil))
	iss := []IssuerConfig{{Issuer: testIss, JWKS: doc, Audience: testAud}}
	cases := map[string]func(c *Config){
		"path without issuers":          func(c *Config) { c.BackchannelLogoutPath = "/bcl" },
		"relative path":                 func(c *Config) { c.Issuers = iss; c.BackchannelLogoutPath = "bcl" },
		"path is the revoke path":       func(c *Config) { c.Issuers = iss; c.BackchannelLogoutPath = c.RevokePath },
		"lifetime longer than maxTTL":   func(c *Config) { c.MaxTokenLifetime = "2200h" },
		"lifetime not a duration":       func(c *Config) { c.MaxTokenLifetime = "a day" },
		"lifetime zero":                 func(c *Config) { c.MaxTokenLifetime = "0" },
		"issuer without audience (New)": func(c *Config) { c.Issuers = []IssuerConfig{{Issuer: testIss, JWKS: doc}} },
		"issuer with both key sources": func(c *Config) {
			c.Issuers = []IssuerConfig{{Issuer: testIss, JWKS: doc, JWKSURL: "https://x/jwks", Audience: "a"}}
		},
	}
	for name, mutate := range cases {
		c := CreateConfig()
		c.Clients = []ClientConfig{{ID: "portal", Secret: "s3cret"}}
		mutate(c)
		if _, err := New(nil, http.NotFoundHandler(), c, "cfg-"+name); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// ruleCutoff returns the cutoff of the live rule of kind for key (tests; the request
// path probes the maps itself, in ruleRevoked).
func (c *tokenCache) ruleCutoff(kind uint8, key [32]byte, now int64) (int64, bool) {
	cut, _, ok := c.ruleOf(kind, key, now)
	return cut, ok
}
