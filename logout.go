package tokenrevoke

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// OpenID Connect Back-Channel Logout 1.0: validation of a logout token (§2.6) sent by a
// configured issuer, and a bounded guard against a replayed jti.

// logoutEvent is the member the events claim must hold (§2.4).
const logoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutMaxAge: a logout token without exp is refused once its iat is older than this
// (plus the clock skew), and its jti is remembered that long, so a replay is always
// caught while the guard holds the entry.
const logoutMaxAge = 10 * time.Minute

// logoutReplayMax bounds the jti replay guard; when full the oldest entry goes first.
const logoutReplayMax = 10000

// Sentinel errors the caller may want to tell apart (errors.Is); every other failure is a
// plain error. All texts are OAuth error descriptions and never hold a value taken from
// the token (no sub, sid, iss or the token itself).
var (
	// errLogoutReplay: the token is valid but its jti was already accepted.
	errLogoutReplay = errors.New("the logout token's jti has already been used")
	// errLogoutNoKeys: the issuer's keys could not be obtained (JWKS fetch failing and
	// nothing held): a temporary failure, not the token's fault.
	errLogoutNoKeys = errors.New("the issuer's signing keys are not available")
)

// IssuerConfig is one entry of the issuers list: an OpenID Provider allowed to send
// back-channel logout tokens. Exactly one of JWKSURL and JWKS is set.
type IssuerConfig struct {
	// Issuer is the provider's issuer identifier, compared exactly with the token's iss.
	Issuer string `json:"issuer,omitempty"`
	// JWKSURL is the provider's jwks_uri (http or https).
	JWKSURL string `json:"jwksURL,omitempty"`
	// JWKS is a JWK set document given inline, as a JSON string.
	JWKS string `json:"jwks,omitempty"`
	// Audience is the gateway's client_id at the provider; the token's aud must hold it.
	Audience string `json:"audience,omitempty"`
}

// logoutIssuer is a validated IssuerConfig.
type logoutIssuer struct {
	issuer   string
	audience string
	keys     *jwksSource
}

// logoutIssuers holds the configured issuers, the allowed clock skew and the replay guard.
type logoutIssuers struct {
	byIss  map[string]*logoutIssuer
	order  []*logoutIssuer
	skew   time.Duration
	replay *jtiGuard
}

// newLogoutIssuers validates cfgs (every error names the entry's key) and starts the
// first JWKS fetches in the background. skew is the clock skew allowed on iat, exp and
// nbf (the plugin's clockSkew; negative means none); fetchTimeout <= 0 means 5 s.
func newLogoutIssuers(cfgs []IssuerConfig, skew, fetchTimeout time.Duration, log *logger, now time.Time) (*logoutIssuers, error) {
	if skew < 0 {
		skew = 0
	}
	l := &logoutIssuers{byIss: make(map[string]*logoutIssuer), skew: skew, replay: newJTIGuard(logoutReplayMax)}
	for i, c := range cfgs {
		key := fmt.Sprintf("tokenrevoke: issuers[%d]", i)
		iss := strings.TrimSpace(c.Issuer)
		if iss == "" {
			return nil, errors.New(key + ".issuer: is required")
		}
		if _, dup := l.byIss[iss]; dup {
			return nil, fmt.Errorf("%s.issuer: duplicate issuer %q", key, iss)
		}
		aud := strings.TrimSpace(c.Audience)
		if aud == "" {
			return nil, fmt.Errorf("%s.audience (%s): is required (the gateway's client_id at the issuer)", key, iss)
		}
		u := strings.TrimSpace(c.JWKSURL)
		doc := strings.TrimSpace(c.JWKS)
		if (u == "") == (doc == "") {
			return nil, fmt.Errorf("%s (%s): set jwksURL or jwks, exactly one", key, iss)
		}
		var src *jwksSource
		var err error
		if doc != "" {
			src, err = newInlineJWKSSource(iss, doc)
			if err != nil {
				return nil, fmt.Errorf("%s.jwks (%s): %v", key, iss, err)
			}
		} else {
			src, err = newURLJWKSSource(iss, u, fetchTimeout, log)
			if err != nil {
				return nil, fmt.Errorf("%s.jwksURL (%s): %v", key, iss, err)
			}
		}
		li := &logoutIssuer{issuer: iss, audience: aud, keys: src}
		l.byIss[iss] = li
		l.order = append(l.order, li)
	}
	for _, li := range l.order {
		li.keys.start(now)
	}
	return l, nil
}

