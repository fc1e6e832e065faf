package tokenrevoke

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// The OpenID Connect Back-Channel Logout receiver (backchannelLogoutPath).
//
// The identity provider POSTs a logout token (a signed JWT, §2.4) when a session ends or
// all of a user's sessions end. A valid one (logout.go validates every rule of §2.6)
// becomes a rule: "the tokens of issuer I whose sid is S (or, without a sid in the
// logout token, whose sub is U) issued at or before the logout token's iat are
// revoked", kept until iat + maxTokenLifetime (+ clockSkew). The rule is applied here
// and shared over NATS like a revocation; the answer is 200 only once NATS confirmed it.

// serveBackchannelLogout answers POST backchannelLogoutPath (§2.5, §2.8).
func (m *Middleware) serveBackchannelLogout(rw http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		writeError(rw, http.StatusMethodNotAllowed, errInvalidRequest, "The back-channel logout endpoint only accepts POST")
		return
	}
	form, status, desc := readForm(req, maxRevokeBody)
	if status != 0 {
		writeError(rw, status, errInvalidRequest, desc)
		return
	}
	raw := form.Get("logout_token")
	if raw == "" {
		writeError(rw, http.StatusBadRequest, errInvalidRequest, "The logout_token parameter is required")
		return
	}
	now := time.Now()
	lt, err := validateLogoutToken(raw, m.issuers, now)
	if err != nil {
		atomic.AddInt64(&m.metrics.logoutRefused, 1)
		writeError(rw, http.StatusBadRequest, errInvalidRequest, err.Error())
		return
	}
	kind, value, what := kindSID, lt.Sid, "session"
	if lt.Sid == "" {
		kind, value, what = kindSub, lt.Sub, "subject"
	} else if lt.Sub != "" && m.foldSession(lt.Iss, lt.Sub, now.Unix()) {
		kind, value, what = kindSub, lt.Sub, "subject"
	}
	key := ruleKey(lt.Iss, value)
	exp := capExpiry(lt.Iat+int64((m.settings.maxTokenLifetime+m.settings.clockSkew)/time.Second), now.Unix(), m.settings.maxTTL)
	r := revocation{sum: key, kind: kind, cutoff: lt.Iat, exp: exp, revokedAt: now, client: "@logout"}
	cutoff, err := m.domain.revokeRule(r)
	if err != nil {
		// Let the provider retry: its retry carries the same jti.
		m.issuers.replay.forget(lt.Iss, lt.Jti)
		m.log.errorf("back-channel logout: %s rule %s of issuer %q kept locally but not confirmed by NATS: %v", what, shortHash(key), lt.Iss, err)
		writeError(rw, http.StatusInternalServerError, errServerError, "The logout could not be shared with the other gateways; retry the request")
		return
	}
	atomic.AddInt64(&m.metrics.revokedLogout, 1)
	m.log.infof("back-channel logout: %s rule %s of issuer %q: tokens issued at or before %s are revoked",
		what, shortHash(key), lt.Iss, time.Unix(cutoff, 0).UTC().Format(time.RFC3339))
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", "0")
	rw.WriteHeader(http.StatusOK)
}

