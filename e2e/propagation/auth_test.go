package propagation

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
	"github.com/tokenrevoke/tokenrevoke/e2e/yaegiload"
)

// startAuthServer starts an embedded nats-server configured by mutate, on a free
// loopback port, and returns its URL.
func startAuthServer(t *testing.T, base *server.Options, mutate func(o *server.Options)) string {
	t.Helper()
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	o := base
	if o == nil {
		o = &server.Options{}
	}
	o.Host, o.Port, o.NoSigs, o.NoLog = "127.0.0.1", port, true, true
	mutate(o)
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

func fixture(t *testing.T, name string) string {
	return filepath.Join(yaegiload.RepoRoot(), "natsclient", "testdata", name)
}

func readFixture(t *testing.T, name string) string {
	b, err := os.ReadFile(fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestAuthMethods runs two gateways against a server that requires each authentication
// method in turn; the wrong credentials give a clear logged error and no connection.
func TestAuthMethods(t *testing.T) {
	cases := []struct {
		name   string
		config string // a server config file among the fixtures, if any
		server func(o *server.Options)
		good   map[string]interface{}
		bad    map[string]interface{}
	}{
		{
			name:   "token",
			server: func(o *server.Options) { o.Authorization = "gw-token-123" },
			good:   map[string]interface{}{"token": "gw-token-123"},
			bad:    map[string]interface{}{"token": "not-the-token"},
		},
		{
			name:   "user and password",
			server: func(o *server.Options) { o.Username, o.Password = "gateway", "gw-pass-456" },
			good:   map[string]interface{}{"user": "gateway", "password": "gw-pass-456"},
			bad:    map[string]interface{}{"user": "gateway", "password": "wrong-pass"},
		},
		{
			name: "nkey",
			server: func(o *server.Options) {
				o.Nkeys = []*server.NkeyUser{{Nkey: readFixture(t, "nkey-user.pub")}}
			},
			good: map[string]interface{}{"nkeySeed": readFixture(t, "nkey-user.seed")},
			bad:  map[string]interface{}{"token": "nope"},
		},
		{
			name:   "creds file",
			config: "operator-server.conf",
			server: func(o *server.Options) {},
			good:   map[string]interface{}{"credsFile": fixture(t, "user.creds")},
			bad:    map[string]interface{}{"credsFile": fixture(t, "bad-user.creds")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var base *server.Options
			if tc.config != "" {
				fo, err := server.ProcessConfigFile(fixture(t, tc.config))
				if err != nil {
					t.Fatal(err)
				}
				base = fo
			}
			url := startAuthServer(t, base, tc.server)
			a := newGateway(t, natsConfig([]string{url}, "gw-a", tc.good))
			b := newGateway(t, natsConfig([]string{url}, "gw-b", tc.good))
			a.waitConnected(10 * time.Second)
			b.waitConnected(10 * time.Second)
			tok := "auth-" + strings.ReplaceAll(tc.name, " ", "-") // a bearer token has no spaces
			if code := a.revoke(tok); code != 200 {
				t.Fatalf("revoke: %d\n%s", code, a.logged())
			}
			if !b.waitRejected(tok, 5*time.Second) {
				t.Fatal("not propagated")
			}
			bad := newGateway(t, natsConfig([]string{url}, "gw-bad", tc.bad))
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(strings.ToLower(bad.logged()), "authorization") && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			out := bad.logged()
			if !strings.Contains(strings.ToLower(out), "authorization") {
				t.Fatalf("wrong credentials did not log an authorization error:\n%s", out)
			}
			if strings.Contains(bad.status(), `"connected":true`) {
				t.Fatal("connected with wrong credentials")
			}
			for _, v := range tc.bad {
				if s, ok := v.(string); ok && !strings.HasSuffix(s, ".creds") && strings.Contains(out, s) {
					t.Errorf("the log shows the credential %q", s)
				}
			}
			if code := bad.revoke("x"); code != 500 {
				t.Errorf("revoke without an authorized connection: %d, want 500", code)
			}
		})
	}
}
