package tokenrevoke

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const testLogoutPath = "/api/id/v1/auth/backchannel-logout"

// newLogoutMiddleware is a middleware with testIss (every test key, inline) and testIss2
// configured, and the back-channel logout receiver on testLogoutPath.
func newLogoutMiddleware(t testing.TB, mutate func(c *Config)) (*Middleware, *backend) {
	t.Helper()
	k := testKeys(t)
	doc := testIssuerJWKS(t)
	m, b := newTestMiddleware(t, func(c *Config) {
		c.Issuers = []IssuerConfig{
			{Issuer: testIss, Audience: testAud, JWKS: doc},
			{Issuer: testIss2, Audience: testOther, JWKS: jwksJSON(t, ecJWK("o1", &k.p256b.PublicKey, nil))},
		}
		c.BackchannelLogoutPath = testLogoutPath
		c.MaxTokenLifetime = "2h"
		if mutate != nil {
			mutate(c)
		}
	})
	var err error
	if m.issuers, err = m.domain.logoutIssuers(m.settings, m.log); err != nil {
		t.Fatal(err)
	}
	return m, b
}

// nowLogout is a valid logout token issued now (see logoutJWT for mutate).
func nowLogout(t testing.TB, alg string, key interface{}, kid string, mutate func(c map[string]interface{})) string {
	t.Helper()
	now := time.Now().Unix()
	return logoutJWT(t, alg, key, kid, func(c map[string]interface{}) {
		c["iat"] = now
		c["exp"] = now + 120
		if mutate != nil {
			mutate(c)
		}
	})
}

