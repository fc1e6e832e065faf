package e2e_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// BenchmarkTraefikWorstLatency: what worst inputs do to other clients' requests through
// a real Traefik gateway (issue 18: four connections sending `?access_token=` and
// 1,000,000 `+` raised a normal request's latency from 2 ms to 82 ms).
//
// One gateway (local mode, tokenPath, the README's clients, the coordinator's
// tokenCookies and tokenHeaders), loopback only. First the largest query string and
// header value Traefik takes are found (max-query-bytes, max-header-bytes). Then, for
// each case, a victim sends normal slow-path requests one after another on one
// keep-alive connection for worstWindow (alternately a first-sight bearer JWT and a
// query string ?page=2&access_token=<first-sight JWT>), and reports their p50 and p99
// (ms); in every case but "idle", 4 attacker connections send the case's input in a
// loop meanwhile (attack-ms/req: how long one took to be answered; attack-status: the
// status of the last one). "plain-route/..." sends the worst query to a route without
// the middleware: Traefik's own cost of such a request, the floor.
//
//	cd e2e && go test -run '^$' -bench TraefikWorstLatency -benchtime 1x .
//
// WORST_PLUGIN_ROOT mounts another plugin source tree (as in yaegiload's BenchmarkYaegiWorst).
func BenchmarkTraefikWorstLatency(b *testing.B) {
	backend := harness.StartBackend(b)
	backend.SetKeep(0)
	cfg := pluginConfig("", "worst")
	cfg["tokenPath"] = "/oauth/token"
	cfg["tokenCookies"] = []any{"access_token"}
	cfg["tokenHeaders"] = []any{"X-Auth-Token"}
	gw := harness.StartTraefik(b, harness.TraefikOptions{Name: "worst", LogLevel: "ERROR", PluginRoot: os.Getenv("WORST_PLUGIN_ROOT"),
		Dynamic: harness.Dynamic{BackendURL: backend.URL, Plugin: cfg, PlainRoute: true}})
	addr := strings.TrimPrefix(gw.WebURL, "http://")

	b.Run("fits", func(b *testing.B) {
		q := largestAccepted(b, addr, func(n int) string {
			return "GET /api/orders?q=" + strings.Repeat("x", n) + " HTTP/1.1\r\nHost: gw\r\n\r\n"
		})
		h := largestAccepted(b, addr, func(n int) string {
			return "GET /api/orders HTTP/1.1\r\nHost: gw\r\nX-Filler: " + strings.Repeat("x", n) + "\r\n\r\n"
		})
		b.ReportMetric(float64(q), "max-query-bytes")
		b.ReportMetric(float64(h), "max-header-bytes")
		b.Logf("largest query string accepted: %d bytes after \"?q=\"; largest header value: %d bytes", q, h)
	})

	const line = 1000000 // as in the issue; under the limit "fits" measures
	body := 64 << 10
	for _, c := range []struct{ name, raw string }{
		{"idle", ""},
		{"query/plus-1M", rawGet("/api/orders?access_token="+strings.Repeat("+", line-13), "")},
		{"plain-route/query-plus-1M", rawGet(harness.PlainPrefix+"?access_token="+strings.Repeat("+", line-13), "")},
		{"query/9999-token-pct20", rawGet("/api/orders?"+repeatJoin(9999, "access_token="+strings.Repeat("%20", (line/9999-14)/3)), "")},
		{"query/9999-longkeys-pct", rawGet("/api/orders?"+repeatJoin(9999, strings.Repeat("%61", (line/9999-1)/3)), "")},
		{"tokenpath/query-9999-token-plus", rawGet("/oauth/token?"+repeatJoin(9999, "refresh_token="+strings.Repeat("+", line/9999-15)), "")},
		{"auth/words-tab-1M", rawGet("/api/orders", "Authorization: Basic "+strings.Repeat("a\t", (line-6)/2)+"a\r\n")},
		{"auth/basic-eacute-1M", rawGet("/api/orders", "Authorization: Basic "+strings.Repeat("é", (line-6)/2)+"\r\n")},
		{"form/token-params-64k", rawPost("/api/orders", "application/x-www-form-urlencoded", strings.TrimSuffix(strings.Repeat("access_token=1&", body/15), "&"))},
		{"form/plus-64k", rawPost("/api/orders", "application/x-www-form-urlencoded", "access_token="+strings.Repeat("+", body-13))},
		{"plain-route/form-plus-64k", rawPost(harness.PlainPrefix, "application/x-www-form-urlencoded", "access_token="+strings.Repeat("+", body-13))},
		{"json/token-array-64k", rawPost("/api/orders", "application/json", `{"access_token":[`+strings.TrimSuffix(strings.Repeat(`"x",`, (body-20)/4), ",")+"]}")},
		{"tokenpath/json-token-array-64k", rawPost("/oauth/token", "application/json", `{"refresh_token":[`+strings.TrimSuffix(strings.Repeat(`"x",`, (body-20)/4), ",")+"]}")},
		{"query/plus-64k", rawGet("/api/orders?access_token="+strings.Repeat("+", body-13), "")},
	} {
		b.Run(c.name, func(b *testing.B) { latencyUnderAttack(b, gw.WebURL, addr, c.raw) })
	}
	if gw.Exited() {
		b.Fatal("Traefik exited")
	}
}

