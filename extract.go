package tokenrevoke

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

// Where a backend may read a bearer token, and how the gateway reads it the same way.
//
// The gateway must see every token a backend could accept. Backends are written many
// ways: Go's r.FormValue and strings.Fields, Node's header.split(' ')[1] and body
// parsers, Python's str.split() and partition(" "). So the rules below read each place
// as the most lenient of those readers would, and where two readers could disagree
// about which string is the token, the request is refused (400) rather than guessed:
//
//   - Authorization: at most one header. "Bearer" (any case), spaces, then a token of
//     RFC 6750 b64token characters (letters, digits, -._~+/=) and nothing else is the
//     canonical form. A value that starts with "bearer" followed by anything else (a tab,
//     a second word, a non-ASCII space) is ambiguous: 400. Any other value (another
//     scheme, or a bare token) is checked word by word, as a backend that ignores the
//     scheme (split(' ')[1], TrimPrefix("Bearer ")) would read it.
//   - Query and form bodies: every parameter whose name, percent-decoded and
//     case-folded (with '.' and ' ' read as '_', as PHP does), is access_token or
//     access_token[...]; pairs are split on '&' and ';' (older Python splits on both);
//     escapes are decoded leniently (a broken escape stays as it is, as Node and Python
//     leave it); every value is checked, not only the first.
//   - Bodies: read when their media type is application/x-www-form-urlencoded or
//     multipart/form-data, whatever the method (Node and Python parse GET bodies too),
//     up to maxBodyCheck bytes (larger: 413), then handed on byte for byte. A form body
//     with a Content-Encoding (body parsers inflate gzip) or several Content-Type
//     headers is refused, as is a multipart body the gateway cannot parse.
//   - A token longer than maxTokenLength is refused: the revoke endpoint could never
//     have revoked it.

// maxTokenLength is the longest token the gateway accepts anywhere (and can revoke).
const maxTokenLength = 16 << 10

// maxParams and maxAuthWords bound the interpreted work one request can cause: a query
// or form body that may name access_token and has more parameters, or an Authorization
// value of another scheme with more words, is refused rather than read for seconds.
// (Go's own query parser stops at 10,000 parameters; Node's qs at 1,000.)
const (
	maxParams    = 10000
	maxAuthWords = 32
)

// tokenChars are RFC 6750 b64token characters ('=' anywhere: it splits nothing).
const tokenChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="

// verdict of inspecting a request.
const (
	passRequest = iota
	revokedRequest
	refusedRequest // 400 or 413: see status and desc
)

// inspection is what the slow path learned about a request.
type inspection struct {
	verdict int
	status  int    // with refusedRequest
	desc    string // with refusedRequest
	found   bool   // a token was present somewhere (failClosed)
}

func (in *inspection) refuse(status int, desc string) {
	if in.verdict == passRequest {
		in.verdict = refusedRequest
		in.status = status
		in.desc = desc
	}
}

// inspect applies every rule above to req. It may replace req.Body with a buffered copy
// of the same bytes.
func (m *Middleware) inspect(req *http.Request, now int64) inspection {
	var in inspection
	m.inspectAuthorization(req, now, &in)
	if in.verdict != passRequest {
		return in
	}
	if req.URL.RawQuery != "" {
		m.inspectParams(req.URL.RawQuery, now, &in)
		if in.verdict != passRequest {
			return in
		}
	}
	if req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody {
		m.inspectBody(req, now, &in)
	}
	return in
}

// checkToken records a candidate token and whether it is revoked; a backend that trims
// the value would read it without surrounding spaces, so that spelling is checked too.
func (m *Middleware) checkToken(tok string, now int64, in *inspection) {
	if tok == "" {
		return
	}
	// TrimFunc calls back into interpreted code: only when an end looks like a space.
	if c, d := tok[0], tok[len(tok)-1]; c <= ' ' || c >= 0x80 || d <= ' ' || d >= 0x80 {
		if t := strings.TrimFunc(tok, isAnySpace); t != tok {
			m.checkOne(t, now, in)
		}
	}
	m.checkOne(tok, now, in)
}

