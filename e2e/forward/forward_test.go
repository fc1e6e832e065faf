// Package forward tests revokeMode: forward and tokenPath end to end: a real OpenID
// Provider (oidc-provider, e2e/idp) behind real Traefik gateways sharing revocations
// over NATS JetStream, driven by a real OAuth client (openid-client, e2e/idp/client.mjs).
//
// Gateway A is in forward mode: its revokePath is mapped by Traefik's replacePath to the
// provider's revocation endpoint, and the provider's token endpoint is its tokenPath.
// Gateway B is in local mode (it authenticates its own client) with the same tokenPath.
// Both protect an echo backend (the resource server) on every other path.
package forward

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
	"github.com/tokenrevoke/tokenrevoke/e2e/idptest"
)

const (
	revokePath = "/api/id/v1/auth/token/revoke"
	stream     = "REVOCATIONS"
	opsID      = "ops"        // gateway B's own revocation client (local mode)
	opsSecret  = "ops-secret" // never sent to the provider
)

var client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

type fixture struct {
	idp       *idptest.IdP
	a, b      *harness.Traefik
	nats      *harness.NATS
	tokenPath string // the provider's token endpoint path, tokenPath of both gateways
}

// plugin is a gateway's tokenrevoke configuration.
func plugin(natsURL, name, tokenPath string, forward bool) map[string]any {
	c := map[string]any{
		"revokePath": revokePath,
		"tokenPath":  tokenPath,
		"cacheSize":  10000,
		"defaultTTL": "1h",
		"nats":       map[string]any{"servers": []any{natsURL}, "name": name, "stream": stream},
	}
	if forward {
		c["revokeMode"] = "forward"
	} else {
		c["clients"] = []any{map[string]any{"id": opsID, "secret": opsSecret}}
	}
	return c
}

// routes sends the provider's paths (token, revocation, introspection: /token..., in
// any case, as the provider's router reads them) to the provider through the plugin, and on a forward-mode gateway revokePath to its
// revocation endpoint (replacePath after the plugin). Everything else goes to the echo
// backend (the harness's main router).
func routes(idp *idptest.IdP, forward bool) map[string]any {
	u, _ := url.Parse(idp.RevocationEndpoint)
	routers := map[string]any{
		"idp": map[string]any{
			"entryPoints": []any{"web"}, "rule": "PathRegexp(`(?i)^/token`)", "priority": 9500,
			"middlewares": []any{"revoke"}, "service": "idp",
		},
	}
	middlewares := map[string]any{}
	if forward {
		routers["idp-revoke"] = map[string]any{
			"entryPoints": []any{"web"}, "rule": "Path(`" + revokePath + "`)", "priority": 9600,
			"middlewares": []any{"revoke", "to-revocation"}, "service": "idp",
		}
		middlewares["to-revocation"] = map[string]any{"replacePath": map[string]any{"path": u.Path}}
	}
	return map[string]any{"http": map[string]any{
		"routers":     routers,
		"middlewares": middlewares,
		"services": map[string]any{"idp": map[string]any{"loadBalancer": map[string]any{
			"servers": []any{map[string]any{"url": idp.URL}},
		}}},
	}}
}

func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{}
	f.nats = harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	f.idp = idptest.Start(t, idptest.Options{})
	tu, err := url.Parse(f.idp.TokenEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	f.tokenPath = tu.Path
	backend := harness.StartBackend(t)
	f.a = harness.StartTraefik(t, harness.TraefikOptions{Name: "a", Dynamic: harness.Dynamic{
		BackendURL: backend.URL, Plugin: plugin(f.nats.URL, "gw-a", f.tokenPath, true), Extra: routes(f.idp, true),
	}})
	f.b = harness.StartTraefik(t, harness.TraefikOptions{Name: "b", Dynamic: harness.Dynamic{
		BackendURL: backend.URL, Plugin: plugin(f.nats.URL, "gw-b", f.tokenPath, false), Extra: routes(f.idp, false),
	}})
	return f
}

// bearer is the status of a GET of the resource server through gw with tok.
func bearer(t *testing.T, gw *harness.Traefik, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, gw.WebURL+"/resource", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /resource through %s: %v", gw.Name, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// waitBearer polls until gw answers want for tok, or fails after d.
func waitBearer(t *testing.T, gw *harness.Traefik, tok string, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := bearer(t, gw, tok)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway %s answers %d for the token, want %d", gw.Name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type answer struct {
	status int
	header http.Header
	body   string
}

// describe is an answer's body for a failure message, unless it holds tokens.
func (a answer) describe() string {
	if strings.Contains(a.body, "_token") {
		return "(a body holding tokens)"
	}
	return a.body
}

// postForm posts a form with HTTP Basic credentials.
func postForm(t *testing.T, target, id, secret string, form url.Values) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret))))
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

// tokenPosts counts the POSTs to the token endpoint the provider received.
func (f *fixture) tokenPosts(t *testing.T) int {
	t.Helper()
	n := 0
	for _, r := range f.idp.Requests(t) {
		if r.Method == http.MethodPost && r.Path == f.tokenPath {
			n++
		}
	}
	return n
}

