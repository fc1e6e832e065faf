package tokenrevoke

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testIss   = "https://idp.example/realms/main"
	testIss2  = "https://other-idp.example"
	testAud   = "gateway-client"
	testSub   = "subject-8c1f-SECRET"
	testSid   = "session-77aa-SECRET"
	testSkew  = time.Minute
	testOther = "other-client"
)

var testNow = time.Unix(1800000000, 0)

var (
	testJTIMu  sync.Mutex
	testJTISeq int
)

func nextJTI() string {
	testJTIMu.Lock()
	defer testJTIMu.Unlock()
	testJTISeq++
	return "jti-" + strconv.Itoa(testJTISeq)
}

// logoutClaims is a valid logout token's payload for testIss, issued at testNow.
func logoutClaims() map[string]interface{} {
	return map[string]interface{}{
		"iss":    testIss,
		"aud":    testAud,
		"iat":    testNow.Unix(),
		"exp":    testNow.Add(2 * time.Hour).Unix(),
		"jti":    nextJTI(),
		"sub":    testSub,
		"sid":    testSid,
		"events": map[string]interface{}{logoutEvent: map[string]interface{}{}},
	}
}

// logoutJWT signs a logout token (typ logout+jwt, kid unless empty); mutate edits the
// claims (a member set to nil is removed).
func logoutJWT(t testing.TB, alg string, key interface{}, kid string, mutate func(c map[string]interface{})) string {
	t.Helper()
	c := logoutClaims()
	if mutate != nil {
		mutate(c)
	}
	for name, v := range c {
		if v == nil {
			delete(c, name)
		}
	}
	hdr := map[string]interface{}{"typ": "logout+jwt"}
	if kid != "" {
		hdr["kid"] = kid
	}
	return signToken(t, alg, key, hdr, c)
}

