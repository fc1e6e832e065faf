package yaegiload

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/idptest"
)

// The worst requests a client can construct, against one middleware loaded as Traefik
// loads it (issue 18: "the worst request you can construct costs at most 10x a normal
// slow-path request").
//
//	cd e2e && go test -run '^$' -bench 'YaegiWorst' -benchtime 0.3s ./yaegiload
//
// (scripts/bench-worst.sh runs it and prints the table.) WORST_PLUGIN_ROOT names another
// plugin source tree to load instead of this repository's (e.g. an older commit's
// `git archive`), to compare two versions under the same machine load.
//
// The baseline, "a normal slow-path request", alternates between two requests, each with
// a token the gateway has never seen: GET /api/orders with a first-sight bearer JWT
// (about 450 bytes: benchJWT), and GET /api/orders?page=2&access_token=<such a JWT>. The
// sub-benchmarks "baseline/bearer" and "baseline/query" measure each alone.
//
// Every other sub-benchmark is one worst input. One op is one worst request followed
// by at least worstPairs baseline requests (timed apart, in the same process and
// moment, so that load on the shared machine hits both alike). Metrics:
//   - worst-ns/req: the mean cost of the worst request (ServeHTTP, nothing else);
//   - base-ns/req: the mean cost of the baseline requests run beside it;
//   - x-base: worst-ns/req over base-ns/req (the bound is 10);
//   - status: the status the middleware answered the worst request with (200 passed on).
//
// Sizes: a query string or header of worstLineBytes (about 1 MB: Go's net/http and
// Traefik take a request line and headers up to 1 MiB + 4 KiB in all, see
// e2e/worst_test.go for what passes through real Traefik); bodies of exactly the
// default maxBodyCheck (64 KiB). Every query and header input is sent at both
// worstLineBytes ("-1M") and worstLimitBytes ("-64k").

const (
	worstLineBytes = 1000000
	worstBodyBytes = 64 << 10
	// worstLimitBytes: the longest query string and header value the plugin inspects
	// once it bounds them (maxBodyCheck, 64 KiB by default): each line input is also
	// sent at this size.
	worstLimitBytes = 64 << 10
	worstPairs      = 8
	worstTokenPath  = "/oauth/token"
	worstLogoutPath = "/backchannel-logout"
	worstIssuer     = "https://idp.worst.test"
)

// variants are parameter names backends read as access_token.
var variants = []string{"access_token", "Access_Token", "ACCESS.TOKEN", "access%5Ftoken", "%61ccess_token",
	"access+token", "access_token[]", "access_token[a]", "[access_token]", "access_token%5B%5D", "access%20token"}

var (
	worstOnce    sync.Once
	worstLocal   http.Handler // local mode, the configuration below
	worstForward http.Handler // forward mode (revokePath forwarded), same other settings
	worstErr     error
)

// worstConfig: the README's example plus tokenPath, and the places the coordinator
// adds (tokenCookies, tokenHeaders; ignored by a plugin that does not know them yet);
// in local mode also an issuer and the back-channel logout receiver.
func worstConfig(forward bool, issuer, jwks string) map[string]interface{} {
	cfg := yamlConfig()
	if !forward {
		cfg["issuers"] = []interface{}{map[string]interface{}{"issuer": issuer, "jwks": jwks, "audience": "gateway"}}
		cfg["maxTokenLifetime"] = "1h"
		cfg["backchannelLogoutPath"] = worstLogoutPath
	}
	cfg["cacheSize"] = 200000
	cfg["tokenPath"] = worstTokenPath
	cfg["tokenCookies"] = []interface{}{"access_token"}
	cfg["tokenHeaders"] = []interface{}{"X-Auth-Token"}
	cfg["clients"] = []interface{}{map[string]interface{}{"id": "portal", "secret": "s3cret", "ratePerMinute": -1}}
	if forward {
		cfg["revokeMode"] = "forward"
	}
	return cfg
}

