package tokenrevoke

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// goldenVector is testdata/signing/golden.json, shared with the tokenrevoke command.
type goldenVector struct {
	Body             string `json:"body"`
	PrivateKey       string `json:"ed25519PrivateKey"`
	PublicKey        string `json:"ed25519PublicKey"`
	PublicKeyHex     string `json:"ed25519PublicKeyHex"`
	SeedHex          string `json:"ed25519SeedHex"`
	HeaderEd25519    string `json:"headerEd25519"`
	HeaderHS256      string `json:"headerHS256"`
	HMACSecret       string `json:"hmacSecret"`
	KID              string `json:"kid"`
	Subject          string `json:"subject"`
	SignedBytePrefix string `json:"signedBytesPrefix"`
}

func readGolden(t testing.TB) goldenVector {
	t.Helper()
	b, err := os.ReadFile("testdata/signing/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenVector
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func mustSigner(t testing.TB, c *SigningConfig) *busSigner {
	t.Helper()
	s, err := parseSigning(c)
	if err != nil {
		t.Fatalf("signing config: %v", err)
	}
	return s
}

// The golden vector: both algorithms sign to exactly the expected header, a
// verify-only key accepts the Ed25519 one, and the base64 spellings of a key all work.
func TestSigningGoldenVector(t *testing.T) {
	g := readGolden(t)
	body := []byte(g.Body)
	ed := mustSigner(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: g.KID, Ed25519PrivateKey: g.PrivateKey}}, SignWith: g.KID})
	if got := ed.headerValue(g.Subject, body); got != g.HeaderEd25519 {
		t.Fatalf("ed25519 header\n got %s\nwant %s", got, g.HeaderEd25519)
	}
	hs := mustSigner(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: g.KID, HMACSecret: g.HMACSecret}}, SignWith: g.KID})
	if got := hs.headerValue(g.Subject, body); got != g.HeaderHS256 {
		t.Fatalf("hs256 header\n got %s\nwant %s", got, g.HeaderHS256)
	}
	// The key material agrees with the vector's hex forms.
	if hex.EncodeToString(ed.sign.pub) != g.PublicKeyHex || hex.EncodeToString(ed.sign.priv.Seed()) != g.SeedHex {
		t.Fatal("decoded key does not match the vector's hex")
	}
	// Independent of the signer: the signed bytes, verified with the stdlib directly.
	msg := []byte("tokenrevoke-sig-v1\n" + g.Subject + "\n" + g.Body)
	sig, _ := base64.RawURLEncoding.DecodeString(strings.Split(g.HeaderEd25519, ";")[3])
	pub, _ := hex.DecodeString(g.PublicKeyHex)
	if !ed25519.Verify(ed25519.PublicKey(pub), msg, sig) {
		t.Fatal("the vector's ed25519 signature does not cover the documented bytes")
	}
	mac := hmac.New(sha256.New, []byte(g.HMACSecret))
	mac.Write(msg)
	if "v1;hs256;"+g.KID+";"+base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != g.HeaderHS256 {
		t.Fatal("the vector's hs256 signature does not cover the documented bytes")
	}

	// Verification: a gateway holding the public key only, plus another key.
	pubURL := base64.RawURLEncoding.EncodeToString(pub)
	for _, spelling := range []string{g.PublicKey, pubURL, strings.TrimRight(g.PublicKey, "="), " " + g.PublicKey + "\n"} {
		v := mustSigner(t, &SigningConfig{Keys: []SigningKeyConfig{
			{ID: g.KID, Ed25519PublicKey: spelling},
			{ID: "mine", HMACSecret: strings.Repeat("m", 32)},
		}, SignWith: "mine"})
		if origin, why := v.check(g.Subject, body, g.HeaderEd25519, 1); why != 0 || origin != "@"+g.KID {
			t.Fatalf("public key %q: golden header refused (%d, %q)", spelling, why, origin)
		}
	}
	if origin, why := hs.check(g.Subject, body, g.HeaderHS256, 1); why != 0 || origin != "@"+g.KID {
		t.Fatalf("hs256 golden header refused (%d, %q)", why, origin)
	}
	// Round trips through the signer's own header.
	for _, s := range []*busSigner{ed, hs} {
		h := s.headerValue("tokens.revoked.sub.abc", []byte("{}"))
		if _, why := s.check("tokens.revoked.sub.abc", []byte("{}"), h, 1); why != 0 {
			t.Fatalf("%s: own signature refused", s.sign.alg)
		}
	}
}

