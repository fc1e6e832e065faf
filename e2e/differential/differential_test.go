package differential

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

const (
	diffIssuer   = "https://idp.differential.test"
	logoutPath   = "/api/id/v1/auth/backchannel-logout"
	revokePath   = "/api/id/v1/auth/token/revoke"
	clientID     = "portal"
	clientSecret = "s3cret"
	workers      = 4
)

// job is one request of the run: a place, a spelling, a token state, a backend.
type job struct {
	place, spell, backend int
	revoked               bool
	path                  string
	raw                   []byte
	out                   outcome
	seen                  seenRecord
	saw                   bool // the backend's own record of having handled it
}

func (j *job) gateway() string {
	if j.saw || j.out.Backend != "" {
		return "pass"
	}
	if j.out.Err != nil {
		return "err"
	}
	return fmt.Sprint(j.out.Status)
}

func TestDifferential(t *testing.T) {
	begin := time.Now()

	// Keys and tokens: an ES256 and an HS256 JWT to revoke, and a live twin of each.
	esKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret) //nolint:errcheck
	der, err := x509.MarshalPKIXPublicKey(&esKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	mint := func(alg, jti string) string {
		claims := jwt.MapClaims{"sub": "user-1", "jti": jti, "exp": time.Now().Add(time.Hour).Unix()}
		var s string
		var err error
		if alg == "ES256" {
			s, err = jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(esKey)
		} else {
			s, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A third pair is revoked by a session rule rather than by its own key: ES256 access
	// tokens of two sessions, one ended by a back-channel logout at the gateway.
	mintSession := func(sid string) string {
		claims := jwt.MapClaims{"iss": diffIssuer, "sub": "user-2", "sid": sid, "jti": sid + "-at",
			"iat": time.Now().Add(-10 * time.Second).Unix(), "exp": time.Now().Add(time.Hour).Unix()}
		s, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(esKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tokens := map[string]map[bool]string{ // alg -> revoked? -> token
		"ES256":         {true: mint("ES256", "es-revoked"), false: mint("ES256", "es-live")},
		"HS256":         {true: mint("HS256", "hs-revoked"), false: mint("HS256", "hs-live")},
		"ES256-session": {true: mintSession("session-ended"), false: mintSession("session-live")},
	}

	// Backends, then one gateway routing /go/, /node/ and /py/ to them through the plugin.
	env := []string{"DIFF_ES256_PUB=" + pubPEM, "DIFF_HS256_SECRET=" + base64.StdEncoding.EncodeToString(secret)}
	// The hand-written three, then the frameworks with their real parsers: Express 4
	// and 5 (qs, body-parser, cookie-parser, passport-http-bearer, passport-jwt,
	// jsonwebtoken; npm ci in testdata on first use), Django under gunicorn and
	// Starlette under uvicorn (Debian packages, PyJWT).
	ensureNodeDeps(t)
	webPython := debianPython(t)
	pending := []func() backend{
		launchProcessBackend(t, "node", env, "node", testdata("backend.js")),
		launchProcessBackend(t, "py", env, pythonBin(), testdata("backend.py")),
		launchProcessBackend(t, "express4", env, "node", testdata("backend_express.js"), "express4"),
		launchProcessBackend(t, "express5", env, "node", testdata("backend_express.js"), "express5"),
		launchProcessBackend(t, "express5-default", env, "node", testdata("backend_express.js"), "express5-default"),
		launchProcessBackend(t, "django", env, webPython, testdata("backend_django.py")),
		launchProcessBackend(t, "starlette", env, webPython, testdata("backend_starlette.py")),
	}
	backends := []backend{startGoBackend(t, &esKey.PublicKey, secret)}
	for _, wait := range pending {
		backends = append(backends, wait())
	}
	for i := range backends[:3] {
		backends[i].Full = true
	}
	echo := harness.StartBackend(t)
	routers, services := map[string]any{}, map[string]any{}
	for _, b := range backends {
		routers["diff-"+b.Name] = map[string]any{
			"entryPoints": []any{"web"}, "rule": "PathPrefix(`/" + b.Name + "/`)", "service": "diff-" + b.Name,
			"middlewares": []any{"revoke"}, "priority": 9500,
		}
		services["diff-"+b.Name] = map[string]any{"loadBalancer": map[string]any{
			"servers": []any{map[string]any{"url": b.URL}},
		}}
	}
	gw := harness.StartTraefik(t, harness.TraefikOptions{
		Name:     "diff",
		LogLevel: "INFO",
		Dynamic: harness.Dynamic{
			BackendURL: echo.URL,
			Plugin: map[string]any{
				"revokePath":            revokePath,
				"clients":               []any{map[string]any{"id": clientID, "secret": clientSecret}},
				"cacheSize":             10000,
				"defaultTTL":            "1h",
				"issuers":               []any{map[string]any{"issuer": diffIssuer, "jwks": esJWKS(&esKey.PublicKey), "audience": "gateway"}},
				"backchannelLogoutPath": logoutPath,
				// The places the framework backends read besides Authorization, query
				// and form bodies (issue 18).
				"tokenCookies": []any{"access_token", "jwt"},
				"tokenHeaders": []any{"X-Forwarded-Access-Token", "X-Auth-Token"},
			},
			Extra: map[string]any{"http": map[string]any{"routers": routers, "services": services}},
		},
	})
	gwAddr := strings.TrimPrefix(gw.WebURL, "http://")
	t.Logf("setup (keys, %d backends, gateway) took %v", len(backends), time.Since(begin).Round(time.Millisecond))

	// Revoke the two revoked tokens through the gateway's endpoint.
	for _, alg := range []string{"ES256", "HS256"} {
		form := url.Values{"token": {tokens[alg][true]}, "token_type_hint": {"access_token"}}
		req, _ := http.NewRequest(http.MethodPost, gw.WebURL+revokePath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, clientSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("revoke %s: %v", alg, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke %s: status %d", alg, resp.StatusCode)
		}
	}

	// End the session of the third pair with a back-channel logout token.
	lt := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": diffIssuer, "aud": "gateway",
		"iat": time.Now().Unix(), "exp": time.Now().Add(2 * time.Minute).Unix(), "jti": "logout-1", "sid": "session-ended",
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}})
	lt.Header["typ"] = "logout+jwt"
	lts, err := lt.SignedString(esKey)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(gw.WebURL+logoutPath, "application/x-www-form-urlencoded", strings.NewReader(url.Values{"logout_token": {lts}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout: status %d", resp.StatusCode)
	}

	// The premise: each backend accepts both tokens when asked directly (the
	// revocation lives only in the gateway), and which backends accept each spelling.
	sps, pls := spellings(), places()
	direct := make([][2][]bool, len(sps)) // spelling -> live/revoked -> backend -> accepted
	seq := 0
	for si, sp := range sps {
		for state, revoked := range []bool{false, true} {
			direct[si][state] = make([]bool, len(backends))
			for bi, b := range backends {
				seq++
				path := fmt.Sprintf("/direct/%d", seq)
				o := send(strings.TrimPrefix(b.URL, "http://"), rawRequest{Method: "GET", Target: path,
					Headers: []string{"Authorization: Bearer " + sp.of(tokens[sp.alg][revoked])}})
				if o.Err != nil || o.Backend != b.Name {
					t.Fatalf("direct request to %s: %+v", b.Name, o)
				}
				direct[si][state][bi] = o.Accepted
				if sp.name == "canonical" && !o.Accepted {
					t.Errorf("premise: %s does not accept the %s token (revoked=%v) when asked directly", b.Name, sp.alg, revoked)
				}
			}
		}
		if !anyTrue(direct[si][0]) {
			t.Errorf("premise: no backend accepts the %s spelling %q even directly: it proves nothing", sp.alg, sp.name)
		}
	}
	// Which backends read each place when asked directly, with the live ES256 token: a
	// place no backend reads proves nothing (and once the gateway refuses a place, this
	// is what shows that the refusal matters).
	placeDirect := make([][]bool, len(pls))
	for pi, pl := range pls {
		placeDirect[pi] = make([]bool, len(backends))
		for bi, b := range backends {
			seq++
			addr := strings.TrimPrefix(b.URL, "http://")
			o := send(addr, pl.build(fmt.Sprintf("/direct/%d", seq), tokens["ES256"][false]))
			switch {
			case o.Err != nil:
				t.Errorf("direct %q to %s: %v", pl.name, b.Name, o.Err)
			case o.Backend == "": // its HTTP server refused it (e.g. Node's 431 for a 40 kB query)
			case o.Backend != b.Name:
				t.Errorf("direct %q to %s: answered by %s", pl.name, b.Name, o.Backend)
			}
			placeDirect[pi][bi] = o.Accepted
		}
		// Only the framework places: some of the first round's are read only after
		// Traefik rewrote them (';' in the query becomes '&').
		if pl.round2 && !anyTrue(placeDirect[pi]) && pl.noReader == "" {
			t.Errorf("premise: no backend reads the live token at %q even directly: it proves nothing", pl.name)
		}
	}

	// And the gateway refuses the revoked tokens in the canonical header on every route.
	for _, alg := range []string{"ES256", "HS256", "ES256-session"} {
		for _, b := range backends {
			o := send(gwAddr, rawRequest{Method: "GET", Target: "/" + b.Name + "/precheck-" + alg,
				Headers: []string{"Authorization: Bearer " + tokens[alg][true]}})
			if o.Status != http.StatusUnauthorized || o.Backend != "" {
				t.Fatalf("revoked %s token on /%s/: %+v, want the gateway's 401", alg, b.Name, o)
			}
		}
	}

	// The run: every place × spelling × state × backend, through the gateway.
	var jobs []*job
	for pi, pl := range pls {
		for si, sp := range sps {
			for _, revoked := range []bool{true, false} {
				for bi, b := range backends {
					if !sendsSpelling(pi, pl, sp, b) {
						continue
					}
					seq++
					j := &job{place: pi, spell: si, backend: bi, revoked: revoked, path: fmt.Sprintf("/%s/a%d", b.Name, seq)}
					req := pl.build(j.path, sp.of(tokens[sp.alg][revoked]))
					j.raw = req.bytes(gwAddr)
					jobs = append(jobs, j)
				}
			}
		}
	}
	runStart := time.Now()
	var wg sync.WaitGroup
	ch := make(chan *job)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				j.out = sendRaw(gwAddr, j.raw)
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	t.Logf("%d requests through the gateway in %v", len(jobs), time.Since(runStart).Round(time.Millisecond))

	seen := make([]map[string]seenRecord, len(backends))
	for bi, b := range backends {
		seen[bi] = b.fetchSeen(t)
	}
	revokedSums := map[string]string{}
	for _, alg := range []string{"ES256", "HS256", "ES256-session"} {
		sum := sha256.Sum256([]byte(tokens[alg][true]))
		revokedSums[hex.EncodeToString(sum[:])] = alg
	}

	// The differential: no backend accepted a revoked token the gateway let through.
	// Bypasses are reported once per (place, backend), with the first request in full.
	bypasses := 0
	type group struct{ place, backend int }
	var groupOrder []group
	groups := map[group][]*job{}
	for _, j := range jobs {
		b := backends[j.backend]
		j.seen, j.saw = seen[j.backend][j.path]
		switch {
		case j.out.Err != nil:
			t.Errorf("%s / %s / %s: %v", pls[j.place].name, sps[j.spell].name, b.Name, j.out.Err)
		case j.out.Backend != "" && !j.saw:
			t.Errorf("%s answered %s without a record of it", b.Name, j.path)
		case j.saw && j.out.Backend == "":
			t.Logf("note: %s handled %s but the client got %d from the gateway", b.Name, j.path, j.out.Status)
		}
		if j.revoked && j.saw && j.seen.Accepted {
			bypasses++
			g := group{j.place, j.backend}
			if groups[g] == nil {
				groupOrder = append(groupOrder, g)
			}
			groups[g] = append(groups[g], j)
		}
		if !j.revoked && j.saw && j.seen.Accepted && revokedSums[j.seen.Token] != "" {
			t.Errorf("%s accepted the revoked token in a live request %s", b.Name, j.path)
		}
	}

	for _, g := range groupOrder {
		js := groups[g]
		var what []string
		for _, j := range js {
			what = append(what, fmt.Sprintf("%s %s (via %s)", sps[j.spell].alg, sps[j.spell].name, j.seen.Via))
		}
		t.Errorf("BYPASS: %s accepted the revoked token through the gateway at %q, %d times: %s\n  first request: %s",
			backends[g.backend].Name, pls[g.place].name, len(js), strings.Join(what, "; "), shortBytes(js[0].raw, 700))
	}

	// The sanity checks: the live token is read, so a quiet backend means something.
	type key struct{ place, spell int }
	byCell := map[key][]*job{}
	for _, j := range jobs {
		k := key{j.place, j.spell}
		byCell[k] = append(byCell[k], j)
	}
	for pi, pl := range pls {
		for si, sp := range sps {
			if sp.name != "canonical" {
				continue
			}
			passed, read := false, false
			for _, j := range byCell[key{pi, si}] {
				if !j.revoked && j.saw {
					passed = true
					read = read || j.seen.Accepted
				}
			}
			switch {
			case passed && !read && pl.noReader == "":
				t.Errorf("sanity: the gateway passed the live %s token at %q but no backend read it", sp.alg, pl.name)
			case read && pl.noReader != "":
				t.Logf("note: %q was expected to have no reader (%s) but one read it", pl.name, pl.noReader)
			}
		}
	}
	for si, sp := range sps {
		n := 0
		for _, j := range jobs {
			if j.spell == si && !j.revoked && j.saw && j.seen.Accepted {
				n++
			}
		}
		if n == 0 {
			t.Errorf("sanity: no backend accepted the live %s spelling %q anywhere through the gateway", sp.alg, sp.name)
		}
	}

	// The tables.
	var tb strings.Builder
	fmt.Fprintf(&tb, "\nper place (+: not in the brief's list). gw(revoked): the gateway's answer to the revoked\n")
	fmt.Fprintf(&tb, "token (pass = reached the backend); backend cells: live spellings it accepted / sent,\n")
	fmt.Fprintf(&tb, "and BYPASS n when it accepted the revoked token n times.\n")
	fmt.Fprintf(&tb, "(columns 4, 5, 5-default: Express 4, Express 5 with qs, Express 5 with its defaults)\n")
	fmt.Fprintf(&tb, "%-40s %-10s %-10s", "place", "gw(revoked)", "gw(live)")
	for _, b := range backends {
		fmt.Fprintf(&tb, " %-12s", strings.TrimPrefix(b.Name, "express"))
	}
	tb.WriteString(" read directly by (live ES256)\n")
	for pi, pl := range pls {
		rev, live := map[string]bool{}, map[string]bool{}
		acc := make([]int, len(backends))
		sent := make([]int, len(backends))
		byp := make([]int, len(backends))
		for _, j := range jobs {
			if j.place != pi {
				continue
			}
			if j.revoked {
				rev[j.gateway()] = true
				if j.saw && j.seen.Accepted {
					byp[j.backend]++
				}
				continue
			}
			live[j.gateway()] = true
			sent[j.backend]++
			if j.saw && j.seen.Accepted {
				acc[j.backend]++
			}
		}
		name := pl.name
		if pl.extra {
			name = "+" + name
		}
		fmt.Fprintf(&tb, "%-40s %-10s %-10s", name, keys(rev), keys(live))
		for bi := range backends {
			cell := fmt.Sprintf("%d/%d", acc[bi], sent[bi])
			if byp[bi] > 0 {
				cell += fmt.Sprintf(" BYPASS %d", byp[bi])
			}
			fmt.Fprintf(&tb, " %-12s", cell)
		}
		var readers []string
		for bi, b := range backends {
			if placeDirect[pi][bi] {
				readers = append(readers, strings.TrimPrefix(b.Name, "express"))
			}
		}
		fmt.Fprintf(&tb, " %s\n", strings.Join(readers, ","))
	}
	fmt.Fprintf(&tb, "\nper spelling: accepted directly by (live), accepted through the gateway (live, places), revoked accepted\n")
	for si, sp := range sps {
		var dn []string
		for bi, b := range backends {
			if direct[si][0][bi] {
				dn = append(dn, b.Name)
			}
		}
		live, byp := 0, 0
		for _, j := range jobs {
			if j.spell == si && j.saw && j.seen.Accepted {
				if j.revoked {
					byp++
				} else {
					live++
				}
			}
		}
		name := sp.alg + " " + sp.name
		if sp.extra {
			name = "+" + name
		}
		fmt.Fprintf(&tb, "%-40s direct: %-12s via gw: %-4d revoked accepted: %d\n", name, strings.Join(dn, ","), live, byp)
	}
	t.Log(tb.String())

	if os.Getenv("DIFF_DETAIL") != "" {
		var d strings.Builder
		for pi, pl := range pls {
			for si, sp := range sps {
				if len(byCell[key{pi, si}]) == 0 {
					continue
				}
				rev := map[string]bool{}
				var readers []string
				for _, j := range byCell[key{pi, si}] {
					if j.revoked {
						g := j.gateway()
						if j.saw && j.seen.Accepted {
							g = "BYPASS:" + backends[j.backend].Name
						}
						rev[g] = true
					} else if j.saw && j.seen.Accepted {
						readers = append(readers, backends[j.backend].Name+"("+j.seen.Via+")")
					}
				}
				fmt.Fprintf(&d, "%-40s %-5s %-26s revoked: %-14s live read by: %s\n", pl.name, sp.alg, sp.name, keys(rev), strings.Join(readers, " "))
			}
		}
		t.Log("\n" + d.String())
	}
	t.Logf("%d bypasses; whole test %v", bypasses, time.Since(begin).Round(time.Millisecond))
}

// sendsSpelling says whether the run sends spelling sp at place pl to backend b: the
// canonical tokens go everywhere; the other spellings go to every backend at the
// canonical header (place 0), and to the hand-written backends (Full) at every place of
// the first round (the spellings concern the token, not the place).
func sendsSpelling(pi int, pl place, sp spelling, b backend) bool {
	return sp.name == "canonical" || pi == 0 || (b.Full && !pl.round2)
}

// sendRaw is send for a request already rendered to bytes.
func sendRaw(addr string, raw []byte) outcome {
	return send(addr, rawRequest{preRendered: raw})
}

func anyTrue(bs []bool) bool {
	for _, b := range bs {
		if b {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// pythonBin is $PYTHON (scripts/test.sh points it at an interpreter that has the
// cryptography package), or python3.
func pythonBin() string {
	if p := os.Getenv("PYTHON"); p != "" {
		return p
	}
	return "python3"
}

// esJWKS is pub as an inline JWK set (no kid: the gateway tries every key that fits).
func esJWKS(pub *ecdsa.PublicKey) string {
	x, y := make([]byte, 32), make([]byte, 32)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	enc := base64.RawURLEncoding.EncodeToString
	return `{"keys":[{"kty":"EC","crv":"P-256","x":"` + enc(x) + `","y":"` + enc(y) + `"}]}`
}
