package forward

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
	"github.com/tokenrevoke/tokenrevoke/e2e/idptest"
)

// BenchmarkForwardRevocation measures what forward mode adds to a revocation over the
// provider's own time. One Traefik gateway, oidc-provider behind it, NATS JetStream; each
// iteration revokes three fresh opaque tokens (openid-client style: HTTP Basic, form
// body), interleaved so that machine noise hits all three alike:
//
//   - direct: POST to the provider's revocation endpoint;
//   - plain:  through Traefik, a router with only replacePath (no plugin);
//   - fwd-*: through Traefik, the plugin in forward mode then replacePath: the form
//     read, the provider's answer held, the revocation stored and (fwd-core,
//     fwd-jetstream) published, confirmed, before the 200 is relayed; fwd-nonats without
//     NATS, fwd-core over core NATS (PUB + PING/PONG), fwd-jetstream to a stream (the
//     server's ack).
//
// It reports the p50 and p90 of each and each fwd-* p50 minus plain's (the plugin's
// share, NATS included).
//
//	cd e2e && go test -run '^$' -bench ForwardRevocation -benchtime 400x ./forward/
func BenchmarkForwardRevocation(b *testing.B) {
	n := harness.StartNATS(b, harness.NATSOptions{JetStream: true})
	idp := idptest.Start(b, idptest.Options{})
	backend := harness.StartBackend(b)
	u, _ := url.Parse(idp.RevocationEndpoint)
	extra := routes(idp, true)
	h := extra["http"].(map[string]any)
	routers, mws := h["routers"].(map[string]any), h["middlewares"].(map[string]any)
	route := func(path string, chain ...any) {
		routers["r"+strings.ReplaceAll(path, "/", "-")] = map[string]any{
			"entryPoints": []any{"web"}, "rule": "Path(`" + path + "`)", "priority": 9600,
			"middlewares": append(chain, "to-revocation"), "service": "idp",
		}
	}
	route("/plain-revoke")
	// The same forward-mode plugin without NATS and over core NATS (other domains in the
	// same process), besides the JetStream one on revokePath.
	for _, v := range []struct {
		path string
		nats map[string]any
	}{
		{"/fwd-none", nil},
		{"/fwd-core", map[string]any{"servers": []any{n.URL}, "name": "gw-bench-core", "subject": "bench.core"}},
	} {
		c := plugin(n.URL, "unused", "/token", true)
		c["revokePath"] = v.path
		c["clients"] = []any{map[string]any{"id": idp.ClientID, "secret": idp.ClientSecret, "ratePerMinute": -1}}
		delete(c, "nats")
		if v.nats != nil {
			c["nats"] = v.nats
		}
		mws["mw"+strings.ReplaceAll(v.path, "/", "-")] = map[string]any{"plugin": map[string]any{harness.PluginName: c}}
		route(v.path, "mw"+strings.ReplaceAll(v.path, "/", "-"))
	}
	cfg := plugin(n.URL, "gw-bench", "/token", true)
	// Listed with no rate limit (the default 600 a minute would stop a long run).
	cfg["clients"] = []any{map[string]any{"id": idp.ClientID, "secret": idp.ClientSecret, "ratePerMinute": -1}}
	gw := harness.StartTraefik(b, harness.TraefikOptions{Name: "bench", LogLevel: "ERROR", Dynamic: harness.Dynamic{
		BackendURL: backend.URL, Plugin: cfg, Extra: extra,
	}})
	targets := []struct {
		name, url string
	}{
		{"direct", idp.URL + u.Path},
		{"plain", gw.WebURL + "/plain-revoke"},
		{"fwd-nonats", gw.WebURL + "/fwd-none"},
		{"fwd-core", gw.WebURL + "/fwd-core"},
		{"fwd-jetstream", gw.WebURL + revokePath},
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(idp.ClientID+":"+idp.ClientSecret))
	clients := make([]*http.Client, len(targets))
	for i := range clients {
		clients[i] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	}
	revoke := func(i int) time.Duration {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		body := "token=" + hex.EncodeToString(raw) + "&token_type_hint=refresh_token"
		req, _ := http.NewRequest(http.MethodPost, targets[i].url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", auth)
		start := time.Now()
		res, err := clients[i].Do(req)
		if err != nil {
			b.Fatalf("%s: %v", targets[i].name, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		took := time.Since(start)
		if res.StatusCode != http.StatusOK {
			b.Fatalf("%s: %d", targets[i].name, res.StatusCode)
		}
		return took
	}
	for i := 0; i < 20; i++ { // warm up connections, JIT, the stream
		for j := range targets {
			revoke(j)
		}
	}
	took := make([][]time.Duration, len(targets))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range targets {
			k := (i + j) % len(targets) // rotate the order
			took[k] = append(took[k], revoke(k))
		}
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(p*float64(len(s)-1))]
	}
	for j, t := range targets {
		b.ReportMetric(float64(pct(took[j], 0.5).Microseconds()), t.name+"-p50-us")
		b.ReportMetric(float64(pct(took[j], 0.9).Microseconds()), t.name+"-p90-us")
	}
	for j := 2; j < len(targets); j++ {
		b.ReportMetric(float64((pct(took[j], 0.5) - pct(took[1], 0.5)).Microseconds()), targets[j].name+"-minus-plain-p50-us")
	}
}
