package tokenrevoke

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestJWKSParseSkipsUnusableKeys(t *testing.T) {
	k := testKeys(t)
	rsaPub := &k.rsa1.PublicKey
	good := rsaJWK("good", rsaPub, nil)
	short := rsaJWK("short", rsaPub, nil)
	short["n"] = b64u(new(big.Int).Rsh(rsaPub.N, 1).Bytes()) // 2047 bits
	evenN := rsaJWK("evenN", rsaPub, nil)
	evenN["n"] = b64u(new(big.Int).Add(rsaPub.N, big.NewInt(1)).Bytes())
	offCurve := ecJWK("offCurve", &k.p256.PublicKey, nil)
	offCurve["y"] = b64u(new(big.Int).Add(k.p256.PublicKey.Y, big.NewInt(1)).FillBytes(make([]byte, 32)))
	longX := ecJWK("longX", &k.p256.PublicKey, nil)
	longX["x"] = b64u(append([]byte{1}, k.p256.PublicKey.X.FillBytes(make([]byte, 32))...))
	wrongCrv := ecJWK("wrongCrv", &k.p256.PublicKey, nil)
	wrongCrv["crv"] = "P-384" // coordinates of a P-256 point: not on P-384
	_, x25519, _ := ed25519.GenerateKey(rand.Reader)
	edPub := k.ed.Public().(ed25519.PublicKey)
	skipped := []map[string]interface{}{
		{"kty": "oct", "kid": "hmac", "k": b64u([]byte("a shared secret of 32 bytes....."))},
		rsaJWK("enc", rsaPub, map[string]interface{}{"use": "enc"}),
		rsaJWK("useSIG", rsaPub, map[string]interface{}{"use": "SIG"}),
		rsaJWK("opsEncrypt", rsaPub, map[string]interface{}{"key_ops": []string{"encrypt"}}),
		rsaJWK("opsBad", rsaPub, map[string]interface{}{"key_ops": "verify"}),
		rsaJWK("algES", rsaPub, map[string]interface{}{"alg": "ES256"}),
		rsaJWK("algHS", rsaPub, map[string]interface{}{"alg": "HS256"}),
		rsaJWK("e1", rsaPub, map[string]interface{}{"e": "AQ"}),
		rsaJWK("eEven", rsaPub, map[string]interface{}{"e": b64u(big.NewInt(65536).Bytes())}),
		rsaJWK("eHuge", rsaPub, map[string]interface{}{"e": b64u(new(big.Int).Lsh(big.NewInt(1), 40).Bytes())}),
		rsaJWK("nPadded", rsaPub, map[string]interface{}{"n": b64u(rsaPub.N.Bytes()) + "="}),
		{"kty": "RSA", "kid": "noN", "e": "AQAB"},
		short, evenN, offCurve, longX, wrongCrv,
		ecJWK("algMismatch", &k.p256.PublicKey, map[string]interface{}{"alg": "ES384"}),
		{"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": b64u(make([]byte, 32)), "y": b64u(make([]byte, 32))},
		{"kty": "EC", "kid": "noY", "crv": "P-256", "x": b64u(k.p256.PublicKey.X.Bytes())},
		{"kty": "EC", "kid": "zero", "crv": "P-256", "x": b64u(make([]byte, 32)), "y": b64u(make([]byte, 32))},
		{"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64u(x25519.Public().(ed25519.PublicKey))},
		{"kty": "OKP", "kid": "ed448", "crv": "Ed448", "x": b64u(make([]byte, 57))},
		{"kty": "OKP", "kid": "short", "crv": "Ed25519", "x": b64u(edPub[:31])},
		edJWK("edAlg", edPub, map[string]interface{}{"alg": "ES256"}),
		{"kid": "noKty", "n": "AQAB", "e": "AQAB"},
		{"kty": "RSA", "kid": 7, "n": b64u(rsaPub.N.Bytes()), "e": "AQAB"},
	}
	keys := append([]map[string]interface{}{good}, skipped...)
	doc := jwksJSON(t, keys...)
	// A key with a duplicate member and a key that is not an object.
	doc = strings.Replace(doc, `"keys":[`, `"keys":[{"kty":"RSA","kty":"oct"},"text",`, 1)
	ks, err := parseJWKS([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.keys) != 1 || ks.keys[0].Kid != "good" {
		var kids []string
		for _, key := range ks.keys {
			kids = append(kids, key.Kid)
		}
		t.Fatalf("kept %v, want only good", kids)
	}
	if len(ks.skipped) != len(skipped)+2 {
		t.Fatalf("skipped %d keys, want %d: %v", len(ks.skipped), len(skipped)+2, ks.skipped)
	}
	if ks.keys[0].rsa.N.Cmp(rsaPub.N) != 0 || ks.keys[0].rsa.E != rsaPub.E {
		t.Fatal("RSA key material differs")
	}
	// Good keys of every kind, with alg, use and key_ops as they may appear.
	ks, err = parseJWKS([]byte(jwksJSON(t,
		rsaJWK("r", rsaPub, map[string]interface{}{"use": "sig", "alg": "RS256", "key_ops": []string{"verify"}}),
		ecJWK("p256", &k.p256.PublicKey, map[string]interface{}{"alg": "ES256"}),
		ecJWK("p384", &k.p384.PublicKey, nil),
		ecJWK("p521", &k.p521.PublicKey, map[string]interface{}{"alg": "ES512"}),
		edJWK("ed", edPub, map[string]interface{}{"alg": "EdDSA"}),
	)))
	if err != nil || len(ks.keys) != 5 || len(ks.skipped) != 0 {
		t.Fatalf("good keys: %v, %d kept, skipped %v", err, len(ks.keys), ks.skipped)
	}
	// P-521 coordinates may be sent without their leading zero bytes.
	short521 := ecJWK("p521", &k.p521.PublicKey, nil)
	short521["x"] = b64u(k.p521.PublicKey.X.Bytes())
	short521["y"] = b64u(k.p521.PublicKey.Y.Bytes())
	if _, err := parseJWKS([]byte(jwksJSON(t, short521))); err != nil {
		t.Fatalf("unpadded P-521 coordinates: %v", err)
	}

	for _, bad := range []string{
		``, `[]`, `null`, `{}`, `{"keys":{}}`, `{"keys":[]}`, `{"keys":null}`, `{"keys":[],"keys":[]}`,
		`{"keys":[{"kty":"oct","k":"AAAA"}]}`, `{"keys":[` + string(mustJSON(t, good)) + `]} x`,
	} {
		if _, err := parseJWKS([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func mustJSON(t testing.TB, v interface{}) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testJWKSServer serves a JWKS document that tests can change, fail or stall.
type testJWKSServer struct {
	mu      sync.Mutex
	body    string
	status  int
	hits    int
	delay   time.Duration
	block   chan struct{} // non-nil: requests wait until it is closed
	srv     *httptest.Server
	stopped bool
}

func newTestJWKSServer(t *testing.T, body string) *testJWKSServer {
	ts := &testJWKSServer{body: body, status: http.StatusOK}
	ts.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.serve(w, r)
	}))
	t.Cleanup(func() { ts.stop() })
	return ts
}

func (ts *testJWKSServer) serve(w http.ResponseWriter, r *http.Request) {
	ts.mu.Lock()
	ts.hits++
	body, status, delay, block := ts.body, ts.status, ts.delay, ts.block
	ts.mu.Unlock()
	if block != nil {
		<-block
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (ts *testJWKSServer) set(body string, status int) {
	ts.mu.Lock()
	ts.body = body
	ts.status = status
	ts.mu.Unlock()
}

func (ts *testJWKSServer) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.hits
}

func (ts *testJWKSServer) stall() {
	ts.mu.Lock()
	ts.block = make(chan struct{})
	ts.mu.Unlock()
}

func (ts *testJWKSServer) release() {
	ts.mu.Lock()
	if ts.block != nil {
		close(ts.block)
		ts.block = nil
	}
	ts.mu.Unlock()
}

func (ts *testJWKSServer) stop() {
	ts.release()
	ts.mu.Lock()
	stopped := ts.stopped
	ts.stopped = true
	ts.mu.Unlock()
	if !stopped {
		ts.srv.Close()
	}
}

// urlIssuers configures one issuer fetching its keys from ts.
func urlIssuers(t *testing.T, ts *testJWKSServer, timeout time.Duration, now time.Time) *logoutIssuers {
	t.Helper()
	l, err := newLogoutIssuers([]IssuerConfig{{Issuer: testIss, Audience: testAud, JWKSURL: ts.srv.URL + "/jwks"}}, time.Minute, timeout, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.wait() })
	return l
}

func TestJWKSRefetchOnUnknownKidAndRateLimit(t *testing.T) {
	k := testKeys(t)
	ts := newTestJWKSServer(t, jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil)))
	now := testNow
	l := urlIssuers(t, ts, 0, now)
	l.wait()
	src := l.byIss[testIss].keys
	st := src.status()
	if ts.count() != 1 || st.Fetches != 1 || len(st.Keys) != 1 || st.Keys[0].Kid != "r1" || st.Keys[0].Kty != "RSA" || st.Keys[0].Bits != 2048 || st.LastError != "" {
		t.Fatalf("after start: hits %d, status %+v", ts.count(), st)
	}
	if st.FetchedAt != now.UTC().Format(time.RFC3339) || st.Source != ts.srv.URL+"/jwks" {
		t.Fatalf("status %+v", st)
	}
	if _, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "r1", nil), l, now); err != nil {
		t.Fatalf("known kid: %v", err)
	}
	if ts.count() != 1 {
		t.Fatal("a known kid caused a fetch")
	}

	// The IdP rotates: a token names the new key, which the gateway fetches.
	ts.set(jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil), ecJWK("e2", &k.p256.PublicKey, map[string]interface{}{"alg": "ES256"})), http.StatusOK)
	now = now.Add(time.Second) // 1 s after the start fetch: the start fetch counts for the rate limit
	if _, err := validateLogoutToken(logoutJWT(t, "ES256", k.p256, "e2", nil), l, now); err == nil {
		t.Fatal("a fetch 1 s after the previous one was allowed")
	}
	if ts.count() != 1 {
		t.Fatalf("hits %d, want 1", ts.count())
	}
	now = testNow.Add(jwksMinRefetch)
	if _, err := validateLogoutToken(logoutJWT(t, "ES256", k.p256, "e2", nil), l, now); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if ts.count() != 2 {
		t.Fatalf("hits %d, want 2", ts.count())
	}
	// A second unknown kid within 10 s does not fetch again.
	_, err := validateLogoutToken(logoutJWT(t, "ES256", k.p256b, "e3", nil), l, now.Add(9*time.Second))
	if err == nil || !strings.Contains(err.Error(), errJWSUnknownKid.Error()) {
		t.Fatalf("unknown kid within 10 s: %v", err)
	}
	if ts.count() != 2 {
		t.Fatalf("hits %d, want 2 (rate limit)", ts.count())
	}
	// ... 10 s later it does.
	ts.set(jwksJSON(t, ecJWK("e3", &k.p256b.PublicKey, nil)), http.StatusOK)
	now = now.Add(jwksMinRefetch)
	if _, err := validateLogoutToken(logoutJWT(t, "ES256", k.p256b, "e3", nil), l, now); err != nil {
		t.Fatalf("after 10 s: %v", err)
	}
	if ts.count() != 3 {
		t.Fatalf("hits %d, want 3", ts.count())
	}
	// r1 was withdrawn by the last set: tokens naming it need a fetch, rate limited.
	if _, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "r1", nil), l, now.Add(time.Second)); err == nil {
		t.Fatal("a withdrawn key still verifies")
	}
}

