package tokenrevoke

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRequests throws arbitrary bodies, Authorization headers, content types and query
// strings at the revoke endpoint and at the enforcement path. Nothing may panic, every
// answer must be one of the documented ones, and every error must be the documented JSON.
//
//	go test -run '^$' -fuzz FuzzRequests -fuzztime 3m .
func FuzzRequests(f *testing.F) {
	f.Add("token=abc&token_type_hint=access_token", "Basic cG9ydGFsOnMzY3JldA==", "application/x-www-form-urlencoded", "", "POST")
	f.Add("token=a.b.c&client_id=portal&client_secret=s3cret", "", "application/x-www-form-urlencoded; charset=utf-8", "x=1", "POST")
	f.Add("token=%zz", "Basic !!", "text/plain", "access_token=abc", "GET")
	f.Add("token="+strings.Repeat("A", 100), "Bearer eyJhbGciOiJub25lIn0.eyJleHAiOjE5MDAwMDAwMDB9.", "", "", "PATCH")
	f.Add("token=eyJhbGciOiJub25lIn0.eyJleHAiOiJ4In0.x", "bearer   abc", "application/x-www-form-urlencoded;;", "access_token=", "POST")
	m, _ := newTestMiddleware(f, nil)
	f.Fuzz(func(t *testing.T, body, auth, contentType, query, method string) {
		if !validMethod(method) {
			method = http.MethodPost
		}
		for _, path := range []string{testRevokePath, "/api/orders"} {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Method = method
			req.URL.Path = path
			req.URL.RawQuery = query
			req.Body = httpBody(body)
			req.ContentLength = int64(len(body))
			if auth != "" {
				req.Header["Authorization"] = []string{auth}
			}
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			rec := httptest.NewRecorder()
			m.ServeHTTP(rec, req)
			// 429: the fuzzer revokes faster than the client's ratePerMinute.
			allowed := map[int]bool{200: true, 400: true, 401: true, 405: true, 413: true, 429: true, 500: true}
			if path != testRevokePath {
				// Passed on (418 from the test backend), revoked (401), refused as
				// ambiguous or malformed (400), or a form body over maxBodyCheck (413), a query or token header over it (414, 431).
				allowed = map[int]bool{http.StatusTeapot: true, 400: true, 401: true, 413: true, 414: true, 431: true}
			}
			if !allowed[rec.Code] {
				t.Fatalf("%s %s: undocumented status %d", method, path, rec.Code)
			}
			if rec.Code >= 400 && rec.Code != http.StatusTeapot {
				var e map[string]interface{}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || len(e) != 2 || e["error"] == nil || e["errorDescription"] == nil {
					t.Fatalf("%s %s: error body %q", method, path, rec.Body.String())
				}
			}
		}
	})
}

// qsLikeTokens reads the access_token values of a query or form body the way Node's qs
// (Express 4's query parser, body-parser's extended urlencoded) does: pairs split at
// '&', each component decoded with '+' as a space and decodeURIComponent, or left as
// it is (with only '+' replaced) when one of its escapes does not decode; a key's root
// is what precedes its first bracket, or the first bracket's content when it starts
// with one ("[access_token]").
func qsLikeTokens(raw string) []string {
	decode := func(s string) string {
		s = strings.ReplaceAll(s, "+", " ")
		if d, err := url.PathUnescape(s); err == nil && utf8.ValidString(d) {
			return d
		}
		return s
	}
	var out []string
	for _, pair := range strings.Split(raw, "&") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			continue
		}
		key := decode(k)
		root := key
		if i := strings.IndexByte(key, '['); i == 0 {
			if j := strings.IndexByte(key, ']'); j > 0 && !strings.ContainsAny(key[1:j], "[") {
				root = key[1:j]
			}
		} else if i > 0 && strings.IndexByte(key[i:], ']') > 0 {
			root = key[:i]
		}
		if root == "access_token" {
			out = append(out, decode(v))
		}
	}
	return out
}

