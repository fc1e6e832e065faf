package yaegiload

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// sampleDynamics are the dynamic configurations of testdata/ (see testdata/README.md).
var sampleDynamics = []string{"dynamic-core.yml", "dynamic-core.toml", "dynamic-jetstream.yml", "dynamic-jetstream.toml"}

// TestSampleConfigsUnderYaegi decodes each sample dynamic configuration as Traefik's file
// provider does, builds the middleware from it as Traefik does, and revokes a token
// through it over a real nats-server.
func TestSampleConfigsUnderYaegi(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	for _, name := range sampleDynamics {
		t.Run(name, func(t *testing.T) {
			text, err := harness.SampleFile(RepoRoot(), name, map[string]string{harness.SampleNATSURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := PluginConfig(text, filepath.Ext(name), "revoke", "tokenrevoke")
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			p := loadPlugin(t)
			next := &recorder{}
			h, err := p.New(context.Background(), next, cfg, "revoke@file")
			if err != nil {
				t.Fatalf("New with %s: %v", name, err)
			}
			// Wait until the gateway can share revocations: connected, and with a stream,
			// synced.
			var doc sampleStatus
			deadline := time.Now().Add(15 * time.Second)
			for {
				doc = sampleStatusOf(t, h)
				if doc.NATS.Connected && doc.Synced {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: not connected and synced after 15s: %+v", name, doc)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if jetstream := strings.Contains(name, "jetstream"); (doc.NATS.Stream == "REVOCATIONS") != jetstream {
				t.Fatalf("%s: status names stream %q", name, doc.NATS.Stream)
			}
			tok := "sample-token-" + name
			if rec := do(h, revoke(tok, basicAuth("portal", "s3cret"), "")); rec.Code != http.StatusOK {
				t.Fatalf("%s: revoke: %d %s", name, rec.Code, rec.Body.String())
			}
			if rec := do(h, bearer(tok)); rec.Code != http.StatusUnauthorized {
				t.Fatalf("%s: revoked token: %d", name, rec.Code)
			}
			if rec := do(h, bearer("another-"+tok)); rec.Code != http.StatusOK {
				t.Fatalf("%s: valid token: %d", name, rec.Code)
			}
			if doc := sampleStatusOf(t, h); doc.NATS.Published != 1 {
				t.Fatalf("%s: %d revocations published, want 1", name, doc.NATS.Published)
			}
		})
	}
}

type sampleStatus struct {
	Synced bool `json:"synced"`
	NATS   struct {
		Connected bool   `json:"connected"`
		Stream    string `json:"stream"`
		Published int64  `json:"published"`
	} `json:"nats"`
}

// sampleStatusOf reads the status document of a handler built from a sample
// configuration (statusPath /api/id/v1/auth/token/revoke/status, client portal).
func sampleStatusOf(t *testing.T, h http.Handler) sampleStatus {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, revokePath+"/status", nil)
	req.Header.Set("Authorization", basicAuth("portal", "s3cret"))
	rec := do(h, req)
	var doc sampleStatus
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
		t.Fatalf("status: %d %s", rec.Code, rec.Body.String())
	}
	return doc
}

// TestREADMEShowsTheSampleConfigs keeps the README's configuration examples equal to
// the tested files of testdata/.
func TestREADMEShowsTheSampleConfigs(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"traefik.yml", "dynamic-jetstream.yml", "dynamic-core.toml"} {
		text, err := harness.SampleFile(RepoRoot(), name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(readme), "\n"+text+"```\n") {
			t.Errorf("README.md does not show testdata/%s as it is (copy the file into its code block)", name)
		}
	}
}
