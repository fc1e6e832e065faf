package yaegiload

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/idptest"
	"github.com/traefik/paerser/parser"
)

// The session keys (issuers, maxTokenLifetime, backchannelLogoutPath) as an operator
// writes them in Docker labels and in a YAML file, decoded by Traefik's own decoders
// (paerser) and handed to the plugin under yaegi: the logout receiver accepts the
// issuer's logout token and the session's access token is rejected afterwards.
func TestLogoutConfigFromLabelsAndYAML(t *testing.T) {
	signer := idptest.NewSigner(t, "https://idp.example.com")
	labels := map[string]string{
		"traefik.http.middlewares.revoke.plugin.tokenrevoke.clients[0].id":         "portal",
		"traefik.http.middlewares.revoke.plugin.tokenrevoke.clients[0].secret":     "s3cret",
		"traefik.http.middlewares.revoke.plugin.tokenrevoke.issuers[0].issuer":     signer.Issuer,
		"traefik.http.middlewares.revoke.plugin.tokenrevoke.issuers[0].jwks":       signer.JWKS(),
		"traefik.http.middlewares.revoke.plugin.tokenrevoke.issuers[0].audience":   "gateway",
		"traefik.http.middlewares.revoke.plugin.tokenrevoke.maxTokenLifetime":      "1h",
		"traefik.http.middlewares.revoke.plugin.tokenrevoke.backchannelLogoutPath": "/api/id/v1/auth/backchannel-logout",
		"traefik.http.middlewares.revoke.plugin.tokenrevoke.refreshRevokesSession": "true",
		"traefik.http.middlewares.revoke.plugin.tokenrevoke.statusPath":            "/status",
	}
	var fromLabels dynamicFile
	if err := parser.Decode(labels, &fromLabels, parser.DefaultRootName, "traefik.http"); err != nil {
		t.Fatal(err)
	}
	labelConf := fromLabels.HTTP.Middlewares["revoke"].Plugin["tokenrevoke"]

	yaml := `http:
  middlewares:
    revoke:
      plugin:
        tokenrevoke:
          clients:
            - id: portal
              secret: s3cret
          issuers:
            - issuer: ` + signer.Issuer + `
              jwks: '` + signer.JWKS() + `'
              audience: gateway
          maxTokenLifetime: 1h
          backchannelLogoutPath: /api/id/v1/auth/backchannel-logout
          refreshRevokesSession: true
          statusPath: /status
`
	yamlConf, err := PluginConfig(yaml, ".yml", "revoke", "tokenrevoke")
	if err != nil {
		t.Fatal(err)
	}
	for name, conf := range map[string]map[string]interface{}{"labels": labelConf, "yaml": yamlConf} {
		t.Run(name, func(t *testing.T) {
			p := loadPlugin(t)
			h, err := p.New(context.Background(), http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(200) }), conf, "revoke@"+name)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			now := time.Now().Unix()
			tok := signer.AccessToken(t, "alice", "s-1", now-5)
			if got := do(h, bearer(tok)).Code; got != 200 {
				t.Fatalf("before the logout: %d", got)
			}
			req := httptest.NewRequest(http.MethodPost, "/api/id/v1/auth/backchannel-logout",
				strings.NewReader("logout_token="+url.QueryEscape(signer.LogoutToken(t, "gateway", "alice", "s-1"))))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if rec := do(h, req); rec.Code != 200 {
				t.Fatalf("logout: %d %s", rec.Code, rec.Body.String())
			}
			if got := do(h, bearer(tok)).Code; got != 401 {
				t.Fatalf("after the logout: %d", got)
			}
			st := httptest.NewRequest(http.MethodGet, "/status", nil)
			st.Header.Set("Authorization", basicAuth("portal", "s3cret"))
			if body := do(h, st).Body.String(); !strings.Contains(body, `"issuer":"https://idp.example.com"`) || !strings.Contains(body, `"rules":1`) {
				t.Fatalf("status: %s", body)
			}
		})
	}
}