func (m *Middleware) checkOne(tok string, now int64, in *inspection) {
	if tok == "" {
		return
	}
	in.found = true
	if len(tok) > maxTokenLength {
		in.refuse(http.StatusBadRequest, "The bearer token is longer than the gateway accepts")
		return
	}
	if m.revoked(tok, now) {
		in.verdict = revokedRequest
		return
	}
	// ruleRevoked's frame is large (each interpreted call allocates all of it): called
	// only while rules are held.
	if atomic.LoadInt64(&m.cache.rules.count) != 0 {
		if m.ruleRevoked(tok, now) {
			in.verdict = revokedRequest
		}
	}
}

func (m *Middleware) inspectAuthorization(req *http.Request, now int64, in *inspection) {
	values := req.Header["Authorization"]
	if len(values) == 0 {
		return
	}
	in.found = true
	if len(values) > 1 {
		in.refuse(http.StatusBadRequest, "The request has more than one Authorization header")
		return
	}
	v := values[0]
	if tok, ok := canonicalBearer(v); ok {
		full := hashToken(tok)
		if m.cache.isPassing(full) {
			return // read, valid and not revoked (its revocation would have forgotten it)
		}
		gen := m.cache.ruleGeneration()
		m.checkToken(tok, now, in)
		if in.verdict == passRequest {
			m.rememberValid(tok, full, gen)
		}
		return
	}
	if t := strings.TrimRight(v, " \t"); len(t) == 6 && strings.EqualFold(t, "bearer") {
		return // the scheme without a token ("Bearer ", trimmed): nothing to check
	}
	if len(v) > 6 && strings.EqualFold(v[:6], "bearer") && !isSchemeChar(v[6]) {
		in.refuse(http.StatusBadRequest, "The Bearer authorization header is malformed (use the scheme, one space and the token)")
		return
	}
	// Another scheme, or a bare token: check every string a lenient backend could take
	// for the token.
	cands := authCandidates(v)
	if len(cands) > maxAuthWords+4 {
		in.refuse(http.StatusBadRequest, "The Authorization header has too many words")
		return
	}
	for _, c := range cands {
		if len(c) <= maxTokenLength {
			m.checkToken(c, now, in)
			if in.verdict == revokedRequest {
				return
			}
		}
	}
}

// canonicalBearer returns the token of "Bearer<SP>+<b64token>" (scheme in any case).
func canonicalBearer(v string) (string, bool) {
	if len(v) < 8 || !strings.EqualFold(v[:6], "bearer") || v[6] != ' ' {
		return "", false
	}
	tok := strings.TrimLeft(v[7:], " ")
	if tok == "" || strings.Trim(tok, tokenChars) != "" {
		return "", false
	}
	return tok, true
}

// rememberValid lets the request path pass tok by itself next time (see
// tokenCache.passing; full is its SHA-256), when one key decides it: an opaque token without dots, or one
// that does not start like a JWT, by its exact string; a JWS by its signing input.
// Others (a JWE, an 'e' token with other dots) always take the slow path.
//
// gen is the rule generation read before the token was checked: if a rule arrived since,
// the check may be stale and the token is not remembered (the next request checks again).
func (m *Middleware) rememberValid(tok string, full [32]byte, gen uint64) {
	if len(tok) > maxTokenLength {
		return
	}
	key, kind := tokenKey(tok)
	if kind == kindJWE || kind == kindToken && tok[0] == 'e' && strings.IndexByte(tok, '.') >= 0 {
		return
	}
	m.cache.rememberPassing(full, key, kind == kindJWS, gen)
}

func isSchemeChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// authCandidates lists what backends read as the token of an Authorization value that
// is not a canonical bearer header: the whole value (TrimPrefix("Bearer ") on a value
// without that prefix), the rest after the first space (partition(" ")), the second
// space-separated piece (split(' ')[1]), and every whitespace-separated word (Fields,
// str.split(), which also split on non-ASCII spaces).
func authCandidates(v string) []string {
	out := []string{strings.TrimSpace(v)}
	if i := strings.IndexByte(v, ' '); i >= 0 {
		rest := v[i+1:]
		out = append(out, rest, strings.TrimSpace(rest))
		if j := strings.IndexByte(rest, ' '); j >= 0 {
			out = append(out, rest[:j])
		}
	}
	// Every whitespace-separated word: Fields()[1], str.split()[1], and readers that
	// take the last word.
	return append(out, authWords(v)...)
}