// worstWindow is how long the victim's latency is sampled in each case.
const worstWindow = 3 * time.Second

func rawGet(target, headers string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: gw\r\n" + headers + "\r\n"
}

func rawPost(target, ct, body string) string {
	return "POST " + target + " HTTP/1.1\r\nHost: gw\r\nContent-Type: " + ct + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func repeatJoin(n int, s string) string {
	return strings.TrimSuffix(strings.Repeat(s+"&", n), "&")
}

// rawExchange sends raw on a new connection and returns the status (0: the connection
// was closed or reset without an answer, as Go's server does for a request over its
// header limit when it cannot even answer 431).
func rawExchange(addr, raw string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	go func() { _, _ = io.WriteString(conn, raw) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// largestAccepted finds by bisection the largest n for which mk(n) is answered other
// than 431 / a closed connection, between 0 and 2 MiB.
func largestAccepted(b *testing.B, addr string, mk func(n int) string) int {
	lo, hi := 0, 2<<20
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		st, err := rawExchange(addr, mk(mid))
		if err != nil {
			b.Fatal(err)
		}
		if st != 0 && st != http.StatusRequestHeaderFieldsTooLarge && st != http.StatusBadRequest {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// firstSightJWT is a JWT-shaped token (about 300 bytes) never sent before.
func firstSightJWT() string {
	sig := make([]byte, 64)
	_, _ = rand.Read(sig)
	p := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":"user-%x","iat":%d,"exp":%d,"scope":"orders","client_id":"portal"}`,
		sig[:6], time.Now().Unix()-60, time.Now().Unix()+600)))
	return "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9." + p + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// latencyUnderAttack runs the victim for worstWindow while 4 connections send raw (none
// when raw is "") and reports the victim's p50 and p99 and the attackers' cost.
func latencyUnderAttack(b *testing.B, webURL, addr, raw string) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	var attacks, attackNs, lastStatus atomic.Int64
	if raw != "" {
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				attacker(addr, raw, &stop, &attacks, &attackNs, &lastStatus)
			}()
		}
		time.Sleep(200 * time.Millisecond) // the attackers' first requests are in flight
	}
	victim := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer victim.CloseIdleConnections()
	var lat []time.Duration
	bad := 0
	b.ResetTimer()
	for end := time.Now().Add(worstWindow); time.Now().Before(end); {
		var req *http.Request
		if len(lat)%2 == 0 {
			req, _ = http.NewRequest(http.MethodGet, webURL+"/api/orders", nil)
			req.Header.Set("Authorization", "Bearer "+firstSightJWT())
		} else {
			req, _ = http.NewRequest(http.MethodGet, webURL+"/api/orders?page=2&access_token="+firstSightJWT(), nil)
		}
		t0 := time.Now()
		resp, err := victim.Do(req)
		if err != nil {
			b.Fatalf("victim request: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if resp.StatusCode != http.StatusOK {
			bad++
		}
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait() // each attacker finishes the request it has in flight
	if bad > 0 {
		b.Errorf("%d victim requests were not answered 200", bad)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat)), "victim-reqs")
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	if n := attacks.Load(); n > 0 {
		b.ReportMetric(float64(attackNs.Load())/float64(n)/1e6, "attack-ms/req")
		b.ReportMetric(float64(n), "attack-reqs")
		b.ReportMetric(float64(lastStatus.Load()), "attack-status")
	}
}

// attacker sends raw on one keep-alive connection (a new one when the gateway closes
// it) until stop, each request after the previous answer.
func attacker(addr, raw string, stop *atomic.Bool, n, ns, status *atomic.Int64) {
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for !stop.Load() {
		if conn == nil {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			conn, br = c, bufio.NewReader(c)
		}
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		t0 := time.Now()
		errc := make(chan error, 1)
		go func(c net.Conn) { _, err := io.WriteString(c, raw); errc <- err }(conn)
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status.Store(int64(resp.StatusCode))
			n.Add(1)
			ns.Add(int64(time.Since(t0)))
		}
		werr := <-errc
		if err != nil || werr != nil || resp.Close {
			conn.Close()
			conn = nil
		}
	}
}