// Everything that is not exactly one good signature by a configured key of the right
// algorithm is wrongly signed; no header at all is unsigned.
func TestSigningRefusesWrongSignatures(t *testing.T) {
	g := readGolden(t)
	body := []byte(g.Body)
	s := mustSigner(t, &SigningConfig{Keys: []SigningKeyConfig{
		{ID: g.KID, Ed25519PublicKey: g.PublicKey},
		{ID: "shared", HMACSecret: g.HMACSecret},
	}, SignWith: "shared"})
	edParts := strings.Split(g.HeaderEd25519, ";")
	otherKey := mustSigner(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: g.KID, Ed25519PrivateKey: base64.StdEncoding.EncodeToString(make([]byte, 32))}}, SignWith: g.KID})
	hsAsGolden := strings.Replace(g.HeaderHS256, g.KID, "shared", 1)
	if _, why := s.check(g.Subject, body, hsAsGolden, 1); why != 0 {
		t.Fatal("the hs256 signature under the shared key id is refused")
	}
	tampered := []byte(strings.Replace(g.Body, `"portal"`, `"portaL"`, 1))
	bad := map[string]struct {
		subject string
		body    []byte
		value   string
		count   int
	}{
		"tampered body":          {g.Subject, tampered, g.HeaderEd25519, 1},
		"other subject":          {g.Subject + "0", body, g.HeaderEd25519, 1},
		"two headers":            {g.Subject, body, g.HeaderEd25519, 2},
		"unknown kid":            {g.Subject, body, strings.Replace(g.HeaderEd25519, g.KID, "golden-2", 1), 1},
		"alg of another key":     {g.Subject, body, strings.Replace(g.HeaderHS256, "hs256", "ed25519", 1), 1},
		"hs256 on an ed25519 id": {g.Subject, body, g.HeaderHS256, 1},
		"unknown alg":            {g.Subject, body, "v1;rs256;" + g.KID + ";" + edParts[3], 1},
		"version 2":              {g.Subject, body, "v2;ed25519;" + g.KID + ";" + edParts[3], 1},
		"padded signature":       {g.Subject, body, g.HeaderEd25519 + "==", 1},
		"std base64 signature":   {g.Subject, body, "v1;ed25519;" + g.KID + ";" + base64.StdEncoding.EncodeToString([]byte("x")), 1},
		"short signature":        {g.Subject, body, "v1;ed25519;" + g.KID + ";" + edParts[3][:40], 1},
		"extra field":            {g.Subject, body, g.HeaderEd25519 + ";x", 1},
		"empty":                  {g.Subject, body, "", 1},
		"another key's sig":      {g.Subject, body, otherKey.headerValue(g.Subject, body), 1},
		"hs256 truncated":        {g.Subject, body, hsAsGolden[:len(hsAsGolden)-2], 1},
	}
	for name, c := range bad {
		if origin, why := s.check(c.subject, c.body, c.value, c.count); why != sigBad || origin != originUnsigned {
			t.Errorf("%s: check = (%q, %d), want wrongly signed", name, origin, why)
		}
	}
	if origin, why := s.check(g.Subject, body, "", 0); why != sigUnsigned || origin != originUnsigned {
		t.Fatalf("unsigned: (%q, %d)", origin, why)
	}
	// acceptUnsigned lets unsigned messages in, as origin @unsigned, and still refuses
	// wrong signatures.
	acc := mustSigner(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: "shared", HMACSecret: g.HMACSecret}}, SignWith: "shared", AcceptUnsigned: true})
	if origin, why := acc.check(g.Subject, body, "", 0); why != 0 || origin != originUnsigned {
		t.Fatalf("acceptUnsigned: unsigned gives (%q, %d)", origin, why)
	}
	if _, why := acc.check(g.Subject, tampered, hsAsGolden, 1); why != sigBad {
		t.Fatal("acceptUnsigned accepted a wrong signature")
	}
	// No keys: nothing checked, every message of origin @unsigned.
	var none *busSigner
	if origin, why := none.check(g.Subject, tampered, "garbage", 3); why != 0 || origin != originUnsigned {
		t.Fatalf("without keys: (%q, %d)", origin, why)
	}
	hdr := natsclient.Header{}
	none.addTo(hdr, g.Subject, body)
	if len(hdr) != 0 {
		t.Fatal("a signer without keys set a header")
	}
}