func logoutReq(form string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, testLogoutPath, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

func postLogout(m *Middleware, tok string) *httptest.ResponseRecorder {
	return serve(m, logoutReq("logout_token="+url.QueryEscape(tok)))
}

func TestBackchannelLogoutEndsOneSession(t *testing.T) {
	m, b := newLogoutMiddleware(t, func(c *Config) { c.StatusPath = "/status" })
	k := testKeys(t)
	now := time.Now().Unix()
	mine := claimsToken(t, accessClaims(testIss, testSub, testSid, now-30))
	other := claimsToken(t, accessClaims(testIss, testSub, "another-session", now-30))
	for _, tok := range []string{mine, other} {
		if got := serve(m, bearerReq(tok)).Code; got != http.StatusTeapot {
			t.Fatalf("before the logout: %d", got)
		}
	}
	rec := postLogout(m, nowLogout(t, "RS256", k.rsa1, "r1", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "no-store" || rec.Body.Len() != 0 {
		t.Fatalf("logout: %d %q %q", rec.Code, rec.Header().Get("Cache-Control"), rec.Body.String())
	}
	if got := serve(m, bearerReq(mine)).Code; got != http.StatusUnauthorized {
		t.Fatalf("the logged-out session's token: %d, want 401", got)
	}
	if got := serve(m, bearerReq(other)).Code; got != http.StatusTeapot {
		t.Fatalf("the other session's token: %d, want it to pass", got)
	}
	later := claimsToken(t, accessClaims(testIss, testSub, testSid, now+5))
	if got := serve(m, bearerReq(later)).Code; got != http.StatusTeapot {
		t.Fatalf("a token issued after the logout: %d, want it to pass", got)
	}
	if n := m.cache.ruleCount(); n != 1 {
		t.Fatalf("rules = %d", n)
	}
	if atomic.LoadInt64(&m.metrics.revokedLogout) != 1 {
		t.Fatal("the logout was not counted")
	}
	// The rule is known by digest only: no sid or sub in the status or the metrics. The
	// status lists each issuer's keys (no key material).
	sreq := httptest.NewRequest(http.MethodGet, "/status", nil)
	sreq.Header.Set("Authorization", basic("portal", "s3cret"))
	st := serve(m, sreq).Body.String()
	if strings.Contains(st, testSid) || strings.Contains(st, testSub) || !strings.Contains(st, `"rules":1`) ||
		!strings.Contains(st, `"kid":"e256"`) || !strings.Contains(st, `"source":"inline"`) || strings.Contains(st, `"n":`) {
		t.Fatalf("status: %s", st)
	}
	if text := string(m.domain.metricsText()); strings.Contains(text, testSid) || strings.Contains(text, testSub) || !strings.Contains(text, "tokenrevoke_rules 1") {
		t.Fatalf("metrics:\n%s", text)
	}
	if b.count() != 4 {
		t.Fatalf("backend saw %d requests, want the 4 that passed", b.count())
	}
}

func TestBackchannelLogoutSubjectEndsEverySession(t *testing.T) {
	m, _ := newLogoutMiddleware(t, nil)
	k := testKeys(t)
	now := time.Now().Unix()
	a := claimsToken(t, accessClaims(testIss, testSub, "s-a", now-30))
	b := claimsToken(t, accessClaims(testIss, testSub, "s-b", now-30))
	someoneElse := claimsToken(t, accessClaims(testIss, "someone-else", "s-c", now-30))
	rec := postLogout(m, nowLogout(t, "ES256", k.p256, "e256", func(c map[string]interface{}) { c["sid"] = nil }))
	if rec.Code != http.StatusOK {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body.String())
	}
	for _, tok := range []string{a, b} {
		if got := serve(m, bearerReq(tok)).Code; got != http.StatusUnauthorized {
			t.Fatalf("a session of the subject: %d, want 401", got)
		}
	}
	if got := serve(m, bearerReq(someoneElse)).Code; got != http.StatusTeapot {
		t.Fatalf("another subject: %d", got)
	}
}

func TestBackchannelLogoutLaterLogoutMovesTheCutoff(t *testing.T) {
	m, _ := newLogoutMiddleware(t, nil)
	k := testKeys(t)
	now := time.Now().Unix()
	if rec := postLogout(m, nowLogout(t, "EdDSA", k.ed, "ed", func(c map[string]interface{}) { c["iat"] = now - 100 })); rec.Code != 200 {
		t.Fatalf("first logout: %d %s", rec.Code, rec.Body.String())
	}
	mid := claimsToken(t, accessClaims(testIss, testSub, testSid, now-50))
	if got := serve(m, bearerReq(mid)).Code; got != http.StatusTeapot {
		t.Fatalf("token issued after the first logout: %d", got)
	}
	if rec := postLogout(m, nowLogout(t, "PS256", k.rsa2, "r2", nil)); rec.Code != 200 {
		t.Fatalf("second logout: %d %s", rec.Code, rec.Body.String())
	}
	if got := serve(m, bearerReq(mid)).Code; got != http.StatusUnauthorized {
		t.Fatalf("after the second logout: %d, want 401", got)
	}
	// An older logout arriving late changes nothing.
	if rec := postLogout(m, nowLogout(t, "ES384", k.p384, "e384", func(c map[string]interface{}) { c["iat"] = now - 500 })); rec.Code != 200 {
		t.Fatalf("late logout: %d", rec.Code)
	}
	if cut, _ := m.cache.ruleCutoff(ruleSID, ruleKey(testIss, testSid), now); cut < now-1 {
		t.Fatalf("cutoff moved back to %d", cut)
	}
}

func TestBackchannelLogoutRefusals(t *testing.T) {
	m, _ := newLogoutMiddleware(t, nil)
	k := testKeys(t)
	pubDER := func() []byte { // an RSA public key's bytes as an HMAC secret
		return k.rsa1.PublicKey.N.Bytes()
	}
	replayed := nowLogout(t, "RS256", k.rsa1, "r1", nil)
	if rec := postLogout(m, replayed); rec.Code != 200 {
		t.Fatalf("first use: %d %s", rec.Code, rec.Body.String())
	}
	before := m.cache.ruleCount()
	gen := m.cache.ruleGeneration()
	del := func(name string) func(c map[string]interface{}) {
		return func(c map[string]interface{}) { c[name] = nil }
	}
	set := func(name string, v interface{}) func(c map[string]interface{}) {
		return func(c map[string]interface{}) { c[name] = v }
	}
	hdr, _ := splitFirst(nowLogout(t, "RS256", k.rsa1, "r1", nil))
	cases := map[string]string{
		"replayed jti":                    replayed,
		"signed by another key":           nowLogout(t, "RS256", k.rsa2, "r1", nil),
		"alg none":                        b64u([]byte(`{"alg":"none","typ":"logout+jwt"}`)) + "." + payloadOf(nowLogout(t, "RS256", k.rsa1, "r1", nil)) + ".",
		"HS256 keyed with the public key": hmacToken(`{"alg":"HS256","kid":"r1"}`, string(mustB64Decode(payloadOf(nowLogout(t, "RS256", k.rsa1, "r1", nil)))), pubDER()),
		"wrong audience":                  nowLogout(t, "RS256", k.rsa1, "r1", set("aud", "someone-else")),
		"unknown issuer":                  nowLogout(t, "RS256", k.rsa1, "r1", set("iss", "https://evil.example")),
		"issuer of another key":           nowLogout(t, "RS256", k.rsa1, "r1", set("iss", testIss2)),
		"no iat":                          nowLogout(t, "RS256", k.rsa1, "r1", del("iat")),
		"iat in the future":               nowLogout(t, "RS256", k.rsa1, "r1", set("iat", time.Now().Add(time.Hour).Unix())),
		"expired":                         nowLogout(t, "RS256", k.rsa1, "r1", set("exp", time.Now().Add(-time.Hour).Unix())),
		"no jti":                          nowLogout(t, "RS256", k.rsa1, "r1", del("jti")),
		"no events":                       nowLogout(t, "RS256", k.rsa1, "r1", del("events")),
		"events not an object":            nowLogout(t, "RS256", k.rsa1, "r1", set("events", []string{logoutEvent})),
		"event value a string":            nowLogout(t, "RS256", k.rsa1, "r1", set("events", map[string]interface{}{logoutEvent: "yes"})),
		"other event":                     nowLogout(t, "RS256", k.rsa1, "r1", set("events", map[string]interface{}{"urn:other": map[string]interface{}{}})),
		"neither sub nor sid":             nowLogout(t, "RS256", k.rsa1, "r1", func(c map[string]interface{}) { c["sub"] = nil; c["sid"] = nil }),
		"nonce":                           nowLogout(t, "RS256", k.rsa1, "r1", set("nonce", "n-1")),
		"not a JWT":                       "logout",
		"an ID token's typ":               signToken(t, "RS256", k.rsa1, map[string]interface{}{"kid": "r1", "typ": "at+jwt"}, map[string]interface{}{"iss": testIss}),
		"header tampered":                 hdr + "x." + payloadOf(replayed) + ".sig",
	}
	for name, tok := range cases {
		rec := postLogout(m, tok)
		checkError(t, rec, http.StatusBadRequest, errInvalidRequest)
		if strings.Contains(rec.Body.String(), testSid) || strings.Contains(rec.Body.String(), testSub) {
			t.Errorf("%s: the answer names a claim value: %s", name, rec.Body.String())
		}
	}
	// Request shape.
	checkError(t, serve(m, httptest.NewRequest(http.MethodGet, testLogoutPath, nil)), http.StatusMethodNotAllowed, errInvalidRequest)
	checkError(t, serve(m, logoutReq("")), http.StatusBadRequest, errInvalidRequest)
	req := httptest.NewRequest(http.MethodPost, testLogoutPath, strings.NewReader(`{"logout_token":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	checkError(t, serve(m, req), http.StatusBadRequest, errInvalidRequest)
	tok := nowLogout(t, "RS256", k.rsa1, "r1", nil)
	checkError(t, serve(m, logoutReq("logout_token="+tok+"&logout_token="+tok)), http.StatusBadRequest, errInvalidRequest)
	if m.cache.ruleCount() != before || m.cache.ruleGeneration() != gen {
		t.Fatal("a refused logout changed the rules")
	}
	if got := atomic.LoadInt64(&m.metrics.logoutRefused); got != int64(len(cases)) {
		t.Fatalf("refusals counted %d, want %d", got, len(cases))
	}
}

func splitFirst(tok string) (string, string) {
	i := strings.IndexByte(tok, '.')
	return tok[:i], tok[i+1:]
}

func payloadOf(tok string) string { return strings.Split(tok, ".")[1] }

func mustB64Decode(s string) []byte {
	b, err := jwsSegment(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestVerifiedRevocations(t *testing.T) {
	m, _ := newLogoutMiddleware(t, nil)
	k := testKeys(t)
	now := time.Now().Unix()
	revoke := func(tok string) int {
		return serve(m, revokeReq("token="+url.QueryEscape(tok), basic("portal", "s3cret"))).Code
	}
	// A valid token of a configured issuer: held until its exp (+ clock skew).
	claims := accessClaims(testIss, testSub, testSid, now-10)
	claims["exp"] = now + 600
	good := claimsToken(t, claims)
	if got := revoke(good); got != 200 {
		t.Fatalf("revoke: %d", got)
	}
	key, _ := tokenKey(good)
	if exp := slotExp(m, key); exp != now+600+60 {
		t.Fatalf("held until %d, want exp + skew %d", exp, now+660)
	}
	// Forged: the same claims under a key the issuer does not hold, alg none, HMAC.
	forged := []string{
		signToken(t, "ES256", k.p256b, map[string]interface{}{"kid": "e256"}, claims),
		b64u([]byte(`{"alg":"none"}`)) + "." + payloadOf(good) + ".",
		hmacToken(`{"alg":"HS256"}`, string(mustB64Decode(payloadOf(good))), k.rsa1.PublicKey.N.Bytes()),
	}
	for i, tok := range forged {
		if got := revoke(tok); got != 200 {
			t.Fatalf("forged %d: %d, want 200 (RFC 7009)", i, got)
		}
		fk, _ := tokenKey(tok)
		if m.cache.contains(fk, now) {
			t.Fatalf("forged %d was stored", i)
		}
	}
	if got := atomic.LoadInt64(&m.metrics.forgedRefused); got != int64(len(forged)) {
		t.Fatalf("unverified counted %d", got)
	}
	// A leniently spelled signature ('=' padding) verifies once spelled canonically.
	claims2 := accessClaims(testIss, testSub, testSid, now-5)
	padded := claimsToken(t, claims2) + "=="
	if got := revoke(padded); got != 200 {
		t.Fatal(got)
	}
	if pk, _ := tokenKey(padded); slotExp(m, pk) == 0 {
		t.Fatal("a valid token with a padded signature was not stored")
	}
	// A JWT of an issuer not configured is stored as before (exp read, capped at maxTTL).
	alien := signToken(t, "ES256", k.p256b, nil, map[string]interface{}{"iss": "https://elsewhere", "exp": now + 100})
	if got := revoke(alien); got != 200 {
		t.Fatal(got)
	}
	ak, _ := tokenKey(alien)
	if exp := slotExp(m, ak); exp != now+100+60 {
		t.Fatalf("unconfigured issuer: held until %d", exp)
	}
}

func TestVerifiedRevocationWhileKeysUnavailable(t *testing.T) {
	ts := newTestJWKSServer(t, "")
	ts.set("down", http.StatusServiceUnavailable)
	m, _ := newTestMiddleware(t, func(c *Config) {
		c.Issuers = []IssuerConfig{{Issuer: testIss, Audience: testAud, JWKSURL: ts.srv.URL + "/jwks"}}
		c.MaxTokenLifetime = "3h"
	})
	var err error
	if m.issuers, err = m.domain.logoutIssuers(m.settings, m.log); err != nil {
		t.Fatal(err)
	}
	m.issuers.wait()
	now := time.Now().Unix()
	tok := claimsToken(t, accessClaims(testIss, testSub, testSid, now))
	if got := serve(m, revokeReq("token="+url.QueryEscape(tok), basic("portal", "s3cret"))).Code; got != 200 {
		t.Fatalf("revoke: %d", got)
	}
	key, _ := tokenKey(tok)
	exp := slotExp(m, key)
	if exp < now+3*3600+60 || exp > now+3*3600+62 {
		t.Fatalf("held until %d, want now + maxTokenLifetime + skew (%d)", exp, now+3*3600+60)
	}
}

// slotExp is the expiry the cache holds for key (0 when absent).
func slotExp(m *Middleware, key [32]byte) int64 {
	m.cache.mu.RLock()
	defer m.cache.mu.RUnlock()
	slot, ok := m.cache.index[key]
	if !ok {
		return 0
	}
	return m.cache.exps[slot]
}

// refreshRevokesSession: a revoked, verified JWT refresh token carrying sid ends that
// session (local mode and forward mode); forgeries, access tokens and the setting off
// end nothing.
func TestRefreshRevokesSession(t *testing.T) {
	k := testKeys(t)
	now := time.Now().Unix()
	refresh := func(key interface{}, kid, sid string) string {
		return signToken(t, "ES256", key, map[string]interface{}{"kid": kid, "typ": "refresh+jwt"},
			map[string]interface{}{"iss": testIss, "sub": testSub, "sid": sid, "iat": now - 30, "exp": now + 3600})
	}
	session := claimsToken(t, accessClaims(testIss, testSub, "sess-r", now-20))
	other := claimsToken(t, accessClaims(testIss, testSub, "sess-other", now-20))

	run := func(t *testing.T, m *Middleware, revokeTok func(tok, hint string) int) {
		t.Helper()
		// Not ending the session: a forgery naming the session, an access token, no hint.
		for _, c := range []struct{ tok, hint string }{
			{refresh(k.p256b, "e256", "sess-r"), "refresh_token"},
			{claimsToken(t, accessClaims(testIss, testSub, "sess-r", now-10)), "access_token"},
		} {
			if got := revokeTok(c.tok, c.hint); got != 200 {
				t.Fatalf("revoke: %d", got)
			}
		}
		if got := serve(m, bearerReq(session)).Code; got == http.StatusUnauthorized {
			t.Fatal("a forged refresh token or an access token ended the session")
		}
		if got := revokeTok(refresh(k.p256, "e256", "sess-r"), "refresh_token"); got != 200 {
			t.Fatalf("revoke: %d", got)
		}
		if got := serve(m, bearerReq(session)).Code; got != http.StatusUnauthorized {
			t.Fatalf("the session's access token after its refresh token was revoked: %d", got)
		}
		if got := serve(m, bearerReq(other)).Code; got == http.StatusUnauthorized {
			t.Fatal("another session was ended")
		}
	}
	t.Run("local", func(t *testing.T) {
		m, _ := newLogoutMiddleware(t, func(c *Config) { c.RefreshRevokesSession = true })
		run(t, m, func(tok, hint string) int {
			return serve(m, revokeReq("token="+url.QueryEscape(tok)+"&token_type_hint="+hint, basic("portal", "s3cret"))).Code
		})
	})
	t.Run("forward", func(t *testing.T) {
		p := &provider{}
		m, _ := newLogoutMiddleware(t, func(c *Config) { c.RefreshRevokesSession = true; c.RevokeMode = "forward" })
		m.next = p
		run(t, m, func(tok, hint string) int {
			return serve(m, revokeReq("token="+url.QueryEscape(tok)+"&token_type_hint="+hint, basic("rp", "rp-secret"))).Code
		})
		if p.count() != 5 {
			t.Fatalf("the provider got %d requests, want 3 revocations and the 2 bearer requests that passed", p.count())
		}
	})
	t.Run("off", func(t *testing.T) {
		m, _ := newLogoutMiddleware(t, nil)
		if got := serve(m, revokeReq("token="+url.QueryEscape(refresh(k.p256, "e256", "sess-r"))+"&token_type_hint=refresh_token", basic("portal", "s3cret"))).Code; got != 200 {
			t.Fatal(got)
		}
		if m.cache.ruleCount() != 0 {
			t.Fatal("a rule was added with refreshRevokesSession off")
		}
	})
}

// A user who logs in and out in a loop cannot push other users' rules out of a full
// rule set: past sessionsPerSubject session rules within maxTokenLifetime, the user's
// further session logouts become one subject rule whose cutoff moves forward.
func TestLogoutLoopFoldsIntoOneSubjectRule(t *testing.T) {
	m, _ := newLogoutMiddleware(t, func(c *Config) { c.CacheSize = sessionsPerSubject + 10 })
	k := testKeys(t)
	now := time.Now().Unix()
	logout := func(sub, sid string, iat int64) {
		t.Helper()
		rec := postLogout(m, nowLogout(t, "ES256", k.p256, "e256", func(c map[string]interface{}) {
			c["sub"], c["sid"], c["iat"] = sub, sid, iat
		}))
		if rec.Code != http.StatusOK {
			t.Fatalf("logout of %s/%s: %d %s", sub, sid, rec.Code, rec.Body.String())
		}
	}
	// Another user's logout comes first: its rule expires first, so a full set would
	// drop it first.
	victim := claimsToken(t, accessClaims(testIss, "victim", "victim-session", now-200))
	logout("victim", "victim-session", now-100)
	live := claimsToken(t, accessClaims(testIss, testSub, "still-open", now-30))
	for i := 0; i < sessionsPerSubject; i++ {
		logout(testSub, "loop-"+strconv.Itoa(i), now)
	}
	if n := m.cache.ruleCount(); n != sessionsPerSubject+1 {
		t.Fatalf("%d rules, want %d session rules", n, sessionsPerSubject+1)
	}
	if got := serve(m, bearerReq(live)).Code; got != http.StatusTeapot {
		t.Fatalf("a session of the user that did not end, before the fold: %d", got)
	}
	looped := claimsToken(t, accessClaims(testIss, testSub, "loop-more-7", now-5))
	for i := 0; i < 4*sessionsPerSubject; i++ {
		logout(testSub, "loop-more-"+strconv.Itoa(i), now)
	}
	if n := m.cache.ruleCount(); n != sessionsPerSubject+2 {
		t.Fatalf("%d rules after the loop, want %d (the session rules and one subject rule)", n, sessionsPerSubject+2)
	}
	if _, ev := m.cache.ruleStats(); ev != 0 {
		t.Fatalf("%d rules evicted", ev)
	}
	for name, tok := range map[string]string{"the other user's ended session": victim, "a looped session": looped, "the user's open session (issued before)": live} {
		if got := serve(m, bearerReq(tok)).Code; got != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, got)
		}
	}
	if got := serve(m, bearerReq(claimsToken(t, accessClaims(testIss, testSub, "new-login", now+5)))).Code; got != http.StatusTeapot {
		t.Errorf("the user's next login: %d, want it to pass", got)
	}
	if got := serve(m, bearerReq(claimsToken(t, accessClaims(testIss, "third-user", "s3", now-30)))).Code; got != http.StatusTeapot {
		t.Errorf("a third user: %d, want it to pass", got)
	}
	if f := m.domain.folds.count(); f != 4*sessionsPerSubject {
		t.Errorf("%d logouts folded, want %d", f, 4*sessionsPerSubject)
	}
	if text := string(m.domain.metricsText()); !strings.Contains(text, "tokenrevoke_session_rules_folded_total "+strconv.Itoa(4*sessionsPerSubject)+"\n") {
		t.Errorf("metrics:\n%s", text)
	}
}

func TestSessionFoldsWindowAndBound(t *testing.T) {
	f := newSessionFolds()
	key := ruleKey(testIss, "u")
	for i := 1; i <= sessionsPerSubject+2; i++ {
		fold, first := f.fold(key, 1000, 60)
		if fold != (i > sessionsPerSubject) || first != (i == sessionsPerSubject+1) {
			t.Fatalf("logout %d: fold %v first %v", i, fold, first)
		}
	}
	// The window ends: counting starts again.
	if fold, _ := f.fold(key, 1060, 60); fold {
		t.Fatal("the count did not start again after the window")
	}
	// Bounded: past foldSubjectsMax live subjects a new one is not counted; once their
	// windows end they are swept (at most once a minute while full).
	for i := 0; len(f.windows) < foldSubjectsMax; i++ {
		f.fold(ruleKey(testIss, "s"+strconv.Itoa(i)), 1070, 100)
	}
	extra := ruleKey(testIss, "one-more")
	f.fold(extra, 1100, 100)
	if _, ok := f.windows[extra]; ok || len(f.windows) != foldSubjectsMax {
		t.Fatalf("%d subjects counted, want %d", len(f.windows), foldSubjectsMax)
	}
	f.fold(extra, 1200, 100)
	if _, ok := f.windows[extra]; !ok || len(f.windows) != 1 {
		t.Fatalf("after the windows ended: %d subjects counted, want 1 (one-more)", len(f.windows))
	}
}

// The same bound for refreshRevokesSession: a client revoking its own refresh tokens in
// a loop adds one subject rule past sessionsPerSubject.
func TestRefreshRevocationLoopFolds(t *testing.T) {
	m, _ := newLogoutMiddleware(t, func(c *Config) { c.RefreshRevokesSession = true })
	k := testKeys(t)
	now := time.Now().Unix()
	for i := 0; i < sessionsPerSubject+3; i++ {
		rt := signToken(t, "ES256", k.p256, map[string]interface{}{"kid": "e256", "typ": "refresh+jwt"},
			map[string]interface{}{"iss": testIss, "sub": testSub, "sid": "rs-" + strconv.Itoa(i), "iat": now - 30, "exp": now + 3600})
		if got := serve(m, revokeReq("token="+url.QueryEscape(rt)+"&token_type_hint=refresh_token", basic("portal", "s3cret"))).Code; got != 200 {
			t.Fatalf("revocation %d: %d", i, got)
		}
	}
	if n, f := m.cache.ruleCount(), m.domain.folds.count(); n != sessionsPerSubject+1 || f != 3 {
		t.Fatalf("%d rules and %d folds, want %d and 3", n, f, sessionsPerSubject+1)
	}
	if got := serve(m, bearerReq(claimsToken(t, accessClaims(testIss, testSub, "any-session", now-10)))).Code; got != http.StatusUnauthorized {
		t.Fatalf("a session of the subject after the fold: %d, want 401", got)
	}
}
