package idptest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/idptest"
)

const logoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// receiver is a back-channel logout endpoint that keeps what it is sent.
type receiver struct {
	*httptest.Server
	mu    sync.Mutex
	posts []post
	ch    chan post
}

type post struct {
	method, contentType, logoutToken string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{ch: make(chan post, 16)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		form, _ := url.ParseQuery(string(b))
		p := post{method: req.Method, contentType: req.Header.Get("Content-Type"), logoutToken: form.Get("logout_token")}
		r.mu.Lock()
		r.posts = append(r.posts, p)
		r.mu.Unlock()
		r.ch <- p
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) uri() string { return r.URL + "/api/id/v1/auth/backchannel-logout" }

// next waits for the next POST.
func (r *receiver) next(t *testing.T) post {
	t.Helper()
	select {
	case p := <-r.ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no back-channel logout POST within 10s")
		return post{}
	}
}

func (r *receiver) none(t *testing.T) {
	t.Helper()
	select {
	case p := <-r.ch:
		t.Fatalf("unexpected back-channel POST: %+v", p)
	default:
	}
}

// checkAccessToken verifies a JWT access token and its claims.
func checkAccessToken(t *testing.T, idp *idptest.IdP, jwks idptest.JWKS, s idptest.Session, alg string) *idptest.JWT {
	t.Helper()
	at, err := jwks.Verify(s.AccessToken)
	if err != nil {
		t.Fatalf("access token signature: %v", err)
	}
	if at.Alg() != alg || at.Typ() != "at+jwt" {
		t.Errorf("access token header alg=%s typ=%s, want %s at+jwt", at.Alg(), at.Typ(), alg)
	}
	if at.String("iss") != idp.Issuer || at.String("sub") != s.Sub || at.String("sid") != s.SID ||
		at.String("aud") != idp.Resource || at.String("client_id") != idp.ClientID || at.String("jti") == "" {
		t.Errorf("access token claims %v (issuer %s, session %+v)", at.Claims, idp.Issuer, s)
	}
	now := time.Now().Unix()
	if iat, exp := at.Int("iat"), at.Int("exp"); iat < now-60 || iat > now+5 || exp <= iat {
		t.Errorf("access token iat=%d exp=%d now=%d", iat, exp, now)
	}
	return at
}

// checkLogoutToken verifies a back-channel logout POST (OpenID Connect Back-Channel
// Logout 1.0, section 2.4) and returns the token.
func checkLogoutToken(t *testing.T, idp *idptest.IdP, jwks idptest.JWKS, p post, alg, sub, sid string) *idptest.JWT {
	t.Helper()
	if p.method != http.MethodPost || !strings.HasPrefix(p.contentType, "application/x-www-form-urlencoded") {
		t.Errorf("logout POST: %s %s", p.method, p.contentType)
	}
	lt, err := jwks.Verify(p.logoutToken)
	if err != nil {
		t.Fatalf("logout token signature: %v (%q)", err, p.logoutToken)
	}
	if lt.Alg() != alg || lt.Typ() != "logout+jwt" {
		t.Errorf("logout token header alg=%s typ=%s, want %s logout+jwt", lt.Alg(), lt.Typ(), alg)
	}
	if lt.String("iss") != idp.Issuer || lt.String("aud") != idp.ClientID || lt.String("sub") != sub ||
		lt.String("sid") != sid || lt.String("jti") == "" || lt.Int("iat") == 0 {
		t.Errorf("logout token claims %v, want sub=%q sid=%q", lt.Claims, sub, sid)
	}
	if _, ok := lt.Claims["nonce"]; ok {
		t.Error("logout token has a nonce")
	}
	if _, ok := lt.Claims["sid"]; sid == "" && ok {
		t.Error("sub-only logout token has a sid claim")
	}
	events, _ := lt.Claims["events"].(map[string]any)
	if ev, ok := events[logoutEvent].(map[string]any); !ok || len(ev) != 0 {
		t.Errorf("logout token events %v", lt.Claims["events"])
	}
	return lt
}

func TestProviderWithoutPlugin(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	idp := idptest.Start(t, idptest.Options{BackchannelLogoutURIs: []string{rcv.uri()}})
	if idp.BackchannelLogoutURI != rcv.uri() {
		t.Fatalf("registered back-channel logout URI %q, want %q", idp.BackchannelLogoutURI, rcv.uri())
	}
	jwks := idp.JWKS(t)
	if len(jwks.Keys) != 3 {
		t.Errorf("JWKS has %d keys, want RSA, EC and OKP", len(jwks.Keys))
	}

	// Two logins of alice: two browsers, two provider sessions, two sids.
	s1 := idp.Login(t, "alice")
	s2 := idp.Login(t, "alice")
	if s1.Sub != "alice" || s2.Sub != "alice" || s1.SID == s2.SID || s1.RefreshToken == "" || s2.RefreshToken == "" {
		t.Fatalf("sessions: %+v / %+v", s1, s2)
	}
	checkAccessToken(t, idp, jwks, s1, "RS256")
	checkAccessToken(t, idp, jwks, s2, "RS256")
	idTok := idptest.MustParseJWT(t, s1.IDToken)
	if idTok.String("sid") != s1.SID || idTok.String("aud") != idp.ClientID {
		t.Errorf("ID token claims %v", idTok.Claims)
	}
	rcv.none(t)

	// Refresh keeps sub and sid; the refresh token rotates.
	r2 := idp.Refresh(t, s2)
	if r2.AccessToken == s2.AccessToken || r2.RefreshToken == s2.RefreshToken {
		t.Errorf("refresh did not give new tokens")
	}
	at := checkAccessToken(t, idp, jwks, r2, "RS256")
	if at.String("sid") != s2.SID || r2.SID != s2.SID {
		t.Errorf("refreshed access token sid %q, want %q", at.String("sid"), s2.SID)
	}

	// RP-initiated logout of the first session: one logout token for its sid.
	if ds := idp.Logout(t, s1); len(ds) != 1 || ds[0].Event != "backchannel.success" {
		t.Errorf("logout deliveries %+v", ds)
	}
	checkLogoutToken(t, idp, jwks, rcv.next(t), "RS256", "alice", s1.SID)
	rcv.none(t)
	if _, err := idp.TryRefresh(s1); err == nil {
		t.Error("refresh token of the logged-out session still works")
	}
	r2 = idp.Refresh(t, r2) // the other session lives on

	// Test hook: a sub-only logout token.
	ds := idp.LogoutSubject(t, "alice")
	if len(ds) != 1 || ds[0].URI != rcv.uri() || ds[0].Status != 200 {
		t.Errorf("deliveries %+v", ds)
	}
	checkLogoutToken(t, idp, jwks, rcv.next(t), "RS256", "alice", "")

	// What the provider recorded.
	var sources []string
	for _, e := range idp.Events(t) {
		sources = append(sources, e.Source+":"+e.Event)
	}
	if strings.Join(sources, ",") != "end_session:backchannel.success,test_hook:test.backchannel" {
		t.Errorf("events %v", sources)
	}

	// Revocation at the provider, then introspection. The refresh token is opaque;
	// oidc-provider neither revokes nor introspects JWT access tokens.
	if res := idp.Introspect(t, r2.RefreshToken, "refresh_token"); res.Active == nil || !*res.Active || res.Claims["sid"] != s2.SID {
		t.Fatalf("introspection before revocation: %+v", res)
	}
	if res := idp.Revoke(t, idptest.RevokeRequest{Token: r2.RefreshToken, Hint: "refresh_token"}); res.Status != 200 || res.Error != "" {
		t.Fatalf("revocation: %+v", res)
	}
	if res := idp.Introspect(t, r2.RefreshToken, "refresh_token"); res.Status != 200 || res.Active == nil || *res.Active {
		t.Fatalf("introspection after revocation: %+v", res)
	}
	if res := idp.Introspect(t, r2.AccessToken, ""); res.Status != 400 || !strings.Contains(res.Body, "unsupported_token_type") {
		t.Errorf("introspection of a JWT access token: %+v", res)
	}
	if _, err := idp.TryRefresh(r2); err == nil {
		t.Error("revoked refresh token still works")
	}
	// One opaque token in 64 starts with "-": it must reach the provider as a value,
	// not be taken for an option (a CI run failed on such a refresh token).
	if res := idp.Introspect(t, "-"+r2.RefreshToken[1:], "refresh_token"); res.Status != 200 || res.Active == nil || *res.Active {
		t.Errorf("introspection of a token starting with -: %+v", res)
	}
}

// Other algorithms, two back-channel logout URIs (two gateways) and a revocation sent
// to an endpoint that is not the provider's.
func TestAlgorithmsTwoReceiversForeignRevocation(t *testing.T) {
	t.Parallel()
	a, b := newReceiver(t), newReceiver(t)
	idp := idptest.Start(t, idptest.Options{
		BackchannelLogoutURIs: []string{a.uri(), b.uri()},
		AccessTokenAlg:        "ES256",
		IDTokenAlg:            "EdDSA",
		AccessTokenTTL:        2 * time.Minute,
	})
	jwks := idp.JWKS(t)
	s := idp.Login(t, "bob", idptest.Offline())
	at := checkAccessToken(t, idp, jwks, s, "ES256")
	if exp, iat := at.Int("exp"), at.Int("iat"); exp-iat != 120 {
		t.Errorf("access token lifetime %ds, want 120", exp-iat)
	}
	if h := idptest.MustParseJWT(t, s.IDToken); h.Alg() != "EdDSA" {
		t.Errorf("ID token alg %s", h.Alg())
	}

	idp.Logout(t, s)
	la := checkLogoutToken(t, idp, jwks, a.next(t), "EdDSA", "bob", s.SID)
	lb := checkLogoutToken(t, idp, jwks, b.next(t), "EdDSA", "bob", s.SID)
	if la.Raw != lb.Raw {
		t.Error("the two gateways got different logout tokens")
	}
	// offline_access: the refresh token outlives the provider session.
	if _, err := idp.TryRefresh(s); err != nil {
		t.Errorf("offline refresh token after logout: %v", err)
	}

	idp.LogoutSubject(t, "bob")
	checkLogoutToken(t, idp, jwks, a.next(t), "EdDSA", "bob", "")
	checkLogoutToken(t, idp, jwks, b.next(t), "EdDSA", "bob", "")

	// RFC 7009 request to a stand-in gateway endpoint, as another client.
	var got struct {
		user, pass, token, hint string
		ok                      bool
	}
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.user, got.pass, got.ok = r.BasicAuth()
		_ = r.ParseForm()
		got.token, got.hint = r.PostForm.Get("token"), r.PostForm.Get("token_type_hint")
		w.WriteHeader(http.StatusOK)
	}))
	defer gw.Close()
	res := idp.Revoke(t, idptest.RevokeRequest{
		Endpoint: gw.URL + "/api/id/v1/auth/token/revoke", Token: s.AccessToken, Hint: "access_token",
		ClientID: "portal", ClientSecret: "s3cret",
	})
	if res.Status != 200 || res.Endpoint != gw.URL+"/api/id/v1/auth/token/revoke" {
		t.Errorf("revocation result %+v", res)
	}
	if !got.ok || got.user != "portal" || got.pass != "s3cret" || got.token != s.AccessToken || got.hint != "access_token" {
		t.Errorf("the endpoint got %+v", got)
	}
}