func TestJWKSServerDownKeepsKeys(t *testing.T) {
	k := testKeys(t)
	ts := newTestJWKSServer(t, jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil)))
	now := testNow
	l := urlIssuers(t, ts, 0, now)
	l.wait()
	src := l.byIss[testIss].keys
	failures := []func(){
		func() { ts.set(`{"keys":[{"kty":"oct","k":"AAAA"}]}`, http.StatusOK) },
		func() { ts.set(`<html>`, http.StatusOK) },
		func() { ts.set(jwksJSON(t, ecJWK("e9", &k.p256.PublicKey, nil)), http.StatusInternalServerError) },
		func() {
			doc := jwksJSON(t, ecJWK("e9", &k.p256.PublicKey, nil))
			ts.set(doc+strings.Repeat(" ", jwksMaxBody+1-len(doc)), http.StatusOK)
		},
		func() { ts.stop() },
	}
	for i, fail := range failures {
		fail()
		now = now.Add(jwksMinRefetch)
		_, err := validateLogoutToken(logoutJWT(t, "ES256", k.p256, "e9", nil), l, now)
		if err == nil {
			t.Fatalf("failure %d: an unknown key verified", i)
		}
		st := src.status()
		if st.Fetches != i+2 || st.Failures != i+1 || st.LastError == "" || len(st.Keys) != 1 || st.Keys[0].Kid != "r1" {
			t.Fatalf("failure %d: status %+v", i, st)
		}
		if st.FetchedAt != testNow.UTC().Format(time.RFC3339) {
			t.Fatalf("failure %d: fetchedAt moved to %s", i, st.FetchedAt)
		}
		if _, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "r1", nil), l, now); err != nil {
			t.Fatalf("failure %d: the kept key no longer verifies: %v", i, err)
		}
	}
	if !strings.Contains(src.status().LastError, "connect") && !strings.Contains(src.status().LastError, "refused") {
		t.Logf("last error with the server down: %s", src.status().LastError)
	}
}

