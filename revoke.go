package tokenrevoke

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// maxRevokeBody is the largest revocation request body accepted (64 KiB): room for a
// token of maxTokenLength even if every character of it is percent-encoded.
const maxRevokeBody = 64 << 10

// dummySecret is compared against when the client id is unknown, so that an unknown id
// costs the same time as a wrong secret.
var dummySecret = sha256.Sum256([]byte("tokenrevoke: no such client"))

// serveRevoke implements the RFC 7009 revocation endpoint. Checks run in this order:
// method, size, content type, form syntax, client authentication, token parameters.
// Nothing is revoked unless every check passes.
func (m *Middleware) serveRevoke(rw http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		writeError(rw, http.StatusMethodNotAllowed, errInvalidRequest, "The revocation endpoint only accepts POST")
		return
	}
	form, status, desc := readForm(req, maxRevokeBody)
	if status != 0 {
		writeError(rw, status, errInvalidRequest, desc)
		return
	}
	client, status, desc := m.authenticate(req, form)
	if status != 0 {
		if status == http.StatusUnauthorized {
			writeInvalidClient(rw, desc)
		} else {
			writeError(rw, status, errInvalidRequest, desc)
		}
		return
	}
	token := form.Get("token")
	if token == "" {
		writeError(rw, http.StatusBadRequest, errInvalidRequest, "The token parameter is required")
		return
	}
	hint := form.Get("token_type_hint")
	if hint != "" && hint != "access_token" && hint != "refresh_token" {
		writeError(rw, http.StatusBadRequest, errUnsupportedTokenType,
			"token_type_hint must be access_token or refresh_token")
		return
	}
	now := time.Now()
	if ok, wait := m.domain.limiter.allow(client, m.settings.rates[client], now); !ok {
		atomic.AddInt64(&m.metrics.rejectedRateLimited, 1)
		writeTooManyRequests(rw, wait)
		return
	}
	// A token longer than any the gateway lets through needs no entry: it is refused
	// wherever it is presented (400), so it is as good as revoked.
	if len(token) <= maxTokenLength {
		key, kind := tokenKey(token)
		exp, store := m.verifiedExpiry(token, kind, now)
		if !store {
			// RFC 7009 §2.2: an invalid token gets 200 too; nothing is stored.
			atomic.AddInt64(&m.metrics.forgedRefused, 1)
			m.log.infof("revocation of token %s not stored: it names a configured issuer but its signature does not verify", shortHash(key))
			okNoStore(rw)
			return
		}
		r := revocation{sum: key, kind: kind, hint: hint, exp: exp, revokedAt: now, client: client}
		err := m.domain.revoke(r)
		if err == nil {
			err = m.endRefreshSession(token, hint, client, now)
		}
		if err != nil {
			m.log.errorf("revocation of token %s kept locally but not confirmed by NATS: %v", shortHash(key), err)
			writeError(rw, http.StatusInternalServerError, errServerError,
				"The revocation could not be shared with the other gateways; retry the request")
			return
		}
	}
	atomic.AddInt64(&m.metrics.revokedEndpoint, 1)
	okNoStore(rw)
}

// okNoStore answers 200 with an empty body that no cache may keep.
func okNoStore(rw http.ResponseWriter) {
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", "0")
	rw.WriteHeader(http.StatusOK)
}

// verifiedExpiry is when the revocation of token stops mattering, and whether it is
// stored at all. Without issuers, or for a token that is not a JWS of a configured
// issuer, it is revocationExpiry (the exp read unverified, capped at maxTTL). A JWS whose
// iss is a configured issuer is verified with that issuer's keys first (verified
// revocations): a valid one is held until its exp (plus clockSkew), a forged one (any
// other signature, alg none or HMAC included) is not stored, and while the issuer's keys
// cannot be obtained at all the revocation is stored unverified, held for
// maxTokenLifetime from now (no token of the issuer can live longer), so that an outage
// of the provider never loses a revocation.
func (m *Middleware) verifiedExpiry(token, kind string, now time.Time) (int64, bool) {
	if m.issuers == nil || kind != kindJWS {
		return revocationExpiry(token, now, m.settings), true
	}
	tok, err := parseJWS(token)
	if err != nil {
		// A signature spelled leniently (padding, unused low bits) verifies once spelled
		// canonically; the key (the signing input) is the same.
		if i := strings.LastIndexByte(token, '.'); i > 0 {
			if sig, e := base64.RawURLEncoding.DecodeString(strings.TrimRight(token[i+1:], "=")); e == nil {
				tok, err = parseJWS(token[:i+1] + base64.RawURLEncoding.EncodeToString(sig))
			}
		}
	}
	if err != nil {
		// Not a verifiable JWS. If it names a configured issuer, that issuer never
		// minted it: a forgery (alg none with no signature, say), not stored.
		if cl, ok := readClaims(token); ok && m.issuers.byIss[cl.Iss] != nil {
			return 0, false
		}
		return revocationExpiry(token, now, m.settings), true
	}
	if !tok.Claims.HasIss {
		return revocationExpiry(token, now, m.settings), true
	}
	li := m.issuers.byIss[tok.Claims.Iss]
	if li == nil {
		return revocationExpiry(token, now, m.settings), true
	}
	s := m.settings
	skew := int64(s.clockSkew / time.Second)
	err, noKeys := li.verify(tok, now)
	switch {
	case err == nil && tok.Claims.HasExp:
		return capExpiry(tok.Claims.Exp+skew, now.Unix(), s.maxTTL), true
	case err == nil || noKeys:
		return capExpiry(now.Add(s.maxTokenLifetime).Unix()+skew, now.Unix(), s.maxTTL), true
	}
	return 0, false
}