// The header is found in a parsed header map and in an unparsed header block alike.
func TestSigningHeaderForms(t *testing.T) {
	g := readGolden(t)
	body := []byte(g.Body)
	s := mustSigner(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: g.KID, Ed25519PrivateKey: g.PrivateKey}}, SignWith: g.KID})
	hdr := natsclient.Header{}
	hdr.Set("Nats-TTL", "3600s")
	s.addTo(hdr, g.Subject, body)
	if hdr.Get(sigHeader) != g.HeaderEd25519 {
		t.Fatalf("addTo set %q", hdr.Get(sigHeader))
	}
	if origin, why := s.checkHeader(g.Subject, body, hdr); why != 0 || origin != "@"+g.KID {
		t.Fatalf("parsed header: (%q, %d)", origin, why)
	}
	if _, why := s.checkHeader(g.Subject, body, nil); why != sigUnsigned {
		t.Fatal("no header map: not unsigned")
	}
	hdr.Add(sigHeader, g.HeaderEd25519)
	if _, why := s.checkHeader(g.Subject, body, hdr); why != sigBad {
		t.Fatal("two parsed headers accepted")
	}
	raw := func(lines ...string) []byte {
		return []byte("NATS/1.0\r\n" + strings.Join(lines, "\r\n") + "\r\n\r\n")
	}
	good := sigHeader + ": " + g.HeaderEd25519
	cases := []struct {
		name string
		raw  []byte
		why  uint8
	}{
		{"alone", raw(good), 0},
		{"after Nats-TTL", raw("Nats-TTL: 3600s", good), 0},
		{"before Nats-TTL", raw(good, "Nats-TTL: 3600s"), 0},
		{"no space", raw(sigHeader + ":" + g.HeaderEd25519), 0},
		{"twice", raw(good, "Nats-TTL: 1s", good), sigBad},
		{"no header block", nil, sigUnsigned},
		{"empty block", []byte{}, sigUnsigned},
		{"other headers only", raw("Nats-TTL: 3600s"), sigUnsigned},
		{"other case", raw("tokenrevoke-sig: " + g.HeaderEd25519), sigUnsigned},
		{"prefix of another header", raw("X-" + good), sigUnsigned},
		{"unterminated", []byte("NATS/1.0\r\n" + good), sigBad},
		{"wrong value", raw(sigHeader + ": v1;ed25519;" + g.KID + ";AAAA"), sigBad},
	}
	for _, c := range cases {
		if _, why := s.checkRaw(g.Subject, body, c.raw); why != c.why {
			t.Errorf("%s: checkRaw = %d, want %d", c.name, why, c.why)
		}
	}
}

