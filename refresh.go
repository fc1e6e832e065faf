package tokenrevoke

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"time"
)

// Refresh tokens at the identity provider's token endpoint (tokenPath).
//
// A refresh token revoked at the edge (by this gateway's revoke endpoint, by another
// gateway over NATS, or forwarded to the provider: forward.go) must not buy new tokens
// at the provider's token endpoint behind the same router. So a request to tokenPath
// that presents a revoked token in a refresh_token parameter is answered 400
// invalid_grant (RFC 6749 §5.2) by the gateway, and the provider never sees it. Every
// other request passes byte for byte (a body that was read is handed on unchanged).
//
// Whoever holds a revoked refresh token will try every spelling a provider might still
// read, so the gateway reads the request the way the most lenient common provider
// would (oidc-provider on koa: URLSearchParams on the urlencoded body; Go's
// r.PostFormValue; Python frameworks, some of which merge query and body, or take JSON),
// and refuses with 400 where it cannot tell what the provider would read:
//
//   - every refresh_token parameter is checked, whatever the grant_type (a duplicate
//     grant_type or refresh_token is read differently by different servers: Go takes the
//     first value, PHP the last, oidc-provider refuses), in the query string and in the
//     body, names percent-decoded and case-folded with '.' and ' ' read as '_' (PHP),
//     refresh_token[...] included, pairs split on '&' and ';';
//   - any body is read as a form, whatever its Content-Type (a missing or odd type is
//     read as a form by lenient parsers; reading it costs nothing more), and also as a
//     JSON object when it is one: every member whose name matches refresh_token without
//     regard to case (Go's encoding/json matches struct fields that way), string or
//     array of strings;
//   - refused with 400: a charset other than UTF-8, ASCII or Latin-1 (parsers decode
//     with it: "refresh_token" in UTF-16 is not the bytes the gateway looks for),
//     multipart bodies (RFC 6749 §3.2 allows only urlencoded ones, and
//     providers read parts differently), bodies with a Content-Encoding other than
//     identity (body parsers inflate gzip; the gateway does not look inside), several
//     Content-Type headers, a query string or body with more than maxParams parameters
//     that may name refresh_token; with 413: bodies over maxBodyCheck;
//   - a refresh token longer than maxTokenLength is refused (400 invalid_request), as
//     everywhere: the revoke endpoint stores nothing for it.
//
// "A request to tokenPath" is read as the provider's router would: web frameworks match
// paths without regard to case and with or without a trailing slash (koa-router, which
// oidc-provider uses, does both by default), servlet containers drop ";params", and
// some collapse "//" and dot segments. So the path is compared after the same folding
// (atTokenPath); "/TOKEN/", "/token;x" and "//token" are the token endpoint too.
//
// Only requests to tokenPath with a query string or a body pay for this; the fast path
// of ServeHTTP passes the others as before.

// atTokenPath reports whether a request path names tokenPath for a lenient router: same
// path once ";params" are cut, dot segments and repeated slashes cleaned, a trailing
// slash dropped and case folded.
func atTokenPath(p, tokenPath string) bool {
	if p == tokenPath {
		return true
	}
	if i := strings.IndexByte(p, ';'); i >= 0 {
		p = p[:i]
	}
	if len(p) < len(tokenPath) {
		return false
	}
	return strings.EqualFold(path.Clean("/"+p), path.Clean(tokenPath))
}

// errInvalidGrant is the token endpoint's error for a revoked refresh token (RFC 6749
// §5.2).
const errInvalidGrant = "invalid_grant"

// refreshCheck is what the gateway read of a request to tokenPath.
type refreshCheck struct {
	found   bool // a refresh_token parameter is present (failClosed)
	revoked bool // one of them is revoked
	status  int  // non-zero: refuse with this status (400 or 413) and desc
	desc    string
}

func (rc *refreshCheck) refuse(status int, desc string) {
	if rc.status == 0 {
		rc.status = status
		rc.desc = desc
	}
}

func (rc *refreshCheck) done() bool { return rc.revoked || rc.status != 0 }

// refuseRevokedRefresh answers a request to tokenPath that presents a revoked refresh
// token (400 invalid_grant) or cannot be read safely (400, 413), and reports whether it
// did. Otherwise the request, its body re-supplied unchanged, goes on to the usual
// inspection and the provider.
func refuseRevokedRefresh(m *Middleware, rw http.ResponseWriter, req *http.Request) bool {
	rc := m.checkRefresh(req, time.Now().Unix())
	if rc.revoked {
		atomic.AddInt64(&m.metrics.rejectedRevoked, 1)
		writeError(rw, http.StatusBadRequest, errInvalidGrant, "The refresh token has been revoked")
		return true
	}
	if rc.status != 0 {
		if rc.status == http.StatusRequestEntityTooLarge || rc.status == http.StatusRequestURITooLong {
			atomic.AddInt64(&m.metrics.rejectedTooLarge, 1)
		} else {
			atomic.AddInt64(&m.metrics.rejectedRefused, 1)
		}
		writeError(rw, rc.status, errInvalidRequest, rc.desc)
		return true
	}
	return false
}