// worstHandlers loads the plugin twice (once per interpreter, as two Traefik processes
// would): local mode with 100k revoked entries, and forward mode.
func worstHandlers(b *testing.B) (http.Handler, http.Handler) {
	worstOnce.Do(func() {
		dir, err := os.MkdirTemp("", "worst-yaegi-")
		if err != nil {
			worstErr = err
			return
		}
		// Not removed at the end: benchmarks share the interpreters; the OS temp dir is
		// cleaned by the machine.
		signer := idptest.NewSigner(b, worstIssuer)
		for i, forward := range []bool{false, true} {
			gopath := fmt.Sprintf("%s/%d", dir, i)
			if root := os.Getenv("WORST_PLUGIN_ROOT"); root != "" {
				if err := CopyPlugin(root, gopath); err != nil {
					worstErr = err
					return
				}
			} else if err := CopyPlugin(RepoRoot(), gopath); err != nil {
				worstErr = err
				return
			}
			p, err := LoadFrom(gopath, Module, "tokenrevoke", Options{Stdout: io.Discard, Stderr: io.Discard})
			if err != nil {
				worstErr = err
				return
			}
			h, err := p.New(context.Background(), worstNext, worstConfig(forward, signer.Issuer, signer.JWKS()), "worst")
			if err != nil {
				worstErr = err
				return
			}
			if forward {
				worstForward = h
			} else {
				fillStore(b, p, 100000)
				worstLocal = h
			}
		}
	})
	if worstErr != nil {
		b.Fatal(worstErr)
	}
	return worstLocal, worstForward
}

// worstNext answers like a backend or provider: reads the body, 200.
var worstNext = http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
	}
	rw.WriteHeader(http.StatusOK)
})

// statusWriter keeps the status of the answer and discards the rest.
type statusWriter struct {
	h    http.Header
	code int
}

func (w *statusWriter) Header() http.Header { return w.h }
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = 200
	}
	return len(b), nil
}
func (w *statusWriter) WriteHeader(c int) {
	if w.code == 0 {
		w.code = c
	}
}

// baselineRequest is the i-th baseline request: even i a first-sight bearer JWT, odd i
// the query string with one.
func baselineRequest(i int) *http.Request {
	tok := benchJWT("base-"+randHex(8), time.Now().Unix()-60)
	if i%2 == 0 {
		req, _ := http.NewRequest(http.MethodGet, "http://gw/api/orders", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		return req
	}
	req, _ := http.NewRequest(http.MethodGet, "http://gw/api/orders?page=2&access_token="+tok, nil)
	req.Header.Set("Accept", "application/json")
	return req
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// worstCase is one input: mk returns a fresh request (its body unread) each call.
type worstCase struct {
	name    string
	forward bool // served by the forward-mode middleware
	mk      func() *http.Request
}

// fill repeats unit until the result is n bytes long (the last repetition cut).
func fill(unit string, n int) string {
	s := strings.Repeat(unit, n/len(unit)+1)
	return s[:n]
}

// fillWhole repeats unit as often as it fits in n bytes (no cut unit).
func fillWhole(unit string, n int) string {
	return strings.Repeat(unit, n/len(unit))
}

// reqBuilder makes requests of one shape; headers are shared between the copies it
// returns (the middleware does not change them).
func reqBuilder(method, path, rawQuery string, header http.Header, body string) func() *http.Request {
	base, err := http.NewRequest(method, "http://gw"+path, nil)
	if err != nil {
		panic(err)
	}
	base.URL.RawQuery = rawQuery
	base.RequestURI = ""
	for k, v := range header {
		base.Header[k] = v
	}
	return func() *http.Request {
		r := *base
		if body != "" {
			r.Body = io.NopCloser(strings.NewReader(body))
			r.ContentLength = int64(len(body))
		} else {
			r.Body = http.NoBody
			r.ContentLength = 0
		}
		return &r
	}
}

func get(q string) func() *http.Request {
	return reqBuilder(http.MethodGet, "/api/orders", q, http.Header{"Accept": {"application/json"}}, "")
}

func getWith(name string, values ...string) func() *http.Request {
	return reqBuilder(http.MethodGet, "/api/orders", "", http.Header{name: values}, "")
}

func post(path, ct, body string) func() *http.Request {
	return reqBuilder(http.MethodPost, path, "", http.Header{"Content-Type": {ct}}, body)
}

const (
	formCT = "application/x-www-form-urlencoded"
	jsonCT = "application/json"
	mpB    = "XyZzY0boundary"
	mpCT   = "multipart/form-data; boundary=" + mpB
)

// queryValue is "access_token=" + a value filling the rest of worstLineBytes.
func queryValue(name, unit string) string {
	return name + "=" + fill(unit, worstLineBytes-len(name)-1)
}

// manyParams joins n parameters made by one(i) with '&'.
func manyParams(n int, one func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = one(i)
	}
	return strings.Join(parts, "&")
}

// multipartOf wraps parts (each "headers\r\n\r\nbody") with the boundary.
func multipartOf(parts []string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--" + mpB + "\r\n" + p + "\r\n")
	}
	b.WriteString("--" + mpB + "--\r\n")
	return b.String()
}

