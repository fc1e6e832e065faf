package propagation

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"crypto/sha256"

	"github.com/nats-io/nats.go"
	"github.com/tokenrevoke/tokenrevoke/e2e/gatewaytest"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

func sum(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func TestRevokeOnARejectedOnB(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{})
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", nil))
	b := newGateway(t, natsConfig([]string{srv.URL}, "gw-b", nil))
	a.waitConnected(5 * time.Second)
	b.waitConnected(5 * time.Second)

	if code := b.call("tok-1"); code != 200 {
		t.Fatalf("before revocation B answered %d", code)
	}
	if code := a.revoke("tok-1"); code != 200 {
		t.Fatalf("revoke on A: %d\n%s", code, a.logged())
	}
	if a.call("tok-1") != 401 {
		t.Fatal("A accepts the token it revoked")
	}
	if !b.waitRejected("tok-1", time.Second) {
		t.Fatalf("B still accepts the token 1 s after A revoked it\nB status: %s\nB log: %s", b.status(), b.logged())
	}
	if a.call("tok-2") != 200 || b.call("tok-2") != 200 {
		t.Fatal("another token is rejected")
	}
}

func TestWireFormatWithNatsGo(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{})
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("tokens.revoked.>", msgs); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", nil))
	a.waitConnected(5 * time.Second)
	start := time.Now()
	if code := a.revoke("raw-secret-token"); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	var m *nats.Msg
	select {
	case m = <-msgs:
	case <-time.After(2 * time.Second):
		t.Fatal("nats.go subscriber got nothing")
	}
	if m.Subject != "tokens.revoked."+sum("raw-secret-token") {
		t.Errorf("subject = %s", m.Subject)
	}
	if strings.Contains(string(m.Data), "raw-secret-token") {
		t.Fatal("the raw token was sent over NATS")
	}
	var w map[string]interface{}
	if err := json.Unmarshal(m.Data, &w); err != nil {
		t.Fatalf("body %s: %v", m.Data, err)
	}
	if w["v"] != float64(2) || w["kind"] != "token" || w["key"] != sum("raw-secret-token") || w["origin"] != "gw-a" ||
		w["client"] != gatewaytest.ClientID || w["hint"] != nil && w["hint"] != "" {
		t.Errorf("body = %s", m.Data)
	}
	exp, _ := w["exp"].(float64)
	if d := time.Unix(int64(exp), 0).Sub(start); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("exp %v is not now + defaultTTL (1h)", exp)
	}
	ra, err := time.Parse(time.RFC3339, fmt.Sprint(w["revokedAt"]))
	if err != nil || ra.Before(start.Add(-2*time.Second)) || ra.After(time.Now().Add(time.Second)) {
		t.Errorf("revokedAt = %v", w["revokedAt"])
	}

	// A revocation published by nats.go (as an identity provider would) is enforced.
	tok := "idp-revoked-token"
	body := fmt.Sprintf(`{"v":1,"sha256":"%s","hint":"refresh_token","exp":%d,"revokedAt":"%s","origin":"idp"}`,
		sum(tok), time.Now().Add(time.Hour).Unix(), time.Now().UTC().Format(time.RFC3339))
	if err := nc.Publish("tokens.revoked."+sum(tok), []byte(body)); err != nil {
		t.Fatal(err)
	}
	if !a.waitRejected(tok, time.Second) {
		t.Fatalf("a revocation published with nats.go is not enforced\n%s", a.logged())
	}

	// Version 2 from nats.go: a JWS is keyed by its signing input, so another spelling
	// of its signature is rejected too.
	jws := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlMQ"
	key := sum(jws[:strings.LastIndexByte(jws, '.')])
	body = fmt.Sprintf(`{"v":2,"kind":"jws","key":"%s","exp":%d,"origin":"idp"}`, key, time.Now().Add(time.Hour).Unix())
	if err := nc.Publish("tokens.revoked."+key, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if !a.waitRejected(jws[:len(jws)-1]+"Q", time.Second) || a.call(jws) != 401 {
		t.Fatalf("a version-2 JWS revocation published with nats.go is not enforced\n%s", a.logged())
	}

	// Version 1 of a JWT (its exact string): enforced for that exact string.
	jwt1 := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ2MSJ9.c2ln"
	body = fmt.Sprintf(`{"v":1,"sha256":"%s","exp":%d,"origin":"idp"}`, sum(jwt1), time.Now().Add(time.Hour).Unix())
	if err := nc.Publish("tokens.revoked."+sum(jwt1), []byte(body)); err != nil {
		t.Fatal(err)
	}
	if !a.waitRejected(jwt1, time.Second) {
		t.Fatalf("a version-1 revocation of a JWT is not enforced\n%s", a.logged())
	}
}