// authWords splits v at every isAnySpace character. For printable ASCII (the usual
// Basic or Digest value) the only such separator is ' ', where strings.Fields splits
// too, without calling back into interpreted code for every character (FieldsFunc cost
// about 300 µs per request under yaegi).
func authWords(v string) []string {
	if !strings.ContainsAny(v, controlBytes) && utf8.ValidString(v) && utf8.RuneCountInString(v) == len(v) {
		return strings.Fields(v)
	}
	return strings.FieldsFunc(v, isAnySpace)
}

// controlBytes are the ASCII control characters, which isAnySpace counts as spaces.
const controlBytes = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f" +
	"\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"

// isAnySpace is whitespace as any mainstream backend splits on it: ASCII spaces and
// control separators, and the Latin-1 bytes Python reads as spaces (NEL, NBSP).
func isAnySpace(r rune) bool {
	switch {
	case r <= ' ':
		return true
	case r == 0x85 || r == 0xA0:
		return true
	case r >= 0x80 && r < 0x100:
		return false
	}
	return r == 0x1680 || r >= 0x2000 && r <= 0x200a || r == 0x2028 || r == 0x2029 || r == 0x202f || r == 0x205f || r == 0x3000 || r == 0xFFFD
}

// nextParam splits the first parameter off a query string or form body, at '&' or ';'
// (Node's qs and Python's parse_qsl split on ';' too), into its raw name and value.
//
// (Plain locals and one return statement: under yaegi v0.16.1 a named result that a call
// leaves unset kept the value of an earlier call, and a loop never ended.)
func nextParam(raw string) (string, string, string) {
	pair := raw
	rest := ""
	if i := strings.IndexAny(raw, "&;"); i >= 0 {
		pair = raw[:i]
		rest = raw[i+1:]
	}
	key := pair
	value := ""
	if i := strings.IndexByte(pair, '='); i >= 0 {
		key = pair[:i]
		value = pair[i+1:]
	}
	return key, value, rest
}

// inspectParams checks the access_token parameters of a query or form body.
func (m *Middleware) inspectParams(raw string, now int64, in *inspection) {
	values, tooMany := namedParams(raw, "access", isTokenParam)
	if tooMany {
		in.refuse(http.StatusBadRequest, "Too many parameters to inspect for an access token")
		return
	}
	for _, v := range values {
		m.checkToken(v, now, in)
		if in.verdict != passRequest {
			return
		}
	}
}

// namedParams returns, in order, the decoded values of the parameters of raw (a query
// string or a form body) whose decoded name match accepts, and whether raw has too many
// parameters to inspect (maxParams or more; then nothing is returned). word is the
// lower-case word every such name holds ("access" for access_token) unless it is
// percent- or plus-encoded: a string without it is passed over in three stdlib calls,
// and a name shorter than word + "_token" is not decoded.
func namedParams(raw, word string, match func(string) bool) ([]string, bool) {
	if strings.IndexByte(raw, '%') < 0 && strings.IndexByte(raw, '+') < 0 && !strings.Contains(strings.ToLower(raw), word) {
		return nil, false
	}
	if strings.Count(raw, "&")+strings.Count(raw, ";") >= maxParams {
		return nil, true
	}
	minLen := len(word) + len("_token")
	var values []string
	for raw != "" {
		var key, value string
		key, value, raw = nextParam(raw)
		if len(key) >= minLen && match(lenientUnescape(key)) {
			values = append(values, lenientUnescape(value))
		}
	}
	return values, false
}

// isTokenParam reports whether a decoded parameter name is one a backend maps to
// access_token.
func isTokenParam(name string) bool {
	if len(name) < 12 {
		return false
	}
	n := paramNameFolder.Replace(strings.ToLower(strings.TrimSpace(name)))
	return n == "access_token" || strings.HasPrefix(n, "access_token[")
}