func TestJWKSBodyLimit(t *testing.T) {
	k := testKeys(t)
	doc := jwksJSON(t, ecJWK("e1", &k.p256.PublicKey, nil))
	ts := newTestJWKSServer(t, doc+strings.Repeat(" ", jwksMaxBody-len(doc)))
	l := urlIssuers(t, ts, 0, testNow)
	l.wait()
	if st := l.status()[0]; len(st.Keys) != 1 || st.LastError != "" {
		t.Fatalf("a body of exactly 1 MiB: %+v", st)
	}
	ts.set(doc+strings.Repeat(" ", jwksMaxBody+1-len(doc)), http.StatusOK)
	l2 := urlIssuers(t, ts, 0, testNow)
	l2.wait()
	if st := l2.status()[0]; len(st.Keys) != 0 || !strings.Contains(st.LastError, "larger") {
		t.Fatalf("a body over 1 MiB: %+v", st)
	}
}

func TestJWKSSlowServerBoundedByTimeout(t *testing.T) {
	k := testKeys(t)
	ts := newTestJWKSServer(t, jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil)))
	ts.stall()
	timeout := 300 * time.Millisecond
	start := time.Now()
	l := urlIssuers(t, ts, timeout, testNow)
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Fatalf("construction waited %v for the first fetch", d)
	}
	// A token arriving while the start fetch hangs waits for it, no longer than the timeout.
	_, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "r1", nil), l, testNow.Add(time.Second))
	d := time.Since(start)
	if !errors.Is(err, errLogoutNoKeys) {
		t.Fatalf("while the fetch hangs: %v", err)
	}
	if d < timeout/2 || d > timeout+2*time.Second {
		t.Fatalf("waited %v, timeout %v", d, timeout)
	}
	st := l.status()[0]
	if st.LastError == "" || st.Fetching || st.Fetches != 1 {
		t.Fatalf("status %+v", st)
	}
	// The server recovers; the next allowed fetch (10 s on) loads the keys. A token without
	// kid may trigger it too while no key is held.
	ts.release()
	if _, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "", nil), l, testNow.Add(5*time.Second)); !errors.Is(err, errLogoutNoKeys) {
		t.Fatalf("within 10 s: %v", err)
	}
	if _, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "", nil), l, testNow.Add(11*time.Second)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if ts.count() != 2 {
		t.Fatalf("hits %d, want 2", ts.count())
	}
}