// multipartFill adds copies of part until the body would exceed n bytes.
func multipartFill(part string, n int) string {
	one := len("--"+mpB+"\r\n") + len(part) + 2
	k := (n - len("--"+mpB+"--\r\n")) / one
	parts := make([]string, k)
	for i := range parts {
		parts[i] = part
	}
	return multipartOf(parts)
}

// lineCases are the query string and header inputs of about L bytes (tag names the
// size): the 1 MB Go's net/http takes, and the limits the plugin may set itself.
func lineCases(L int, tag string) []worstCase {
	tokenChars := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
	return []worstCase{
		// Query strings (GET /api/orders?...).
		{name: "query/plus-" + tag, mk: get(queryValueN(L, "access_token", "+"))},
		{name: "query/pct-" + tag, mk: get(queryValueN(L, "access_token", "%"))},
		{name: "query/pct2-" + tag, mk: get(queryValueN(L, "access_token", "%2"))},
		{name: "query/pct20-" + tag, mk: get(queryValueN(L, "access_token", "%20"))},
		{name: "query/pct09-" + tag, mk: get(queryValueN(L, "access_token", "%09"))},
		{name: "query/pctE3-8080-" + tag, mk: get(queryValueN(L, "access_token", "%E3%80%80"))},
		{name: "query/pctC3A9-" + tag, mk: get(queryValueN(L, "access_token", "%C3%A9"))},
		{name: "query/space-raw-" + tag, mk: get(queryValueN(L, "access_token", " "))},
		{name: "query/eacute-raw-" + tag, mk: get(queryValueN(L, "access_token", "é"))},
		{name: "query/u3000-raw-" + tag, mk: get(queryValueN(L, "access_token", "\u3000"))},
		{name: "query/plain-" + tag, mk: get(queryValueN(L, "access_token", "A"))},
		{name: "query/plain-no-token-" + tag, mk: get("q=" + fill("a", L-2))},
		{name: "query/longkeys-plus-" + tag, mk: get(paramsFilling(L, "", "+", 12))},
		{name: "query/longkeys-pct-" + tag, mk: get(paramsFilling(L, "", "%61", 12))},
		{name: "query/token-plus-" + tag, mk: get(paramsFilling(L, "access_token=", "+", 1))},
		{name: "query/token-pct20-" + tag, mk: get(paramsFilling(L, "access_token=", "%20", 3))},
		{name: "query/token-values-" + tag, mk: get(paramsFilling(L, "access_token=", tokenChars, 1))},
		{name: "query/token-short-" + tag, mk: get(manyParams(min(9999, L/19), func(i int) string { return "access_token=" + strconv.Itoa(i) }))},
		{name: "query/variants-" + tag, mk: get(manyParams(min(9999, L/56), func(i int) string { return variants[i%len(variants)] + "=" + fill("+", 40) }))},
		{name: "query/key-pct61-" + tag, mk: get(fill("%61", L-2) + "=x")},
		{name: "query/key-plus-" + tag, mk: get("access_token" + fill("+", L-14) + "=x")},
		{name: "query/key-plain-" + tag, mk: get("access_token" + fill("x", L-14) + "=x")},
		{name: "query/16k-values-plus-" + tag, mk: get(manyParams(L/(16<<10+14), func(int) string { return "access_token=" + fill("+", 16<<10) }))},

		// Authorization header, about 1 MB.
		{name: "auth/basic-ascii-" + tag, mk: getWith("Authorization", "Basic "+fill("QWxhZGRpbjpvcGVuIHNlc2FtZQ", L-6))},
		{name: "auth/basic-eacute-" + tag, mk: getWith("Authorization", "Basic "+fill("é", L-6))},
		{name: "auth/basic-u3000-" + tag, mk: getWith("Authorization", "Basic "+fill("\u3000", L-6))},
		{name: "auth/basic-nbsp-" + tag, mk: getWith("Authorization", "Basic "+fill("\u00a0", L-6))},
		{name: "auth/basic-spaces-" + tag, mk: getWith("Authorization", "Basic"+fill(" ", L-6)+"x")},
		{name: "auth/basic-tabs-" + tag, mk: getWith("Authorization", "Basic"+fill("\t", L-6)+"x")},
		{name: "auth/words-ascii-" + tag, mk: getWith("Authorization", "Basic "+fill("a ", L-6))},
		{name: "auth/words-eacute-" + tag, mk: getWith("Authorization", "Basic "+fill("é ", L-6))},
		{name: "auth/words-tab-" + tag, mk: getWith("Authorization", "Basic "+fill("a\t", L-6))},
		{name: "auth/words-bearer-" + tag, mk: getWith("Authorization", "Basic "+fill("Bearer ", L-6))},
		{name: "auth/36-words-16k-" + tag, mk: getWith("Authorization", "Basic "+strings.TrimSpace(strings.Repeat(fill("é", min(16<<10, L/36)-2)+" ", 35)))},
		{name: "auth/bearer-tokenchars-" + tag, mk: getWith("Authorization", "Bearer "+fill(tokenChars, L-7))},
		{name: "auth/bearer-spaces-" + tag, mk: getWith("Authorization", "Bearer"+fill(" ", L-7)+"x")},
		{name: "auth/bearer-junk-" + tag, mk: getWith("Authorization", "Bearer "+fill("é", L-7))},
		{name: "auth/nospace-eacute-" + tag, mk: getWith("Authorization", fill("é", L))},
		{name: "auth/2-headers-" + tag, mk: getWith("Authorization", "Basic "+fill("é", L/2), "Basic "+fill("é", L/2))},

		// Cookies and the named header (tokenCookies, tokenHeaders).
		{name: "cookie/many-" + tag, mk: getWith("Cookie", fillWhole("c=1; ", L-16)+"access_token=x")},
		{name: "cookie/token-many-" + tag, mk: getWith("Cookie", strings.TrimSuffix(fillWhole("access_token=x; ", L), "; "))},
		{name: "cookie/token-plus-" + tag, mk: getWith("Cookie", "access_token="+fill("+", L-13))},
		{name: "cookie/token-pct-" + tag, mk: getWith("Cookie", "access_token="+fill("%", L-13))},
		{name: "cookie/token-pct20-" + tag, mk: getWith("Cookie", "access_token="+fill("%20", L-13))},
		{name: "cookie/many-headers-" + tag, mk: getWith("Cookie", strings.Split(strings.TrimSuffix(fillWhole("access_token=x\n", L/4), "\n"), "\n")...)},
		{name: "header/x-auth-spaces-" + tag, mk: getWith("X-Auth-Token", "Bearer"+fill(" ", L-7)+"x")},
		{name: "header/x-auth-eacute-" + tag, mk: getWith("X-Auth-Token", fill("é", L))},
		{name: "header/x-auth-words-" + tag, mk: getWith("X-Auth-Token", "Bearer "+fill("é ", L-7))},
		{name: "header/x-auth-tokenchars-" + tag, mk: getWith("X-Auth-Token", fill(tokenChars, L))},
		{name: "header/x-auth-many-headers-" + tag, mk: getWith("X-Auth-Token", strings.Split(strings.TrimSuffix(fillWhole("x\n", L/16), "\n"), "\n")...)},
	}
}

