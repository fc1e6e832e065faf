package tokenrevoke

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The bypass tests: a client holding a revoked token tries every spelling and every
// place a backend might read it from. Each case says what the gateway must answer.

// es256Token signs a JWT with key and returns it with its raw signature parts.
func es256Token(t testing.TB, key *ecdsa.PrivateKey, claims string) (string, *big.Int, *big.Int) {
	t.Helper()
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	input := seg(`{"alg":"ES256","typ":"JWT"}`) + "." + seg(claims)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(es256Sig(r, s)), r, s
}

func es256Sig(r, s *big.Int) []byte {
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig
}

// lenientES256Verify verifies tok the way lenient verifiers do (golang-jwt's default
// among them): segments decoded with Go's non-strict base64 after dropping padding,
// and crypto/ecdsa, which accepts high-s signatures.
func lenientES256Verify(tok string, pub *ecdsa.PublicKey) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[2], "="))
	if err != nil || len(sig) != 64 {
		return false
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	return ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}

// respellings returns spellings of tok that a lenient verifier accepts as the same
// token: other unused low bits in the signature's last character, padding, and the
// high-s twin (r, n-s).
func respellings(t *testing.T, tok string, r, s *big.Int, curve elliptic.Curve) map[string]string {
	t.Helper()
	dot := strings.LastIndexByte(tok, '.')
	input, sig := tok[:dot], tok[dot+1:]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	// 64 bytes are 86 characters: the last one carries 2 bits, its 4 low bits are unused.
	lowBits := alphabet[last^0x0F : last^0x0F+1]
	highS := new(big.Int).Sub(curve.Params().N, s)
	twin := base64.RawURLEncoding.EncodeToString(es256Sig(r, highS))
	return map[string]string{
		"low bits of the last signature character": input + "." + sig[:len(sig)-1] + lowBits,
		"padded signature":                         input + "." + sig + "==",
		"high-s twin":                              input + "." + twin,
		"high-s twin, padded":                      input + "." + twin + "==",
	}
}

func TestBypassReencodedJWT(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	claims := `{"sub":"u1","exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`
	tok, r, s := es256Token(t, key, claims)
	if !lenientES256Verify(tok, &key.PublicKey) {
		t.Fatal("the original token does not verify")
	}
	variants := respellings(t, tok, r, s, elliptic.P256())
	for name, v := range variants {
		if v == tok {
			t.Fatalf("%s: not a different spelling", name)
		}
		// The premise: a backend would accept this spelling as the original token.
		if !lenientES256Verify(v, &key.PublicKey) {
			t.Fatalf("%s: a lenient verifier rejects it, so it proves nothing", name)
		}
	}

	// Revoke the original: every spelling is rejected, in every place.
	m, _ := newTestMiddleware(t, nil)
	if rec := serve(m, revokeReq("token="+url.QueryEscape(tok), basic("portal", "s3cret"))); rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d", rec.Code)
	}
	for name, v := range variants {
		checkError(t, serve(m, bearerReq(v)), http.StatusUnauthorized, errInvalidToken)
		q := httptest.NewRequest(http.MethodGet, "/x?access_token="+url.QueryEscape(v), nil)
		if rec := serve(m, q); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s in the query: %d, want 401", name, rec.Code)
		}
	}

	// Revoke a re-spelling: the original is rejected too.
	m2, _ := newTestMiddleware(t, nil)
	serve(m2, revokeReq("token="+url.QueryEscape(variants["high-s twin"]), basic("portal", "s3cret")))
	checkError(t, serve(m2, bearerReq(tok)), http.StatusUnauthorized, errInvalidToken)

	// Another token of the same key and header (a different payload) still passes.
	other, _, _ := es256Token(t, key, `{"sub":"u2"}`)
	if rec := serve(m, bearerReq(other)); rec.Code != http.StatusTeapot {
		t.Errorf("a different JWT: %d, want to pass", rec.Code)
	}
}

