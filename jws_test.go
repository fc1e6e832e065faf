package tokenrevoke

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Keys are generated once per test binary (RSA generation is slow, above all under
// yaegi) and shared by the JWS, JWKS and logout tests.
type testKeyRing struct {
	rsa1, rsa2  *rsa.PrivateKey
	p256, p384  *ecdsa.PrivateKey
	p521, p256b *ecdsa.PrivateKey
	ed          ed25519.PrivateKey
}

var (
	testKeysMu sync.Mutex
	testKeysV  *testKeyRing
)

func testKeys(t testing.TB) *testKeyRing {
	testKeysMu.Lock()
	defer testKeysMu.Unlock()
	if testKeysV != nil {
		return testKeysV
	}
	k := &testKeyRing{}
	var err error
	if k.rsa1, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.p256b, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.p521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	testKeysV = k
	return k
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// testHash maps an alg's suffix to its hash, independently of the code under test.
func testHash(alg string) crypto.Hash {
	if strings.HasSuffix(alg, "384") {
		return crypto.SHA384
	}
	if strings.HasSuffix(alg, "512") {
		return crypto.SHA512
	}
	return crypto.SHA256
}

func testDigest(alg string, msg []byte) []byte {
	h := testHash(alg).New()
	h.Write(msg)
	return h.Sum(nil)
}

// testSign signs msg with key the way alg says (raw r||s for ECDSA).
func testSign(t testing.TB, alg string, key interface{}, msg []byte) []byte {
	t.Helper()
	if strings.HasPrefix(alg, "RS") {
		sig, err := rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), testHash(alg), testDigest(alg, msg))
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	if strings.HasPrefix(alg, "PS") {
		sig, err := rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), testHash(alg), testDigest(alg, msg), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	if strings.HasPrefix(alg, "ES") {
		k := key.(*ecdsa.PrivateKey)
		r, s, err := ecdsa.Sign(rand.Reader, k, testDigest(alg, msg))
		if err != nil {
			t.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return sig
	}
	if alg == "EdDSA" {
		return ed25519.Sign(key.(ed25519.PrivateKey), msg)
	}
	t.Fatalf("testSign: no signer for %s", alg)
	return nil
}

// signRaw builds a token from literal header and payload JSON.
func signRaw(t testing.TB, alg string, key interface{}, header, payload string) string {
	t.Helper()
	input := b64u([]byte(header)) + "." + b64u([]byte(payload))
	return input + "." + b64u(testSign(t, alg, key, []byte(input)))
}

// signToken builds a token; header members set to nil are left out.
func signToken(t testing.TB, alg string, key interface{}, header map[string]interface{}, claims map[string]interface{}) string {
	t.Helper()
	h := map[string]interface{}{"alg": alg}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	hb, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return signRaw(t, alg, key, string(hb), string(pb))
}

func rsaJWK(kid string, pub *rsa.PublicKey, extra map[string]interface{}) map[string]interface{} {
	m := map[string]interface{}{"kty": "RSA", "kid": kid, "n": b64u(pub.N.Bytes()), "e": b64u(big.NewInt(int64(pub.E)).Bytes())}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func ecJWK(kid string, pub *ecdsa.PublicKey, extra map[string]interface{}) map[string]interface{} {
	size := (pub.Curve.Params().BitSize + 7) / 8
	m := map[string]interface{}{
		"kty": "EC", "kid": kid, "crv": pub.Curve.Params().Name,
		"x": b64u(pub.X.FillBytes(make([]byte, size))), "y": b64u(pub.Y.FillBytes(make([]byte, size))),
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func edJWK(kid string, pub ed25519.PublicKey, extra map[string]interface{}) map[string]interface{} {
	m := map[string]interface{}{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(pub)}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func jwksJSON(t testing.TB, keys ...map[string]interface{}) string {
	t.Helper()
	b, err := json.Marshal(map[string]interface{}{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testKeySet: one key per supported type; "r2" is restricted to PS256.
func testKeySet(t testing.TB) *jwkSet {
	t.Helper()
	ks, err := parseJWKS([]byte(testIssuerJWKS(t)))
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.keys) != 6 {
		t.Fatalf("want 6 keys, got %d (skipped %v)", len(ks.keys), ks.skipped)
	}
	return ks
}

var jwsClaimsJSON = `{"iss":"https://idp.example","sub":"u1","aud":"gw","iat":1800000000}`

func TestJWSVerifyEveryAlgorithm(t *testing.T) {
	k := testKeys(t)
	ks := testKeySet(t)
	cases := []struct {
		alg string
		kid string
		key interface{}
	}{
		{"RS256", "r1", k.rsa1}, {"RS384", "r1", k.rsa1}, {"RS512", "r1", k.rsa1},
		{"PS256", "r1", k.rsa1}, {"PS384", "r1", k.rsa1}, {"PS512", "r1", k.rsa1},
		{"PS256", "r2", k.rsa2},
		{"ES256", "e256", k.p256}, {"ES384", "e384", k.p384}, {"ES512", "e521", k.p521},
		{"EdDSA", "ed", k.ed},
	}
	for _, c := range cases {
		for _, withKid := range []bool{true, false} {
			hdr := map[string]interface{}{"kid": c.kid}
			if !withKid {
				hdr = nil
			}
			raw := signToken(t, c.alg, c.key, hdr, map[string]interface{}{"sub": "u1", "iat": 1800000000})
			tok, err := parseJWS(raw)
			if err != nil {
				t.Fatalf("%s: parse: %v", c.alg, err)
			}
			if err := tok.verify(ks); err != nil {
				t.Fatalf("%s kid=%v: verify: %v", c.alg, withKid, err)
			}
			// Any change to the signing input breaks the signature.
			parts := strings.Split(raw, ".")
			tampered := parts[0] + "." + b64u([]byte(`{"sub":"u2","iat":1800000000}`)) + "." + parts[2]
			tok, err = parseJWS(tampered)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.verify(ks); err == nil {
				t.Fatalf("%s kid=%v: a tampered payload verified", c.alg, withKid)
			}
		}
	}
}

func TestJWSParseStrict(t *testing.T) {
	k := testKeys(t)
	good := signRaw(t, "RS256", k.rsa1, `{"alg":"RS256","kid":"r1"}`, jwsClaimsJSON)
	parts := strings.Split(good, ".")
	if _, err := parseJWS(good); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	seg := func(s string) string { return b64u([]byte(s)) }
	pay := seg(jwsClaimsJSON)
	cases := []struct {
		name string
		raw  string
	}{
		{"two segments", parts[0] + "." + parts[1]},
		{"extra segment", good + "." + parts[2]},
		{"five segments (JWE)", good + ".x.y"},
		{"padded header", parts[0] + "=." + parts[1] + "." + parts[2]},
		{"padded signature", parts[0] + "." + parts[1] + "." + parts[2] + "=="},
		{"padded payload", parts[0] + "." + parts[1] + "=." + parts[2]},
		{"newline in payload", parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2]},
		{"space in signature", parts[0] + "." + parts[1] + "." + parts[2][:10] + " " + parts[2][10:]},
		{"standard base64 alphabet", parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[2]) + "+/"},
		{"empty signature", parts[0] + "." + parts[1] + "."},
		{"empty header", "." + parts[1] + "." + parts[2]},
		{"non-zero trailing bits", trailingBits(seg(`{"alg":"RS256" }`)) + "." + pay + "." + parts[2]},
		{"header is an array", seg(`["RS256"]`) + "." + pay + "." + parts[2]},
		{"header has trailing data", seg(`{"alg":"RS256"} {}`) + "." + pay + "." + parts[2]},
		{"header is not JSON", seg(`alg=RS256`) + "." + pay + "." + parts[2]},
		{"duplicate alg", seg(`{"alg":"RS256","alg":"none"}`) + "." + pay + "." + parts[2]},
		{"no alg", seg(`{"kid":"r1"}`) + "." + pay + "." + parts[2]},
		{"alg not a string", seg(`{"alg":256}`) + "." + pay + "." + parts[2]},
		{"alg null", seg(`{"alg":null}`) + "." + pay + "." + parts[2]},
		{"kid not a string", seg(`{"alg":"RS256","kid":1}`) + "." + pay + "." + parts[2]},
		{"typ not a string", seg(`{"alg":"RS256","typ":["JWT"]}`) + "." + pay + "." + parts[2]},
		{"crit header", seg(`{"alg":"RS256","crit":["exp"],"exp":1}`) + "." + pay + "." + parts[2]},
		{"empty crit header", seg(`{"alg":"RS256","crit":[]}`) + "." + pay + "." + parts[2]},
		{"payload is a string", parts[0] + "." + seg(`"hello"`) + "." + parts[2]},
		{"payload duplicate sub", parts[0] + "." + seg(`{"sub":"a","sub":"b"}`) + "." + parts[2]},
		{"payload escaped duplicate", parts[0] + "." + seg(`{"sub":"a","s\u0075b":"b"}`) + "." + parts[2]},
		{"exp is a string", parts[0] + "." + seg(`{"exp":"1800000000"}`) + "." + parts[2]},
		{"exp is negative", parts[0] + "." + seg(`{"exp":-1}`) + "." + parts[2]},
		{"exp is null", parts[0] + "." + seg(`{"exp":null}`) + "." + parts[2]},
		{"exp is bool", parts[0] + "." + seg(`{"exp":true}`) + "." + parts[2]},
		{"exp out of float range", parts[0] + "." + seg(`{"exp":1e400}`) + "." + parts[2]},
		{"iat is an object", parts[0] + "." + seg(`{"iat":{}}`) + "." + parts[2]},
		{"nbf is a string", parts[0] + "." + seg(`{"nbf":"x"}`) + "." + parts[2]},
		{"iss is a number", parts[0] + "." + seg(`{"iss":1}`) + "." + parts[2]},
		{"sub is null", parts[0] + "." + seg(`{"sub":null}`) + "." + parts[2]},
		{"sid is an array", parts[0] + "." + seg(`{"sid":["a"]}`) + "." + parts[2]},
		{"jti is a number", parts[0] + "." + seg(`{"jti":7}`) + "." + parts[2]},
		{"aud has a number", parts[0] + "." + seg(`{"aud":["gw",1]}`) + "." + parts[2]},
		{"aud is an object", parts[0] + "." + seg(`{"aud":{"gw":true}}`) + "." + parts[2]},
		{"aud has 17 items", parts[0] + "." + seg(`{"aud":[`+strings.Repeat(`"a",`, 16)+`"gw"]}`) + "." + parts[2]},
		{"aud has a null", parts[0] + "." + seg(`{"aud":[null,"gw"]}`) + "." + parts[2]},
		{"too long", parts[0] + "." + strings.Repeat("A", jwsMaxLen) + "." + parts[2]},
	}
	for _, c := range cases {
		if tok, err := parseJWS(c.raw); err == nil {
			t.Errorf("%s: parsed: %+v", c.name, tok.Header)
		}
	}
}

// trailingBits sets a low bit of the last character of an unpadded base64url string whose
// length leaves unused bits, giving a non-canonical encoding of the same bytes.
func trailingBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i|1])
}

func TestJWSClaimTypes(t *testing.T) {
	k := testKeys(t)
	raw := signRaw(t, "RS256", k.rsa1, `{"alg":"RS256","kid":"r1","typ":"logout+jwt","jku":"https://evil.example/jwks"}`,
		`{"iss":"https://idp.example","sub":"u1","aud":["a","gw"],"exp":1800000060.75,"iat":1.8e9,"nbf":99999999999999999999999,`+
			`"jti":"j1","sid":"s1","nonce":null,"events":{"x":{}},"other":[1,2]}`)
	tok, err := parseJWS(raw)
	if err != nil {
		t.Fatal(err)
	}
	h, c := tok.Header, tok.Claims
	if h.Alg != "RS256" || h.Kid != "r1" || h.Typ != "logout+jwt" || !h.HasTyp {
		t.Fatalf("header %+v", h)
	}
	if c.Iss != "https://idp.example" || c.Sub != "u1" || c.Jti != "j1" || c.Sid != "s1" || !c.HasNonce || !c.HasEvents {
		t.Fatalf("claims %+v", c)
	}
	if len(c.Aud) != 2 || c.Aud[1] != "gw" {
		t.Fatalf("aud %v", c.Aud)
	}
	if c.Exp != 1800000060 || c.Iat != 1800000000 || c.Nbf != jwsMaxNumericDate {
		t.Fatalf("dates exp=%d iat=%d nbf=%d", c.Exp, c.Iat, c.Nbf)
	}
	if string(c.Events) != `{"x":{}}` {
		t.Fatalf("events %s", c.Events)
	}
	if tok.SigningInput != strings.Join(strings.Split(raw, ".")[:2], ".") {
		t.Fatal("signing input is not the first two segments")
	}
	if err := tok.verify(testKeySet(t)); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// aud as one string; absent claims stay absent.
	tok, err = parseJWS(signRaw(t, "RS256", k.rsa1, `{"alg":"RS256"}`, `{"aud":"gw"}`))
	if err != nil {
		t.Fatal(err)
	}
	c = tok.Claims
	if len(c.Aud) != 1 || c.Aud[0] != "gw" || c.HasExp || c.HasIat || c.HasSub || c.HasSid || c.HasNonce || c.HasEvents || tok.Header.HasTyp {
		t.Fatalf("claims %+v", c)
	}
}

// hmacToken signs header.payload with HMAC-SHA256 keyed by secret: the classic key
// confusion attack, where the "secret" is the verifier's public key.
func hmacToken(header, payload string, secret []byte) string {
	input := b64u([]byte(header)) + "." + b64u([]byte(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + b64u(mac.Sum(nil))
}

func TestJWSRefusesNoneAndHMAC(t *testing.T) {
	k := testKeys(t)
	ks := testKeySet(t)
	der, err := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkJSON, _ := json.Marshal(rsaJWK("r1", &k.rsa1.PublicKey, nil))
	secrets := [][]byte{pemKey, der, k.rsa1.PublicKey.N.Bytes(), jwkJSON, []byte(jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil)))}
	var toks []string
	for _, alg := range []string{"HS256", "HS384", "HS512", "hs256"} {
		for _, s := range secrets {
			toks = append(toks, hmacToken(`{"alg":"`+alg+`","kid":"r1"}`, jwsClaimsJSON, s))
			toks = append(toks, hmacToken(`{"alg":"`+alg+`"}`, jwsClaimsJSON, s))
		}
	}
	for _, alg := range []string{"none", "None", "NONE", ""} {
		input := b64u([]byte(`{"alg":"`+alg+`"}`)) + "." + b64u([]byte(jwsClaimsJSON))
		toks = append(toks, input+".", input+"."+b64u([]byte("x")))
	}
	// A valid RS256 signature under a header claiming another alg.
	rs := signRaw(t, "RS256", k.rsa1, `{"alg":"RS256","kid":"r1"}`, jwsClaimsJSON)
	sig := strings.Split(rs, ".")[2]
	for _, alg := range []string{"RSA", "rs256", "RS1", "PS256", "ES256", "EdDSA", "RSA-OAEP", "dir"} {
		toks = append(toks, b64u([]byte(`{"alg":"`+alg+`","kid":"r1"}`))+"."+b64u([]byte(jwsClaimsJSON))+"."+sig)
	}
	for i, raw := range toks {
		tok, err := parseJWS(raw)
		if err != nil {
			continue // refused while parsing is fine too
		}
		if err := tok.verify(ks); err == nil {
			t.Fatalf("token %d (alg %q) verified", i, tok.Header.Alg)
		}
	}
}

func TestJWSKeyMustFitAlg(t *testing.T) {
	k := testKeys(t)
	ks := testKeySet(t)
	cases := []struct {
		name string
		alg  string
		key  interface{}
		kid  string
		want error
	}{
		{"RS256 naming an EC key", "RS256", k.rsa1, "e256", errJWSKeyMismatch},
		{"ES256 naming an RSA key", "ES256", k.p256, "r1", errJWSKeyMismatch},
		{"ES256 naming the P-384 key", "ES256", k.p256, "e384", errJWSKeyMismatch},
		{"ES384 signed with P-256 naming P-256", "ES384", k.p256, "e256", errJWSKeyMismatch},
		{"ES512 naming the P-256 key", "ES512", k.p521, "e256", errJWSKeyMismatch},
		{"EdDSA naming an RSA key", "EdDSA", k.ed, "r1", errJWSKeyMismatch},
		{"RS256 naming the Ed25519 key", "RS256", k.rsa1, "ed", errJWSKeyMismatch},
		{"RS256 naming the PS256-only key", "RS256", k.rsa2, "r2", errJWSKeyMismatch},
		{"PS384 naming the PS256-only key", "PS384", k.rsa2, "r2", errJWSKeyMismatch},
		{"RS256 naming another RSA key", "RS256", k.rsa2, "r1", errJWSBadSignature},
		{"ES256 naming another P-256 key", "ES256", k.p256b, "e256", errJWSBadSignature},
		{"unknown kid", "RS256", k.rsa1, "nope", errJWSUnknownKid},
		{"no kid, signed by a key not in the set", "ES256", k.p256b, "", errJWSBadSignature},
	}
	for _, c := range cases {
		hdr := map[string]interface{}{"kid": c.kid}
		if c.kid == "" {
			hdr = nil
		}
		tok, err := parseJWS(signToken(t, c.alg, c.key, hdr, map[string]interface{}{"sub": "u"}))
		if err != nil {
			t.Fatalf("%s: parse: %v", c.name, err)
		}
		if err := tok.verify(ks); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// No kid and no key of the right type.
	only, err := parseJWKS([]byte(jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil))))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := parseJWS(signToken(t, "ES256", k.p256, nil, map[string]interface{}{"sub": "u"}))
	if err := tok.verify(only); !errors.Is(err, errJWSNoKey) {
		t.Fatalf("no fitting key: %v", err)
	}
	if err := tok.verify(nil); !errors.Is(err, errJWSNoKey) {
		t.Fatalf("nil set: %v", err)
	}
}

func TestJWSSignatureForms(t *testing.T) {
	k := testKeys(t)
	ks := testKeySet(t)
	hdr := `{"alg":"ES256","kid":"e256"}`
	input := b64u([]byte(hdr)) + "." + b64u([]byte(jwsClaimsJSON))
	digest := testDigest("ES256", []byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.p256, digest)
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	s.FillBytes(raw[32:])
	check := func(name string, sig []byte, ok bool) {
		tok, err := parseJWS(input + "." + b64u(sig))
		if err != nil {
			if ok {
				t.Fatalf("%s: parse: %v", name, err)
			}
			return
		}
		err = tok.verify(ks)
		if ok && err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !ok && err == nil {
			t.Fatalf("%s: verified", name)
		}
	}
	check("raw r||s", raw, true)
	check("DER", der, false)
	check("truncated", raw[:63], false)
	check("one byte more", append(append([]byte{}, raw...), 0), false)
	check("s with a leading zero byte", append(append(append([]byte{}, raw[:32]...), 0), raw[32:]...), false)
	check("r with a leading zero byte", append(append([]byte{0}, raw[:32]...), raw[32:]...), false)
	check("r||s with r and s swapped", append(append([]byte{}, raw[32:]...), raw[:32]...), false)
	check("zeros", make([]byte, 64), false)
	// s replaced by n - s is the other valid signature of the same digest: accepted like
	// crypto/ecdsa accepts it (no low-s rule in JOSE).
	n := k.p256.Curve.Params().N
	hi := make([]byte, 64)
	r.FillBytes(hi[:32])
	new(big.Int).Sub(n, s).FillBytes(hi[32:])
	check("n - s", hi, true)
	// s + n does not fit in 32 bytes or is out of range.
	over := new(big.Int).Add(s, n)
	if over.BitLen() <= 256 {
		o := make([]byte, 64)
		r.FillBytes(o[:32])
		over.FillBytes(o[32:])
		check("s + n", o, false)
	}

	// RSA: truncated and extended signatures.
	rsTok := signRaw(t, "RS256", k.rsa1, `{"alg":"RS256","kid":"r1"}`, jwsClaimsJSON)
	p := strings.Split(rsTok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(p[2])
	for name, bad := range map[string][]byte{
		"truncated":   sig[:len(sig)-1],
		"leading 00":  append([]byte{0}, sig...),
		"one bit off": append(append([]byte{}, sig[:10]...), append([]byte{sig[10] ^ 1}, sig[11:]...)...),
	} {
		tok, err := parseJWS(p[0] + "." + p[1] + "." + b64u(bad))
		if err != nil {
			t.Fatal(err)
		}
		if err := tok.verify(ks); err == nil {
			t.Fatalf("RSA %s verified", name)
		}
	}
	// PSS with a salt other than the hash length (RFC 7518 §3.5).
	psInput := b64u([]byte(`{"alg":"PS256","kid":"r1"}`)) + "." + b64u([]byte(jwsClaimsJSON))
	pss, err := rsa.SignPSS(rand.Reader, k.rsa1, crypto.SHA256, testDigest("PS256", []byte(psInput)), &rsa.PSSOptions{SaltLength: 64})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := parseJWS(psInput + "." + b64u(pss))
	if err := tok.verify(ks); err == nil {
		t.Fatal("PSS with a 64-byte salt verified for PS256")
	}
	// Ed25519: truncated signature.
	edTok := signRaw(t, "EdDSA", k.ed, `{"alg":"EdDSA","kid":"ed"}`, jwsClaimsJSON)
	tok, _ = parseJWS(edTok[:len(edTok)-4])
	if tok != nil {
		if err := tok.verify(ks); err == nil {
			t.Fatal("truncated EdDSA signature verified")
		}
	}
}

// TestJWSVerifyTiming measures parse+verify per token (JWS_TIMING=1; run it under yaegi
// too). It is skipped otherwise: it proves nothing and costs time.
func TestJWSVerifyTiming(t *testing.T) {
	if os.Getenv("JWS_TIMING") == "" {
		t.Skip("set JWS_TIMING=1")
	}
	k := testKeys(t)
	ks := testKeySet(t)
	claims := map[string]interface{}{"iss": "https://idp.example", "aud": "gw", "sub": "u1", "sid": "s1", "iat": 1800000000, "jti": "j",
		"events": map[string]interface{}{logoutEvent: map[string]interface{}{}}}
	for _, c := range []struct {
		alg, kid string
		key      interface{}
	}{{"RS256", "r1", k.rsa1}, {"ES256", "e256", k.p256}, {"EdDSA", "ed", k.ed}} {
		raw := signToken(t, c.alg, c.key, map[string]interface{}{"kid": c.kid}, claims)
		// The machine is shared: the fastest of many small batches is the cost.
		const batches, per = 40, 10
		var best, bestParse time.Duration
		for b := 0; b < batches; b++ {
			start := time.Now()
			for i := 0; i < per; i++ {
				tok, err := parseJWS(raw)
				if err != nil {
					t.Fatal(err)
				}
				if err := tok.verify(ks); err != nil {
					t.Fatal(err)
				}
			}
			d := time.Since(start) / per
			if b == 0 || d < best {
				best = d
			}
			start = time.Now()
			for i := 0; i < per; i++ {
				if _, err := parseJWS(raw); err != nil {
					t.Fatal(err)
				}
			}
			d = time.Since(start) / per
			if b == 0 || d < bestParse {
				bestParse = d
			}
		}
		t.Logf("%s (%d-byte token): parse+verify %v/op, parse alone %v/op (best of %d batches of %d)", c.alg, len(raw), best, bestParse, batches, per)
	}
}

// FuzzJWSParse: parsing and verifying arbitrary text never panics, and whatever parses
// and verifies was signed by a test key (it can only be a seed).
//
//	go test -run '^$' -fuzz FuzzJWSParse -fuzztime 1m .
func FuzzJWSParse(f *testing.F) {
	k := testKeys(f)
	ks := testKeySet(f)
	f.Add(signRaw(f, "RS256", k.rsa1, `{"alg":"RS256","kid":"r1"}`, jwsClaimsJSON))
	f.Add(signRaw(f, "ES256", k.p256, `{"alg":"ES256"}`, `{"aud":["a"],"exp":1.5e9,"events":{"x":{}}}`))
	f.Add(signRaw(f, "EdDSA", k.ed, `{"alg":"EdDSA","kid":"ed","typ":"logout+jwt"}`, `{"iat":1,"nonce":null}`))
	f.Add("eyJhbGciOiJub25lIn0.eyJleHAiOjE5MDAwMDAwMDB9.")
	f.Add("a.b.c.d.e")
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := parseJWS(raw)
		if err != nil {
			return
		}
		if err := tok.verify(ks); err == nil && !strings.HasPrefix(tok.Header.Alg, "RS") && !strings.HasPrefix(tok.Header.Alg, "ES") && tok.Header.Alg != "EdDSA" {
			t.Fatalf("alg %q verified", tok.Header.Alg)
		}
	})
}

// TestJWSAudienceItems: an aud array is read up to maxAudience items, in order, and
// one more item refuses the token (TestJWSParseStrict), however many follow.
func TestJWSAudienceItems(t *testing.T) {
	items := make([]string, maxAudience)
	for i := range items {
		items[i] = `"a` + strconv.Itoa(i) + `"`
	}
	var c jwsClaims
	if err := parseJWSClaims([]byte(`{"aud":[`+strings.Join(items, ",")+`]}`), &c); err != nil {
		t.Fatalf("%d items: %v", maxAudience, err)
	}
	if len(c.Aud) != maxAudience || c.Aud[0] != "a0" || c.Aud[maxAudience-1] != "a"+strconv.Itoa(maxAudience-1) {
		t.Fatalf("%d items read as %q", maxAudience, c.Aud)
	}
	c = jwsClaims{}
	if err := parseJWSClaims([]byte(`{"aud":[`+strings.Repeat(`"a",`, 20000)+`"gw"]}`), &c); err == nil {
		t.Fatalf("20,001 items read as %d", len(c.Aud))
	}
}