func TestJWKSConcurrentUnknownKidFetchesOnce(t *testing.T) {
	k := testKeys(t)
	ts := newTestJWKSServer(t, jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil)))
	l := urlIssuers(t, ts, 0, testNow)
	l.wait()
	ts.mu.Lock()
	ts.body = jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil), edJWK("ed", k.ed.Public().(ed25519.PublicKey), nil))
	ts.delay = 100 * time.Millisecond
	ts.mu.Unlock()
	n := 8
	toks := make([]string, n)
	for i := range toks {
		toks[i] = logoutJWT(t, "EdDSA", k.ed, "ed", nil)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := validateLogoutToken(toks[i], l, testNow.Add(jwksMinRefetch))
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	if ts.count() != 2 {
		t.Fatalf("hits %d, want 2 (start + one refetch)", ts.count())
	}
}

func TestJWKSRefreshWhenOld(t *testing.T) {
	k := testKeys(t)
	ts := newTestJWKSServer(t, jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil)))
	l := urlIssuers(t, ts, 0, testNow)
	l.wait()
	// The IdP withdraws r1. Within jwksMaxAge the gateway keeps it (no fetch)...
	ts.set(jwksJSON(t, edJWK("ed", k.ed.Public().(ed25519.PublicKey), nil)), http.StatusOK)
	if _, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "r1", nil), l, testNow.Add(jwksMaxAge)); err != nil {
		t.Fatal(err)
	}
	if ts.count() != 1 {
		t.Fatalf("hits %d, want 1", ts.count())
	}
	// ... past it, the next verification refreshes in the background (it is not waited
	// for: this token still verifies with the keys held).
	late := testNow.Add(jwksMaxAge + time.Second)
	if _, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "r1", nil), l, late); err != nil {
		t.Fatal(err)
	}
	l.wait()
	if ts.count() != 2 {
		t.Fatalf("hits %d, want 2", ts.count())
	}
	if _, err := validateLogoutToken(logoutJWT(t, "RS256", k.rsa1, "r1", nil), l, late.Add(time.Second)); err == nil {
		t.Fatal("a withdrawn key verified after the refresh")
	}
}