func TestTokenKeys(t *testing.T) {
	jwe := "eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4R0NNIn0..AAAAAAAAAAAAAAAA.Y2lwaGVy.dGFndGFndGFndGFnMTI"
	jweBits := jwe[:len(jwe)-1] + "J" // "I" and "J" differ only in unused low bits
	cases := []struct {
		a, b string
		same bool
	}{
		{"eyJh.eyJw.sig1", "eyJh.eyJw.sig2", true},
		{"eyJh.eyJw.sig1", "eyJh.eyJx.sig1", false},
		{"eyJh.eyJw.sig1", "eyJh.eyJw.sig1.", false},
		{"v4.local.abc", "v4.local.abd", false}, // PASETO: not a JWS, exact string
		{"abc.def.ghi", "abc.def.xyz", false},
		{jwe, jweBits, true},
		{jwe, jwe + "==", true},
		{jwe, strings.Replace(jwe, "Y2lwaGVy", "Y2lwaGVz", 1), false},
		{"opaque", "opaque ", false},
	}
	for _, tc := range cases {
		ka, _ := tokenKey(tc.a)
		kb, _ := tokenKey(tc.b)
		if (ka == kb) != tc.same {
			t.Errorf("tokenKey(%q) == tokenKey(%q) is %v, want %v", tc.a, tc.b, ka == kb, tc.same)
		}
	}
	if _, kind := tokenKey(jwe); kind != kindJWE {
		t.Errorf("kind of a JWE = %s", kind)
	}
	if k, kind := tokenKey("opaque"); kind != kindToken || k != hashToken("opaque") {
		t.Errorf("an opaque token is not keyed by its exact string")
	}
}

// bypassCase is one request built around the revoked token.
type bypassCase struct {
	name   string
	req    func(tok string) *http.Request
	status int
}

func getWithAuth(values ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
	for _, v := range values {
		r.Header.Add("Authorization", v)
	}
	return r
}

func headerCases() []bypassCase {
	h := func(format string) func(string) *http.Request {
		return func(tok string) *http.Request { return getWithAuth(strings.ReplaceAll(format, "{T}", tok)) }
	}
	return []bypassCase{
		{"canonical", h("Bearer {T}"), 401},
		{"lowercase scheme, several spaces", h("bearer   {T}"), 401},
		{"tab after the scheme", h("Bearer\t{T}"), 400},
		{"space and tab", h("Bearer \t{T}"), 400},
		{"a second word (Node split(' ')[1])", h("Bearer {T} extra"), 400},
		{"a word before", h("Bearer junk {T}"), 400},
		{"non-breaking space (Python split())", h("Bearer {T}\u00a0x"), 400},
		{"Latin-1 NBSP byte", h("Bearer {T}\xa0x"), 400},
		{"comma list", h("Bearer {T},Bearer x"), 400},
		{"scheme glued with a colon", h("Bearer:{T}"), 400},
		{"other scheme (split(' ')[1])", h("Token {T}"), 401},
		{"JWT scheme", h("JWT {T}"), 401},
		{"bare token (TrimPrefix(\"Bearer \"))", h("{T}"), 401},
		{"other scheme, last of several words (split(' ').pop())", h("Digest a {T}"), 401},
		{"other scheme, tab", h("X\t{T}"), 401},
		{"other scheme, too many words", h(strings.Repeat("w ", 40) + "{T}"), 400},
		{"two headers", func(tok string) *http.Request { return getWithAuth("Bearer fine", "Bearer "+tok) }, 400},
		{"two headers, revoked first", func(tok string) *http.Request { return getWithAuth("Bearer "+tok, "Bearer fine") }, 400},
	}
}

func queryCases() []bypassCase {
	q := func(raw string) func(string) *http.Request {
		return func(tok string) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/api/orders?"+strings.ReplaceAll(raw, "{T}", url.QueryEscape(tok)), nil)
		}
	}
	flood := strings.Repeat("p=1&", 10001)
	return []bypassCase{
		{"access_token", q("access_token={T}"), 401},
		{"percent-encoded underscore", q("access%5Ftoken={T}"), 401},
		{"percent-encoded first letter", q("%61ccess_token={T}"), 401},
		{"upper case name", q("ACCESS_TOKEN={T}"), 401},
		{"empty first value", q("access_token=&access_token={T}"), 401},
		{"after a semicolon", q("x=1;access_token={T}"), 401},
		{"array syntax", q("access_token[]={T}"), 401},
		{"PHP dot", q("access.token={T}"), 401},
		{"after 10,001 parameters", q(flood + "access_token={T}"), 400},
		{"before 10,001 parameters", q("access_token={T}&" + flood), 400},
		{"after 9,000 parameters", q(strings.Repeat("p=1&", 9000) + "access_token={T}"), 401},
		{"value with a broken escape elsewhere", q("a=%zz&access_token={T}"), 401},
		{"padded value", q("access_token=%20{T}%20"), 401},
		{"qs leading bracket", q("[access_token]={T}"), 401},
		{"qs leading bracket, encoded", q("%5Baccess_token%5D={T}"), 401},
		{"qs leading bracket, nested", q("[access_token][x]={T}"), 401},
		{"qs array index", q("access_token[0]={T}"), 401},
		{"PHP unclosed bracket", q("access[token={T}"), 401},
		{"encoded byte order mark", q("%EF%BB%BFaccess_token={T}"), 401},
		{"charset of the Content-Type (Django decodes the query with it)", func(tok string) *http.Request {
			r := q("access_token={T}")(tok)
			r.Header.Set("Content-Type", "text/plain; charset=utf-16")
			return r
		}, 400},
		{"maxCandidates+1 names that may be access_token", q(strings.Repeat("access_token=x&", maxCandidates) + "access_token={T}"), 400},
		{"query over maxBodyCheck", q("access_token={T}&p=" + strings.Repeat("+", 70<<10)), 414},
		{"with a fine bearer header", func(tok string) *http.Request {
			r := q("access_token={T}")(tok)
			r.Header.Set("Authorization", "Bearer fine")
			return r
		}, 401},
	}
}

