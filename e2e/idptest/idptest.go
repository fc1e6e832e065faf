// Package idptest starts a real OpenID Provider for tests: oidc-provider (a certified
// OpenID Provider, from npm) run by e2e/idp/server.mjs on 127.0.0.1, and drives it with a
// real OAuth client, openid-client, through e2e/idp/client.mjs: logins through the
// provider's own login and consent pages, refreshes, RP-initiated logouts that make the
// provider send real back-channel logout tokens, revocation and introspection.
//
//	idp := idptest.Start(t, idptest.Options{
//		BackchannelLogoutURIs: []string{gw.URL + "/api/id/v1/auth/backchannel-logout"},
//	})
//	s := idp.Login(t, "alice")          // s.AccessToken is a JWT with iss, sub, sid, iat, exp
//	idp.Logout(t, s)                    // the provider POSTs a logout_token to the gateway(s)
//	idp.LogoutSubject(t, "alice")       // test hook: a sub-only logout token
//
// Start runs `npm ci` in e2e/idp first when node_modules is missing or stale. The Node
// process is killed on t.Cleanup and exits by itself when its stdin (held by the test
// binary) closes. Its stderr goes to the test log when the test fails.
package idptest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defaults of the registered client and the resource server.
const (
	DefaultClientID     = "rp"
	DefaultClientSecret = "rp-secret"
	DefaultRedirectURI  = "http://127.0.0.1/tokenrevoke-e2e/callback"
	DefaultResource     = "https://api.tokenrevoke.test"
)

// Timeouts.
var (
	StartTimeout  = 30 * time.Second // from node start to the ready line
	ClientTimeout = 30 * time.Second // one client.mjs command
)

// Options configure the provider. Zero values take the defaults of server.mjs.
type Options struct {
	// Port to listen on (127.0.0.1); 0 picks a free one.
	Port int
	// Issuer overrides the issuer identifier (default http://127.0.0.1:<port>), e.g. the
	// URL of a gateway in front of the provider. A path in it is served on the local
	// listener too.
	Issuer string
	// BackchannelLogoutURIs of the client. With more than one, the provider's
	// backchannel_logout_uri is a relay on the IdP's listener that forwards each logout
	// token unchanged to all of them (oidc-provider registers one URI per client).
	BackchannelLogoutURIs []string
	// AccessTokenAlg signs the JWT access tokens: RS256 (default), ES256 or EdDSA.
	AccessTokenAlg string
	// IDTokenAlg signs ID tokens and logout tokens: RS256 (default), ES256 or EdDSA.
	IDTokenAlg string
	// AccessTokenTTL (default 10 min), RefreshTokenTTL (default 24 h).
	AccessTokenTTL, RefreshTokenTTL time.Duration
	// Resource is the resource indicator, the aud of access tokens (DefaultResource).
	Resource string
	// ClientID, ClientSecret, RedirectURI of the client (the defaults above).
	ClientID, ClientSecret, RedirectURI string
	// NoRefreshRotation keeps a refresh token valid after use (rotation is on by default).
	NoRefreshRotation bool
}

