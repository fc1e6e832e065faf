package e2e_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
	"github.com/tokenrevoke/tokenrevoke/e2e/idptest"
)

const logoutPath = "/api/id/v1/auth/backchannel-logout"

// logoutPluginConfig is pluginConfig on JetStream with idp as the configured issuer and
// the back-channel logout receiver on.
func logoutPluginConfig(natsURL, name string, idp *idptest.IdP) map[string]any {
	cfg := pluginConfig(natsURL, name)
	cfg["nats"].(map[string]any)["stream"] = "REVOCATIONS"
	cfg["statusPath"] = "/status"
	cfg["issuers"] = []any{map[string]any{"issuer": idp.Issuer, "jwksURL": idp.JWKSURL, "audience": idp.ClientID}}
	cfg["backchannelLogoutPath"] = logoutPath
	cfg["maxTokenLifetime"] = "1h"
	return cfg
}

// startLogoutFleet starts NATS with JetStream, a backend, a real OpenID Provider whose
// client has gateway A's receiver as its back-channel logout URI (ES256 access tokens),
// and two Traefik gateways on the stream (editA, if set, changes A's configuration).
func startLogoutFleet(t *testing.T, editA func(cfg map[string]any)) (*idptest.IdP, *harness.Traefik, *harness.Traefik) {
	t.Helper()
	n := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	backend := harness.StartBackend(t)
	portA, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	idp := idptest.Start(t, idptest.Options{
		BackchannelLogoutURIs: []string{fmt.Sprintf("http://127.0.0.1:%d%s", portA, logoutPath)},
		AccessTokenAlg:        "ES256",
	})
	cfgA := logoutPluginConfig(n.URL, "gw-a", idp)
	if editA != nil {
		editA(cfgA)
	}
	a := harness.StartTraefik(t, harness.TraefikOptions{Name: "a", API: true, WebPort: portA,
		Dynamic: harness.Dynamic{BackendURL: backend.URL, Plugin: cfgA}})
	b := startGateway(t, "b", backend, logoutPluginConfig(n.URL, "gw-b", idp))
	return idp, a, b
}

// The whole path with a real OpenID Provider (oidc-provider) and real Traefik gateways:
// a user's two sessions, the provider's own logout token for one of them received by
// gateway A, gateway B rejecting that session's access token and passing the other's;
// then a subject-wide logout ending every session; a later login passing again.
func TestBackchannelLogoutRealIdPAndTraefik(t *testing.T) {
	idp, a, b := startLogoutFleet(t, nil)

	s1 := idp.Login(t, "alice")
	s2 := idp.Login(t, "alice")
	if s1.SID == s2.SID || s1.Sub != s2.Sub {
		t.Fatalf("want two sessions of one user: %q %q / %q %q", s1.SID, s2.SID, s1.Sub, s2.Sub)
	}
	for _, s := range []idptest.Session{s1, s2} {
		for _, gw := range []*harness.Traefik{a, b} {
			if r := bearerGet(t, gw, s.AccessToken); r.status != http.StatusOK {
				t.Fatalf("before any logout, gateway %s: %s", gw.Name, r)
			}
		}
	}

	// The user signs out of session 1: the provider POSTs its logout token to A.
	ds := idp.Logout(t, s1)
	if len(ds) != 1 || ds[0].Event != "backchannel.success" {
		t.Fatalf("deliveries of the provider's logout token: %+v\nA log:\n%s", ds, a.Log())
	}
	took := waitRevoked(t, b, s1.AccessToken, 2*time.Second)
	t.Logf("session 1 rejected by B %v after A answered the provider", took)
	checkRevoked(t, "gateway a", bearerGet(t, a, s1.AccessToken))
	// Every place a backend could read it from.
	q := do(t, newRequest(t, http.MethodGet, b.WebURL+"/resource?access_token="+url.QueryEscape(s1.AccessToken), nil))
	checkRevoked(t, "gateway b, query", q)
	if r := bearerGet(t, b, s2.AccessToken); r.status != http.StatusOK {
		t.Fatalf("B rejects the other session: %s", r)
	}

	// The provider ends every session of the user (a logout token with sub and no sid).
	idp.LogoutSubject(t, s1.Sub)
	waitRevoked(t, b, s2.AccessToken, 2*time.Second)

	// A login after that is a new start: its tokens pass (iat after the cutoff).
	time.Sleep(1100 * time.Millisecond)
	s3 := idp.Login(t, "alice")
	for _, gw := range []*harness.Traefik{a, b} {
		if r := bearerGet(t, gw, s3.AccessToken); r.status != http.StatusOK {
			t.Fatalf("gateway %s rejects a login after the logout: %s", gw.Name, r)
		}
	}

	// Verified revocations: s3's token revoked through A is enforced on B; the same
	// claims under alg none are answered 200 and not stored.
	parts := strings.Split(s3.AccessToken, ".")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
	if r := revoke(t, a, forged, basicAuth); r.status != http.StatusOK {
		t.Fatalf("revoking a forgery: %s", r)
	}
	if r := revoke(t, a, s3.AccessToken, basicAuth); r.status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	waitRevoked(t, b, s3.AccessToken, 2*time.Second)

	doc := statusDoc(t, b, "/status")
	if doc["rules"] != float64(2) {
		t.Fatalf("B status: rules %v, want 2: %v", doc["rules"], doc)
	}
	iss := doc["issuers"].([]any)[0].(map[string]any)
	if iss["fetchedAt"] == nil || len(iss["keys"].([]any)) == 0 {
		t.Fatalf("B status: issuer keys %v", iss)
	}
	docA := statusDoc(t, a, "/status")
	if docA["entries"] != float64(1) {
		t.Fatalf("A holds %v entries, want only the genuine token (the forgery is not stored)", docA["entries"])
	}
	for _, gw := range []*harness.Traefik{a, b} {
		for _, secret := range []string{s1.SID, s2.SID, s1.Sub, s3.AccessToken} {
			if gw.LogContains(secret) {
				t.Fatalf("gateway %s logged a sid, sub or token", gw.Name)
			}
		}
		checkNoPluginErrors(t, gw)
	}
}