// Every malformed nats.signing is refused with an error naming the key, never showing
// a secret.
func TestSigningConfigErrors(t *testing.T) {
	g := readGolden(t)
	secret := "a-hmac-secret-that-must-never-be-printed"
	short := "short-hmac-secret-never-printed"
	cases := []struct {
		name string
		c    SigningConfig
		want string
	}{
		{"no keys", SigningConfig{SignWith: "a"}, "nats.signing.keys: at least one key"},
		{"no id", SigningConfig{Keys: []SigningKeyConfig{{HMACSecret: secret}}, SignWith: "a"}, "nats.signing.keys[0].id: is required"},
		{"bad id", SigningConfig{Keys: []SigningKeyConfig{{ID: "a;b", HMACSecret: secret}}, SignWith: "a;b"}, "nats.signing.keys[0].id"},
		{"id too long", SigningConfig{Keys: []SigningKeyConfig{{ID: strings.Repeat("k", 65), HMACSecret: secret}}, SignWith: "k"}, "nats.signing.keys[0].id"},
		{"duplicate id", SigningConfig{Keys: []SigningKeyConfig{{ID: "a", HMACSecret: secret}, {ID: "a", Ed25519PublicKey: g.PublicKey}}, SignWith: "a"}, "nats.signing.keys[1].id: duplicate key id \"a\""},
		{"no material", SigningConfig{Keys: []SigningKeyConfig{{ID: "a"}}, SignWith: "a"}, "nats.signing.keys[0] (a): set exactly one"},
		{"two materials", SigningConfig{Keys: []SigningKeyConfig{{ID: "a", HMACSecret: secret, Ed25519PublicKey: g.PublicKey}}, SignWith: "a"}, "nats.signing.keys[0] (a): set exactly one"},
		{"all three", SigningConfig{Keys: []SigningKeyConfig{{ID: "a", HMACSecret: secret, Ed25519PublicKey: g.PublicKey, Ed25519PrivateKey: g.PrivateKey}}, SignWith: "a"}, "set exactly one"},
		{"bad public base64", SigningConfig{Keys: []SigningKeyConfig{{ID: "s", HMACSecret: secret}, {ID: "p", Ed25519PublicKey: "not*base64!"}}, SignWith: "s"}, "nats.signing.keys[1].ed25519PublicKey (p): must be 32 bytes of base64"},
		{"short public key", SigningConfig{Keys: []SigningKeyConfig{{ID: "s", HMACSecret: secret}, {ID: "p", Ed25519PublicKey: base64.StdEncoding.EncodeToString(make([]byte, 31))}}, SignWith: "s"}, "nats.signing.keys[1].ed25519PublicKey (p): must be 32 bytes of base64"},
		{"bad seed", SigningConfig{Keys: []SigningKeyConfig{{ID: "k", Ed25519PrivateKey: "%%%%"}}, SignWith: "k"}, "nats.signing.keys[0].ed25519PrivateKey (k): must be 32 bytes of base64"},
		{"64-byte private key", SigningConfig{Keys: []SigningKeyConfig{{ID: "k", Ed25519PrivateKey: base64.StdEncoding.EncodeToString(make([]byte, 64))}}, SignWith: "k"}, "nats.signing.keys[0].ed25519PrivateKey (k): must be 32 bytes of base64"},
		{"short hmac secret", SigningConfig{Keys: []SigningKeyConfig{{ID: "h", HMACSecret: short}}, SignWith: "h"}, "nats.signing.keys[0].hmacSecret (h): must be at least 32 bytes"},
		{"no signWith", SigningConfig{Keys: []SigningKeyConfig{{ID: "h", HMACSecret: secret}}}, "nats.signing.signWith: is required"},
		{"verify-only keys, no signWith", SigningConfig{Keys: []SigningKeyConfig{{ID: "p", Ed25519PublicKey: g.PublicKey}}}, "nats.signing.signWith: is required"},
		{"signWith unknown", SigningConfig{Keys: []SigningKeyConfig{{ID: "h", HMACSecret: secret}}, SignWith: "x"}, "nats.signing.signWith: \"x\" names no key"},
		{"signWith verify-only", SigningConfig{Keys: []SigningKeyConfig{{ID: "h", HMACSecret: secret}, {ID: "p", Ed25519PublicKey: g.PublicKey}}, SignWith: "p"}, "nats.signing.signWith: key \"p\" is verify-only"},
	}
	for _, c := range cases {
		c := c
		_, err := parseSigning(&c.c)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, msg, c.want)
		}
		if strings.Contains(msg, secret) || strings.Contains(msg, short) || strings.Contains(msg, g.PrivateKey) || strings.Contains(msg, "%%%%") {
			t.Errorf("%s: error shows key material: %q", c.name, msg)
		}
	}
	// The same errors come through parseConfig, under nats.signing.
	cfg := CreateConfig()
	cfg.Clients = []ClientConfig{{ID: "portal", Secret: "s3cret"}}
	cfg.NATS = &NATSConfig{Servers: []string{"nats://127.0.0.1:4222"}, Signing: &SigningConfig{Keys: []SigningKeyConfig{{ID: "h", HMACSecret: short}}, SignWith: "h"}}
	if _, err := parseConfig(cfg); err == nil || !strings.Contains(err.Error(), "nats.signing.keys[0].hmacSecret") {
		t.Fatalf("parseConfig: %v", err)
	}
}

// natsWithSigning parses a configuration with nats (never connected) and the given
// signing block, with the middleware's caps filled in as parseConfig does.
func natsWithSigning(t testing.TB, sc *SigningConfig) *natsSettings {
	t.Helper()
	cfg := CreateConfig()
	cfg.Clients = []ClientConfig{{ID: "portal", Secret: "s3cret"}}
	cfg.NATS = &NATSConfig{Servers: []string{"nats://127.0.0.1:4222"}, Name: "gw-t", Signing: sc}
	s, err := parseConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s.nats
}

// The signing settings are part of the domain key: gateways configured with other keys
// (or none) do not share a connection, a store or a verification policy.
func TestSigningInNATSKey(t *testing.T) {
	g := readGolden(t)
	base := natsWithSigning(t, nil)
	a := natsWithSigning(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: "k", HMACSecret: g.HMACSecret}}, SignWith: "k"})
	a2 := natsWithSigning(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: "k", HMACSecret: g.HMACSecret}}, SignWith: "k"})
	b := natsWithSigning(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: "k", HMACSecret: g.HMACSecret + "x"}}, SignWith: "k"})
	c := natsWithSigning(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: "k", HMACSecret: g.HMACSecret}}, SignWith: "k", AcceptUnsigned: true})
	d := natsWithSigning(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: "k", HMACSecret: g.HMACSecret}, {ID: g.KID, Ed25519PublicKey: g.PublicKey}}, SignWith: "k"})
	keys := map[string]string{"none": base.key(), "a": a.key(), "b": b.key(), "c": c.key(), "d": d.key()}
	seen := map[string]string{}
	for name, k := range keys {
		if other, dup := seen[k]; dup {
			t.Fatalf("configurations %s and %s share a domain key", name, other)
		}
		seen[k] = name
		if strings.Contains(k, g.HMACSecret) {
			t.Fatal("the key holds the secret")
		}
	}
	if a.key() != a2.key() {
		t.Fatal("equal signing configurations have different keys")
	}
	if a.clockSkew != time.Minute || a.maxTokenLifetime != 24*time.Hour {
		t.Fatalf("nats settings caps: skew %s, maxTokenLifetime %s", a.clockSkew, a.maxTokenLifetime)
	}
}

