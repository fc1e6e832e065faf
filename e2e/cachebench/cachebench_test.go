// Package cachebench compares, under yaegi v0.16.1, the store designs considered for the
// revoked-token cache: golang-lru v1 (golang-lru/v2 cannot run in Traefik at all), the
// textbook map + container/list LRU, and the plugin's own slot-based store. The numbers
// behind the design note in cache.go and BENCHMARKS.md come from here.
package cachebench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenrevoke/tokenrevoke/e2e/yaegiload"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

// moduleDir downloads a module through the Go module proxy and returns its directory.
func moduleDir(tb testing.TB, mod string) string {
	out, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	if err != nil {
		tb.Fatalf("go mod download %s: %v", mod, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		tb.Fatalf("go mod download %s: %s", mod, out)
	}
	return info.Dir
}

func BenchmarkCacheCandidates(b *testing.B) {
	n := 1000000
	if v := os.Getenv("CACHE_N"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	const probes = 200000
	token := "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + strings.Repeat("x", 250)

	gopath := b.TempDir()
	if err := exec.Command("cp", "-r", filepath.Join(yaegiload.RepoRoot(), "e2e", "testdata", "cachecandidates", "src"), gopath).Run(); err != nil {
		b.Fatal(err)
	}
	lruDst := filepath.Join(gopath, "src", "github.com", "hashicorp", "golang-lru")
	if err := os.MkdirAll(filepath.Dir(lruDst), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := exec.Command("cp", "-r", moduleDir(b, "github.com/hashicorp/golang-lru@v1.0.2"), lruDst).Run(); err != nil {
		b.Fatal(err)
	}
	_ = exec.Command("chmod", "-R", "u+w", gopath).Run()
	if err := yaegiload.CopyPlugin(yaegiload.RepoRoot(), gopath); err != nil {
		b.Fatal(err)
	}
	i := interp.New(interp.Options{GoPath: gopath})
	if err := i.Use(stdlib.Symbols); err != nil {
		b.Fatal(err)
	}
	for _, imp := range []string{"example.com/lrubench", yaegiload.Module, "crypto/sha256", "time"} {
		if _, err := i.Eval(fmt.Sprintf("import %q", imp)); err != nil {
			b.Fatalf("import %s: %v", imp, err)
		}
	}
	// The plugin's store, probed exactly as ServeHTTP does.
	if _, err := i.Eval(`
func storeBench(n, probes int, token string) lrubench.Result {
	s := tokenrevoke.newTokenCache(n, nil)
	now := time.Now().Unix()
	var k [32]byte
	k[31] = 0xAB
	t0 := time.Now()
	for i := 0; i < n; i++ {
		k[0], k[1], k[2], k[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		s.add(k, now+3600, now)
	}
	ins := float64(time.Since(t0).Nanoseconds()) / float64(n)
	t0 = time.Now()
	for i := 0; i < probes; i++ {
		s.mu.RLock()
		_, found := s.index[sha256.Sum256([]byte(token))]
		s.mu.RUnlock()
		if found {
			panic("unexpected hit")
		}
	}
	return lrubench.Result{InsertNs: ins, MissNs: float64(time.Since(t0).Nanoseconds()) / float64(probes), Keep: s}
}`); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, fn string }{
		{"golang-lru-v1", "lrubench.GolangLRU"},
		{"map+container/list", "lrubench.ListLRU"},
		{"tokenrevoke-store", "storeBench"},
	} {
		b.Run(c.name, func(b *testing.B) {
			fn, err := i.Eval(c.fn)
			if err != nil {
				b.Fatal(err)
			}
			for j := 0; j < b.N; j++ {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				out := fn.Call([]reflect.Value{reflect.ValueOf(n), reflect.ValueOf(probes), reflect.ValueOf(token)})
				runtime.GC()
				runtime.ReadMemStats(&after)
				res := out[0]
				b.ReportMetric(res.FieldByName("InsertNs").Float(), "ns/insert")
				b.ReportMetric(res.FieldByName("MissNs").Float(), "ns/miss-check")
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "bytes/entry")
				runtime.KeepAlive(out)
			}
		})
	}
}