// TestFloodAcrossNATSEvictsOnlyTheFlooder: on gateway B (cacheSize 100) a received
// entry counts against the key that signed it (docs/bus-signing.md), so a flood of
// revocations through gateway A (key ka) does not re-open the revocations made through
// gateway C (key kc). The clients named in the messages play no part.
func TestFloodAcrossNATSEvictsOnlyTheFlooder(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{})
	ka := newEd25519Key(t, "gw-a-key")
	kc := newHMACKey("gw-c-key")
	kb := newHMACKey("gw-b-key")
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", signingExtra(nil, ka)))
	c := newGateway(t, natsConfig([]string{srv.URL}, "gw-c", signingExtra(nil, kc)))
	cfgB := natsConfig([]string{srv.URL}, "gw-b", signingExtra(nil, kb, ka, kc))
	cfgB["cacheSize"] = 100
	b := newGateway(t, cfgB)
	for _, g := range []*gateway{a, b, c} {
		g.waitConnected(5 * time.Second)
	}
	for i := 0; i < 40; i++ {
		if code := c.revoke(fmt.Sprintf("victim-%d", i)); code != 200 {
			t.Fatalf("revoke: %d", code)
		}
	}
	if !b.waitRejected("victim-39", 2*time.Second) {
		t.Fatalf("B never got C's revocations\n%s", b.status())
	}
	for i := 0; i < 200; i++ {
		if code := a.revoke(fmt.Sprintf("junk-%d", i)); code != 200 {
			t.Fatalf("flood revoke %d: %d", i, code)
		}
	}
	if !b.waitRejected("junk-199", 2*time.Second) {
		t.Fatalf("B never got the flood\n%s", b.status())
	}
	for i := 0; i < 40; i++ {
		if code := b.call(fmt.Sprintf("victim-%d", i)); code != 401 {
			t.Fatalf("victim-%d re-opened on B by another gateway's flood: %d\n%s", i, code, b.status())
		}
	}
	var doc struct {
		Entries   int            `json:"entries"`
		Evictions int            `json:"evictions"`
		Origins   map[string]int `json:"origins"`
	}
	if err := json.Unmarshal([]byte(b.status()), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Entries != 100 || doc.Evictions != 140 || doc.Origins["@"+kc.id] != 40 || doc.Origins["@"+ka.id] != 60 {
		t.Fatalf("B status: %s", b.status())
	}
}

