package yaegiload

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The plugin's own cost of the forward-mode and tokenPath paths under yaegi, without
// NATS, called from compiled code as Traefik calls it; next is a compiled handler that
// answers like a provider (200, empty body, two headers). One op is one request.
//
//	cd e2e && go test -run '^$' -bench 'YaegiForward|YaegiLocalRevoke|YaegiRefresh' ./yaegiload/

const benchTokenPath = "/token"

var providerNext = http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	rw.Header().Set("Cache-Control", "no-store")
	rw.Header().Set("Pragma", "no-cache")
	rw.WriteHeader(http.StatusOK)
})

func forwardBenchHandler(b *testing.B, forward bool) http.Handler {
	b.Helper()
	p := loadPlugin(b)
	cfg := yamlConfig()
	cfg["clients"] = []interface{}{map[string]interface{}{"id": "rp", "secret": "rp-secret", "ratePerMinute": -1}}
	cfg["tokenPath"] = benchTokenPath
	if forward {
		cfg["revokeMode"] = "forward"
	}
	h, err := p.New(context.Background(), providerNext, cfg, "bench")
	if err != nil {
		b.Fatal(err)
	}
	return h
}

func runPosts(b *testing.B, h http.Handler, path, form, auth string) {
	req, _ := http.NewRequest(http.MethodPost, "http://gw"+path, nil)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", auth)
	req.ContentLength = int64(len(form))
	w := &nopWriter{h: http.Header{}}
	if rec := do(h, func() *http.Request {
		r := req.Clone(context.Background())
		r.Body = io.NopCloser(strings.NewReader(form))
		return r
	}()); rec.Code != http.StatusOK {
		b.Fatalf("%s: %d %s", path, rec.Code, rec.Body.String())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.Body = io.NopCloser(strings.NewReader(form))
		h.ServeHTTP(w, req)
	}
}

// BenchmarkYaegiForwardRevoke: a revocation forwarded to next, its 200 held, the token
// stored (the same token each time), the 200 relayed.
func BenchmarkYaegiForwardRevoke(b *testing.B) {
	runPosts(b, forwardBenchHandler(b, true), revokePath, "token="+benchToken+"&token_type_hint=access_token", basicAuth("rp", "rp-secret"))
}

// BenchmarkYaegiLocalRevoke: the same revocation answered by the plugin (local mode).
func BenchmarkYaegiLocalRevoke(b *testing.B) {
	runPosts(b, forwardBenchHandler(b, false), revokePath, "token="+benchToken+"&token_type_hint=access_token", basicAuth("rp", "rp-secret"))
}

// BenchmarkYaegiRefreshCheck: a refresh grant (not revoked) at tokenPath, read and
// passed on.
func BenchmarkYaegiRefreshCheck(b *testing.B) {
	runPosts(b, forwardBenchHandler(b, true), benchTokenPath, "grant_type=refresh_token&refresh_token=Xr3fKq9vQw2sZ8LmN4pT7yUe1aB6cD0gH5jK2lM9nOp", basicAuth("rp", "rp-secret"))
}

// BenchmarkYaegiRefreshOtherPath: the same request to another path (no refresh check,
// the usual inspection only), the baseline of BenchmarkYaegiRefreshCheck.
func BenchmarkYaegiRefreshOtherPath(b *testing.B) {
	runPosts(b, forwardBenchHandler(b, true), "/other", "grant_type=refresh_token&refresh_token=Xr3fKq9vQw2sZ8LmN4pT7yUe1aB6cD0gH5jK2lM9nOp", basicAuth("rp", "rp-secret"))
}