// queryValueN is name + "=" + a value filling the rest of L bytes.
func queryValueN(L int, name, unit string) string {
	return name + "=" + fill(unit, L-len(name)-1)
}

// paramsFilling is as many parameters prefix+<unit...> (each with at least minFill
// bytes of units, at most 9,999 of them) as fill L bytes with '&' between them.
func paramsFilling(L int, prefix, unit string, minFill int) string {
	n := min(9999, L/(len(prefix)+minFill+1))
	return manyParams(n, func(int) string { return prefix + fill(unit, L/n-len(prefix)-1) })
}

func worstCases() []worstCase {
	L := worstLineBytes
	B := worstBodyBytes
	cases := append(lineCases(worstLineBytes, "1M"), lineCases(worstLimitBytes, "64k")...)
	cases = append(cases, []worstCase{
		{name: "query/9999-params", mk: get(fillWhole("a&", 2*9998) + "access_token=x")},
		{name: "query/9999-semicolons", mk: get(fillWhole("a;", 2*9998) + "access_token=x")},
		// The places that may name the token found at the end of a long string (each
		// place's position is counted from the start).
		{name: "query/16-names-at-end-64k", mk: get("a=" + fill("x", worstLimitBytes-2-16*15) + strings.Repeat("&access_token=x", 16))},
		{name: "query/17-names-at-end-64k", mk: get("a=" + fill("x", worstLimitBytes-2-17*15) + strings.Repeat("&access_token=x", 17))},
		{name: "tokenpath/query-16-names-at-end-1M", mk: reqBuilder(http.MethodGet, worstTokenPath, "a="+fill("x", L-2-16*16)+strings.Repeat("&refresh_token=x", 16), nil, "")},
		{name: "cookie/16-names-at-end-64k", mk: getWith("Cookie", "a="+fill("x", worstLimitBytes-2-16*16)+strings.Repeat("; access_token=x", 16))},
		{name: "json/token-array", mk: post("/api/orders", jsonCT, `{"access_token":[`+strings.TrimSuffix(fillWhole(`"x",`, B-20), ",")+"]}")},
		{name: "json/token-array-16k-strings", mk: post("/api/orders", jsonCT, `{"access_token":[`+strings.TrimSuffix(strings.Repeat(`"`+fill("\\u3000", 16<<10-8)+`",`, 3), ",")+"]}")},
		{name: "multipart/16-token-parts-end", mk: post("/api/orders", mpCT, multipartOf(append(append([]string{}, strings.Split(strings.TrimSuffix(strings.Repeat("\r\n"+fill("x", 400)+"\n", 130), "\n"), "\n")...), strings.Split(strings.TrimSuffix(strings.Repeat("Content-Disposition: form-data; name=access_token\r\n\r\nx\n", 16), "\n"), "\n")...)))},
		// Form bodies at the limit (POST /api/orders).
		{name: "form/plus-64k", mk: post("/api/orders", formCT, "access_token="+fill("+", B-13))},
		{name: "form/pct-64k", mk: post("/api/orders", formCT, "access_token="+fill("%", B-13))},
		{name: "form/pct20-64k", mk: post("/api/orders", formCT, "access_token="+fill("%20", B-13))},
		{name: "form/pctE3-8080-64k", mk: post("/api/orders", formCT, "access_token="+fill("%E3%80%80", B-13))},
		{name: "form/u3000-64k", mk: post("/api/orders", formCT, "access_token="+fill("\u3000", B-13))},
		{name: "form/9999-params", mk: post("/api/orders", formCT, fill(fillWhole("a&", 2*9998)+"access_token=", B))},
		{name: "form/token-params-64k", mk: post("/api/orders", formCT, strings.TrimSuffix(fillWhole("access_token=1&", B), "&"))},
		{name: "form/token-plus-params-64k", mk: post("/api/orders", formCT, manyParams(B/30, func(int) string { return "access_token=" + fill("+", 16) }))},
		{name: "form/longkeys-plus-64k", mk: post("/api/orders", formCT, manyParams(B/100, func(int) string { return fill("+", 99) }))},
		{name: "form/variants-64k", mk: post("/api/orders", formCT, manyParams(B/40, func(i int) string { return variants[i%len(variants)] + "=" + fill("+", 20) }))},
		{name: "form/bom-plus-64k", mk: post("/api/orders", formCT, "\ufeffaccess_token="+fill("+", B-16))},

		// Multipart bodies at the limit.
		{name: "multipart/tiny-parts", mk: post("/api/orders", mpCT, multipartFill("\r\n", B))},
		{name: "multipart/token-parts", mk: post("/api/orders", mpCT, multipartFill("Content-Disposition: form-data; name=access_token\r\n\r\nx", B))},
		{name: "multipart/bad-disposition-parts", mk: post("/api/orders", mpCT, multipartFill("Content-Disposition: form-data; name=x\"\r\n\r\nx", B))},
		{name: "multipart/huge-header", mk: post("/api/orders", mpCT, multipartOf([]string{"Content-Disposition: form-data; name=access_token; x=\"" + fill("é", B-200) + "\"\r\n\r\nx"}))},
		{name: "multipart/many-params", mk: post("/api/orders", mpCT, multipartOf([]string{"Content-Disposition: form-data" + fillWhole("; a=b", B-200) + "; name=access_token\r\n\r\nx"}))},
		{name: "multipart/many-headers", mk: post("/api/orders", mpCT, multipartOf([]string{fillWhole("A: b\r\n", B-200) + "Content-Disposition: form-data; name=access_token\r\n\r\nx"}))},
		{name: "multipart/near-boundaries", mk: post("/api/orders", mpCT, multipartOf([]string{"Content-Disposition: form-data; name=access_token\r\n\r\n" + fillWhole("\r\n--"+mpB[:len(mpB)-1], B-200)}))},
		{name: "multipart/qp-token", mk: post("/api/orders", mpCT, multipartOf([]string{"Content-Disposition: form-data; name=access_token\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + fill("=20", 16<<10)}))},
		{name: "multipart/token-16k-spaces", mk: post("/api/orders", mpCT, multipartFill("Content-Disposition: form-data; name=access_token\r\n\r\n"+fill("\u3000", 16<<10-1)+"x", B))},

		// JSON bodies at the limit (read once the plugin inspects JSON).
		{name: "json/deep-array", mk: post("/api/orders", jsonCT, strings.Repeat("[", B/2)+strings.Repeat("]", B/2))},
		{name: "json/deep-object", mk: post("/api/orders", jsonCT, strings.Repeat(`{"a":`, B/6-1)+"1"+strings.Repeat("}", B/6-1))},
		{name: "json/deep-token-object", mk: post("/api/orders", jsonCT, strings.Repeat(`{"access_token":`, B/17-1)+`"x"`+strings.Repeat("}", B/17-1))},
		{name: "json/many-keys", mk: post("/api/orders", jsonCT, "{"+manyParamsJSON(B/10)+"}")},
		{name: "json/many-keys-and-token", mk: post("/api/orders", jsonCT, `{"access_token":"x",`+manyParamsJSON(B/10-2)+"}")},
		{name: "json/many-token-members", mk: post("/api/orders", jsonCT, "{"+strings.TrimSuffix(fillWhole(`"access_token":"x",`, B-2), ",")+"}")},
		{name: "json/many-arrays", mk: post("/api/orders", jsonCT, "["+strings.TrimSuffix(fillWhole("[],", B-2), ",")+"]")},
		{name: "json/many-objects", mk: post("/api/orders", jsonCT, "["+strings.TrimSuffix(fillWhole(`{"access_token":1},`, B-2), ",")+"]")},
		{name: "json/escapes-string", mk: post("/api/orders", jsonCT, `{"access_token":"`+fill(`\u3000`, B-19)+`"}`)},
		{name: "json/escapes-key", mk: post("/api/orders", jsonCT, `{"`+fill(`\u0061`, B-10)+`":"x"}`)},

		// tokenPath (refresh_token), query and body.
		{name: "tokenpath/query-plus-1M", mk: reqBuilder(http.MethodGet, worstTokenPath, queryValue("refresh_token", "+"), nil, "")},
		{name: "tokenpath/query-9999-token-plus", mk: reqBuilder(http.MethodGet, worstTokenPath, manyParams(9999, func(int) string { return "refresh_token=" + fill("+", L/9999-15) }), nil, "")},
		{name: "tokenpath/form-plus-64k", mk: post(worstTokenPath, formCT, "grant_type=refresh_token&refresh_token="+fill("+", B-39))},
		{name: "tokenpath/form-pct-64k", mk: post(worstTokenPath, formCT, "grant_type=refresh_token&refresh_token="+fill("%", B-39))},
		{name: "tokenpath/form-token-params-64k", mk: post(worstTokenPath, formCT, strings.TrimSuffix(fillWhole("refresh_token=1&", B), "&"))},
		{name: "tokenpath/form-9999-params", mk: post(worstTokenPath, formCT, fill(fillWhole("a&", 2*9998)+"refresh_token=", B))},
		{name: "tokenpath/json-many-keys", mk: post(worstTokenPath, jsonCT, "{"+manyParamsJSON(B/10)+"}")},
		{name: "tokenpath/json-many-keys-and-token", mk: post(worstTokenPath, jsonCT, `{"refresh_token":"x",`+manyParamsJSON(B/10-2)+"}")},
		{name: "tokenpath/json-many-longkeys", mk: post(worstTokenPath, jsonCT, "{"+manyLongKeysJSON(B/24)+"}")},
		{name: "tokenpath/json-token-array", mk: post(worstTokenPath, jsonCT, `{"refresh_token":[`+strings.TrimSuffix(fillWhole(`"x",`, B-20), ",")+"]}")},
		{name: "tokenpath/json-escapes", mk: post(worstTokenPath, jsonCT, `{"refresh_token":"`+fill(`\u3000`, B-20)+`"}`)},
		{name: "tokenpath/json-deep", mk: post(worstTokenPath, jsonCT, `{"a":`+strings.Repeat("[", B/2-4)+strings.Repeat("]", B/2-4)+"}")},
		{name: "tokenpath/path-dots-1M", mk: reqBuilder(http.MethodGet, "/"+fill("./", L-40)+"oauth/token", "page=2", nil, "")},

		// The revocation endpoint (local mode answers it; unauthenticated).
		{name: "revoke/form-9999-keys", mk: post(revokePath, formCT, manyParams(9999, func(i int) string { return "k" + strconv.Itoa(i) }))},
		{name: "revoke/many-auth-headers", mk: reqBuilder(http.MethodPost, revokePath, "", http.Header{"Content-Type": {formCT}, "Authorization": strings.Split(strings.TrimSuffix(fillWhole("x\n", L/18*2), "\n"), "\n")}, "token=x")},
		{name: "revoke/basic-1M", mk: reqBuilder(http.MethodPost, revokePath, "", http.Header{"Content-Type": {formCT}, "Authorization": {"Basic " + fill("QWxhZGRpbjpvcGVuIHNlc2FtZQ", L-6)}}, "token=x")},

		// The back-channel logout receiver: what the gateway reads of a logout token
		// before its signature is checked.
		{name: "logout/payload-many-members", mk: post(worstLogoutPath, formCT, "logout_token="+worstJWS(`{"alg":"ES256","kid":"k"}`, `{"iss":"`+worstIssuer+`",`+strings.Join(jsonMembers(3800, func(i int) string { return `"m` + strconv.Itoa(i) + `":0` }), ",")+`}`))},
		{name: "logout/payload-aud-array", mk: post(worstLogoutPath, formCT, "logout_token="+worstJWS(`{"alg":"ES256","kid":"k"}`, `{"iss":"`+worstIssuer+`","aud":[`+strings.TrimSuffix(strings.Repeat(`"a",`, 11500), ",")+`]}`))},
		{name: "logout/header-many-members", mk: post(worstLogoutPath, formCT, "logout_token="+worstJWS(`{"alg":"ES256",`+strings.Join(jsonMembers(3800, func(i int) string { return `"h` + strconv.Itoa(i) + `":0` }), ",")+`}`, `{"iss":"`+worstIssuer+`"}`))},

		// Forward mode (revokeMode: forward), the revocation endpoint's query string.
		{name: "forward/query-500k-params", forward: true, mk: reqBuilder(http.MethodPost, revokePath, fillWhole("a&", L), http.Header{"Content-Type": {formCT}}, "token=x")},
		{name: "forward/query-key-plus-1M", forward: true, mk: reqBuilder(http.MethodPost, revokePath, fill("+", L), http.Header{"Content-Type": {formCT}}, "token=x")},
		{name: "forward/form-9999-keys", forward: true, mk: post(revokePath, formCT, manyParams(9999, func(i int) string { return "k" + strconv.Itoa(i) }))},
	}...)
	return cases
}

// manyParamsJSON lists n distinct members "k<i>":0.
func manyParamsJSON(n int) string {
	return strings.Join(jsonMembers(n, func(i int) string { return `"k` + strconv.Itoa(i) + `":0` }), ",")
}

// manyLongKeysJSON lists n distinct members whose names are long enough for every
// name check (refresh_token length and over).
func manyLongKeysJSON(n int) string {
	return strings.Join(jsonMembers(n, func(i int) string { return `"refresh_tokex` + strconv.Itoa(i) + `":0` }), ",")
}

// worstJWS is a JWS compact token with this header and payload and a dummy signature.
func worstJWS(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + enc(make([]byte, 64))
}

func jsonMembers(n int, one func(i int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = one(i)
	}
	return out
}

// BenchmarkYaegiWorst runs the baselines, then every worst input, against the same two
// middlewares (see the comment at the top of this file).
func BenchmarkYaegiWorst(b *testing.B) {
	local, forward := worstHandlers(b)
	b.Run("baseline/bearer", func(b *testing.B) { runBaseline(b, local, 0) })
	b.Run("baseline/query", func(b *testing.B) { runBaseline(b, local, 1) })
	b.Run("baseline/mixed", func(b *testing.B) { runBaseline(b, local, -1) })
	for _, c := range worstCases() {
		h := local
		if c.forward {
			h = forward
		}
		b.Run(c.name, func(b *testing.B) { runWorst(b, local, h, c.mk) })
	}
}

// runBaseline serves baseline requests: kind 0 bearer, 1 query, -1 alternating.
func runBaseline(b *testing.B, h http.Handler, kind int) {
	reqs := make([]*http.Request, 0, 256)
	var took time.Duration
	var w statusWriter
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		n := min(256, b.N-done)
		reqs = reqs[:0]
		for i := 0; i < n; i++ {
			k := kind
			if k < 0 {
				k = (done + i) % 2
			}
			reqs = append(reqs, baselineRequest(k))
		}
		b.StartTimer()
		t0 := time.Now()
		for _, r := range reqs {
			w = statusWriter{h: http.Header{}}
			h.ServeHTTP(&w, r)
		}
		took += time.Since(t0)
		done += n
	}
	b.StopTimer()
	if w.code != 0 && w.code != http.StatusOK {
		b.Fatalf("a baseline request was answered %d", w.code)
	}
	b.ReportMetric(float64(took.Nanoseconds())/float64(b.N), "base-ns/req")
}

// runWorst serves mk's request through h, each followed by baseline requests through
// base (worstPairs of them, or more after a slow worst request: as many as take about
// half its time, up to 256, so that the garbage it leaves weighs little on their mean),
// and reports the metrics described at the top of the file.
func runWorst(b *testing.B, base, h http.Handler, mk func() *http.Request) {
	var tw, tb time.Duration
	nb := 0
	status := 0
	reqs := make([]*http.Request, 0, 256)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := mk()
		w := statusWriter{h: http.Header{}}
		t0 := time.Now()
		h.ServeHTTP(&w, req)
		d := time.Since(t0)
		tw += d
		if w.code == 0 {
			w.code = 200
		}
		status = w.code
		b.StopTimer()
		k := min(max(worstPairs, int(d/(200*time.Microsecond))), 256)
		reqs = reqs[:0]
		for j := 0; j < k; j++ {
			reqs = append(reqs, baselineRequest(j))
		}
		b.StartTimer()
		t1 := time.Now()
		for _, r := range reqs {
			bw := statusWriter{h: http.Header{}}
			base.ServeHTTP(&bw, r)
		}
		tb += time.Since(t1)
		nb += k
	}
	b.StopTimer()
	worst := float64(tw.Nanoseconds()) / float64(b.N)
	baseNs := float64(tb.Nanoseconds()) / float64(nb)
	b.ReportMetric(worst, "worst-ns/req")
	b.ReportMetric(baseNs, "base-ns/req")
	b.ReportMetric(worst/baseNs, "x-base")
	b.ReportMetric(float64(status), "status")
}

// TestWorstCasesFit checks that every worst input is the size it claims: bodies at most
// the default maxBodyCheck, query strings and header values at most worstLineBytes
// (plus a name), so that none is refused for its size alone.
func TestWorstCasesFit(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range worstCases() {
		if seen[c.name] {
			t.Errorf("%s: two cases of that name", c.name)
		}
		seen[c.name] = true
		r := c.mk()
		if r.ContentLength > worstBodyBytes {
			t.Errorf("%s: body of %d bytes, over %d", c.name, r.ContentLength, worstBodyBytes)
		}
		line := len(r.URL.Path) + len(r.URL.RawQuery)
		for k, vs := range r.Header {
			for _, v := range vs {
				line += len(k) + len(v) + 4
			}
		}
		if line > worstLineBytes+32<<10 {
			t.Errorf("%s: request line and headers of %d bytes", c.name, line)
		}
		if r.ContentLength > 0 {
			body, _ := io.ReadAll(r.Body)
			if int64(len(body)) != r.ContentLength {
				t.Errorf("%s: body %d bytes, ContentLength %d", c.name, len(body), r.ContentLength)
			}
		}
		t.Logf("%-36s line+headers %7d  body %6d", c.name, line, r.ContentLength)
	}
}