// status lists every issuer's keys and fetch state, in configuration order.
func (l *logoutIssuers) status() []jwksStatus {
	out := make([]jwksStatus, 0, len(l.order))
	for _, li := range l.order {
		out = append(out, li.keys.status())
	}
	return out
}

// wait waits for the JWKS fetches in flight (tests, shutdown).
func (l *logoutIssuers) wait() {
	for _, li := range l.order {
		li.keys.wait()
	}
}

// logoutToken is what a valid logout token says. Sub or Sid (or both) is non-empty;
// Exp is 0 when the token has none.
type logoutToken struct {
	Iss, Sub, Sid, Jti string
	Iat, Exp           int64
}

// validateLogoutToken validates a back-channel logout token as OpenID Connect
// Back-Channel Logout 1.0 §2.6 requires, then refuses a jti already accepted from the
// same issuer. On failure the error's text is an OAuth error_description (the response
// is 400 invalid_request, §2.8); errLogoutReplay and errLogoutNoKeys may be told apart.
func validateLogoutToken(raw string, issuers *logoutIssuers, now time.Time) (logoutToken, error) {
	var out logoutToken
	if issuers == nil || len(issuers.byIss) == 0 {
		return out, errors.New("back-channel logout is not configured")
	}
	tok, err := parseJWS(raw)
	if err != nil {
		return out, errors.New("invalid logout token: " + err.Error())
	}
	h := &tok.Header
	c := &tok.Claims
	if h.HasTyp {
		typ := strings.ToLower(h.Typ)
		if typ != "logout+jwt" && typ != "application/logout+jwt" && typ != "jwt" {
			return out, errors.New("the logout token's typ header is not logout+jwt")
		}
	}
	// 1. The issuer, and the signature with its keys (§2.6 step 2, as for ID Tokens).
	if !c.HasIss || c.Iss == "" {
		return out, errors.New("the logout token has no iss")
	}
	li := issuers.byIss[c.Iss]
	if li == nil {
		return out, errors.New("the logout token's issuer is not configured")
	}
	if _, ok := jwsAlgorithm(h.Alg); !ok {
		return out, errors.New("the logout token's alg is not allowed (asymmetric signatures only)")
	}
	if err, noKeys := li.verify(tok, now); err != nil {
		if noKeys {
			return out, errLogoutNoKeys
		}
		return out, errors.New("the logout token's signature is not valid: " + err.Error())
	}
	// 2. aud, iat, exp (and nbf) as for ID Tokens (§2.6 step 3).
	if !logoutAudienceHas(c, li.audience) {
		return out, errors.New("the logout token's aud does not hold this client")
	}
	skew := int64(issuers.skew / time.Second)
	t := now.Unix()
	if !c.HasIat {
		return out, errors.New("the logout token has no iat")
	}
	if c.Iat > t+skew {
		return out, errors.New("the logout token's iat is in the future")
	}
	if c.HasExp && t >= c.Exp+skew {
		return out, errors.New("the logout token has expired")
	}
	if c.HasNbf && c.Nbf > t+skew {
		return out, errors.New("the logout token is not valid yet (nbf)")
	}
	maxAge := int64(logoutMaxAge / time.Second)
	if !c.HasExp && c.Iat+maxAge+skew < t {
		return out, errors.New("the logout token is too old (iat)")
	}
	// 3. jti (§2.4: required).
	if !c.HasJti || c.Jti == "" {
		return out, errors.New("the logout token has no jti")
	}
	// 4. events holds the back-channel logout event, whose value is a JSON object
	// (§2.6 step 5).
	if !c.HasEvents {
		return out, errors.New("the logout token has no events claim")
	}
	events, err := jsonObjectMembers(c.Events)
	if err != nil {
		return out, errors.New("the logout token's events claim is not a JSON object")
	}
	ev, ok := events[logoutEvent]
	if !ok {
		return out, errors.New("the logout token's events claim lacks the back-channel logout event")
	}
	if _, err := jsonObjectMembers(ev); err != nil {
		return out, errors.New("the logout token's back-channel logout event is not a JSON object")
	}
	// 5. sub and/or sid (§2.6 step 4).
	hasSub := c.HasSub && c.Sub != ""
	hasSid := c.HasSid && c.Sid != ""
	if !hasSub && !hasSid {
		return out, errors.New("the logout token has neither sub nor sid")
	}
	// 6. No nonce (§2.6 step 6): it must not be mistaken for an ID Token.
	if c.HasNonce {
		return out, errors.New("the logout token must not have a nonce")
	}
	// 7. Replay (§2.6 step 7), only for tokens valid in every other way.
	until := c.Iat + maxAge + skew
	if c.HasExp {
		until = c.Exp + skew
	}
	if !issuers.replay.remember(c.Iss, c.Jti, until, t) {
		return out, errLogoutReplay
	}
	out.Iss = c.Iss
	out.Sub = c.Sub
	out.Sid = c.Sid
	out.Jti = c.Jti
	out.Iat = c.Iat
	if c.HasExp {
		out.Exp = c.Exp
	}
	return out, nil
}