// testLink is a natsLink that was never connected: onMsg is called directly.
func testLink(n *natsSettings, cache *tokenCache) *natsLink {
	log := newLogger("t")
	return &natsLink{n: n, log: log, nlog: &natsLog{log: log}, cache: cache}
}

// tokenMsg is a version-2 token message for tok claiming client and origin in its body.
func tokenMsg(n *natsSettings, tok, client string, exp int64) (string, []byte) {
	r := revocation{sum: hashToken(tok), kind: kindToken, exp: exp, revokedAt: time.Now(), client: client}
	body, subject := encodeRevocation(r, n)
	return subject, body
}

// Core NATS with keys: signed messages are applied as origin @kid, unsigned and wrongly
// signed ones dropped and counted; the status shows the counts.
func TestCoreNATSVerifiesSignatures(t *testing.T) {
	g := readGolden(t)
	n := natsWithSigning(t, &SigningConfig{Keys: []SigningKeyConfig{
		{ID: "gw-new", HMACSecret: g.HMACSecret},
		{ID: g.KID, Ed25519PublicKey: g.PublicKey},
	}, SignWith: "gw-new"})
	signer := mustSigner(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: g.KID, Ed25519PrivateKey: g.PrivateKey}}, SignWith: g.KID})
	cache := newTokenCache(100, newLogger("t"))
	l := testLink(n, cache)
	exp := time.Now().Add(time.Hour).Unix()
	now := time.Now().Unix()

	intruder := mustSigner(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: "intruder", HMACSecret: g.HMACSecret}}, SignWith: "intruder"})
	// Plain statements, no closures taking closures: under yaegi v0.16.1 a func literal
	// passed to a closure mixed up the closure's results.
	for _, tok := range []string{"by-idp", "by-gateway", "no-header", "empty-header", "tampered", "unknown-key"} {
		subject, body := tokenMsg(n, tok, "portal", exp)
		hdr := natsclient.Header{}
		switch tok {
		case "by-idp":
			signer.addTo(hdr, subject, body) // the identity provider's key
		case "by-gateway":
			n.signer.addTo(hdr, subject, body) // this fleet's key
		case "no-header":
			hdr = nil // MSG
		case "tampered":
			signer.addTo(hdr, subject, body)
			body = []byte(strings.Replace(string(body), `"exp":`, `"exp": `, 1))
		case "unknown-key":
			intruder.addTo(hdr, subject, body)
		}
		l.onMsg(&natsclient.Msg{Subject: subject, Header: hdr, Data: body})
	}

	for tok, want := range map[string]bool{"by-idp": true, "by-gateway": true, "no-header": false, "empty-header": false, "tampered": false, "unknown-key": false} {
		if got := cache.contains(hashToken(tok), now); got != want {
			t.Errorf("%s: held %v, want %v", tok, got, want)
		}
	}
	st := l.status0()
	if st.Received != 2 || st.Dropped != 4 || st.Unsigned != 2 || st.BadSignature != 2 || !st.Signed {
		t.Fatalf("status: %+v", st)
	}
	counts := cache.originCounts()
	if counts["@"+g.KID] != 1 || counts["@gw-new"] != 1 || counts["portal"] != 0 || len(counts) != 2 {
		t.Fatalf("origins %v: want one entry each of @%s and @gw-new, none under the body's client", counts, g.KID)
	}
}

// status0 is status without a connection (the parts onMsg changes).
func (l *natsLink) status0() linkStatus {
	st := linkStatus{Received: l.received, Dropped: l.drops.count(), Signed: l.n.signer != nil}
	st.Unsigned, st.BadSignature = l.drops.sigCounts()
	return st
}

