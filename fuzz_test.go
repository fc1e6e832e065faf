package tokenrevoke

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
			allowed := map[int]bool{200: true, 400: true, 401: true, 405: true, 413: true, 500: true}
			if path != testRevokePath {
				allowed = map[int]bool{http.StatusTeapot: true, 401: true}
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