func TestGarbageNeverCrashesOrCreatesEntries(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{})
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", nil))
	a.waitConnected(5 * time.Second)
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	h := sum("victim")
	garbage := []struct{ subject, body string }{
		{"tokens.revoked." + h, "not json"},
		{"tokens.revoked." + h, ""},
		{"tokens.revoked." + h, `{"v":2,"sha256":"` + h + `","exp":9999999999}`},
		{"tokens.revoked.abc", `{"v":1,"sha256":"abc","exp":9999999999}`},
		{"tokens.revoked." + h, `{"v":1,"sha256":"` + strings.Repeat("g", 64) + `","exp":9999999999}`},
		{"tokens.revoked.x.y.z", `{"v":1}`},
		{"tokens.revoked." + h, `{"v":1,"sha256":"` + h + `","exp":"never"}`},
		{"tokens.revoked." + h, `{"v":1,"sha256":"` + h + `"}`},
		{"tokens.revoked." + h, strings.Repeat("[", 100000)},
		{"tokens.revoked." + h, "\x00\xff\xfe binary"},
	}
	for _, g := range garbage {
		if err := nc.Publish(g.subject, []byte(g.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A valid message after the garbage proves the gateway kept processing.
	good := "after-garbage"
	body := fmt.Sprintf(`{"v":1,"sha256":"%s","exp":%d}`, sum(good), time.Now().Add(time.Hour).Unix())
	if err := nc.Publish("tokens.revoked."+sum(good), []byte(body)); err != nil {
		t.Fatal(err)
	}
	if !a.waitRejected(good, 2*time.Second) {
		t.Fatalf("valid message after garbage not applied\n%s", a.logged())
	}
	if a.call("victim") != 200 {
		t.Fatal("garbage created an entry")
	}
	st := a.status()
	if !strings.Contains(st, `"entries":1,`) || !strings.Contains(st, `"dropped":10`) {
		t.Errorf("status after garbage: %s", st)
	}
	if !strings.Contains(a.logged(), "dropped") {
		t.Errorf("dropped messages were not logged:\n%s", a.logged())
	}
}

func TestServerRestartReconnectsAndResubscribes(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{})
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", nil))
	b := newGateway(t, natsConfig([]string{srv.URL}, "gw-b", nil))
	a.waitConnected(5 * time.Second)
	b.waitConnected(5 * time.Second)
	if a.revoke("before-restart") != 200 || !b.waitRejected("before-restart", time.Second) {
		t.Fatal("propagation before restart failed")
	}
	srv.Shutdown()
	// While NATS is down a revoke cannot be confirmed: 500, but kept locally.
	time.Sleep(200 * time.Millisecond)
	if code := a.revoke("while-down"); code != http.StatusInternalServerError {
		t.Errorf("revoke while NATS is down: %d, want 500", code)
	}
	if a.call("while-down") != 401 {
		t.Error("a revocation answered 500 was not kept locally")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	a.waitConnected(10 * time.Second)
	b.waitConnected(10 * time.Second)
	// The client retries its 500 until it gets 200; everything propagates again.
	code := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code = a.revoke("while-down"); code == 200 {
			break
		}
	}
	if code != 200 {
		t.Fatalf("retry after restart: %d\n%s", code, a.logged())
	}
	if !b.waitRejected("while-down", 2*time.Second) {
		t.Fatal("retried revocation did not reach B")
	}
	if a.revoke("after-restart") != 200 || !b.waitRejected("after-restart", 2*time.Second) {
		t.Fatalf("no propagation after restart\nA: %s\nB: %s", a.logged(), b.logged())
	}
}

func TestNATSDownAtStart(t *testing.T) {
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	a := newGateway(t, natsConfig([]string{url}, "gw-a", nil)) // New must succeed
	if a.call("x") != 200 {
		t.Fatal("requests must flow while NATS is down")
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(a.logged(), "WARN") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(a.logged(), "WARN") {
		t.Errorf("no warning while NATS is down:\n%s", a.logged())
	}
	srv := harness.StartNATS(t, harness.NATSOptions{Port: port})
	_ = srv
	a.waitConnected(10 * time.Second)
	if code := a.revoke("late"); code != 200 {
		t.Fatalf("revoke after NATS came up: %d", code)
	}
}

func TestManyNewCallsShareOneConnection(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{})
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-shared", nil))
	a.waitConnected(5 * time.Second)
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	for i := 0; i < 100; i++ {
		h, err := a.plugin.New(t.Context(), okBackend, natsConfig([]string{srv.URL}, "gw-shared", nil), fmt.Sprintf("r%d@file", i))
		if err != nil {
			t.Fatal(err)
		}
		_ = h
	}
	time.Sleep(300 * time.Millisecond)
	n, err := srv.ConnectionsNamed("gw-shared")
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d connections named gw-shared after 100 New calls, want 1", n)
	}
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("goroutines grew from %d to %d over 100 New calls", before, after)
	}
}