// verify checks tok's signature with the issuer's keys, fetching them again (at most
// once per jwksMinRefetch) when the token names an unknown kid or no key is held yet.
// noKeys reports a failure because no keys could be obtained at all.
func (li *logoutIssuer) verify(tok *jwsToken, now time.Time) (err error, noKeys bool) {
	ks := li.keys.current(now)
	err = tok.verify(ks)
	if errors.Is(err, errJWSUnknownKid) || (ks == nil && errors.Is(err, errJWSNoKey)) {
		ks, _ = li.keys.refetch(now)
		err = tok.verify(ks)
	}
	return err, err != nil && ks == nil
}

func logoutAudienceHas(c *jwsClaims, aud string) bool {
	if !c.HasAud {
		return false
	}
	for _, a := range c.Aud {
		if a == aud {
			return true
		}
	}
	return false
}

// jtiGuard remembers accepted (issuer, jti) pairs until a given time, at most max of them;
// when full, the oldest remembered pair is forgotten first. Keys are SHA-256 digests, so
// memory does not depend on the jti's length.
type jtiGuard struct {
	mu    sync.Mutex
	max   int
	until map[[32]byte]int64
	ring  []jtiEntry // insertion order, oldest at head
	head  int
	n     int
}

type jtiEntry struct {
	key   [32]byte
	until int64
}

func newJTIGuard(max int) *jtiGuard {
	if max < 1 {
		max = 1
	}
	return &jtiGuard{max: max, until: make(map[[32]byte]int64), ring: make([]jtiEntry, max)}
}

// remember records (iss, jti) until the Unix time until and reports true, or reports
// false if the pair is already remembered and not past its time.
func (g *jtiGuard) remember(iss, jti string, until, now int64) bool {
	key := sha256.Sum256([]byte(iss + "\x00" + jti))
	g.mu.Lock()
	defer g.mu.Unlock()
	if u, ok := g.until[key]; ok && u >= now {
		return false
	}
	// Forget expired pairs at the head, then the oldest one if still full.
	for g.n > 0 && g.ring[g.head].until < now {
		g.popLocked()
	}
	if g.n == g.max {
		g.popLocked()
	}
	g.until[key] = until
	g.ring[(g.head+g.n)%g.max] = jtiEntry{key: key, until: until}
	g.n++
	return true
}

// forget drops (iss, jti), so that the provider's retry of a logout that could not be
// completed is accepted.
func (g *jtiGuard) forget(iss, jti string) {
	key := sha256.Sum256([]byte(iss + "\x00" + jti))
	g.mu.Lock()
	delete(g.until, key)
	g.mu.Unlock()
}

func (g *jtiGuard) popLocked() {
	e := g.ring[g.head]
	if u, ok := g.until[e.key]; ok && u == e.until {
		delete(g.until, e.key)
	}
	g.head = (g.head + 1) % g.max
	g.n--
}

func (g *jtiGuard) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.until)
}