func TestJWKSInlineNeverFetches(t *testing.T) {
	k := testKeys(t)
	src, err := newInlineJWKSSource(testIss, jwksJSON(t, rsaJWK("r1", &k.rsa1.PublicKey, nil), map[string]interface{}{"kty": "oct", "k": "AAAA"}))
	if err != nil {
		t.Fatal(err)
	}
	src.start(testNow)
	ks, waited := src.refetch(testNow)
	if waited || ks == nil || len(ks.keys) != 1 {
		t.Fatalf("inline refetch: waited %v, keys %v", waited, ks)
	}
	st := src.status()
	if st.Source != "inline" || st.Fetches != 0 || len(st.Keys) != 1 || len(st.Skipped) != 1 {
		t.Fatalf("status %+v", st)
	}
	if _, err := newURLJWKSSource(testIss, "ftp://idp.example/jwks", 0, nil); err == nil {
		t.Fatal("ftp URL accepted")
	}
	if _, err := newURLJWKSSource(testIss, "/jwks", 0, nil); err == nil {
		t.Fatal("relative URL accepted")
	}
	u, err := newURLJWKSSource(testIss, "https://user:secret@idp.example/jwks", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := u.status(); strings.Contains(st.Source, "secret") || u.client.Timeout != jwksFetchTimeout {
		t.Fatalf("status %+v, timeout %v", st, u.client.Timeout)
	}
}

// FuzzJWKSParse: parsing an arbitrary JWKS never panics and keeps only well-formed keys.
//
//	go test -run '^$' -fuzz FuzzJWKSParse -fuzztime 1m .
func FuzzJWKSParse(f *testing.F) {
	k := testKeys(f)
	f.Add(jwksJSON(f, rsaJWK("r1", &k.rsa1.PublicKey, nil), ecJWK("e", &k.p384.PublicKey, nil), edJWK("ed", k.ed.Public().(ed25519.PublicKey), nil)))
	f.Add(`{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"},{"kty":"oct","k":"AA"}]}`)
	f.Add(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","use":"sig","key_ops":["verify"]}]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		ks, err := parseJWKS([]byte(doc))
		if err != nil {
			return
		}
		for _, key := range ks.keys {
			if (key.rsa == nil) == (key.ec == nil) == (key.ed == nil) || (key.rsa != nil && key.rsa.N.BitLen() < jwkMinRSABits) {
				t.Fatalf("malformed key kept: %+v", key)
			}
		}
	})
}