// TestPropagationLatency measures, over 1,000 revocations, the time from the 200 on A
// to the first 401 on B, and logs p50/p90/p99/max, the misses and the resolution of the
// polling. The target (p99 <= 5 ms) belongs to the benchmark (e2e/cmd/bench, reported in
// BENCHMARKS.md); this test fails only when revocations do not reach B at all.
//
// B is polled with a short sleep between two calls, not back to back. b.call runs the
// interpreted middleware in this goroutine (about 60 µs) and never blocks, so a
// back-to-back loop never hands its P back to the scheduler, and on this 2-core machine
// (GOMAXPROCS=2) the goroutine that must apply the revocation waits behind it. In a
// runtime/trace of such a run (2026-12-01) the PONG for A's publish and the MSG for B
// arrived together; A's NATS reader woke this goroutine, which then ran on the P where
// B's NATS reader sat queued; the other P was held by a GC fractional mark worker, which
// the scheduler runs before queued goroutines. B's reader was runnable 0.11 ms before
// A's 200 and ran 28.2 ms after it, once sysmon had preempted the poller (14 ms) and a
// mark worker had had that P too. When the other P was idle instead, the thread woken for
// it still had to wait 1-4 ms for a core: the spinning poller kept one busy, other
// processes the other. Back to back gave p99 16-30 ms and max 28-250 ms; sleeping 20 µs
// between polls gave p99 0.5-3 ms at load average 1.6-2 (up to 6 ms at load 6), runs
// alternated on the same machine. Traefik serves each request in a goroutine that
// blocks on the network, so nothing there spins like that poller.
//
// The sleep changes what the poller does to the scheduler, not what is measured: every
// sample is kept, and each ends when the first poll answering 401 returns. A time.Sleep
// of 20 µs can last about 1 ms when the whole process is idle (the runtime's netpoller
// waits with millisecond resolution), but B's reader waking up wakes the scheduler, which
// then runs the expired sleep at once. The logged detection interval (from the start of
// the last poll answered 200 to the start of the poll answered 401) bounds how much a
// sample can overstate the delay, and shows that resolution on every run.
func TestPropagationLatency(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{})
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", nil))
	b := newGateway(t, natsConfig([]string{srv.URL}, "gw-b", nil))
	a.waitConnected(5 * time.Second)
	b.waitConnected(5 * time.Second)
	const (
		n         = 1000
		pollGap   = 20 * time.Microsecond
		limit     = 2 * time.Second // per revocation
		maxMissed = 5               // then stop: B does not get revocations at all
	)
	loadBefore := loadAverage()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcBefore := ms.NumGC
	lat := make([]time.Duration, 0, n)    // A's 200 -> B's first 401
	acks := make([]time.Duration, 0, n)   // A's revoke round trip
	detect := make([]time.Duration, 0, n) // last poll answered 200 -> poll answered 401 (starts)
	polls := make([]int, 0, n)
	missed, firstPoll := 0, 0
	for i := 0; i < n; i++ {
		tok := fmt.Sprintf("latency-token-%d", i)
		sent := time.Now()
		if code := a.revoke(tok); code != 200 {
			t.Fatalf("revoke %d: %d", i, code)
		}
		acked := time.Now()
		acks = append(acks, acked.Sub(sent))
		var prev time.Time
		seen := false
		for p := 1; ; p++ {
			start := time.Now()
			code := b.call(tok)
			if code == http.StatusUnauthorized {
				lat = append(lat, time.Since(acked))
				polls = append(polls, p)
				if p == 1 {
					firstPoll++
				} else {
					detect = append(detect, start.Sub(prev))
				}
				seen = true
				break
			}
			if code != http.StatusOK {
				t.Fatalf("revocation %d: B answered %d", i, code)
			}
			if time.Since(acked) > limit {
				break
			}
			prev = start
			time.Sleep(pollGap)
		}
		if !seen {
			if missed++; missed >= maxMissed {
				t.Fatalf("%d of %d revocations did not reach B within %v\nB status: %s", missed, i+1, limit, b.status())
			}
		}
	}
	runtime.ReadMemStats(&ms)
	t.Logf("propagation A(200) -> B(401) over %d revocations (core NATS, one nats-server, two interpreters), %d missed: p50 %v  p90 %v  p99 %v  max %v",
		n, missed, pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
	t.Logf("propagation A->B polling: %v sleep between polls; polls per sample p50 %d, max %d; %d samples answered 401 at the first poll; detection interval of the others p50 %v  p99 %v  max %v",
		pollGap, pct(polls, 50), pct(polls, 100), firstPoll, pct(detect, 50), pct(detect, 99), pct(detect, 100))
	t.Logf("propagation A->B context: A's revoke round trip p50 %v  p99 %v; %d GC cycles during the run; load average %s before, %s after",
		pct(acks, 50), pct(acks, 99), ms.NumGC-gcBefore, loadBefore, loadAverage())
	if missed > 0 {
		t.Errorf("%d of %d revocations did not reach B within %v", missed, n, limit)
	}
}

// pct is the q-th percentile (nearest rank) of d, which it sorts; 0 when d is empty.
func pct[T time.Duration | int](d []T, q int) T {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	k := (len(d)*q + 99) / 100
	if k < 1 {
		k = 1
	}
	return d[k-1]
}

// loadAverage is the 1, 5 and 15 minute load average of the machine, from /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], "/")
}