// IdP is a running provider.
type IdP struct {
	Issuer                string // issuer identifier (iss of every token)
	URL                   string // where it listens: http://127.0.0.1:<Port>
	Port                  int
	DiscoveryURL          string
	JWKSURL               string
	AuthorizationEndpoint string
	TokenEndpoint         string
	RevocationEndpoint    string
	IntrospectionEndpoint string
	EndSessionEndpoint    string
	TestLogoutEndpoint    string // the test hook behind LogoutSubject
	Resource              string
	AccessTokenAlg        string
	IDTokenAlg            string
	ClientID              string
	ClientSecret          string
	RedirectURI           string
	// BackchannelLogoutURI is the URI registered with the provider (a relay when
	// several were given); BackchannelLogoutURIs the ones the logout tokens reach.
	BackchannelLogoutURI  string
	BackchannelLogoutURIs []string

	dir    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *syncBuffer
	done   chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type readyLine struct {
	Issuer                string `json:"issuer"`
	Port                  int    `json:"port"`
	URL                   string `json:"url"`
	Discovery             string `json:"discovery"`
	JWKSURI               string `json:"jwks_uri"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
	TestLogout            string `json:"test_backchannel_logout"`
	Resource              string `json:"resource"`
	AccessTokenAlg        string `json:"access_token_alg"`
	IDTokenAlg            string `json:"id_token_alg"`
	Clients               []struct {
		ClientID              string   `json:"client_id"`
		ClientSecret          string   `json:"client_secret"`
		RedirectURIs          []string `json:"redirect_uris"`
		BackchannelLogoutURI  string   `json:"backchannel_logout_uri"`
		BackchannelLogoutURIs []string `json:"backchannel_logout_uris"`
	} `json:"clients"`
}

// Start installs the Node dependencies if needed, starts the provider and waits until it
// listens. It is stopped on t.Cleanup.
func Start(t testing.TB, opts Options) *IdP {
	t.Helper()
	dir := EnsureDeps(t)

	client := map[string]any{}
	if opts.ClientID != "" {
		client["client_id"] = opts.ClientID
	}
	if opts.ClientSecret != "" {
		client["client_secret"] = opts.ClientSecret
	}
	if opts.RedirectURI != "" {
		client["redirect_uris"] = []string{opts.RedirectURI}
	}
	if len(opts.BackchannelLogoutURIs) > 0 {
		client["backchannel_logout_uris"] = opts.BackchannelLogoutURIs
	}
	cfg := map[string]any{"port": opts.Port, "clients": []any{client}}
	if opts.Issuer != "" {
		cfg["issuer"] = opts.Issuer
	}
	if opts.AccessTokenAlg != "" {
		cfg["accessTokenAlg"] = opts.AccessTokenAlg
	}
	if opts.IDTokenAlg != "" {
		cfg["idTokenAlg"] = opts.IDTokenAlg
	}
	if opts.AccessTokenTTL > 0 {
		cfg["accessTokenTTL"] = int(opts.AccessTokenTTL / time.Second)
	}
	if opts.RefreshTokenTTL > 0 {
		cfg["refreshTokenTTL"] = int(opts.RefreshTokenTTL / time.Second)
	}
	if opts.Resource != "" {
		cfg["resource"] = opts.Resource
	}
	if opts.NoRefreshRotation {
		cfg["rotateRefreshToken"] = false
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(t.TempDir(), "idp.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	idp := &IdP{dir: dir, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd := exec.Command("node", "server.mjs", "--config", cfgPath)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	cmd.Stderr = idp.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("idptest: start node server.mjs: %v", err)
	}
	idp.cmd, idp.stdin = cmd, stdin
	go func() { _ = cmd.Wait(); close(idp.done) }()
	t.Cleanup(func() {
		idp.stop()
		if t.Failed() {
			t.Logf("idptest: identity provider stderr:\n%s", idp.stderr.String())
		}
	})

	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, err := r.ReadString('\n')
		if err == nil {
			lines <- line
		}
		close(lines)
		_, _ = io.Copy(idp.stderr, r) // nothing more is expected on stdout
	}()
	var line string
	select {
	case l, ok := <-lines:
		if !ok {
			<-idp.done
			t.Fatalf("idptest: server.mjs exited before it was ready (%v); stderr:\n%s", cmd.ProcessState, idp.stderr.String())
		}
		line = l
	case <-time.After(StartTimeout):
		t.Fatalf("idptest: server.mjs not ready after %s; stderr:\n%s", StartTimeout, idp.stderr.String())
	}
	var r readyLine
	if err := json.Unmarshal([]byte(line), &r); err != nil || len(r.Clients) == 0 {
		t.Fatalf("idptest: bad ready line %q: %v", line, err)
	}
	c := r.Clients[0]
	idp.Issuer, idp.URL, idp.Port = r.Issuer, r.URL, r.Port
	idp.DiscoveryURL, idp.JWKSURL = r.Discovery, r.JWKSURI
	idp.AuthorizationEndpoint, idp.TokenEndpoint = r.AuthorizationEndpoint, r.TokenEndpoint
	idp.RevocationEndpoint, idp.IntrospectionEndpoint = r.RevocationEndpoint, r.IntrospectionEndpoint
	idp.EndSessionEndpoint, idp.TestLogoutEndpoint = r.EndSessionEndpoint, r.TestLogout
	idp.Resource, idp.AccessTokenAlg, idp.IDTokenAlg = r.Resource, r.AccessTokenAlg, r.IDTokenAlg
	idp.ClientID, idp.ClientSecret = c.ClientID, c.ClientSecret
	if len(c.RedirectURIs) > 0 {
		idp.RedirectURI = c.RedirectURIs[0]
	}
	idp.BackchannelLogoutURI, idp.BackchannelLogoutURIs = c.BackchannelLogoutURI, c.BackchannelLogoutURIs
	t.Logf("idptest: identity provider %s listening on %s (pid %d)", idp.Issuer, idp.URL, cmd.Process.Pid)
	return idp
}

// stop closes the provider's stdin (it exits on that) and kills it if it is still
// there a few seconds later.
func (idp *IdP) stop() {
	_ = idp.stdin.Close()
	select {
	case <-idp.done:
		return
	case <-time.After(3 * time.Second):
	}
	_ = idp.cmd.Process.Kill()
	<-idp.done
}

// Stop stops the provider before the test ends (it is also stopped on t.Cleanup): its
// port then refuses connections.
func (idp *IdP) Stop() { idp.stop() }

// Stderr is what the provider wrote to stderr so far (one JSON line per back-channel
// delivery, logout, revoked grant and server error, besides oidc-provider's warnings).
func (idp *IdP) Stderr() string { return idp.stderr.String() }

// ---------------------------------------------------------------- client.mjs

// CallOption adjusts one client.mjs call.
type CallOption func(*callOpts)

type callOpts struct {
	flags []string
}

func flag(name, value string) CallOption {
	return func(c *callOpts) { c.flags = append(c.flags, Flag(name, value)) }
}

// Flag is one client.mjs option with its value in a single argument, "--name=value":
// a value given as the next argument is refused by node's parseArgs when it starts
// with "-", as one in 64 of the provider's opaque tokens do.
func Flag(name, value string) string { return "--" + name + "=" + value }

// TokenEndpoint sends the token requests (code exchange, refresh) to url, e.g. through
// a gateway.
func TokenEndpoint(url string) CallOption { return flag("token-endpoint", url) }

// IntrospectionEndpoint sends introspection requests to url.
func IntrospectionEndpoint(url string) CallOption { return flag("introspection-endpoint", url) }

// EndSessionEndpoint sends the RP-initiated logout to url.
func EndSessionEndpoint(url string) CallOption { return flag("end-session-endpoint", url) }

// AuthorizationEndpoint starts logins at url.
func AuthorizationEndpoint(url string) CallOption { return flag("authorization-endpoint", url) }

// Client authenticates as another client (client_secret_basic).
func Client(id, secret string) CallOption {
	return func(c *callOpts) { c.flags = append(c.flags, Flag("client-id", id), Flag("client-secret", secret)) }
}

// Scope replaces the requested scope ("openid api").
func Scope(scope string) CallOption { return flag("scope", scope) }

// Offline adds offline_access (with prompt=consent): the refresh token then outlives
// the provider session instead of ending with it.
func Offline() CallOption {
	return func(c *callOpts) { c.flags = append(c.flags, "--offline") }
}

// Password is the one typed into the login form (the dev login form takes any).
func Password(p string) CallOption { return flag("password", p) }

func (idp *IdP) baseFlags() []string {
	return []string{
		Flag("discovery", idp.DiscoveryURL),
		Flag("issuer", idp.Issuer),
		Flag("client-id", idp.ClientID),
		Flag("client-secret", idp.ClientSecret),
		Flag("redirect-uri", idp.RedirectURI),
		Flag("timeout", fmt.Sprint(int(ClientTimeout/time.Second))),
	}
}

// Run runs `node client.mjs <command> <args...>` and returns its stdout; an error carries
// its exit status and stderr. It needs no running provider when the arguments name
// every endpoint (revoke --endpoint).
func (idp *IdP) Run(command string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ClientTimeout+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"client.mjs", command}, args...)...)
	cmd.Dir = idp.dir
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("client.mjs %s: %v after %s: %s", command, err,
			time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func (idp *IdP) call(command string, out any, opts []CallOption, args ...string) error {
	var co callOpts
	for _, o := range opts {
		o(&co)
	}
	all := append(idp.baseFlags(), args...)
	all = append(all, co.flags...) // later flags win in node:util parseArgs
	b, err := idp.Run(command, all...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("client.mjs %s: bad output %q: %v", command, b, err)
	}
	return nil
}

// Session is what a login hands to the relying party, plus the cookies of the browser
// that logged in (the provider's session cookie), which Logout needs.
type Session struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	SID          string `json:"sid"` // the session id of this login for this client (ID token, access token and logout token)
	Sub          string `json:"sub"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	Cookies      string `json:"cookies"`
}

// Login signs user in through the provider's login and consent pages (authorization
// code flow with PKCE, state and nonce; the ID token is validated by openid-client).
// Each call is a new browser, so a new provider session with its own sid.
func (idp *IdP) Login(t testing.TB, user string, opts ...CallOption) Session {
	t.Helper()
	var s Session
	if err := idp.call("login", &s, opts, Flag("user", user)); err != nil {
		t.Fatalf("idptest: login %s: %v", user, err)
	}
	if s.AccessToken == "" || s.SID == "" {
		t.Fatalf("idptest: login %s: no access token or sid: %+v", user, s)
	}
	return s
}

// TryRefresh uses s.RefreshToken at the token endpoint. The session it returns keeps
// s's cookies, and s's refresh token when none new was issued.
func (idp *IdP) TryRefresh(s Session, opts ...CallOption) (Session, error) {
	var n Session
	if err := idp.call("refresh", &n, opts, Flag("refresh-token", s.RefreshToken)); err != nil {
		return Session{}, err
	}
	if n.RefreshToken == "" {
		n.RefreshToken = s.RefreshToken
	}
	if n.IDToken == "" {
		n.IDToken = s.IDToken
	}
	n.Cookies = s.Cookies
	return n, nil
}

// Refresh is TryRefresh failing the test on error.
func (idp *IdP) Refresh(t testing.TB, s Session, opts ...CallOption) Session {
	t.Helper()
	n, err := idp.TryRefresh(s, opts...)
	if err != nil {
		t.Fatalf("idptest: refresh: %v", err)
	}
	return n
}

// Logout is an RP-initiated logout of s: the browser that logged in opens the
// end_session endpoint with s.IDToken as id_token_hint and answers the provider's
// confirmation form "Yes, sign me out". The provider ends its session, revokes the
// session's grants and POSTs a logout token (sub, sid, events) to the client's
// back-channel logout URI before it answers, so the deliveries are done when Logout
// returns: it returns the provider's record of them (event backchannel.success or
// backchannel.error), without judging them.
func (idp *IdP) Logout(t testing.TB, s Session, opts ...CallOption) []Delivery {
	t.Helper()
	var out struct {
		OK bool `json:"ok"`
	}
	if err := idp.call("logout", &out, opts, Flag("id-token", s.IDToken), Flag("cookies", s.Cookies)); err != nil || !out.OK {
		t.Fatalf("idptest: logout: %v", err)
	}
	var ds []Delivery
	for _, d := range idp.Events(t) {
		if d.Source == "end_session" && d.SID == s.SID {
			ds = append(ds, d)
		}
	}
	return ds
}

// RevokeRequest is an RFC 7009 revocation request.
type RevokeRequest struct {
	Endpoint     string // default: the provider's revocation endpoint
	Token        string
	Hint         string // token_type_hint, optional
	ClientID     string // default: the IdP's client
	ClientSecret string
}

// Result is the answer to a revocation or introspection request.
type Result struct {
	Endpoint string         `json:"endpoint"`
	Status   int            `json:"status"`
	Body     string         `json:"body"`
	Error    string         `json:"error"` // openid-client's reading of a non-success answer
	Active   *bool          `json:"active"`
	Claims   map[string]any `json:"result"` // introspection response
}

// Revoke sends a revocation request with openid-client (client_secret_basic) and
// reports the status and body of the answer, whatever it was.
func (idp *IdP) Revoke(t testing.TB, r RevokeRequest) Result {
	t.Helper()
	var opts []CallOption
	if r.Endpoint != "" {
		opts = append(opts, flag("revocation-endpoint", r.Endpoint))
	}
	if r.ClientID != "" {
		opts = append(opts, Client(r.ClientID, r.ClientSecret))
	}
	args := []string{Flag("token", r.Token)}
	if r.Hint != "" {
		args = append(args, Flag("hint", r.Hint))
	}
	var res Result
	if err := idp.call("revoke", &res, opts, args...); err != nil {
		t.Fatalf("idptest: revoke: %v", err)
	}
	return res
}

// Introspect asks the provider's introspection endpoint (or the one given with
// IntrospectionEndpoint) about token. oidc-provider introspects only its opaque tokens
// (refresh tokens here): JWT access tokens get 400 unsupported_token_type.
func (idp *IdP) Introspect(t testing.TB, token, hint string, opts ...CallOption) Result {
	t.Helper()
	args := []string{Flag("token", token)}
	if hint != "" {
		args = append(args, Flag("hint", hint))
	}
	var res Result
	if err := idp.call("introspect", &res, opts, args...); err != nil {
		t.Fatalf("idptest: introspect: %v", err)
	}
	return res
}

// ---------------------------------------------------------------- test hooks

// Delivery is one POST of a logout token to a back-channel logout URI.
type Delivery struct {
	Event    string `json:"event"`
	Source   string `json:"source"` // end_session (the provider's own) or test_hook
	ClientID string `json:"client_id"`
	URI      string `json:"uri"`
	Sub      string `json:"sub"`
	SID      string `json:"sid"`
	Status   int    `json:"status"`
	Error    string `json:"error"`
}

// LogoutSubject is a TEST HOOK: the provider signs a logout token for sub with no sid
// (meaning every session of sub) with its own key, the way it signs its own logout
// tokens, and POSTs it to the client's back-channel logout URIs. It fails the test
// unless every URI answered 200 or 204.
func (idp *IdP) LogoutSubject(t testing.TB, sub string) []Delivery {
	t.Helper()
	ds, err := idp.SendLogoutToken(sub, "")
	if err != nil {
		t.Fatalf("idptest: LogoutSubject: %v", err)
	}
	if len(ds) == 0 {
		t.Fatalf("idptest: LogoutSubject: the client has no back-channel logout URI")
	}
	for _, d := range ds {
		if d.Status != 200 && d.Status != 204 {
			t.Fatalf("idptest: LogoutSubject: %s answered %d %s", d.URI, d.Status, d.Error)
		}
	}
	return ds
}

// SendLogoutToken is the test hook behind LogoutSubject, with an optional sid, reporting
// every delivery whatever its outcome.
func (idp *IdP) SendLogoutToken(sub, sid string) ([]Delivery, error) {
	body, _ := json.Marshal(map[string]string{"sub": sub, "sid": sid})
	var out struct {
		Deliveries []Delivery `json:"deliveries"`
	}
	err := idp.httpJSON(http.MethodPost, idp.TestLogoutEndpoint, body, &out)
	return out.Deliveries, err
}

// Events lists the back-channel deliveries so far: the provider's own (end_session,
// event backchannel.success or backchannel.error) and the test hook's.
func (idp *IdP) Events(t testing.TB) []Delivery {
	t.Helper()
	var out struct {
		Deliveries []Delivery `json:"deliveries"`
	}
	if err := idp.httpJSON(http.MethodGet, idp.URL+"/__test/events", nil, &out); err != nil {
		t.Fatalf("idptest: events: %v", err)
	}
	return out.Deliveries
}

// Request is one request the provider's listener received: method and path only.
type Request struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}

// Requests lists every request the provider's listener received so far (the test
// hooks' own excepted), in order.
func (idp *IdP) Requests(t testing.TB) []Request {
	t.Helper()
	var out struct {
		Requests []Request `json:"requests"`
	}
	if err := idp.httpJSON(http.MethodGet, idp.URL+"/__test/requests", nil, &out); err != nil {
		t.Fatalf("idptest: requests: %v", err)
	}
	return out.Requests
}

func (idp *IdP) httpJSON(method, url string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), ClientTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}