// The flood: with cacheSize 200, unsigned token messages claiming client
// "portal" evict only each other, never portal's local revocations.
func TestUnsignedFloodCannotEvictLocalRevocations(t *testing.T) {
	m, _ := newTestMiddleware(t, func(c *Config) {
		c.CacheSize = 200
		c.Clients[0].RatePerMinute = -1
	})
	n := natsWithSigning(t, nil)
	l := testLink(n, m.cache)
	for i := 0; i < 50; i++ {
		if rec := serve(m, revokeReq("token=victim-"+strconv.Itoa(i), basic("portal", "s3cret"))); rec.Code != http.StatusOK {
			t.Fatalf("revoke: %d", rec.Code)
		}
	}
	exp := time.Now().Add(time.Hour).Unix()
	for i := 0; i < 1000; i++ {
		subject, body := tokenMsg(n, "forged-"+strconv.Itoa(i), "portal", exp)
		l.onMsg(&natsclient.Msg{Subject: subject, Data: body})
	}
	for i := 0; i < 50; i++ {
		if rec := serve(m, bearerReq("victim-"+strconv.Itoa(i))); rec.Code != http.StatusUnauthorized {
			t.Fatalf("victim-%d re-opened by a forged flood: %d", i, rec.Code)
		}
	}
	counts := m.cache.originCounts()
	if counts["portal"] != 50 || counts[originUnsigned] != 150 {
		t.Fatalf("origins %v, want portal 50 and @unsigned 150", counts)
	}
	if rec := serve(m, bearerReq("forged-999")); rec.Code != http.StatusUnauthorized {
		t.Fatal("the newest flood message is not held")
	}
}

// capRule: the cutoff is bounded by arrival + skew, the expiry by cutoff +
// maxTokenLifetime + skew and by maxTTL.
func TestCapRule(t *testing.T) {
	n := &natsSettings{clockSkew: time.Minute, maxTokenLifetime: time.Hour, maxTTL: 90 * 24 * time.Hour}
	const now = 1_800_000_000
	cases := []struct {
		name                   string
		cutoff, exp, arrival   int64
		wantCutoff, wantExpiry int64
	}{
		{"genuine", now - 10, now - 10 + 3660, now, now - 10, now - 10 + 3660},
		{"far future", now + 90*86400, now + 91*86400, now, now + 60, now + 60 + 3660},
		{"stored earlier", now + 90*86400, now + 91*86400, now - 600, now - 540, now - 540 + 3660},
		{"arrival after now", now + 5000, now + 9000, now + 4000, now + 60, now + 60 + 3660},
		{"no arrival", now + 5000, now + 9000, 0, now + 60, now + 60 + 3660},
		{"long expiry", now - 100, now + 86400*30, now, now - 100, now - 100 + 3660},
	}
	for _, c := range cases {
		cut, exp := n.capRule(c.cutoff, c.exp, c.arrival, now)
		if cut != c.wantCutoff || exp != c.wantExpiry {
			t.Errorf("%s: capRule = (%d, %d), want (%d, %d)", c.name, cut-now, exp-now, c.wantCutoff-now, c.wantExpiry-now)
		}
	}
	n.maxTTL = 30 * time.Minute
	if _, exp := n.capRule(now-10, now+3000, now, now); exp != now+1800 {
		t.Fatalf("maxTTL cap: exp %d", exp-now)
	}
}

// ruleMsg is a subject or session rule message (unsigned).
func ruleMsg(n *natsSettings, kind string, key [32]byte, cutoff, exp int64) (string, []byte) {
	body, subject := encodeRevocation(revocation{sum: key, kind: kind, cutoff: cutoff, exp: exp, revokedAt: time.Now()}, n)
	return subject, body
}