// checkRefusedAtEdge refreshes s through gw's tokenPath, with openid-client and with a
// plain form POST, and requires the gateway's 400 invalid_grant without the provider
// receiving either request.
func (f *fixture) checkRefusedAtEdge(t *testing.T, gw *harness.Traefik, s idptest.Session) {
	t.Helper()
	before := f.tokenPosts(t)
	_, err := f.idp.TryRefresh(s, idptest.TokenEndpoint(gw.WebURL+f.tokenPath))
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") || !strings.Contains(err.Error(), "The refresh token has been revoked") {
		t.Fatalf("refresh through %s: %v, want the gateway's invalid_grant", gw.Name, err)
	}
	a := postForm(t, gw.WebURL+f.tokenPath, f.idp.ClientID, f.idp.ClientSecret,
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.RefreshToken}})
	var body map[string]string
	if a.status != http.StatusBadRequest || json.Unmarshal([]byte(a.body), &body) != nil ||
		body["error"] != "invalid_grant" || body["errorDescription"] == "" || len(body) != 2 {
		t.Fatalf("refresh POST through %s: %d %s, want 400 and the JSON error shape", gw.Name, a.status, a.describe())
	}
	if after := f.tokenPosts(t); after != before {
		t.Fatalf("the provider received %d token requests with the revoked refresh token", after-before)
	}
}

