package e2e_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// TestSampleConfigsThroughTraefik runs real Traefik from the sample configurations of
// testdata/, the README's examples (placeholders replaced as testdata/README.md says):
// the YAML static configuration with the YAML dynamic ones, TOML with TOML, over core
// NATS and with a JetStream stream. A token revoked on gateway A is rejected by gateway
// B: over core NATS B is up before the revocation, with the stream B starts after it and
// replays it.
func TestSampleConfigsThroughTraefik(t *testing.T) {
	backend := harness.StartBackend(t)
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	for _, c := range []struct{ static, dynamic string }{
		{"traefik.yml", "dynamic-core.yml"},
		{"traefik.yml", "dynamic-jetstream.yml"},
		{"traefik.toml", "dynamic-core.toml"},
		{"traefik.toml", "dynamic-jetstream.toml"},
	} {
		t.Run(c.dynamic, func(t *testing.T) {
			jetstream := strings.Contains(c.dynamic, "jetstream")
			start := func(name string) *harness.Traefik {
				gw := harness.StartTraefik(t, harness.TraefikOptions{
					Name: name,
					Sample: &harness.SampleConfig{
						Static:    c.static,
						Dynamic:   c.dynamic,
						ReadyPath: "/api/ready",
						Vars: map[string]string{
							harness.SampleNATSURL:    srv.URL,
							harness.SampleBackendURL: backend.URL,
							harness.SampleName:       "gw-" + name,
						},
					},
				})
				waitSampleReady(t, gw, jetstream)
				return gw
			}
			a := start("a")
			var b *harness.Traefik
			if !jetstream {
				b = start("b")
			}
			token := newToken(t)
			if r := sampleBearerGet(t, a, token); r.status != http.StatusOK || r.header.Get("X-Echo-Backend") == "" {
				t.Fatalf("token before revocation, through A: %s", r)
			}
			if r := revoke(t, a, token, basicAuth); r.status != http.StatusOK {
				t.Fatalf("revoke through A: %s", r)
			}
			checkRevoked(t, "gateway a right after its own 200", sampleBearerGet(t, a, token))
			if jetstream {
				b = start("b") // replays the stream
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				r := sampleBearerGet(t, b, token)
				if r.status == http.StatusUnauthorized {
					checkRevoked(t, "gateway b", r)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("gateway b still accepts the token revoked on a: %s", r)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if r := sampleBearerGet(t, b, newToken(t)); r.status != http.StatusOK {
				t.Fatalf("valid token through B: %s", r)
			}
			checkNoPluginErrors(t, a)
			checkNoPluginErrors(t, b)
		})
	}
}

// sampleBearerGet sends GET /api/orders with the token through gw (the sample router
// serves /api).
func sampleBearerGet(t *testing.T, gw *harness.Traefik, token string) reply {
	t.Helper()
	req := newRequest(t, http.MethodGet, gw.WebURL+"/api/orders", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return do(t, req)
}

// waitSampleReady waits until gw's plugin is connected to NATS and, with a stream,
// synced, as its status document (the samples' statusPath) says.
func waitSampleReady(t *testing.T, gw *harness.Traefik, synced bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		doc := statusDoc(t, gw, revokePath+"/status")
		n, _ := doc["nats"].(map[string]any)
		connected, _ := n["connected"].(bool)
		isSynced, _ := doc["synced"].(bool)
		if connected && (isSynced || !synced) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway %s: not ready after 15s: %v", gw.Name, doc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
