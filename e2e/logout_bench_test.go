//go:build linux

package e2e_test

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
	"github.com/tokenrevoke/tokenrevoke/e2e/idptest"
)

// BenchmarkLogoutToRejection: a back-channel logout posted to real Traefik gateway A
// until real Traefik gateway B rejects an access token of that session (JetStream
// between them), LOGOUT_N logouts (default 1000), one at a time. The logout tokens are
// signed by a test key (idptest.Signer) given to the gateways inline: oidc-provider
// logins take a second each. Run with -benchtime 1x.
func BenchmarkLogoutToRejection(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("LOGOUT_N")); err == nil && v > 0 {
		n = v
	}
	signer := idptest.NewSigner(b, "https://idp.bench.test")
	nats := harness.StartNATS(b, harness.NATSOptions{JetStream: true})
	backend := harness.StartBackend(b)
	backend.SetKeep(0)
	cfg := func(name string) map[string]any {
		c := pluginConfig(nats.URL, name)
		c["nats"].(map[string]any)["stream"] = "REVOCATIONS"
		c["issuers"] = []any{map[string]any{"issuer": signer.Issuer, "jwks": signer.JWKS(), "audience": "gateway"}}
		c["backchannelLogoutPath"] = logoutPath
		c["maxTokenLifetime"] = "1h"
		c["metricsPath"] = "/metrics"
		return c
	}
	a := harness.StartTraefik(b, harness.TraefikOptions{Name: "a", LogLevel: "INFO", Dynamic: harness.Dynamic{BackendURL: backend.URL, Plugin: cfg("gw-a")}})
	gb := harness.StartTraefik(b, harness.TraefikOptions{Name: "b", LogLevel: "INFO", Dynamic: harness.Dynamic{BackendURL: backend.URL, Plugin: cfg("gw-b")}})
	hc := &http.Client{Timeout: 10 * time.Second}
	get := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, gb.WebURL+"/resource", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var total, answer, after []time.Duration
	iat := time.Now().Unix() - 2
	b.ResetTimer()
	for i := 0; i < n; i++ {
		sid := "bench-session-" + strconv.Itoa(i)
		tok := signer.AccessToken(b, "user-"+strconv.Itoa(i%50), sid, iat)
		if get(tok) != http.StatusOK {
			b.Fatal("the token is rejected before the logout")
		}
		lt := signer.LogoutToken(b, "gateway", "user-"+strconv.Itoa(i%50), sid)
		t0 := time.Now()
		resp, err := hc.Post(a.WebURL+logoutPath, "application/x-www-form-urlencoded", strings.NewReader("logout_token="+url.QueryEscape(lt)))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("logout %d: %d", i, resp.StatusCode)
		}
		tA := time.Since(t0)
		// Poll B with short kernel sleeps between polls: polling back to back from this
		// goroutine starves B's NATS reader on two cores (see BENCHMARKS.md).
		for get(tok) != http.StatusUnauthorized {
			if time.Since(t0) > 5*time.Second {
				b.Fatalf("logout %d: B still accepts the session's token", i)
			}
			ts := syscall.NsecToTimespec(250_000)
			for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
			}
		}
		total = append(total, time.Since(t0))
		answer = append(answer, tA)
		after = append(after, time.Since(t0)-tA)
	}
	b.StopTimer()
	pct := func(d []time.Duration, q float64) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	b.ReportMetric(float64(pct(total, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(total, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(pct(total, 1).Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(pct(answer, 0.50).Microseconds())/1000, "A-answer-p50-ms")
	b.ReportMetric(float64(pct(after, 0.50).Microseconds())/1000, "A200-to-B401-p50-ms")
	b.ReportMetric(float64(pct(after, 0.99).Microseconds())/1000, "A200-to-B401-p99-ms")
	// Where A's time goes: its wait for the stream to confirm each rule.
	if resp, err := hc.Get(a.WebURL + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "tokenrevoke_publish_duration_seconds") {
				b.Log("A: " + line)
			}
		}
	}
	b.Logf("%d logouts, logout posted to A until B rejects: p50 %v, p99 %v, max %v (A answered after p50 %v, p99 %v; A's 200 to B's first 401: p50 %v, p99 %v, max %v)",
		n, pct(total, 0.5), pct(total, 0.99), pct(total, 1), pct(answer, 0.5), pct(answer, 0.99), pct(after, 0.5), pct(after, 0.99), pct(after, 1))
}
