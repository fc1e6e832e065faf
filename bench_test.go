package tokenrevoke

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Native counterparts of the yaegi benchmarks in e2e/yaegiload (see BENCHMARKS.md).

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

var benchToken = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + strings.Repeat("eyJzdWIiOiIxMjM0NTY3ODkwIiwic2NvcGUiOiJvcmRlcnMifQ", 3) + "." + strings.Repeat("SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", 2)

type passThrough struct{ next http.Handler }

func (p *passThrough) ServeHTTP(rw http.ResponseWriter, req *http.Request) { p.next.ServeHTTP(rw, req) }

func fillSynthetic(s *tokenCache, n int) {
	now := time.Now().Unix()
	var k [32]byte
	k[31] = 0xAB
	for i := 0; i < n; i++ {
		k[0], k[1], k[2], k[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		s.add(k, now+86400, now)
	}
}

func benchServe(b *testing.B, h http.Handler) {
	req, _ := http.NewRequest(http.MethodGet, "http://gw/api/orders", nil)
	req.Header.Set("Authorization", "Bearer "+benchToken)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ServeHTTP(w, req)
	}
}

func benchMiddleware(b *testing.B, entries int) *Middleware {
	m, _ := newTestMiddleware(b, func(c *Config) { c.CacheSize = entries + 10 })
	m.next = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	fillSynthetic(m.cache, entries)
	return m
}

func BenchmarkNativePassThrough(b *testing.B) {
	benchServe(b, &passThrough{next: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})})
}

func BenchmarkNativeTokenrevoke0(b *testing.B)  { benchServe(b, benchMiddleware(b, 0)) }
func BenchmarkNativeTokenrevoke1M(b *testing.B) { benchServe(b, benchMiddleware(b, 1000000)) }

func BenchmarkNativeMemoryPerEntry(b *testing.B) {
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := newTokenCache(1000000, newLogger("bench"))
		start := time.Now()
		fillSynthetic(s, 1000000)
		took := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "bytes/entry")
		b.ReportMetric(float64(took.Nanoseconds())/1e6, "ns/insert")
		runtime.KeepAlive(s)
	}
}