// readForm reads an application/x-www-form-urlencoded body of at most limit bytes.
// It returns a non-zero HTTP status and a description when the request is unusable.
func readForm(req *http.Request, limit int64) (url.Values, int, string) {
	if req.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, "The request body is larger than 64 KiB"
	}
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, http.StatusBadRequest, "The request must be application/x-www-form-urlencoded"
	}
	var body []byte
	if req.Body != nil {
		body, err = io.ReadAll(io.LimitReader(req.Body, limit+1))
		if err != nil {
			return nil, http.StatusBadRequest, "The request body could not be read"
		}
	}
	if int64(len(body)) > limit {
		return nil, http.StatusRequestEntityTooLarge, "The request body is larger than 64 KiB"
	}
	return parseForm(body)
}

// maxFormParams bounds the parameters of a revocation request body.
const maxFormParams = 32

// parseForm parses an application/x-www-form-urlencoded body and refuses a repeated
// parameter (RFC 6749 §3.1; providers also differ on which value they would take). It
// returns a non-zero status and a description when the body is unusable.
func parseForm(body []byte) (url.Values, int, string) {
	// A revocation names a handful of parameters: more are refused before the loop
	// below (interpreted) could run over thousands.
	if bytes.Count(body, []byte("&")) >= maxFormParams {
		return nil, http.StatusBadRequest, "The request body has too many parameters"
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, http.StatusBadRequest, "The request body is not valid form encoding"
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, http.StatusBadRequest, "The parameter " + safeParamName(k) + " is repeated"
		}
	}
	return form, 0, ""
}

// safeParamName keeps a client-supplied parameter name fit to echo in an error.
func safeParamName(k string) string {
	switch k {
	case "token", "token_type_hint", "client_id", "client_secret":
		return k
	}
	return "(unknown)"
}

// authenticate checks the client credentials, given either with HTTP Basic (RFC 6749
// §2.3.1) or as client_id and client_secret in the body, never both. It returns the
// client id, or a status (400 or 401) and a description.
func (m *Middleware) authenticate(req *http.Request, form url.Values) (string, int, string) {
	basic := basicHeader(req)
	formID, formSecret := form.Get("client_id"), form.Get("client_secret")
	if basic == "" {
		if formID == "" && formSecret == "" {
			return "", http.StatusUnauthorized, "Client authentication is required"
		}
		if m.clientSecretOK(formID, formSecret) {
			return formID, 0, ""
		}
		return "", http.StatusUnauthorized, "Client authentication failed"
	}
	raw, err := base64.StdEncoding.DecodeString(basic)
	colon := strings.IndexByte(string(raw), ':')
	if err != nil || colon < 0 {
		if formSecret != "" {
			return "", http.StatusBadRequest, bothMethods
		}
		return "", http.StatusUnauthorized, "The Basic authorization header is malformed"
	}
	rawID, rawSecret := string(raw[:colon]), string(raw[colon+1:])
	// RFC 6749 §2.3.1 form-encodes id and secret before base64; many clients (curl -u)
	// do not. Accept either reading, checking both so timing does not depend on it.
	id, errID := url.QueryUnescape(rawID)
	secret, errSecret := url.QueryUnescape(rawSecret)
	if formSecret != "" || (formID != "" && formID != id && formID != rawID) {
		return "", http.StatusBadRequest, bothMethods
	}
	decodedOK := errID == nil && errSecret == nil && m.clientSecretOK(id, secret)
	rawOK := m.clientSecretOK(rawID, rawSecret)
	if decodedOK {
		return id, 0, ""
	}
	if rawOK {
		return rawID, 0, ""
	}
	return "", http.StatusUnauthorized, "Client authentication failed"
}

const bothMethods = "Use one client authentication method: HTTP Basic or client_id and client_secret in the body, not both"

// clientSecretOK compares secret with the configured client's in constant time; an
// unknown id costs the same as a wrong secret.
func (m *Middleware) clientSecretOK(id, secret string) bool {
	want, known := m.settings.clients[id]
	if !known {
		want = dummySecret
	}
	got := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1 && known && id != "" && secret != ""
}

// basicHeader returns the credentials part of a Basic Authorization header, or "" (also
// for several Authorization headers, or one longer than any credentials could be).
func basicHeader(req *http.Request) string {
	vs := req.Header["Authorization"]
	if len(vs) != 1 || len(vs[0]) > maxBasicHeader {
		return ""
	}
	if v := vs[0]; len(v) > 6 && strings.EqualFold(v[:6], "basic ") {
		return strings.TrimSpace(v[6:])
	}
	return ""
}

// maxBasicHeader bounds a Basic Authorization header read at the endpoints.
const maxBasicHeader = 8 << 10
