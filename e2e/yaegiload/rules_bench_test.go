package yaegiload

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"
)

// Session and subject rules on the request path (issue: 100k session rules and 1M token
// entries live; a JWT bearer request costs at most 4 µs more than with no rules).
//
// Both handlers are tokenrevoke with 1M revoked entries, one with no rule and one with
// 100k session rules, in one process, alternating blocks of requests (as pairedAdded).

const benchIssuer = "https://idp.example.com/realms/main"

// benchJWT is an access token shaped like oidc-provider's (ES256, about 450 bytes) for
// session sid, issued at iat. Its signature is random: the gateway reads the claims
// without checking it.
func benchJWT(sid string, iat int64) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"at+jwt","kid":"bench-key-1"}`))
	p := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(
		`{"jti":"%s-jti","sub":"user-0123456789","iat":%d,"exp":%d,"scope":"openid profile orders","client_id":"portal","iss":"%s","aud":"https://api.example.com","sid":"%s"}`,
		sid, iat, iat+600, benchIssuer, sid)))
	sig := make([]byte, 64)
	_, _ = rand.Read(sig)
	return h + "." + p + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// addRules adds n session rules of benchIssuer (sessions rule-0 ... rule-<n-1>, cutoff
// an hour ago) to the plugin's "local" domain, with interpreted code.
func addRules(b testing.TB, p *Plugin, n int) {
	b.Helper()
	for _, imp := range []string{`import "time"`, `import "strconv"`} {
		_, _ = p.Interp.Eval(imp) // fails harmlessly when already imported (fillStore)
	}
	_, err := p.Interp.Eval(`func addBenchRules(iss string, n int) int {
	c := tokenrevoke.domains["local"].cache
	now := time.Now().Unix()
	for i := 0; i < n; i++ {
		c.addRule(1, tokenrevoke.ruleKey(iss, "rule-"+strconv.Itoa(i)), now-3600, now+86400, now)
	}
	return c.ruleCount()
}`)
	if err != nil {
		b.Fatal(err)
	}
	v, err := p.Interp.Eval(fmt.Sprintf("addBenchRules(%q, %d)", benchIssuer, n))
	if err != nil {
		b.Fatal(err)
	}
	if got := v.Int(); got != int64(n) {
		b.Fatalf("%d rules held, want %d", got, n)
	}
}

// ruleHandlers returns tokenrevoke with 1M entries and no rule, and with 1M entries and
// 100k session rules.
func ruleHandlers(b *testing.B) (http.Handler, *Plugin, http.Handler) {
	none := tokenrevokeHandler(b, 1000000, false)
	p := loadPlugin(b)
	cfg := yamlConfig()
	cfg["cacheSize"] = 1000010
	h, err := p.New(context.Background(), nopNext, cfg, "bench-rules")
	if err != nil {
		b.Fatal(err)
	}
	fillStore(b, p, 1000000)
	addRules(b, p, 100000)
	return none, p, h
}

// pairedHandlers runs a then b on blocks of 1,000 requests (order swapped every block)
// and reports each one's mean (metrics <nameA>-ns/req, <nameB>-ns/req) and b's cost
// over a's: the difference of the means (added-ns/req) and the median of the per-block
// differences (added-p50-ns/req, robust to load bursts).
func pairedHandlers(b *testing.B, ha, hb http.Handler, mk func(i int) *http.Request, nameA, nameB string) {
	w := &nopWriter{h: http.Header{}}
	const block = 1000
	var ta, tb time.Duration
	var added []float64
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(block, b.N-done)
		first, second := ha, hb
		if len(added)%2 == 1 {
			first, second = hb, ha
		}
		t0 := time.Now()
		for i := 0; i < n; i++ {
			first.ServeHTTP(w, mk(done+i))
		}
		t1 := time.Now()
		for i := 0; i < n; i++ {
			second.ServeHTTP(w, mk(done+i))
		}
		t2 := time.Now()
		da, db := t1.Sub(t0), t2.Sub(t1)
		if len(added)%2 == 1 {
			da, db = db, da
		}
		ta += da
		tb += db
		added = append(added, float64(db-da)/float64(n))
		done += n
	}
	b.StopTimer()
	sort.Float64s(added)
	b.ReportMetric(float64(ta.Nanoseconds())/float64(b.N), nameA+"-ns/req")
	b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N), nameB+"-ns/req")
	b.ReportMetric(float64((tb-ta).Nanoseconds())/float64(b.N), "added-ns/req")
	b.ReportMetric(added[len(added)/2], "added-p50-ns/req")
}

// BenchmarkYaegiRules100kSteady: the same JWT bearer token (of a session without a rule)
// request after request, as a client sends it: after its first request the gateway
// remembers it passed, and a rule arriving forgets that.
func BenchmarkYaegiRules100kSteady(b *testing.B) {
	none, _, rules := ruleHandlers(b)
	tok := benchJWT("session-live", time.Now().Unix()-60)
	req, _ := http.NewRequest(http.MethodGet, "http://gw/api/orders", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	for _, h := range []http.Handler{none, rules} {
		h.ServeHTTP(&nopWriter{h: http.Header{}}, req)
	}
	pairedHandlers(b, none, rules, func(int) *http.Request { return req }, "norules", "rules")
}

// BenchmarkYaegiRules100kFirstSight: every request bears a JWT the gateway has not seen
// (a new session each time, none with a rule): the slow path reads the token, and with
// rules live also its claims, in both handlers alike.
func BenchmarkYaegiRules100kFirstSight(b *testing.B) {
	none, _, rules := ruleHandlers(b)
	now := time.Now().Unix() - 60
	reqs := make([]*http.Request, b.N)
	for i := range reqs {
		reqs[i], _ = http.NewRequest(http.MethodGet, "http://gw/api/orders", nil)
		reqs[i].Header.Set("Authorization", "Bearer "+benchJWT(fmt.Sprintf("session-%08d", i), now))
	}
	// Both handlers see each token once: copies of the request share the header.
	pairedHandlers(b, none, rules, func(i int) *http.Request { return reqs[i] }, "norules", "rules")
}

// BenchmarkYaegiMemoryPerRule: heap held per session rule, 100k rules, interpreted.
func BenchmarkYaegiMemoryPerRule(b *testing.B) {
	for i := 0; i < b.N; i++ {
		heap, took := heapOfFill(b, "mem-rules", func(p *Plugin) { addRules(b, p, 100000) })
		b.ReportMetric(heap/1e5, "bytes/rule")
		b.ReportMetric(float64(took.Nanoseconds())/1e5, "ns/add")
	}
}