// paramNameFolder reads '.' and ' ' in a parameter name as '_' (PHP does).
var paramNameFolder = strings.NewReplacer(".", "_", " ", "_")

// lenientUnescape decodes a query or form component: '+' is a space, %XX is a byte, and
// a malformed escape is kept as it is.
func lenientUnescape(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// formBody says how a body with these Content-Type headers must be read: as
// urlencoded form, as multipart, or not at all; refuse is non-empty when the headers are
// ambiguous. Node's body parsers match on a prefix of the type
// ("application/x-www-form-urlencoded, text/plain" is a form to them), so the type is
// matched on its words, not parsed strictly.
func formBody(cts []string) (urlencoded, multipartBody bool, refuse string) {
	if len(cts) == 0 {
		return false, false, ""
	}
	ct := strings.ToLower(strings.Join(cts, ","))
	urlencoded = strings.Contains(ct, "x-www-form-urlencoded")
	multipartBody = strings.Contains(ct, "multipart/")
	switch {
	case !urlencoded && !multipartBody:
		if len(cts) > 1 {
			return false, false, "The request has more than one Content-Type header"
		}
		return false, false, ""
	case len(cts) > 1:
		return false, false, "The request has more than one Content-Type header"
	case urlencoded && multipartBody:
		return false, false, "The Content-Type names both form encodings"
	}
	return urlencoded, multipartBody, ""
}

func (m *Middleware) inspectBody(req *http.Request, now int64, in *inspection) {
	urlencoded, multipartBody, refuse := formBody(req.Header["Content-Type"])
	if refuse != "" {
		in.refuse(http.StatusBadRequest, refuse)
		return
	}
	if !urlencoded && !multipartBody {
		return
	}
	if ce := req.Header["Content-Encoding"]; len(ce) > 0 && !(len(ce) == 1 && strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		in.refuse(http.StatusBadRequest, "Form bodies with a Content-Encoding are not accepted")
		return
	}
	limit := m.settings.maxBodyCheck
	if req.ContentLength > limit {
		in.refuse(http.StatusRequestEntityTooLarge, "The form body is larger than the gateway inspects")
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		in.refuse(http.StatusBadRequest, "The request body could not be read")
		return
	}
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	if int64(len(body)) > limit {
		in.refuse(http.StatusRequestEntityTooLarge, "The form body is larger than the gateway inspects")
		return
	}
	if urlencoded {
		m.inspectParams(string(body), now, in)
		return
	}
	m.inspectMultipart(req, body, now, in)
}

// inspectMultipart checks every part named access_token (whatever its disposition
// type, name given plainly or RFC 2231-encoded), raw and with a quoted-printable
// transfer encoding decoded (Go decodes it). Other transfer encodings of such a part
// (base64, uuencode: Python's email parser decodes them) are refused.
func (m *Middleware) inspectMultipart(req *http.Request, body []byte, now int64, in *inspection) {
	_, params, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	boundary := params["boundary"]
	if err != nil || boundary == "" {
		in.refuse(http.StatusBadRequest, "The multipart body has no usable boundary")
		return
	}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			in.refuse(http.StatusBadRequest, "The multipart body could not be parsed")
			return
		}
		_, disp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if err != nil {
			if strings.Contains(strings.ToLower(p.Header.Get("Content-Disposition")), "access") {
				in.refuse(http.StatusBadRequest, "A multipart part has a malformed Content-Disposition")
				return
			}
			continue
		}
		if !isTokenParam(disp["name"]) {
			continue
		}
		raw, err := io.ReadAll(io.LimitReader(p, int64(maxTokenLength)+1))
		if err != nil {
			in.refuse(http.StatusBadRequest, "The multipart body could not be parsed")
			return
		}
		m.checkToken(string(raw), now, in)
		switch cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); cte {
		case "", "7bit", "8bit", "binary":
		case "quoted-printable":
			if dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw))); err == nil {
				m.checkToken(string(dec), now, in)
			}
		default:
			in.refuse(http.StatusBadRequest, "An access_token part has a transfer encoding the gateway does not read")
		}
		if in.verdict != passRequest {
			return
		}
	}
}