// The issuer names a gateway in front of the provider (with a path): tokens carry it,
// discovery through the gateway names the gateway's endpoints, and the token endpoint
// can be reached through it.
func TestIssuerBehindGateway(t *testing.T) {
	t.Parallel()
	var target atomic.Pointer[url.URL]
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httputil.NewSingleHostReverseProxy(target.Load()).ServeHTTP(w, r)
	}))
	defer gw.Close()
	issuer := gw.URL + "/idp"
	idp := idptest.Start(t, idptest.Options{Issuer: issuer})
	u, _ := url.Parse(idp.URL)
	target.Store(u)
	if idp.Issuer != issuer || !strings.HasPrefix(idp.TokenEndpoint, idp.URL+"/idp/") {
		t.Fatalf("issuer %s, token endpoint %s", idp.Issuer, idp.TokenEndpoint)
	}

	res, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc map[string]any
	err = json.NewDecoder(res.Body).Decode(&disc)
	res.Body.Close()
	if err != nil || disc["issuer"] != issuer || disc["token_endpoint"] != issuer+"/token" {
		t.Fatalf("discovery through the gateway: %v %v", disc, err)
	}

	jwks := idp.JWKS(t)
	s := idp.Login(t, "carol", idptest.TokenEndpoint(issuer+"/token"))
	checkAccessToken(t, idp, jwks, s, "RS256")
	r := idp.Refresh(t, s, idptest.TokenEndpoint(issuer+"/token"))
	checkAccessToken(t, idp, jwks, r, "RS256")
	idp.Logout(t, r, idptest.EndSessionEndpoint(issuer+"/session/end"))
	if _, err := idp.TryRefresh(r); err == nil {
		t.Error("refresh after logout still works")
	}
}