// inlineIssuers: testIss with every test key inline; testIss2 with only the P-384 key
// and another audience.
func inlineIssuers(t testing.TB) *logoutIssuers {
	t.Helper()
	k := testKeys(t)
	doc := testIssuerJWKS(t)
	l, err := newLogoutIssuers([]IssuerConfig{
		{Issuer: testIss, Audience: testAud, JWKS: doc},
		{Issuer: testIss2, Audience: testOther, JWKS: jwksJSON(t, ecJWK("o1", &k.p256b.PublicKey, nil))},
	}, testSkew, 0, nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testIssuerJWKS is the JWK set of testIss: every test key but p256b.
func testIssuerJWKS(t testing.TB) string {
	k := testKeys(t)
	return jwksJSON(t,
		rsaJWK("r1", &k.rsa1.PublicKey, nil),
		rsaJWK("r2", &k.rsa2.PublicKey, map[string]interface{}{"alg": "PS256", "use": "sig"}),
		ecJWK("e256", &k.p256.PublicKey, nil),
		ecJWK("e384", &k.p384.PublicKey, map[string]interface{}{"alg": "ES384"}),
		ecJWK("e521", &k.p521.PublicKey, nil),
		edJWK("ed", k.ed.Public().(ed25519.PublicKey), nil),
	)
}

// derES256 signs a logout token with a DER-encoded ECDSA signature.
func derES256(t testing.TB, key *ecdsa.PrivateKey, kid string) string {
	hb, _ := json.Marshal(map[string]interface{}{"alg": "ES256", "kid": kid})
	pb, _ := json.Marshal(logoutClaims())
	input := b64u(hb) + "." + b64u(pb)
	r, s, err := ecdsa.Sign(rand.Reader, key, testDigest("ES256", []byte(input)))
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64u(der)
}

func TestLogoutTokenRules(t *testing.T) {
	k := testKeys(t)
	l := inlineIssuers(t)
	now := testNow.Unix()
	set := func(name string, v interface{}) func(c map[string]interface{}) {
		return func(c map[string]interface{}) { c[name] = v }
	}
	tok := func(mutate func(c map[string]interface{})) string { return logoutJWT(t, "RS256", k.rsa1, "r1", mutate) }
	typed := func(typ interface{}) string {
		return signToken(t, "ES256", k.p256, map[string]interface{}{"kid": "e256", "typ": typ}, logoutClaims())
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	claimsJSON := string(mustJSON(t, logoutClaims()))
	valid := tok(nil)
	vp := strings.Split(valid, ".")
	noneInput := b64u([]byte(`{"alg":"none","typ":"logout+jwt"}`)) + "." + b64u([]byte(claimsJSON))

	cases := []struct {
		name string
		raw  string
		ok   bool
		want string // part of the error description
	}{
		{"valid RS256", tok(nil), true, ""},
		{"valid RS512", logoutJWT(t, "RS512", k.rsa1, "r1", nil), true, ""},
		{"valid PS256 with the PS256-only key", logoutJWT(t, "PS256", k.rsa2, "r2", nil), true, ""},
		{"valid PS384", logoutJWT(t, "PS384", k.rsa1, "r1", nil), true, ""},
		{"valid ES256", logoutJWT(t, "ES256", k.p256, "e256", nil), true, ""},
		{"valid ES384", logoutJWT(t, "ES384", k.p384, "e384", nil), true, ""},
		{"valid ES512", logoutJWT(t, "ES512", k.p521, "e521", nil), true, ""},
		{"valid EdDSA", logoutJWT(t, "EdDSA", k.ed, "ed", nil), true, ""},
		{"valid without kid", logoutJWT(t, "ES512", k.p521, "", nil), true, ""},
		{"typ JWT", typed("JWT"), true, ""},
		{"typ jwt", typed("jwt"), true, ""},
		{"typ application/logout+jwt", typed("application/logout+jwt"), true, ""},
		{"typ Logout+JWT", typed("Logout+JWT"), true, ""},
		{"no typ", typed(nil), true, ""},
		{"typ at+jwt", typed("at+jwt"), false, "typ"},
		{"typ empty", typed(""), false, "typ"},
		{"typ secevent+jwt", typed("secevent+jwt"), false, "typ"},

		{"alg none, empty signature", noneInput + ".", false, "signature"},
		{"alg none, some signature", noneInput + "." + b64u([]byte("sig")), false, "alg"},
		{"HS256 keyed with the RSA public key PEM", hmacToken(`{"alg":"HS256","kid":"r1"}`, claimsJSON, pemKey), false, "alg"},
		{"HS256 keyed with the RSA public key DER", hmacToken(`{"alg":"HS256"}`, claimsJSON, der), false, "alg"},
		{"RS256 naming an EC key", logoutJWT(t, "RS256", k.rsa1, "e256", nil), false, "does not fit"},
		{"ES256 naming an RSA key", logoutJWT(t, "ES256", k.p256, "r1", nil), false, "does not fit"},
		{"ES384 naming a P-256 key", logoutJWT(t, "ES384", k.p384, "e256", nil), false, "does not fit"},
		{"ES256 naming the P-384 key (wrong crv)", logoutJWT(t, "ES256", k.p256, "e384", nil), false, "does not fit"},
		{"EdDSA naming an RSA key", logoutJWT(t, "EdDSA", k.ed, "r1", nil), false, "does not fit"},
		{"RS256 naming the PS256-only key", logoutJWT(t, "RS256", k.rsa2, "r2", nil), false, "does not fit"},
		{"signed by another RSA key", logoutJWT(t, "RS256", k.rsa2, "r1", nil), false, "signature"},
		{"signed by the other issuer's key, no kid", logoutJWT(t, "ES256", k.p256b, "", nil), false, "signature"},
		{"naming the other issuer's key", logoutJWT(t, "ES256", k.p256b, "o1", nil), false, "kid"},
		{"DER ECDSA signature", derES256(t, k.p256, "e256"), false, "signature"},
		{"truncated signature", valid[:len(valid)-3], false, "signature"},
		{"signature cut to nothing", vp[0] + "." + vp[1] + ".", false, "signature"},
		{"padded segment", vp[0] + "." + vp[1] + "=." + vp[2], false, "base64url"},
		{"extra segment", valid + "." + vp[2], false, "three segments"},
		{"JWE (five segments)", valid + ".a.b", false, "encrypted"},
		{"crit header", signRaw(t, "RS256", k.rsa1, `{"alg":"RS256","kid":"r1","crit":["b64"],"b64":true}`, claimsJSON), false, "crit"},
		{"not a token", "not a token", false, "segments"},
		{"empty", "", false, "segments"},

		{"iss missing", tok(set("iss", nil)), false, "iss"},
		{"iss empty", tok(set("iss", "")), false, "iss"},
		{"iss unknown", tok(set("iss", "https://evil.example")), false, "issuer is not configured"},
		{"iss with a trailing slash", tok(set("iss", testIss+"/")), false, "issuer is not configured"},
		{"iss of the other issuer, signed with this issuer's key", tok(set("iss", testIss2)), false, "kid"},
		{"aud missing", tok(set("aud", nil)), false, "aud"},
		{"aud wrong", tok(set("aud", "someone-else")), false, "aud"},
		{"aud differs in case", tok(set("aud", strings.ToUpper(testAud))), false, "aud"},
		{"aud array without us", tok(set("aud", []string{"a", "b"})), false, "aud"},
		{"aud empty array", tok(set("aud", []string{})), false, "aud"},
		{"aud array with us", tok(set("aud", []string{"a", testAud})), true, ""},
		{"aud of the other issuer's config", tok(set("aud", testOther)), false, "aud"},
		{"iat missing", tok(set("iat", nil)), false, "iat"},
		{"iat as a string", tok(set("iat", strconv.FormatInt(now, 10))), false, "iat"},
		{"iat in the future beyond the skew", tok(set("iat", now+61)), false, "future"},
		{"iat in the future within the skew", tok(set("iat", now+60)), true, ""},
		{"iat fractional", tok(set("iat", float64(now)+0.5)), true, ""},
		{"exp passed", tok(set("exp", now-61)), false, "expired"},
		{"exp passed by exactly the skew", tok(set("exp", now-60)), false, "expired"},
		{"exp passed within the skew", tok(set("exp", now-59)), true, ""},
		{"exp as a string", tok(set("exp", strconv.FormatInt(now+60, 10))), false, "exp"},
		{"exp huge", tok(set("exp", 1e300)), true, ""},
		{"no exp, iat 10 min ago", tok(func(c map[string]interface{}) { c["exp"] = nil; c["iat"] = now - 600 }), true, ""},
		{"no exp, iat 12 min ago", tok(func(c map[string]interface{}) { c["exp"] = nil; c["iat"] = now - 720 }), false, "too old"},
		{"exp ahead, iat a day ago", tok(set("iat", now-86400)), true, ""},
		{"nbf ahead beyond the skew", tok(set("nbf", now+120)), false, "nbf"},
		{"nbf ahead within the skew", tok(set("nbf", now+30)), true, ""},
		{"jti missing", tok(set("jti", nil)), false, "jti"},
		{"jti empty", tok(set("jti", "")), false, "jti"},
		{"jti a number", tok(set("jti", 5)), false, "jti"},
		{"events missing", tok(set("events", nil)), false, "events"},
		{"events a string", tok(set("events", logoutEvent)), false, "events"},
		{"events an array", tok(set("events", []string{logoutEvent})), false, "events"},
		{"events null", tok(func(c map[string]interface{}) { c["events"] = json.RawMessage("null") }), false, "events"},
		{"events without the logout member", tok(set("events", map[string]interface{}{"http://schemas.openid.net/event/other": map[string]interface{}{}})), false, "events"},
		{"events member a string", tok(set("events", map[string]interface{}{logoutEvent: "{}"})), false, "not a JSON object"},
		{"events member true", tok(set("events", map[string]interface{}{logoutEvent: true})), false, "not a JSON object"},
		{"events member an array", tok(set("events", map[string]interface{}{logoutEvent: []interface{}{}})), false, "not a JSON object"},
		{"events member null", tok(func(c map[string]interface{}) { c["events"] = json.RawMessage(`{"` + logoutEvent + `":null}`) }), false, "not a JSON object"},
		{"events with other members too", tok(set("events", map[string]interface{}{logoutEvent: map[string]interface{}{"x": 1}, "urn:other": map[string]interface{}{}})), true, ""},
		{"sub only", tok(set("sid", nil)), true, ""},
		{"sid only", tok(set("sub", nil)), true, ""},
		{"neither sub nor sid", tok(func(c map[string]interface{}) { c["sub"] = nil; c["sid"] = nil }), false, "neither sub nor sid"},
		{"sub and sid empty", tok(func(c map[string]interface{}) { c["sub"] = ""; c["sid"] = "" }), false, "neither sub nor sid"},
		{"sub a number", tok(set("sub", 42)), false, "sub"},
		{"nonce present", tok(set("nonce", "n-0S6_WzA2Mj")), false, "nonce"},
		{"nonce null", tok(func(c map[string]interface{}) { c["nonce"] = json.RawMessage("null") }), false, "nonce"},
		{"nonce empty", tok(set("nonce", "")), false, "nonce"},
	}
	for _, c := range cases {
		got, err := validateLogoutToken(c.raw, l, testNow)
		if c.ok {
			if err != nil {
				t.Errorf("%s: refused: %v", c.name, err)
			} else if got.Iss != testIss || got.Jti == "" || (got.Sub == "" && got.Sid == "") {
				t.Errorf("%s: result %+v", c.name, got)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		desc := err.Error()
		if !strings.Contains(desc, c.want) {
			t.Errorf("%s: description %q lacks %q", c.name, desc, c.want)
		}
		for _, secret := range []string{testSub, testSid, "evil.example", c.raw} {
			if secret != "" && strings.Contains(desc, secret) {
				t.Errorf("%s: description %q reveals %q", c.name, desc, secret)
			}
		}
		if got != (logoutToken{}) {
			t.Errorf("%s: a refused token returned %+v", c.name, got)
		}
	}
}

func TestLogoutResultAndReplay(t *testing.T) {
	k := testKeys(t)
	l := inlineIssuers(t)
	raw := logoutJWT(t, "ES256", k.p256, "e256", func(c map[string]interface{}) { c["jti"] = "same-jti"; c["iat"] = testNow.Unix() - 3 })
	got, err := validateLogoutToken(raw, l, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := logoutToken{Iss: testIss, Sub: testSub, Sid: testSid, Jti: "same-jti", Iat: testNow.Unix() - 3, Exp: testNow.Add(2 * time.Hour).Unix()}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// The same token again, and another token with the same jti from the same issuer.
	if _, err := validateLogoutToken(raw, l, testNow.Add(time.Second)); !errors.Is(err, errLogoutReplay) {
		t.Fatalf("replay: %v", err)
	}
	other := logoutJWT(t, "RS256", k.rsa1, "r1", func(c map[string]interface{}) { c["jti"] = "same-jti"; c["sid"] = nil })
	if _, err := validateLogoutToken(other, l, testNow); !errors.Is(err, errLogoutReplay) {
		t.Fatalf("same jti, other token: %v", err)
	}
	// The same jti from the other issuer is a different token.
	fromOther := logoutJWT(t, "ES256", k.p256b, "o1", func(c map[string]interface{}) {
		c["jti"] = "same-jti"
		c["iss"] = testIss2
		c["aud"] = testOther
	})
	if got, err := validateLogoutToken(fromOther, l, testNow); err != nil || got.Iss != testIss2 {
		t.Fatalf("same jti, other issuer: %+v %v", got, err)
	}
	// A refused token is not remembered: fixing it (here, the aud) lets the jti through.
	bad := logoutJWT(t, "ES256", k.p256, "e256", func(c map[string]interface{}) { c["jti"] = "j-bad"; c["aud"] = "x" })
	if _, err := validateLogoutToken(bad, l, testNow); err == nil || errors.Is(err, errLogoutReplay) {
		t.Fatalf("bad aud: %v", err)
	}
	good := logoutJWT(t, "ES256", k.p256, "e256", func(c map[string]interface{}) { c["jti"] = "j-bad" })
	if _, err := validateLogoutToken(good, l, testNow); err != nil {
		t.Fatalf("after a refused token with the same jti: %v", err)
	}
	// A token without exp is remembered for as long as its iat keeps it acceptable.
	noExp := logoutJWT(t, "ES256", k.p256, "e256", func(c map[string]interface{}) { c["exp"] = nil })
	if _, err := validateLogoutToken(noExp, l, testNow); err != nil {
		t.Fatal(err)
	}
	last := testNow.Add(logoutMaxAge + testSkew)
	if _, err := validateLogoutToken(noExp, l, last); !errors.Is(err, errLogoutReplay) {
		t.Fatalf("replay at the end of the window: %v", err)
	}
	if _, err := validateLogoutToken(noExp, l, last.Add(time.Second)); err == nil || errors.Is(err, errLogoutReplay) {
		t.Fatalf("after the window the token is too old, not a replay: %v", err)
	}
	if _, err := validateLogoutToken(raw, nil, testNow); err == nil {
		t.Fatal("validated without issuers")
	}
}

func TestLogoutJTIGuard(t *testing.T) {
	g := newJTIGuard(3)
	for _, j := range []string{"a", "b", "c"} {
		if !g.remember("iss", j, 100, 0) {
			t.Fatalf("%s refused", j)
		}
	}
	if g.remember("iss", "a", 100, 0) || g.remember("iss", "c", 100, 50) {
		t.Fatal("replays accepted")
	}
	if !g.remember("iss2", "a", 100, 0) { // evicts a
		t.Fatal("other issuer refused")
	}
	if g.remember("iss", "b", 100, 0) || g.len() != 3 {
		t.Fatalf("more than the oldest was evicted (%d left)", g.len())
	}
	if !g.remember("iss", "a", 100, 0) { // a was the oldest: forgotten; evicts b
		t.Fatal("evicted jti refused")
	}
	if g.remember("iss", "c", 100, 0) {
		t.Fatal("c (not the oldest) was evicted")
	}
	if !g.remember("iss", "b", 100, 0) {
		t.Fatal("b was not evicted")
	}
	// Expiry: remembered until its time, inclusive.
	g = newJTIGuard(10)
	g.remember("iss", "x", 10, 0)
	if g.remember("iss", "x", 10, 10) {
		t.Fatal("accepted at its until")
	}
	if !g.remember("iss", "x", 20, 11) {
		t.Fatal("refused after its until")
	}
	if g.remember("iss", "x", 20, 12) {
		t.Fatal("re-remembered jti accepted")
	}
	// Bounded, and expired entries are dropped first.
	g = newJTIGuard(100)
	for i := 0; i < 1000; i++ {
		if !g.remember("iss", strconv.Itoa(i), int64(i+5), int64(i)) {
			t.Fatalf("%d refused", i)
		}
		if n := g.len(); n > 100 || n > 6 {
			t.Fatalf("guard holds %d entries at %d", n, i)
		}
	}
	g = newJTIGuard(100)
	for i := 0; i < 1000; i++ {
		g.remember("iss", strconv.Itoa(i), 1<<40, 0)
	}
	if g.len() != 100 {
		t.Fatalf("size %d", g.len())
	}
	for i := 900; i < 1000; i++ { // the newest 100 are remembered
		if g.remember("iss", strconv.Itoa(i), 1<<40, 0) {
			t.Fatalf("%d forgotten", i)
		}
	}
	if !g.remember("iss", "899", 1<<40, 0) || g.remember("iss", "899", 1<<40, 0) || !g.remember("iss", "900", 1<<40, 0) {
		t.Fatal("899 remembered, or 900 not evicted by it")
	}
}

func TestLogoutIssuerConfigErrors(t *testing.T) {
	k := testKeys(t)
	doc := jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil))
	cases := []struct {
		cfgs []IssuerConfig
		want string
	}{
		{[]IssuerConfig{{Audience: testAud, JWKS: doc}}, "issuers[0].issuer"},
		{[]IssuerConfig{{Issuer: testIss, JWKS: doc}}, "issuers[0].audience"},
		{[]IssuerConfig{{Issuer: testIss, Audience: testAud}}, "exactly one"},
		{[]IssuerConfig{{Issuer: testIss, Audience: testAud, JWKS: doc, JWKSURL: "https://idp.example/jwks"}}, "exactly one"},
		{[]IssuerConfig{{Issuer: testIss, Audience: testAud, JWKS: `{"keys":[]}`}}, "issuers[0].jwks"},
		{[]IssuerConfig{{Issuer: testIss, Audience: testAud, JWKS: `not json`}}, "issuers[0].jwks"},
		{[]IssuerConfig{{Issuer: testIss, Audience: testAud, JWKSURL: "idp.example/jwks"}}, "issuers[0].jwksURL"},
		{[]IssuerConfig{{Issuer: testIss, Audience: testAud, JWKS: doc}, {Issuer: testIss, Audience: "b", JWKS: doc}}, "issuers[1].issuer"},
	}
	for i, c := range cases {
		_, err := newLogoutIssuers(c.cfgs, time.Minute, 0, nil, testNow)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: %v, want %q", i, err, c.want)
		}
	}
	l, err := newLogoutIssuers([]IssuerConfig{{Issuer: " " + testIss + " ", Audience: testAud, JWKS: doc}}, -time.Second, 0, nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if l.byIss[testIss] == nil || l.skew != 0 {
		t.Fatal("issuer not trimmed or negative skew kept")
	}
	st := l.status()
	if len(st) != 1 || st[0].Issuer != testIss || st[0].Source != "inline" || len(st[0].Keys) != 1 {
		t.Fatalf("status %+v", st)
	}
	if _, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "r1", nil), l, testNow); err != nil {
		t.Fatal(err)
	}
}