// The forged rule: a subject rule with a cutoff 90 days ahead ends only the
// tokens issued before its arrival (plus skew); a token issued later passes, and a later
// genuine logout still applies. Over core NATS (arrival: now) and from the stream (arrival:
// the stored time).
func TestForgedFutureCutoffIsCapped(t *testing.T) {
	now := time.Now().Unix()
	far := now + 90*86400
	t.Run("core NATS", func(t *testing.T) {
		m, _ := newTestMiddleware(t, nil)
		n := natsWithSigning(t, nil)
		l := testLink(n, m.cache)
		key := ruleKey(testIss, "victim")
		subject, body := ruleMsg(n, kindSub, key, far, far+86400)
		l.onMsg(&natsclient.Msg{Subject: subject, Data: body})
		cut, exp, ok := m.cache.ruleOf(ruleSub, key, now)
		skew := int64(n.clockSkew / time.Second)
		life := int64(n.maxTokenLifetime / time.Second)
		if !ok || cut < now+skew || cut > time.Now().Unix()+skew || exp != cut+life+skew {
			t.Fatalf("held rule: cutoff now%+d, exp cutoff%+d (ok %v)", cut-now, exp-cut, ok)
		}
		before := claimsToken(t, accessClaims(testIss, "victim", "s1", now-600))
		after := claimsToken(t, accessClaims(testIss, "victim", "s2", cut+1))
		if serve(m, bearerReq(before)).Code != http.StatusUnauthorized {
			t.Fatal("a token issued before the forged rule arrived passes")
		}
		if serve(m, bearerReq(after)).Code != http.StatusTeapot {
			t.Fatal("a token issued after the forged rule's arrival + skew is refused")
		}
	})
	t.Run("stream", func(t *testing.T) {
		m, _ := newTestMiddleware(t, nil)
		n := natsWithSigning(t, nil)
		n.stream = "REVOCATIONS"
		f := newStreamFollower(n, m.cache, newLogger("t"), &natsLog{log: newLogger("t")})
		key := ruleKey(testIss, "victim")
		stored := time.Now().Add(-10 * time.Minute)
		subject, body := ruleMsg(n, kindSub, key, far, far+86400)
		f.onStreamMsg(&natsclient.JSMsg{Subject: subject, Data: body, StreamSeq: 1, Time: stored})
		cut, _, ok := m.cache.ruleOf(ruleSub, key, now)
		if !ok || cut != stored.Unix()+60 {
			t.Fatalf("held cutoff now%+d, want the stored time + skew (now-540)", cut-now)
		}
		mid := claimsToken(t, accessClaims(testIss, "victim", "s1", now-300))
		old := claimsToken(t, accessClaims(testIss, "victim", "s1", now-900))
		if serve(m, bearerReq(mid)).Code != http.StatusTeapot || serve(m, bearerReq(old)).Code != http.StatusUnauthorized {
			t.Fatal("the replayed forged rule is not capped at its stored time + skew")
		}
		// A genuine logout now, later than the capped cutoff, wins.
		subject, body = ruleMsg(n, kindSub, key, now-1, now-1+86400+60)
		f.onStreamMsg(&natsclient.JSMsg{Subject: subject, Data: body, StreamSeq: 2, Time: time.Now()})
		if cut, _, _ := m.cache.ruleOf(ruleSub, key, now); cut != now-1 {
			t.Fatalf("after the genuine logout the cutoff is now%+d, want now-1", cut-now)
		}
		if serve(m, bearerReq(mid)).Code != http.StatusUnauthorized {
			t.Fatal("a later genuine logout does not apply after a forged far-future cutoff")
		}
		fresh := claimsToken(t, accessClaims(testIss, "victim", "s3", now+120))
		if serve(m, bearerReq(fresh)).Code != http.StatusTeapot {
			t.Fatal("a token issued after the genuine logout is refused")
		}
	})
}

// The stream follower verifies the unparsed header block of minimal deliveries.
func TestStreamFollowerVerifiesSignatures(t *testing.T) {
	g := readGolden(t)
	n := natsWithSigning(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: g.KID, Ed25519PrivateKey: g.PrivateKey}}, SignWith: g.KID})
	n.stream = "REVOCATIONS"
	cache := newTokenCache(100, newLogger("t"))
	f := newStreamFollower(n, cache, newLogger("t"), &natsLog{log: newLogger("t")})
	exp := time.Now().Add(time.Hour).Unix()
	for i, tok := range []string{"signed", "unsigned", "no-headers", "resigned-for-other-subject"} {
		subject, body := tokenMsg(n, tok, "portal", exp)
		var raw []byte
		switch tok {
		case "signed":
			raw = []byte("NATS/1.0\r\nNats-TTL: 3600s\r\n" + sigHeader + ": " + n.signer.headerValue(subject, body) + "\r\n\r\n")
		case "unsigned":
			raw = []byte("NATS/1.0\r\nNats-TTL: 3600s\r\n\r\n")
		case "resigned-for-other-subject":
			raw = []byte("NATS/1.0\r\n" + sigHeader + ": " + n.signer.headerValue(subject+"x", body) + "\r\n\r\n")
		}
		f.onStreamMsg(&natsclient.JSMsg{Subject: subject, RawHeader: raw, Data: body, StreamSeq: uint64(i + 1)})
	}
	now := time.Now().Unix()
	if !cache.contains(hashToken("signed"), now) || cache.contains(hashToken("unsigned"), now) ||
		cache.contains(hashToken("no-headers"), now) || cache.contains(hashToken("resigned-for-other-subject"), now) {
		t.Fatal("the follower applied the wrong messages")
	}
	received, dropped := f.counts()
	unsigned, bad := f.drops.sigCounts()
	if received != 1 || dropped != 3 || unsigned != 2 || bad != 1 {
		t.Fatalf("received %d dropped %d unsigned %d bad %d", received, dropped, unsigned, bad)
	}
	if c := cache.originCounts(); c["@"+g.KID] != 1 || len(c) != 1 {
		t.Fatalf("origins %v", c)
	}
}