// refreshPresented reports whether a request to tokenPath presents a refresh token, or
// cannot be read to tell (failClosed holds such requests while not synced).
func refreshPresented(m *Middleware, req *http.Request) bool {
	rc := m.checkRefresh(req, time.Now().Unix())
	return rc.found || rc.done()
}

// checkRefresh applies the rules above to a request to tokenPath. It may replace
// req.Body with a buffered copy of the same bytes.
func (m *Middleware) checkRefresh(req *http.Request, now int64) refreshCheck {
	var rc refreshCheck
	if len(req.URL.RawQuery) > int(m.settings.maxBodyCheck) {
		rc.refuse(http.StatusRequestURITooLong, "The query string is longer than the gateway inspects")
		return rc
	}
	if req.URL.RawQuery != "" {
		m.refreshParams(req.URL.RawQuery, now, &rc)
		if rc.done() {
			return rc
		}
	}
	if req.ContentLength == 0 || req.Body == nil || req.Body == http.NoBody {
		return rc
	}
	cts := req.Header["Content-Type"]
	if len(cts) > 1 {
		rc.refuse(http.StatusBadRequest, "The request has more than one Content-Type header")
		return rc
	}
	ct := ""
	if len(cts) == 1 {
		ct = strings.ToLower(cts[0])
	}
	if !asciiCharset(ct) {
		rc.refuse(http.StatusBadRequest, "The request body's charset is not one the gateway reads")
		return rc
	}
	if strings.Contains(ct, "multipart/") {
		rc.refuse(http.StatusBadRequest, "The token endpoint takes application/x-www-form-urlencoded bodies, not multipart")
		return rc
	}
	if ce := req.Header["Content-Encoding"]; len(ce) > 0 && !(len(ce) == 1 && strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		rc.refuse(http.StatusBadRequest, "Token requests with a Content-Encoding are not accepted")
		return rc
	}
	limit := m.settings.maxBodyCheck
	if req.ContentLength > limit {
		rc.refuse(http.StatusRequestEntityTooLarge, "The request body is larger than the gateway inspects")
		return rc
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		rc.refuse(http.StatusBadRequest, "The request body could not be read")
		return rc
	}
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	if int64(len(body)) > limit {
		rc.refuse(http.StatusRequestEntityTooLarge, "The request body is larger than the gateway inspects")
		return rc
	}
	m.refreshParams(strings.TrimPrefix(string(body), "\ufeff"), now, &rc)
	if rc.done() {
		return rc
	}
	m.refreshJSON(body, now, &rc)
	return rc
}

// asciiCharset reports whether a Content-Type (lowercase) names no charset or one in
// which the gateway reads the same parameter names and tokens as the provider: body
// parsers decode the body with the charset given (a UTF-16 body hides every name from
// a byte scan).
func asciiCharset(ct string) bool {
	i := strings.Index(ct, "charset")
	if i < 0 {
		return true
	}
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch strings.Trim(params["charset"], " \"'") {
	case "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "windows-1252", "cp1252":
		return true
	}
	return false
}

// refreshParams checks every refresh_token parameter of a query string or form body.
func (m *Middleware) refreshParams(raw string, now int64, rc *refreshCheck) {
	values, tooMany := namedParams(raw, "refresh", isRefreshParam)
	if tooMany {
		rc.refuse(http.StatusBadRequest, "Too many parameters to inspect for a refresh token")
		return
	}
	for _, v := range values {
		m.checkRefreshToken(v, now, rc)
		if rc.done() {
			return
		}
	}
}

// isRefreshParam reports whether a decoded parameter name is one a provider maps to
// refresh_token.
func isRefreshParam(name string) bool { return isNamed(name, "refresh_token") }

// refreshJSON checks the refresh_token members of a JSON object body (jsonMembers).
func (m *Middleware) refreshJSON(body []byte, now int64, rc *refreshCheck) {
	values, refuse := jsonMembers(body, "refresh_token")
	if refuse != "" {
		rc.refuse(http.StatusBadRequest, refuse)
		return
	}
	for _, s := range values {
		m.checkRefreshToken(s, now, rc)
		if rc.done() {
			return
		}
	}
}

// checkRefreshToken checks one refresh_token value as the request path checks a bearer
// token (its trimmed spelling too; a token over maxTokenLength is refused).
func (m *Middleware) checkRefreshToken(tok string, now int64, rc *refreshCheck) {
	if tok == "" {
		return
	}
	rc.found = true
	var in inspection
	m.checkToken(tok, now, &in)
	switch in.verdict {
	case revokedRequest:
		rc.revoked = true
	case refusedRequest:
		rc.refuse(http.StatusBadRequest, "The refresh token is longer than the gateway accepts")
	}
}