// issuerSetKey identifies a configuration of issuers (and the clock skew applied to
// them): middlewares of one domain with the same key share one set, so JWKS are fetched
// once per process, not once per router and reload.
func issuerSetKey(cfgs []IssuerConfig, skew time.Duration) string {
	var b strings.Builder
	b.WriteString(skew.String())
	for _, c := range cfgs {
		b.WriteString("\x00" + strings.TrimSpace(c.Issuer) + "\x01" + strings.TrimSpace(c.JWKSURL) + "\x01" + strings.TrimSpace(c.JWKS) + "\x01" + strings.TrimSpace(c.Audience))
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

// logoutIssuers returns the domain's issuer set for s, building (and validating) it on
// first use. All sets of a domain share one jti replay guard.
func (d *domain) logoutIssuers(s *settings, log *logger) (*logoutIssuers, error) {
	key := issuerSetKey(s.issuers, s.clockSkew)
	d.mu.Lock()
	defer d.mu.Unlock()
	if l, ok := d.issuerSets[key]; ok {
		return l, nil
	}
	l, err := newLogoutIssuers(s.issuers, s.clockSkew, 0, log, time.Now())
	if err != nil {
		return nil, err
	}
	l.replay = d.jti
	d.issuerSets[key] = l
	return l, nil
}

// revokeRule applies a session or subject rule locally, then shares it. It returns the
// cutoff held for the key (the later one when a rule for it was already held).
func (d *domain) revokeRule(r revocation) (int64, error) {
	kind := ruleSID
	if r.kind == kindSub {
		kind = ruleSub
	}
	now := time.Now().Unix()
	held, cutoff := d.cache.addRule(kind, r.sum, r.cutoff, r.exp, now)
	if !held {
		return r.cutoff, nil // already past: every token it could deny has expired
	}
	r.cutoff = cutoff // the later cutoff, when a rule for the key was already held
	if d.link == nil {
		return cutoff, nil
	}
	return cutoff, d.link.publish(r)
}

// endRefreshSession implements refreshRevokesSession (RFC 7009 §2.1: revoking a refresh
// token should end the access tokens of its grant): a revoked JWT refresh token
// (token_type_hint refresh_token, or a typ header naming a refresh token) of a
// configured issuer, whose signature verifies and which carries sid, adds that session's
// rule with the revocation time as its cutoff. The signature matters here: RFC 7009
// answers 200 to any token, so an unverified sid would let a client end anyone's session.
func (m *Middleware) endRefreshSession(token, hint, client string, now time.Time) error {
	if !m.settings.refreshRevokesSession || m.issuers == nil {
		return nil
	}
	tok, err := parseJWS(token)
	if err != nil || !tok.Claims.HasIss || !tok.Claims.HasSid || tok.Claims.Sid == "" {
		return nil
	}
	typ := strings.ToLower(tok.Header.Typ)
	if hint != "refresh_token" && typ != "refresh+jwt" && typ != "rt+jwt" && typ != "application/refresh+jwt" {
		return nil
	}
	li := m.issuers.byIss[tok.Claims.Iss]
	if li == nil {
		return nil
	}
	if err, _ := li.verify(tok, now); err != nil {
		return nil
	}
	s := m.settings
	cutoff := now.Unix()
	exp := capExpiry(cutoff+int64((s.maxTokenLifetime+s.clockSkew)/time.Second), cutoff, s.maxTTL)
	kind, value, what := kindSID, tok.Claims.Sid, "session"
	if tok.Claims.HasSub && tok.Claims.Sub != "" && m.foldSession(tok.Claims.Iss, tok.Claims.Sub, cutoff) {
		kind, value, what = kindSub, tok.Claims.Sub, "subject"
	}
	// The key is computed after the choice, in its own statement: under yaegi v0.16.1 a
	// multiple assignment that mixes a call with plain values leaves the plain ones
	// unassigned (e2e/yaegiload/traps_test.go).
	key := ruleKey(tok.Claims.Iss, value)
	if _, err := m.domain.revokeRule(revocation{sum: key, kind: kind, cutoff: cutoff, exp: exp, revokedAt: now, client: client}); err != nil {
		return err
	}
	m.log.infof("refresh token revoked: %s rule %s of issuer %q ends its session", what, shortHash(key), tok.Claims.Iss)
	return nil
}

// foldSession counts a session rule of subject sub of issuer iss and reports whether
// it must be the subject's rule instead (folds.go).
func (m *Middleware) foldSession(iss, sub string, now int64) bool {
	key := ruleKey(iss, sub)
	fold, first := m.domain.folds.fold(key, now, int64(m.settings.maxTokenLifetime/time.Second))
	if first {
		m.log.warnf("more than %d sessions of subject %s of issuer %q ended within maxTokenLifetime (%s): its further session logouts end all of its sessions up to then (one subject rule), so that one user cannot fill the rule set",
			sessionsPerSubject, shortHash(key), iss, m.settings.maxTokenLifetime)
	}
	return fold
}