func validMethod(m string) bool {
	if m == "" || len(m) > 10 {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

type stringBody struct{ *strings.Reader }

func (stringBody) Close() error { return nil }

func httpBody(s string) stringBody { return stringBody{strings.NewReader(s)} }

// FuzzBypassDifferential sends random requests that may carry a revoked token and asks
// reference extractors, written the ways backends read tokens, what they would find:
// Go's r.FormValue (query and form or multipart body), Go's query parser without a
// parameter limit, qs (Express's query and extended form parser: bracket names,
// undecoded components), a JSON body's access_token member (passport-http-bearer),
// strings.Fields on the Authorization header, a split on its first
// space (Node's split(' ')[1]), and TrimPrefix("Bearer "). Whenever one of them finds a
// revoked token, the gateway must not have passed the request to the backend.
//
//	go test -run '^$' -fuzz FuzzBypassDifferential -fuzztime 5m .
func FuzzBypassDifferential(f *testing.F) {
	const jws = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"
	revoked := []string{"R1", jws}
	for _, seed := range [][5]string{
		{"Bearer R1", "", "", "", "GET"},
		{"Bearer\tR1", "", "", "", "GET"},
		{"Bearer R1 x", "", "", "", "GET"},
		{"Token R1", "", "", "", "GET"},
		{"", "access%5Ftoken=R1", "", "", "GET"},
		{"", "a=1;access_token=R1", "", "", "GET"},
		{"", "", "access_token=R1", "application/x-www-form-urlencoded", "POST"},
		{"", "", "--B\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\nR1\r\n--B--\r\n", "multipart/form-data; boundary=B", "PUT"},
		{"Bearer " + jws + "x", "", "", "", "GET"},
		{"", "access_token=" + jws + "%3D%3D", "", "", "GET"},
		{"", "[access_token]=R1", "", "", "GET"},
		{"", "%5Baccess_token%5D=R1%zz", "", "", "GET"},
		{"", "", "\ufeffaccess_token=R1", "application/x-www-form-urlencoded", "POST"},
		{"", "", `{"access_token":"R1"}`, "application/json", "POST"},
		{"", "", `{"access_token":"R1"}`, "", "PUT"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4])
	}
	m, b := newTestMiddleware(f, func(c *Config) { c.Clients[0].RatePerMinute = -1 })
	for _, tok := range revoked {
		if rec := serve(m, revokeReq("token="+url.QueryEscape(tok), basic("portal", "s3cret"))); rec.Code != http.StatusOK {
			f.Fatalf("revoke %q: %d", tok, rec.Code)
		}
	}
	isRevoked := func(tok string) bool {
		k, _ := tokenKey(tok)
		for _, r := range revoked {
			if rk, _ := tokenKey(r); rk == k {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, auth, query, body, contentType, method string) {
		if !validMethod(method) {
			method = http.MethodGet
		}
		mk := func() *http.Request {
			req := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
			req.Method = method
			req.URL.RawQuery = query
			if body != "" {
				req.Body = httpBody(body)
				req.ContentLength = int64(len(body))
			}
			if auth != "" {
				req.Header["Authorization"] = []string{auth}
			}
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			return req
		}
		var found []string
		if r := mk(); true {
			if v := r.FormValue("access_token"); v != "" {
				found = append(found, v)
			}
			if r.MultipartForm != nil {
				found = append(found, r.MultipartForm.Value["access_token"]...)
			}
			found = append(found, r.Form["access_token"]...)
		}
		for _, pair := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(pair, "=")
			if uk, err := url.QueryUnescape(k); err == nil && uk == "access_token" {
				if uv, err := url.QueryUnescape(v); err == nil {
					found = append(found, uv)
				}
			}
		}
		found = append(found, qsLikeTokens(query)...)
		if strings.Contains(strings.ToLower(contentType), "x-www-form-urlencoded") {
			found = append(found, qsLikeTokens(strings.TrimPrefix(body, "\ufeff"))...)
		}
		var obj map[string]interface{}
		if json.Unmarshal([]byte(strings.TrimPrefix(body, "\ufeff")), &obj) == nil {
			if s, ok := obj["access_token"].(string); ok {
				found = append(found, s) // passport-http-bearer's req.body.access_token
			}
		}
		if fields := strings.Fields(auth); len(fields) > 1 {
			found = append(found, fields[1])
		}
		if _, rest, ok := strings.Cut(auth, " "); ok {
			found = append(found, rest, strings.Split(rest, " ")[0])
		}
		found = append(found, strings.TrimPrefix(auth, "Bearer "))
		hit := ""
		for _, tok := range found {
			if isRevoked(tok) {
				hit = tok
			}
		}
		before := b.count()
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, mk())
		if hit != "" && b.count() != before {
			t.Fatalf("a reference extractor found revoked token %q, yet the gateway passed the request (auth %q, query %q, body %q, type %q)", hit, auth, query, body, contentType)
		}
		if rec.Code != http.StatusTeapot && rec.Code != 400 && rec.Code != 401 && rec.Code != 413 && rec.Code != 414 && rec.Code != 431 {
			t.Fatalf("undocumented status %d", rec.Code)
		}
	})
}