func bodyReq(method, ct, body string) *http.Request {
	r := httptest.NewRequest(method, "/api/orders", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

func multipartBody(name, cte, value string) string {
	b := "--XyZ\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n"
	if cte != "" {
		b += "Content-Transfer-Encoding: " + cte + "\r\n"
	}
	return b + "\r\n" + value + "\r\n--XyZ--\r\n"
}

func bodyCases() []bypassCase {
	form := "application/x-www-form-urlencoded"
	f := func(method, ct, body string) func(string) *http.Request {
		return func(tok string) *http.Request {
			return bodyReq(method, ct, strings.ReplaceAll(body, "{T}", url.QueryEscape(tok)))
		}
	}
	return []bypassCase{
		{"POST form", f("POST", form, "a=1&access_token={T}"), 401},
		{"PUT form", f("PUT", form, "access_token={T}"), 401},
		{"PATCH form", f("PATCH", form, "access_token={T}"), 401},
		{"GET with a form body", f("GET", form, "access_token={T}"), 401},
		{"DELETE with a form body", f("DELETE", form, "access_token={T}"), 401},
		{"charset parameter", f("POST", form+"; charset=utf-8", "access_token={T}"), 401},
		{"upper-case media type", f("POST", "Application/X-WWW-Form-Urlencoded", "access_token={T}"), 401},
		{"broken media parameters", f("POST", form+";;", "access_token={T}"), 401},
		{"encoded name", f("POST", form, "access%5Ftoken={T}"), 401},
		{"multipart", f("POST", "multipart/form-data; boundary=XyZ", multipartBody("access_token", "", "{T}")), 401},
		{"multipart, upper-case name", f("POST", "multipart/form-data; boundary=XyZ", multipartBody("Access_Token", "", "{T}")), 401},
		{"multipart quoted-printable", func(tok string) *http.Request {
			qp := strings.ReplaceAll(tok, "=", "=3D")
			return bodyReq("POST", "multipart/form-data; boundary=XyZ", multipartBody("access_token", "quoted-printable", qp))
		}, 401},
		{"multipart without boundary", f("POST", "multipart/form-data", multipartBody("access_token", "", "{T}")), 400},
		{"multipart, wrong boundary", f("POST", "multipart/form-data; boundary=Other", multipartBody("access_token", "", "{T}")), 400},
		{"chunked form", func(tok string) *http.Request {
			r := bodyReq("POST", form, "access_token="+url.QueryEscape(tok))
			r.ContentLength = -1
			return r
		}, 401},
		{"gzip-encoded form", func(tok string) *http.Request {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write([]byte("access_token=" + url.QueryEscape(tok)))
			_ = zw.Close()
			r := bodyReq("POST", form, buf.String())
			r.Header.Set("Content-Encoding", "gzip")
			return r
		}, 400},
		{"two content types", func(tok string) *http.Request {
			r := bodyReq("POST", form, "access_token="+url.QueryEscape(tok))
			r.Header.Add("Content-Type", "application/json")
			return r
		}, 400},
		{"a second media type (Node matches a prefix)", f("POST", form+", text/plain", "access_token={T}"), 401},
		{"a suffix on the media type", f("POST", form+"X", "access_token={T}"), 401},
		{"both form types", f("POST", form+", multipart/form-data; boundary=XyZ", "access_token={T}"), 400},
		{"multipart base64 part", func(tok string) *http.Request {
			return bodyReq("POST", "multipart/form-data; boundary=XyZ", multipartBody("access_token", "base64", base64.StdEncoding.EncodeToString([]byte(tok))))
		}, 400},
		{"multipart uuencoded part", f("POST", "multipart/form-data; boundary=XyZ", multipartBody("access_token", "x-uuencode", "junk")), 400},
		{"multipart RFC 2231 name", func(tok string) *http.Request {
			b := "--XyZ\r\nContent-Disposition: form-data; name*=UTF-8''access%5Ftoken\r\n\r\n" + tok + "\r\n--XyZ--\r\n"
			return bodyReq("POST", "multipart/form-data; boundary=XyZ", b)
		}, 401},
		{"multipart, disposition not form-data", func(tok string) *http.Request {
			b := "--XyZ\r\nContent-Disposition: attachment; name=\"access_token\"\r\n\r\n" + tok + "\r\n--XyZ--\r\n"
			return bodyReq("POST", "multipart/form-data; boundary=XyZ", b)
		}, 401},
		{"form body over maxBodyCheck", f("POST", form, strings.Repeat("a", 70<<10)+"&access_token={T}"), 413},
		{"byte order mark before the first name (body-parser strips it)", f("POST", form, "\ufeffaccess_token={T}"), 401},
		{"qs leading bracket in a form", f("POST", form, "a=1&[access_token]={T}"), 401},
		{"form in UTF-16", f("POST", form+"; charset=utf-16", "access_token={T}"), 400},
		{"form in UTF-7", f("POST", form+"; charset=UTF-7", "access_token={T}"), 400},
		{"multipart part in the preamble", f("POST", "multipart/form-data; boundary=XyZ", "--X\r\n"+multipartBody("access_token", "", "{T}")), 400},
		{"multipart preamble text", f("POST", "multipart/form-data; boundary=XyZ", "Content-Disposition: form-data; name=\"access_token\"\r\n\r\n{T}\r\n"+multipartBody("a", "", "1")), 400},
		{"multipart part after the closing boundary", f("POST", "multipart/form-data; boundary=XyZ", multipartBody("a", "", "1")+multipartBody("access_token", "", "{T}")), 400},
		{"multipart boundary not at a line start", f("POST", "multipart/form-data; boundary=XyZ", "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1--XyZ\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\n{T}\r\n--XyZ--\r\n"), 400},
		{"multipart, bare LF line ends", f("POST", "multipart/form-data; boundary=XyZ", "--XyZ\nContent-Disposition: form-data; name=\"access_token\"\n\n{T}\n--XyZ--\n"), 400},
		{"multipart, escaped name", f("POST", "multipart/form-data; boundary=XyZ", multipartBody("acc\\ess_token", "", "{T}")), 401},
		{"multipart, RFC 2231 continuation", func(tok string) *http.Request {
			b := "--XyZ\r\nContent-Disposition: form-data; name*0=\"acc\"; name*1=\"ess_token\"\r\n\r\n" + tok + "\r\n--XyZ--\r\n"
			return bodyReq("POST", "multipart/form-data; boundary=XyZ", b)
		}, 401},
		{"multipart, the token part after many others", func(tok string) *http.Request {
			b := strings.Repeat("--XyZ\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\n1\r\n", 500)
			return bodyReq("POST", "multipart/form-data; boundary=XyZ", b+multipartBody("access_token", "", tok))
		}, 401},
	}
}

// revokedFixture is a middleware with one revoked JWT and one revoked opaque token.
func revokedFixture(t *testing.T) (*Middleware, *backend, []string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwt, _, _ := es256Token(t, key, `{"sub":"u1"}`)
	m, b := newTestMiddleware(t, nil)
	toks := []string{jwt, "2YotnFZFEjr1zCsicMWpAA"}
	for _, tok := range toks {
		if rec := serve(m, revokeReq("token="+url.QueryEscape(tok), basic("portal", "s3cret"))); rec.Code != http.StatusOK {
			t.Fatalf("revoke: %d", rec.Code)
		}
	}
	return m, b, toks
}

func runBypassCases(t *testing.T, cases []bypassCase) {
	m, b, toks := revokedFixture(t)
	for _, tc := range cases {
		for _, tok := range toks {
			before := b.count()
			rec := serve(m, tc.req(tok))
			if rec.Code != tc.status {
				t.Errorf("%s (%.10s…): status %d, want %d (%s)", tc.name, tok, rec.Code, tc.status, rec.Body.String())
				continue
			}
			if b.count() != before {
				t.Errorf("%s: the request reached the backend", tc.name)
			}
			code := errInvalidToken
			if tc.status != http.StatusUnauthorized {
				code = errInvalidRequest
			}
			checkError(t, rec, tc.status, code)
			// The same request shape with a token that is not revoked: only the
			// refusals (400, 413) stay; a 401 must become a pass.
			rec = serve(m, tc.req("fine-token"))
			if tc.status == http.StatusUnauthorized && rec.Code != http.StatusTeapot {
				t.Errorf("%s with a token that is not revoked: status %d, want the backend (%s)", tc.name, rec.Code, rec.Body.String())
			}
		}
	}
}

// jsonCases: passport-http-bearer and passport-jwt read req.body.access_token, which
// express.json() fills; FastAPI reads a body without a Content-Type as JSON; Go's
// encoding/json matches member names without regard to case.
func jsonCases() []bypassCase {
	j := func(ct, body string) func(string) *http.Request {
		return func(tok string) *http.Request {
			return bodyReq("POST", ct, strings.ReplaceAll(body, "{T}", tok))
		}
	}
	const js = "application/json"
	return []bypassCase{
		{"JSON member", j(js, `{"access_token":"{T}"}`), 401},
		{"JSON, charset utf-8", j(js+"; charset=utf-8", `{"a":1,"access_token":"{T}"}`), 401},
		{"JSON suffix type", j("application/vnd.api+json", `{"access_token":"{T}"}`), 401},
		{"JSON without a Content-Type (FastAPI)", j("", ` {"access_token":"{T}"}`), 401},
		{"JSON as text/plain (Starlette's request.json())", j("text/plain", `{"access_token":"{T}"}`), 401},
		{"JSON with a byte order mark", j(js, "\ufeff{\"access_token\":\"{T}\"}"), 401},
		{"JSON, last of two members (Node, Python)", j(js, `{"access_token":"x","access_token":"{T}"}`), 401},
		{"JSON, another case (Go's encoding/json)", j(js, `{"access_token":"x","Access_Token":"{T}"}`), 401},
		{"JSON, a long s (Go folds it to s)", j(js, `{"acce\u017fs_token":"{T}"}`), 401},
		{"JSON, a long s unescaped (Go folds it to s)", j(js, "{\"acce\u017fs_token\":\"{T}\"}"), 401},
		{"JSON, a KELVIN SIGN unescaped (Go folds it to k)", j(js, "{\"access_to\u212aen\":\"{T}\"}"), 401},
		{"JSON, escaped name", j(js, `{"\u0061ccess_token":"{T}"}`), 401},
		{"JSON, escaped value", func(tok string) *http.Request {
			return bodyReq("POST", js, `{"access_token":"\u00`+strconv.FormatInt(int64(tok[0]), 16)+tok[1:]+`"}`)
		}, 401},
		{"JSON, array value", j(js, `{"access_token":["{T}"]}`), 401},
		{"JSON, array value after a null and a number", j(js, `{"access_token":[null,1,"{T}"]}`), 401},
		{"JSON, array value, the last of maxCandidates", j(js, `{"access_token":[`+strings.Repeat(`"x",`, maxCandidates-1)+`"{T}"]}`), 401},
		{"JSON, array of maxCandidates+1 values", j(js, `{"access_token":[`+strings.Repeat(`"x",`, maxCandidates)+`"{T}"]}`), 400},
		{"JSON, array of maxCandidates+1 values, the token first", j(js, `{"access_token":["{T}"`+strings.Repeat(`,1`, maxCandidates)+`]}`), 400},
		{"JSON that Go cannot parse (Python's NaN)", j(js, `{"access_token":"{T}","n":NaN}`), 400},
		{"JSON nested deeper than Go parses (V8 does)", j(js, `{"access_token":"{T}","d":`+strings.Repeat("[", 10001)+strings.Repeat("]", 10001)+`}`), 400},
		{"JSON in UTF-16 (Python's json detects it)", func(tok string) *http.Request {
			s := `{"access_token":"` + tok + `"}`
			u := make([]byte, 0, 2*len(s))
			for i := 0; i < len(s); i++ {
				u = append(u, s[i], 0)
			}
			return bodyReq("POST", js, string(u))
		}, 400},
		{"JSON in UTF-16 declared", j(js+"; charset=utf-16", `{"access_token":"{T}"}`), 400},
		{"JSON over maxBodyCheck", j(js, `{"access_token":"{T}","p":"`+strings.Repeat("a", 70<<10)+`"}`), 413},
		{"JSON, chunked", func(tok string) *http.Request {
			r := bodyReq("POST", js, `{"access_token":"`+tok+`"}`)
			r.ContentLength = -1
			return r
		}, 401},
	}
}

func TestBypassHeader(t *testing.T) { runBypassCases(t, headerCases()) }
func TestBypassJSON(t *testing.T)   { runBypassCases(t, jsonCases()) }
func TestBypassQuery(t *testing.T)  { runBypassCases(t, queryCases()) }
func TestBypassBody(t *testing.T)   { runBypassCases(t, bodyCases()) }

// qs decodes a component only if all its escapes decode: a revoked token that holds a
// malformed escape is read by qs as sent, where a lenient decoder changes its other
// escapes.
func TestRevokedTokenWithEscapesAsQsReadsIt(t *testing.T) {
	m, b := newTestMiddleware(t, nil)
	tok := "ab%41c%zz"
	if rec := serve(m, revokeReq("token="+url.QueryEscape(tok), basic("portal", "s3cret"))); rec.Code != http.StatusOK {
		t.Fatalf("revoke: %d", rec.Code)
	}
	for _, raw := range []string{"access_token=ab%41c%zz", "access_token=ab%41c%zz&x=1", "[access_token]=ab%41c%zz"} {
		if rec := serve(m, httptest.NewRequest(http.MethodGet, "/api/orders?"+raw, nil)); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", raw, rec.Code)
		}
	}
	if rec := serve(m, httptest.NewRequest(http.MethodGet, "/api/orders?access_token=ab%41c%25zz", nil)); rec.Code != http.StatusTeapot {
		t.Errorf("another token (abAc%%zz): %d, want the backend", rec.Code)
	}
	if b.count() != 1 {
		t.Fatalf("backend saw %d requests, want 1", b.count())
	}
}

func TestBodyReachesBackendByteForByte(t *testing.T) {
	m, b := newTestMiddleware(t, nil)
	bodies := []struct{ ct, body string }{
		{"application/x-www-form-urlencoded", "a=1&access_token=fine&b=%zz;c"},
		{"multipart/form-data; boundary=XyZ", multipartBody("access_token", "", "fine")},
		{"application/json", `{"access_token":"anything"}`},
		{"", "raw bytes \x00\xff"},
	}
	for _, tc := range bodies {
		rec := serve(m, bodyReq(http.MethodPost, tc.ct, tc.body))
		if rec.Code != http.StatusTeapot {
			t.Fatalf("%q: status %d (%s)", tc.ct, rec.Code, rec.Body.String())
		}
		if got := b.body[len(b.body)-1]; got != tc.body {
			t.Errorf("%q: backend got %q, want %q", tc.ct, got, tc.body)
		}
	}
}

func TestTokenLengthLimit(t *testing.T) {
	m, b := newTestMiddleware(t, nil)
	long := strings.Repeat("a", maxTokenLength+1)
	checkError(t, serve(m, bearerReq(long)), http.StatusBadRequest, errInvalidRequest)
	q := httptest.NewRequest(http.MethodGet, "/x?access_token="+long, nil)
	checkError(t, serve(m, q), http.StatusBadRequest, errInvalidRequest)
	if b.count() != 0 {
		t.Fatal("a too long token reached the backend")
	}
	// The longest accepted token can be revoked, even fully percent-encoded.
	edge := strings.Repeat("/", maxTokenLength)
	if rec := serve(m, revokeReq("token="+url.QueryEscape(edge), basic("portal", "s3cret"))); rec.Code != http.StatusOK {
		t.Fatalf("revoking a %d-byte token: %d %s", len(edge), rec.Code, rec.Body.String())
	}
	checkError(t, serve(m, bearerReq(edge)), http.StatusUnauthorized, errInvalidToken)
}

func TestRevocationRatePerClient(t *testing.T) {
	m, _ := newTestMiddleware(t, func(c *Config) {
		c.Clients[0].RatePerMinute = 5
		c.Clients[1].RatePerMinute = -1
	})
	for i := 0; i < 5; i++ {
		if rec := serve(m, revokeReq("token=junk-"+strconv.Itoa(i), basic("portal", "s3cret"))); rec.Code != http.StatusOK {
			t.Fatalf("revocation %d: %d", i, rec.Code)
		}
	}
	rec := serve(m, revokeReq("token=junk-5", basic("portal", "s3cret")))
	checkError(t, rec, http.StatusTooManyRequests, errTooManyRequests)
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 12 {
		t.Errorf("Retry-After = %q, want 1 to 12 seconds (one revocation every 12 s)", rec.Header().Get("Retry-After"))
	}
	// The refused revocation changed nothing.
	if rec := serve(m, bearerReq("junk-5")); rec.Code != http.StatusTeapot {
		t.Errorf("a refused revocation was applied: %d", rec.Code)
	}
	// Another client (no limit) is not affected.
	for i := 0; i < 50; i++ {
		if rec := serve(m, revokeReq("token=other-"+strconv.Itoa(i), basic("hashed", "other-secret"))); rec.Code != http.StatusOK {
			t.Fatalf("unlimited client, revocation %d: %d", i, rec.Code)
		}
	}
	// The bucket refills: one revocation per 12 s.
	now := time.Now()
	if ok, _ := m.domain.limiter.allow("portal", 5, now.Add(11*time.Second)); ok {
		t.Error("allowed again after 11 s")
	}
	if ok, _ := m.domain.limiter.allow("portal", 5, now.Add(13*time.Second)); !ok {
		t.Error("not allowed after 13 s")
	}
}

func TestDefaultRateAndMaxTTL(t *testing.T) {
	s, err := parseConfig(&Config{Clients: []ClientConfig{{ID: "a", Secret: "x"}, {ID: "b", Secret: "y", RatePerMinute: -1}}, CacheSize: 10, DefaultTTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if s.rates["a"] != defaultRatePerMinute || s.rates["b"] != 0 {
		t.Errorf("rates = %v", s.rates)
	}
	if s.maxTTL != 90*24*time.Hour || s.maxBodyCheck != 64<<10 {
		t.Errorf("maxTTL %s, maxBodyCheck %d", s.maxTTL, s.maxBodyCheck)
	}
	for _, c := range []*Config{
		{Clients: []ClientConfig{{ID: "a", Secret: "x", RatePerMinute: -2}}, CacheSize: 1},
		{Clients: []ClientConfig{{ID: "a", Secret: "x"}}, CacheSize: 1, DefaultTTL: "48h", MaxTTL: "24h"},
		{Clients: []ClientConfig{{ID: "a", Secret: "x"}}, CacheSize: 1, MaxBodyCheck: 10},
	} {
		if _, err := parseConfig(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}

	// A made-up JWT claiming exp 1e30 is held for maxTTL, not until the year 9999.
	m, _ := newTestMiddleware(t, func(c *Config) { c.MaxTTL = "48h" })
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tok := seg(`{"alg":"none"}`) + "." + seg(`{"exp":1e30}`) + ".x"
	serve(m, revokeReq("token="+tok, basic("portal", "s3cret")))
	key, _ := tokenKey(tok)
	slot := m.cache.index[key]
	if exp := m.cache.exps[slot]; exp > time.Now().Add(48*time.Hour).Unix()+1 || exp < time.Now().Add(47*time.Hour).Unix() {
		t.Errorf("stored expiry %s, want about now + 48h", time.Unix(exp, 0))
	}
}

// A verifier that splits on dots and keeps the first three parts ignores a fourth:
// "<revoked JWS>.x" must be rejected in every place.
func TestBypassExtraSegment(t *testing.T) {
	m, b, toks := revokedFixture(t)
	jwt := toks[0]
	for _, v := range []string{jwt + ".x", jwt + ".", jwt + ".a.b"} {
		checkError(t, serve(m, bearerReq(v)), http.StatusUnauthorized, errInvalidToken)
		q := httptest.NewRequest(http.MethodGet, "/x?access_token="+url.QueryEscape(v), nil)
		checkError(t, serve(m, q), http.StatusUnauthorized, errInvalidToken)
		f := bodyReq(http.MethodPost, "application/x-www-form-urlencoded", "access_token="+url.QueryEscape(v))
		checkError(t, serve(m, f), http.StatusUnauthorized, errInvalidToken)
	}
	if b.count() != 0 {
		t.Fatalf("%d requests reached the backend", b.count())
	}
	// Another JWT with an extra segment still passes.
	other := strings.Replace(jwt, ".", "X.", 1) + ".x"
	if rec := serve(m, bearerReq(other)); rec.Code != http.StatusTeapot {
		t.Errorf("a different token with four segments: %d", rec.Code)
	}
}

// While not synced, failClosed answers 503 to every request that carries a token
// anywhere a backend reads one: the spellings that once slipped through as "no bearer
// token" included.
func TestFailClosedSeesEveryPlace(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) {
		c.FailClosed = true
		c.NATS = &NATSConfig{Servers: []string{"nats://127.0.0.1:1"}, Stream: "REVOCATIONS"}
	})
	m.domain.link = &fakeLink{}
	fc := &failClosedMiddleware{m: m, next: m}
	cases := map[string]*http.Request{
		"empty then real query value": httptest.NewRequest(http.MethodGet, "/x?access_token=&access_token=tok", nil),
		"encoded query name":          httptest.NewRequest(http.MethodGet, "/x?access%5Ftoken=tok", nil),
		"query after a flood":         httptest.NewRequest(http.MethodGet, "/x?"+strings.Repeat("p=1&", 9000)+"access_token=tok", nil),
		"form body":                   bodyReq(http.MethodPost, "application/x-www-form-urlencoded", "access_token=tok"),
		"other scheme":                getWithAuth("Token tok"),
		"bare token":                  getWithAuth("tok"),
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			fc.ServeHTTP(rec, req)
			checkError(t, rec, http.StatusServiceUnavailable, errUnavailable)
		})
	}
	// Ambiguous ones are refused outright.
	for _, auth := range []string{"Bearer\ttok", "Bearer \ttok", "Bearer tok extra"} {
		rec := httptest.NewRecorder()
		fc.ServeHTTP(rec, getWithAuth(auth))
		checkError(t, rec, http.StatusBadRequest, errInvalidRequest)
	}
	if b.count() != 0 {
		t.Fatalf("%d requests reached the backend while unsynced", b.count())
	}
	// A request without any token still passes.
	rec := httptest.NewRecorder()
	fc.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/public?q=1", nil))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("anonymous request: %d", rec.Code)
	}
}