func TestForwardModeWithARealProvider(t *testing.T) {
	f := start(t)
	revokeAt := f.a.WebURL + revokePath

	t.Run("revoked through A: provider, both gateways and the token endpoint agree", func(t *testing.T) {
		s := f.idp.Login(t, "alice")
		if in := f.idp.Introspect(t, s.RefreshToken, "refresh_token"); in.Active == nil || !*in.Active {
			t.Fatalf("fresh refresh token not active at the provider: status %d, active %v", in.Status, in.Active != nil && *in.Active)
		}
		waitBearer(t, f.b, s.RefreshToken, http.StatusOK, time.Second)
		r := f.idp.Revoke(t, idptest.RevokeRequest{Endpoint: revokeAt, Token: s.RefreshToken, Hint: "refresh_token"})
		if r.Status != http.StatusOK || r.Error != "" {
			t.Fatalf("revocation through A: %+v", r)
		}
		if in := f.idp.Introspect(t, s.RefreshToken, "refresh_token"); in.Active == nil || *in.Active {
			t.Fatalf("the provider did not revoke it: status %d, active %v", in.Status, in.Active != nil && *in.Active)
		}
		// A's 200 came after NATS confirmed it: both gateways reject it at once.
		if got := bearer(t, f.a, s.RefreshToken); got != http.StatusUnauthorized {
			t.Fatalf("gateway A: %d", got)
		}
		waitBearer(t, f.b, s.RefreshToken, http.StatusUnauthorized, 2*time.Second)
		f.checkRefusedAtEdge(t, f.a, s)
		f.checkRefusedAtEdge(t, f.b, s)
	})

	t.Run("revoked at the edge only: the token endpoint refuses what the provider would accept", func(t *testing.T) {
		s := f.idp.Login(t, "bob")
		a := postForm(t, f.b.WebURL+revokePath, opsID, opsSecret, url.Values{"token": {s.RefreshToken}})
		if a.status != http.StatusOK {
			t.Fatalf("local revocation at B: %d %s", a.status, a.describe())
		}
		waitBearer(t, f.a, s.RefreshToken, http.StatusUnauthorized, 2*time.Second)
		f.checkRefusedAtEdge(t, f.a, s)
		// Spellings of the token endpoint's path that the provider's router (koa-router:
		// case-insensitive, optional trailing slash) serves too.
		for _, p := range []string{strings.ToUpper(f.tokenPath) + "/", f.tokenPath + "/"} {
			before := f.tokenPosts(t)
			a := postForm(t, f.a.WebURL+p, f.idp.ClientID, f.idp.ClientSecret,
				url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.RefreshToken}})
			if a.status != http.StatusBadRequest || !strings.Contains(a.body, `"errorDescription"`) || f.tokenPosts(t) != before {
				t.Fatalf("refresh at %s through A: %d %s", p, a.status, a.describe())
			}
		}
		// The provider itself never heard of the revocation, and refreshes at such a path.
		if in := f.idp.Introspect(t, s.RefreshToken, "refresh_token"); in.Active == nil || !*in.Active {
			t.Fatalf("introspection: status %d, active %v", in.Status, in.Active != nil && *in.Active)
		}
		a = postForm(t, f.idp.URL+strings.ToUpper(f.tokenPath)+"/", f.idp.ClientID, f.idp.ClientSecret,
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.RefreshToken}})
		if a.status != http.StatusOK || !strings.Contains(a.body, "access_token") {
			t.Fatalf("direct refresh at the provider's %s/: %d %s", strings.ToUpper(f.tokenPath), a.status, a.describe())
		}
	})

	t.Run("a refresh token that is not revoked refreshes through A", func(t *testing.T) {
		s := f.idp.Login(t, "erin")
		before := f.tokenPosts(t)
		n := f.idp.Refresh(t, s, idptest.TokenEndpoint(f.a.WebURL+f.tokenPath))
		if n.AccessToken == "" || f.tokenPosts(t) != before+1 {
			t.Fatalf("refresh through A: access token issued %v, provider token requests %d -> %d", n.AccessToken != "", before, f.tokenPosts(t))
		}
	})

	t.Run("wrong client secret: the provider's 401 relayed, nothing revoked", func(t *testing.T) {
		s := f.idp.Login(t, "carol")
		direct := f.idp.Revoke(t, idptest.RevokeRequest{Token: s.RefreshToken, ClientID: f.idp.ClientID, ClientSecret: "wrong"})
		via := f.idp.Revoke(t, idptest.RevokeRequest{Endpoint: revokeAt, Token: s.RefreshToken, ClientID: f.idp.ClientID, ClientSecret: "wrong"})
		if direct.Status != http.StatusUnauthorized || via.Status != direct.Status || via.Body != direct.Body {
			t.Fatalf("through A: %d %s; the provider itself: %d %s", via.Status, via.Body, direct.Status, direct.Body)
		}
		raw := postForm(t, revokeAt, f.idp.ClientID, "wrong", url.Values{"token": {s.RefreshToken}})
		if raw.status != http.StatusUnauthorized || !strings.Contains(raw.body, "invalid_client") ||
			raw.header.Get("Www-Authenticate") == `Basic realm="tokenrevoke"` {
			t.Fatalf("raw POST through A: %d %v %s, want the provider's 401", raw.status, raw.header, raw.describe())
		}
		time.Sleep(300 * time.Millisecond) // room for a wrongly shared revocation to arrive
		if a, b := bearer(t, f.a, s.RefreshToken), bearer(t, f.b, s.RefreshToken); a != http.StatusOK || b != http.StatusOK {
			t.Fatalf("after a refused revocation: A %d, B %d, want 200", a, b)
		}
		if in := f.idp.Introspect(t, s.RefreshToken, "refresh_token"); in.Active == nil || !*in.Active {
			t.Fatalf("the provider revoked it: status %d, active %v", in.Status, in.Active != nil && *in.Active)
		}
		f.idp.Refresh(t, s, idptest.TokenEndpoint(f.a.WebURL+f.tokenPath))
	})

	t.Run("NATS down: 500 server_error, the provider's revocation stands, a retry succeeds", func(t *testing.T) {
		s := f.idp.Login(t, "frank")
		f.nats.Shutdown()
		a := postForm(t, revokeAt, f.idp.ClientID, f.idp.ClientSecret, url.Values{"token": {s.RefreshToken}})
		var body map[string]string
		if a.status != http.StatusInternalServerError || json.Unmarshal([]byte(a.body), &body) != nil || body["error"] != "server_error" {
			t.Fatalf("revocation through A with NATS down: %d %s, want 500 server_error", a.status, a.describe())
		}
		if in := f.idp.Introspect(t, s.RefreshToken, "refresh_token"); in.Active == nil || *in.Active {
			t.Fatalf("the provider's revocation does not stand: status %d, active %v", in.Status, in.Active != nil && *in.Active)
		}
		if got := bearer(t, f.a, s.RefreshToken); got != http.StatusUnauthorized {
			t.Fatalf("A does not keep the revocation it could not share: %d", got)
		}
		if err := f.nats.Restart(); err != nil {
			t.Fatal(err)
		}
		// The retry: the provider answers 200 again (RFC 7009), and A shares it.
		deadline := time.Now().Add(15 * time.Second)
		for {
			a = postForm(t, revokeAt, f.idp.ClientID, f.idp.ClientSecret, url.Values{"token": {s.RefreshToken}})
			if a.status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("retry after NATS came back: %d %s", a.status, a.describe())
			}
			time.Sleep(200 * time.Millisecond)
		}
		waitBearer(t, f.b, s.RefreshToken, http.StatusUnauthorized, 5*time.Second)
	})

	t.Run("provider down: nothing revoked", func(t *testing.T) {
		s := f.idp.Login(t, "dave")
		f.idp.Stop()
		// openid-client without discovery (the provider is gone), the endpoint given.
		out, err := f.idp.Run("revoke", idptest.Flag("endpoint", revokeAt), idptest.Flag("token", s.RefreshToken),
			idptest.Flag("client-id", f.idp.ClientID), idptest.Flag("client-secret", f.idp.ClientSecret))
		var r idptest.Result
		if err != nil || json.Unmarshal(out, &r) != nil {
			t.Fatalf("revoke with the provider down: %v %s", err, out)
		}
		if r.Status != http.StatusBadGateway {
			t.Fatalf("revocation with the provider down: %+v, want Traefik's 502", r)
		}
		time.Sleep(300 * time.Millisecond)
		if a, b := bearer(t, f.a, s.RefreshToken), bearer(t, f.b, s.RefreshToken); a != http.StatusOK || b != http.StatusOK {
			t.Fatalf("provider down: A %d, B %d, want 200 (nothing revoked)", a, b)
		}
	})
}