// Manifests: digests are required with keys, must match the chunks in number, and a
// chunk is checked against its digest; a verified snapshot's client origins become its
// signer's, an unverified one's all @unsigned.
func TestManifestDigestsAndOrigins(t *testing.T) {
	g := readGolden(t)
	keyed := natsWithSigning(t, &SigningConfig{Keys: []SigningKeyConfig{{ID: g.KID, Ed25519PrivateKey: g.PrivateKey}}, SignWith: g.KID})
	plain := natsWithSigning(t, nil)
	created := time.Unix(1_800_000_000, 0).UTC()
	info := &natsclient.StreamInfo{Created: created}
	info.State.LastSeq = 100
	man := func(digests, ruleDigests []string) *snapshotManifest {
		return &snapshotManifest{V: 1, ID: "0123456789abcdef", Stream: "REVOCATIONS", StreamCreated: created, Seq: 50, Slots: 10,
			Chunks: []uint64{3, 4}, RuleChunks: []uint64{5}, WithRules: true, RuleSlots: 1, ChunkSha256: digests, RuleChunkSha256: ruleDigests}
	}
	keyed.stream = "REVOCATIONS"
	plain.stream = "REVOCATIONS"
	two := []string{chunkDigest([]byte("a")), chunkDigest([]byte("b"))}
	one := []string{chunkDigest([]byte("r"))}
	if p := manifestProblem(man(two, one), keyed, info); p != "" {
		t.Fatalf("a manifest with digests is refused: %s", p)
	}
	if p := manifestProblem(man(nil, nil), keyed, info); !strings.Contains(p, "no chunk digests") {
		t.Fatalf("without digests, with keys: %q", p)
	}
	if p := manifestProblem(man(two, nil), keyed, info); !strings.Contains(p, "no chunk digests") {
		t.Fatalf("without rule digests, with keys: %q", p)
	}
	if p := manifestProblem(man(nil, nil), plain, info); p != "" {
		t.Fatalf("without digests and keys: %q", p)
	}
	if p := manifestProblem(man(two[:1], one), plain, info); !strings.Contains(p, "do not match") {
		t.Fatalf("one digest for two chunks: %q", p)
	}
	if !digestMatches([]byte("a"), strings.ToUpper(two[0])) || digestMatches([]byte("a"), two[1]) {
		t.Fatal("digestMatches")
	}
	s := &snapshotter{n: keyed}
	s.loadOrigin = "@" + g.KID
	s.loadVerified = true
	got := s.chunkOrigins([]string{"", "portal", "@idp", "@unsigned"})
	if strings.Join(got, ",") != "@golden-1,@golden-1,@idp,@unsigned" {
		t.Fatalf("verified origins %v", got)
	}
	s.loadOrigin = originUnsigned
	s.loadVerified = false
	got = s.chunkOrigins([]string{"", "portal", "@idp"})
	if strings.Join(got, ",") != "@unsigned,@unsigned,@unsigned" {
		t.Fatalf("unverified origins %v", got)
	}
}

// A key that a forged (unsigned) message got into the cache first, then revoked at the
// endpoint, belongs to the local client: a flood of unsigned messages cannot evict it.
func TestLocalRevocationTakesOverAForgedEntry(t *testing.T) {
	m, _ := newTestMiddleware(t, func(c *Config) {
		c.CacheSize = 100
		c.Clients[0].RatePerMinute = -1
	})
	n := natsWithSigning(t, nil)
	l := testLink(n, m.cache)
	exp := time.Now().Add(time.Hour).Unix()
	subject, body := tokenMsg(n, "stolen", "", exp)
	l.onMsg(&natsclient.Msg{Subject: subject, Data: body})
	if rec := serve(m, revokeReq("token=stolen", basic("portal", "s3cret"))); rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d", rec.Code)
	}
	if c := m.cache.originCounts(); c["portal"] != 1 || c[originUnsigned] != 0 {
		t.Fatalf("origins after the local revocation: %v", c)
	}
	for i := 0; i < 500; i++ {
		subject, body := tokenMsg(n, "flood-"+strconv.Itoa(i), "portal", exp)
		l.onMsg(&natsclient.Msg{Subject: subject, Data: body})
	}
	if rec := serve(m, bearerReq("stolen")); rec.Code != http.StatusUnauthorized {
		t.Fatalf("the locally revoked token passes after the flood: %d", rec.Code)
	}
	// The other way round, an unsigned message does not take a local entry over.
	subject, body = tokenMsg(n, "stolen", "", exp+60)
	l.onMsg(&natsclient.Msg{Subject: subject, Data: body})
	if c := m.cache.originCounts(); c["portal"] != 1 {
		t.Fatalf("origins after an unsigned repeat: %v", c)
	}
}