// A token the request path passes by itself must be rejected as soon as its key is
// revoked, whichever way the revocation arrives: one add (core NATS, the endpoint), a
// replay batch (JetStream) or a snapshot chunk.
func TestRevocationForgetsPassingToken(t *testing.T) {
	key0, _ := tokenKey("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
	ways := map[string]func(c *tokenCache, key [32]byte, now int64){
		"add": func(c *tokenCache, key [32]byte, now int64) { c.addFrom(key, now+60, now, "@gw-b") },
		"addBatch": func(c *tokenCache, key [32]byte, now int64) {
			c.addBatch([][32]byte{key0, key}, []int64{now + 60, now + 60}, nil, now, 0)
		},
		"loadCold": func(c *tokenCache, key [32]byte, now int64) {
			c.loadCold([][32]byte{key}, []int64{now + 60}, nil, nil, now, 0, c.len())
		},
	}
	for name, revoke := range ways {
		t.Run(name, func(t *testing.T) {
			m, b := newTestMiddleware(t, nil)
			for _, tok := range []string{"opaque-" + name, "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ" + name + "In0.c2ln"} {
				for i := 0; i < 2; i++ {
					if rec := serve(m, getWithAuth("Bearer "+tok)); rec.Code != http.StatusTeapot {
						t.Fatalf("before: %d", rec.Code)
					}
				}
				if !m.cache.passing[hashToken(tok)] {
					t.Fatal("the token was not remembered as passing")
				}
				key, _ := tokenKey(tok)
				revoke(m.cache, key, time.Now().Unix())
				checkError(t, serve(m, getWithAuth("Bearer "+tok)), http.StatusUnauthorized, errInvalidToken)
			}
			if b.count() != 4 {
				t.Fatalf("backend saw %d", b.count())
			}
		})
	}
}

// A JWT the request path already validated (and decides by its signing input alone)
// must still be rejected once a version-1 message revokes its exact string.
func TestVersion1MessageReachesValidatedJWTs(t *testing.T) {
	m, b := newTestMiddleware(t, nil)
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ2MSJ9.c2lnbmF0dXJl"
	for i := 0; i < 2; i++ { // the first request validates it, the second takes the fast path
		if rec := serve(m, getWithAuth("Bearer "+jwt)); rec.Code != http.StatusTeapot {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
	if !m.cache.passing[hashToken(jwt)] {
		t.Fatal("the slow path did not remember the validated token")
	}
	// What natsLink.onMsg does with a version-1 message for the exact string.
	m.cache.setLegacy()
	now := time.Now().Unix()
	m.cache.add(hashToken(jwt), now+3600, now)
	checkError(t, serve(m, getWithAuth("Bearer "+jwt)), http.StatusUnauthorized, errInvalidToken)
	if b.count() != 2 {
		t.Fatalf("backend saw %d requests, want 2", b.count())
	}
}

// authWords takes a shortcut (strings.Fields) for printable ASCII values; it must split
// exactly as isAnySpace does, for every value.
func TestAuthWordsShortcutMatchesFieldsFunc(t *testing.T) {
	alphabet := []byte("ab= \t\x1c\x1f\x7f~:" + "\xc2\xa0\xe2\x80\x80\x85\xff")
	rng := uint32(7)
	for i := 0; i < 20000; i++ {
		n := i % 24
		b := make([]byte, n)
		for j := range b {
			rng = rng*1664525 + 1013904223
			b[j] = alphabet[int(rng>>24)%len(alphabet)]
		}
		v := string(b)
		got := authWords(v)
		want := strings.FieldsFunc(v, isAnySpace)
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") || len(got) != len(want) {
			t.Fatalf("%q: words %q, want %q", v, got, want)
		}
	}
}

// TestLongPathWithTokenPath: with tokenPath set, a path longer than maxBodyCheck (it
// might clean to tokenPath) is refused with 414 before it is cleaned; without
// tokenPath it is not the gateway's concern.
func TestLongPathWithTokenPath(t *testing.T) {
	long := "/" + strings.Repeat("./", 40<<10) + "oauth/token"
	for _, withPath := range []bool{true, false} {
		cfg := CreateConfig()
		cfg.Clients = []ClientConfig{{ID: "portal", Secret: "s3cret"}}
		if withPath {
			cfg.TokenPath = "/oauth/token"
		}
		mw, err := New(context.Background(), &backend{}, cfg, "long-path")
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, httptest.NewRequest("GET", long+"?refresh_token=x", nil))
		want := http.StatusTeapot // the test backend's answer: passed on
		if withPath {
			want = http.StatusRequestURITooLong
		}
		if rec.Code != want {
			t.Errorf("tokenPath set %v: %d %s, want %d", withPath, rec.Code, rec.Body, want)
		}
	}
}