// A user whose sessions end over and over (a login/logout loop) through the provider's
// real logout tokens: past 50 session rules of that subject at gateway A, A turns the
// user's further session logouts into one subject rule, which B enforces: the loop holds
// 51 rules however long it runs, the user's open session ends, another user's passes.
func TestLogoutLoopFoldsIntoSubjectRuleAcrossGateways(t *testing.T) {
	idp, a, b := startLogoutFleet(t, func(cfgA map[string]any) { cfgA["metricsPath"] = "/metrics" })

	looper := idp.Login(t, "mallory")
	other := idp.Login(t, "carol")
	logout := func(i int) {
		t.Helper()
		ds, err := idp.SendLogoutToken(looper.Sub, fmt.Sprintf("loop-%d", i))
		if err != nil || len(ds) != 1 || ds[0].Status != http.StatusOK {
			t.Fatalf("logout %d: %v %+v\nA log:\n%s", i, err, ds, a.Log())
		}
	}
	for i := 0; i < 50; i++ {
		logout(i)
	}
	waitRules := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			doc := statusDoc(t, b, "/status")
			if doc["rules"] == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("B holds %v rules, want %v", doc["rules"], want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitRules(50)
	if r := bearerGet(t, b, looper.AccessToken); r.status != http.StatusOK {
		t.Fatalf("the looping user's open session after 50 other sessions ended: %s", r)
	}
	for i := 50; i < 80; i++ {
		logout(i)
	}
	waitRules(51)
	waitRevoked(t, b, looper.AccessToken, 2*time.Second)
	if r := bearerGet(t, b, other.AccessToken); r.status != http.StatusOK {
		t.Fatalf("another user's session: %s", r)
	}
	resp, err := http.Get(a.WebURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var page strings.Builder
	_, _ = io.Copy(&page, resp.Body)
	resp.Body.Close()
	if !strings.Contains(page.String(), "\ntokenrevoke_session_rules_folded_total 30\n") {
		t.Fatalf("A's metrics:\n%s", page.String())
	}
	if !a.LogContains("more than 50 sessions of subject") {
		t.Fatalf("A did not warn:\n%s", a.Log())
	}
	for _, gw := range []*harness.Traefik{a, b} {
		for _, secret := range []string{looper.Sub, looper.SID, looper.AccessToken} {
			if gw.LogContains(secret) {
				t.Fatalf("gateway %s logged a sid, sub or token", gw.Name)
			}
		}
	}
	checkNoPluginErrors(t, b)
	// Traefik logs a plugin's stderr at error level: on A, the warning is the one line.
	for _, line := range a.ErrorLines() {
		if !strings.Contains(line, "more than 50 sessions of subject") {
			t.Errorf("gateway a: error in log: %s", line)
		}
	}
}
