package yaegiload

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// The request-path benchmarks call the interpreted handler from compiled code through
// the http.Handler interface, exactly as Traefik does, with a compiled no-op next
// handler, so the difference between two benchmarks is the plugin's own cost.

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

var nopNext = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// benchToken is shaped like a typical RS256 access token (~300 bytes).
var benchToken = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + strings.Repeat("eyJzdWIiOiIxMjM0NTY3ODkwIiwic2NvcGUiOiJvcmRlcnMifQ", 3) + "." + strings.Repeat("SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", 2)

func benchRequest() *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://gw/api/orders", nil)
	req.Header.Set("Authorization", "Bearer "+benchToken)
	req.Header.Set("Accept", "application/json")
	return req
}

func runHandler(b *testing.B, h http.Handler) {
	req := benchRequest()
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ServeHTTP(w, req)
	}
}

func BenchmarkYaegiPassThrough(b *testing.B) { runHandler(b, passThroughHandler(b)) }

// passThroughHandler loads e2e/testdata/passthrough (ServeHTTP only calls next) into its
// own interpreter: the floor for any interpreted middleware.
func passThroughHandler(b *testing.B) http.Handler {
	b.Helper()
	gopath := b.TempDir()
	src := filepath.Join(RepoRoot(), "e2e", "testdata", "passthrough")
	dst := filepath.Join(gopath, "src", "github.com", "tokenrevoke", "passthrough")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := harness.CopyPluginSource(src, dst); err != nil {
		b.Fatal(err)
	}
	p, err := LoadFrom(gopath, "github.com/tokenrevoke/passthrough", "passthrough", Options{})
	if err != nil {
		b.Fatal(err)
	}
	h, err := p.New(context.Background(), nopNext, nil, "floor")
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// fillStore adds n synthetic revoked entries to the process-wide "local" domain of the
// interpreted plugin, with interpreted code (as NATS-received revocations would be).
func fillStore(b testing.TB, p *Plugin, n int) {
	b.Helper()
	if _, err := p.Interp.Eval(`import "time"`); err != nil {
		b.Fatal(err)
	}
	_, err := p.Interp.Eval(`func fillRevoked(n int) int {
	s := tokenrevoke.domains["local"].cache
	now := time.Now().Unix()
	var k [32]byte
	k[31] = 0xAB
	for i := 0; i < n; i++ {
		k[0] = byte(i)
		k[1] = byte(i >> 8)
		k[2] = byte(i >> 16)
		k[3] = byte(i >> 24)
		s.add(k, now+86400, now)
	}
	return s.len()
}`)
	if err != nil {
		b.Fatal(err)
	}
	v, err := p.Interp.Eval(fmt.Sprintf("fillRevoked(%d)", n))
	if err != nil {
		b.Fatal(err)
	}
	if got := v.Int(); got != int64(n) {
		b.Fatalf("store holds %d entries, want %d", got, n)
	}
}

func benchTokenrevoke(b *testing.B, entries int, revoked bool) {
	runHandler(b, tokenrevokeHandler(b, entries, revoked))
}

// tokenrevokeHandler loads the plugin into its own interpreter, fills its store with
// entries synthetic revocations and, if revoked, revokes benchToken.
func tokenrevokeHandler(b *testing.B, entries int, revoked bool) http.Handler {
	b.Helper()
	p := loadPlugin(b)
	cfg := yamlConfig()
	cfg["cacheSize"] = entries + 10
	h, err := p.New(context.Background(), nopNext, cfg, "bench")
	if err != nil {
		b.Fatal(err)
	}
	if entries > 0 {
		fillStore(b, p, entries)
	}
	if revoked {
		rec := do(h, revoke(benchToken, basicAuth("portal", "s3cret"), ""))
		if rec.Code != 200 {
			b.Fatalf("revoke: %d", rec.Code)
		}
	}
	return h
}

func BenchmarkYaegiTokenrevoke0(b *testing.B)         { benchTokenrevoke(b, 0, false) }
func BenchmarkYaegiTokenrevoke1M(b *testing.B)        { benchTokenrevoke(b, 1000000, false) }
func BenchmarkYaegiTokenrevoke1MRevoked(b *testing.B) { benchTokenrevoke(b, 1000000, true) }

// BenchmarkYaegiAdded1M measures what the check adds to a request (non-revoked bearer
// token, 1M entries in the store) over the pass-through plugin, with both interpreters
// in one process and blocks of 1,000 requests through each in turn (the order swapped
// every block), so that both see the same machine load: on a shared machine, separate
// benchmark runs of the two can differ by more than the difference being measured. One
// op is one request through each handler. added-ns/req is the difference of the means,
// added-p50-ns/req the median of the per-block differences (robust to load bursts).
func BenchmarkYaegiAdded1M(b *testing.B) {
	req := benchRequest()
	pairedAdded(b, func() *http.Request { return req })
}

// BenchmarkYaegiAddedFormPost2K is BenchmarkYaegiAdded1M for a POST with a 2 KiB
// urlencoded form body (no access_token in it) and the same bearer header: the cost of
// reading and checking a form body.
func BenchmarkYaegiAddedFormPost2K(b *testing.B) {
	form := "q=" + strings.Repeat("x", 2046)
	req := benchRequest()
	req.Method = http.MethodPost
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.ContentLength = int64(len(form))
	pairedAdded(b, func() *http.Request {
		req.Body = io.NopCloser(strings.NewReader(form))
		return req
	})
}

// pairedAdded runs the paired measurement described at BenchmarkYaegiAdded1M with the
// requests mk returns (called once per request, for both handlers alike).
func pairedAdded(b *testing.B, mk func() *http.Request) {
	pt := passThroughHandler(b)
	tr := tokenrevokeHandler(b, 1000000, false)
	pairedHandlers(b, pt, tr, func(int) *http.Request { return mk() }, "passthrough", "tokenrevoke")
}

// BenchmarkYaegiFill measures interpreted inserts and the heap held per entry at 1M.
func BenchmarkYaegiMemoryPerEntry(b *testing.B) {
	for i := 0; i < b.N; i++ {
		heap, took := heapOfFill(b, "mem", func(p *Plugin) { fillStore(b, p, 1000000) })
		b.ReportMetric(heap/1e6, "bytes/entry")
		b.ReportMetric(float64(took.Nanoseconds())/1e6, "ns/insert")
	}
}

// heapOfFill loads the plugin with a 1M-entry cache and returns the live heap that fill
// adds and how long it took.
func heapOfFill(b *testing.B, name string, fill func(p *Plugin)) (float64, time.Duration) {
	p := loadPlugin(b)
	cfg := yamlConfig()
	cfg["cacheSize"] = 1000000
	if _, err := p.New(context.Background(), nopNext, cfg, name); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	fill(p)
	took := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(p)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc), took
}
