package propagation

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// fillStream creates stream REVOCATIONS as the plugin would and publishes n
// revocations into it with nats.go, asynchronously: tokens sync-token-0 ... -<n-1>.
func fillStream(tb testing.TB, url string, n int) {
	tb.Helper()
	fillStreamFrom(tb, url, 0, n)
}

// fillStreamFrom is fillStream for tokens sync-token-<from> ... -<from+n-1>.
func fillStreamFrom(tb testing.TB, url string, from, n int) {
	tb.Helper()
	exp := time.Now().Add(time.Hour).Unix()
	now := time.Now().UTC().Format(time.RFC3339)
	publishToStream(tb, url, n, func(i int) *nats.Msg {
		s := sha256.Sum256([]byte("sync-token-" + strconv.Itoa(from+i)))
		h := hex.EncodeToString(s[:])
		m := nats.NewMsg("tokens.revoked." + h)
		m.Data = []byte(fmt.Sprintf(`{"v":1,"sha256":"%s","exp":%d,"revokedAt":"%s","origin":"bench"}`, h, exp, now))
		return m
	})
}

// publishToStream creates the REVOCATIONS stream (as gateways configure it) and
// publishes msg(0) ... msg(n-1) to it, each with a Nats-TTL of an hour, asynchronously.
func publishToStream(tb testing.TB, url string, n int, msg func(i int) *nats.Msg) {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(4096))
	if err != nil {
		tb.Fatal(err)
	}
	_, err = js.AddStream(&nats.StreamConfig{
		Name: "REVOCATIONS", Subjects: []string{"tokens.revoked.>"}, Storage: nats.FileStorage,
		Replicas: 1, MaxMsgsPerSubject: 1, AllowMsgTTL: true, Retention: nats.LimitsPolicy, Discard: nats.DiscardOld,
	})
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < n; i++ {
		m := msg(i)
		m.Header.Set("Nats-TTL", "3600s")
		_, err := js.PublishMsgAsync(m)
		for retry := 0; err == nats.ErrTooManyStalledMsgs && retry < 100; retry++ {
			// A loaded machine: let the outstanding publishes drain, then go on.
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(5 * time.Second):
			}
			_, err = js.PublishMsgAsync(m)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		tb.Fatal("publishing did not complete")
	}
}

// syncN is the stream size of the sync benchmarks: SYNC_N, default 100000.
func syncN() int {
	if v := os.Getenv("SYNC_N"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return 100000
}

// BenchmarkYaegiSync measures how long a fresh gateway (the plugin in its own yaegi
// interpreter) takes to replay SYNC_N revocations (default 100000) from the stream, and
// the heap it holds afterwards.
func BenchmarkYaegiSync(b *testing.B) {
	n := syncN()
	srv := harness.StartNATS(b, harness.NATSOptions{JetStream: true})
	fillStream(b, srv.URL, n)
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		cfg := natsConfig([]string{srv.URL}, fmt.Sprintf("gw-sync-%d", i), map[string]interface{}{"stream": "REVOCATIONS"})
		cfg["cacheSize"] = n + 10
		g := newGateway(b, cfg)
		want := fmt.Sprintf(`"entries":%d,`, n)
		for {
			st := g.status()
			if strings.Contains(st, want) && strings.Contains(st, `"synced":true`) {
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("not synced: %s", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(took.Seconds(), "s/sync")
		b.ReportMetric(float64(took.Nanoseconds())/float64(n), "ns/revocation")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-bytes/entry")
		runtime.KeepAlive(g)
	}
}

// BenchmarkYaegiSyncFromSnapshot measures a fresh gateway joining a running one: the
// stream holds SYNC_N revocations (default 100000), a first gateway replays them all and
// writes a snapshot, then each iteration starts another gateway, which loads the
// snapshot and replays only what follows it. Reported: time to synced, and the first
// gateway's full replay for comparison.
func BenchmarkYaegiSyncFromSnapshot(b *testing.B) {
	n := syncN()
	srv := harness.StartNATS(b, harness.NATSOptions{JetStream: true})
	fillStream(b, srv.URL, n)
	extra := map[string]interface{}{"stream": "REVOCATIONS", "snapshotEvery": 1000}
	cfg := natsConfig([]string{srv.URL}, "gw-first", extra)
	cfg["cacheSize"] = n + 10
	start := time.Now()
	first := newGateway(b, cfg)
	want := fmt.Sprintf(`"entries":%d,`, n)
	waitFor := func(g *gateway, cond string) {
		for {
			st := g.status()
			if strings.Contains(st, want) && strings.Contains(st, `"synced":true`) && strings.Contains(st, cond) {
				return
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("not synced: %s", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(first, `"writtenSequence":`)
	full := time.Since(start)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start = time.Now()
		c := natsConfig([]string{srv.URL}, fmt.Sprintf("gw-join-%d", i), extra)
		c["cacheSize"] = n + 10
		g := newGateway(b, c)
		waitFor(g, `"loadedSequence":`)
		took := time.Since(start)
		for _, line := range strings.Split(g.logged(), "\n") {
			if strings.Contains(line, "snapshot") || strings.Contains(line, "synced") {
				b.Log(line)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(took.Seconds(), "s/sync")
		b.ReportMetric(float64(took.Nanoseconds())/float64(n), "ns/revocation")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-bytes/entry")
		b.ReportMetric(full.Seconds(), "s/first-gateway-full-replay+snapshot")
		runtime.KeepAlive(g)
	}
}
