package tokenrevoke

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"strconv"
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

// maxEncodedToken: a percent-encoded value longer than this decodes to more than
// maxTokenLength bytes (an escape is 3 bytes for 1), so it is refused without decoding.
const maxEncodedToken = 3*maxTokenLength + 2

// maxParams and maxAuthWords bound the interpreted work one request can cause: a query
// or form body that may name access_token and has more parameters, or an Authorization
// value of another scheme with more words, is refused rather than read for seconds.
// (Go's own query parser stops at 10,000 parameters; Node's qs at 1,000.)
const (
	maxParams     = 10000
	maxAuthWords  = 32
	maxAuthSpaces = 256
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
	limit := m.settings.maxBodyCheck
	if len(req.URL.RawQuery) > int(limit) {
		in.refuse(http.StatusRequestURITooLong, "The query string is longer than the gateway inspects")
		return in
	}
	m.inspectAuthorization(req, now, &in)
	if in.verdict != passRequest {
		return in
	}
	if m.places != nil {
		m.inspectPlaces(req, now, &in)
		if in.verdict != passRequest {
			return in
		}
	}
	hasBody := req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody
	if req.URL.RawQuery != "" || hasBody {
		// Django decodes the query and form bodies with the charset the Content-Type
		// names: in UTF-16, "access_token" is not the bytes looked for here.
		for _, ct := range req.Header["Content-Type"] {
			if !asciiCharset(strings.ToLower(ct)) {
				in.refuse(http.StatusBadRequest, "The request's charset is not one the gateway reads (use UTF-8)")
				return in
			}
		}
	}
	if req.URL.RawQuery != "" {
		m.inspectParams(req.URL.RawQuery, now, &in)
		if in.verdict != passRequest {
			return in
		}
	}
	if hasBody {
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
	if len(tok) > maxTokenLength {
		// Refused whatever it trims to (the revoke endpoint could never take it),
		// before trimming a long run of spaces costs anything.
		in.found = true
		in.refuse(http.StatusBadRequest, "The bearer token is longer than the gateway accepts")
		return
	}
	if c, d := tok[0], tok[len(tok)-1]; c <= ' ' || c >= 0x80 || d <= ' ' || d >= 0x80 {
		if t := trimAnySpace(tok); t != tok {
			m.checkOne(t, now, in)
		}
	}
	m.checkOne(tok, now, in)
}

func (m *Middleware) checkOne(tok string, now int64, in *inspection) {
	if tok == "" {
		return
	}
	in.found = true // tok is at most maxTokenLength long (checkToken)
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
	m.inspectAuthValue(values[0], now, in)
}

// inspectAuthValue checks an Authorization value (or the value of a configured token
// header, which may carry a scheme or not) by the rules above.
func (m *Middleware) inspectAuthValue(v string, now int64, in *inspection) {
	if len(v) > int(m.settings.maxBodyCheck) {
		in.refuse(http.StatusRequestHeaderFieldsTooLarge, "A header that may carry a token is longer than the gateway inspects")
		return
	}
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
	// for the token (refused first if splitting it could make thousands of words).
	if strings.Count(v, " ") > maxAuthSpaces {
		in.refuse(http.StatusBadRequest, "The Authorization header has too many words")
		return
	}
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

// authWords splits v at every isAnySpace character, as strings.FieldsFunc(v,
// isAnySpace) would, but in compiled calls (FieldsFunc called back into interpreted
// code for every character: about 300 µs for a usual value under yaegi, seconds for a
// long one): invalid UTF-8 and every other isAnySpace character become ' ' first.
//
// strings.Fields itself splits at exactly the other isAnySpace characters (Unicode's
// White_Space: the ASCII spaces, NEL, NBSP and the others, compiled), so only what it
// does not split at is respelled first, each in one pass that costs nothing when
// absent: invalid UTF-8 and U+FFFD, and the control bytes that are not ASCII spaces.
func authWords(v string) []string {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, " ")
	}
	if strings.ContainsRune(v, utf8.RuneError) {
		v = strings.ReplaceAll(v, "\ufffd", " ")
	}
	if strings.ContainsAny(v, otherControls) {
		v = controlsAsSpace.Replace(v)
	}
	return strings.Fields(v)
}

// otherControls are the control bytes strings.Fields does not split at (all but
// \t \n \v \f \r); controlsAsSpace turns them into ' ' with a byte table.
const otherControls = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f" +
	"\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"

var controlsAsSpace = func() *strings.Replacer {
	var pairs []string
	for i := 0; i < len(otherControls); i++ {
		pairs = append(pairs, otherControls[i:i+1], " ")
	}
	return strings.NewReplacer(pairs...)
}()

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

// namedParams returns the decoded values of the parameters of raw (a query string or
// a form body) whose decoded name match accepts, and whether raw must be refused
// instead: it has maxParams parameters or more, or more than maxCandidates places where
// such a name may be. word is the lower-case word every such name holds ("access" for
// access_token): a string without it, '%', '+' and '\' is passed over in four stdlib
// calls. Otherwise the parameters are not walked one by one: the located string (see
// scan.go) names the few that may match, and only those are decoded and matched.
//
// A value holding '%' is also returned as qs reads it: qs leaves a component whose
// escapes do not all decode (a malformed one, or invalid UTF-8) undecoded, with only
// '+' read as a space.
func namedParams(raw, word string, match func(string) bool) ([]string, bool) {
	if strings.IndexByte(raw, '%') < 0 && strings.IndexByte(raw, '+') < 0 && strings.IndexByte(raw, '\\') < 0 && !strings.Contains(lowerForSearch(raw), word) {
		return nil, false
	}
	if strings.Count(raw, "&")+strings.Count(raw, ";") >= maxParams {
		return nil, true
	}
	ks, ok := candidates(paramLocator.locate(raw), word+"_token")
	if !ok {
		return nil, true
	}
	if len(ks) == 0 {
		return nil, false
	}
	pieces := strings.Split(semicolonAsAmpersand.Replace(raw), "&")
	var values []string
	for _, k := range ks {
		key, value, _ := nextParam(pieces[k])
		if match(lenientUnescape(key)) {
			if len(value) > maxEncodedToken {
				values = append(values, value) // decodes longer than any token: refused as it is
				continue
			}
			values = append(values, lenientUnescape(value))
			if strings.IndexByte(value, '%') >= 0 {
				values = append(values, strings.ReplaceAll(value, "+", " "))
			}
		}
	}
	return values, false
}

// semicolonAsAmpersand makes ';' split parameters as '&' does.
var semicolonAsAmpersand = strings.NewReplacer(";", "&")

// isTokenParam reports whether a decoded parameter name is one a backend maps to
// access_token.
func isTokenParam(name string) bool { return isNamed(name, "access_token") }

// isNamed reports whether a decoded parameter name n is read as want (a lower-case
// name such as "access_token") by some backend: backslashes dropped (busboy, which
// multer and so many Express apps use, unescapes any character in a quoted
// multipart name; Go keeps "\e"), spaces and a byte order mark around it trimmed,
// case folded, '.' and ' ' read as '_' (PHP, which also reads an unclosed '['
// as '_'), and the bracket forms that qs, PHP and Rack map to want: "want[...]" (an
// array or object named want) and "[want]" (qs: a leading bracket names a top-level
// key).
func isNamed(name, want string) bool {
	if len(name) < len(want) {
		return false
	}
	if strings.IndexByte(name, '\\') >= 0 {
		name = strings.ReplaceAll(name, "\\", "")
	}
	n := paramNameFolder.Replace(strings.ToLower(strings.Trim(name, anySpaceCutset+"\ufeff")))
	if n == want || strings.HasPrefix(n, want+"[") || strings.HasPrefix(n, "["+want+"]") {
		return true
	}
	if i := strings.IndexByte(n, '['); i >= 0 && strings.IndexByte(n[i:], ']') < 0 {
		return n[:i]+"_"+n[i+1:] == want
	}
	return false
}

// paramNameFolder reads '.' and ' ' in a parameter name as '_' (PHP does).
var paramNameFolder = strings.NewReplacer(".", "_", " ", "_")

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
	cts := req.Header["Content-Type"]
	urlencoded, multipartBody, refuse := formBody(cts)
	if refuse != "" {
		in.refuse(http.StatusBadRequest, refuse)
		return
	}
	if !urlencoded && !multipartBody {
		m.inspectOtherBody(req, cts, now, in)
		return
	}
	body, ok := m.readBody(req, in, "The form body is larger than the gateway inspects")
	if !ok {
		return
	}
	if urlencoded {
		// body-parser strips a byte order mark before the first name.
		m.inspectParams(strings.TrimPrefix(string(body), "\ufeff"), now, in)
		return
	}
	m.inspectMultipart(req, body, now, in)
}

// readBody reads a body the gateway inspects (at most maxBodyCheck bytes: larger, 413
// with tooLarge), refusing one with a Content-Encoding (body parsers inflate gzip; the
// gateway does not look inside), and hands the same bytes on.
func (m *Middleware) readBody(req *http.Request, in *inspection, tooLarge string) ([]byte, bool) {
	if ce := req.Header["Content-Encoding"]; len(ce) > 0 && !(len(ce) == 1 && strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		in.refuse(http.StatusBadRequest, "Bodies the gateway inspects may not have a Content-Encoding")
		return nil, false
	}
	limit := m.settings.maxBodyCheck
	if req.ContentLength > limit {
		in.refuse(http.StatusRequestEntityTooLarge, tooLarge)
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		in.refuse(http.StatusBadRequest, "The request body could not be read")
		return nil, false
	}
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	if int64(len(body)) > limit {
		in.refuse(http.StatusRequestEntityTooLarge, tooLarge)
		return nil, false
	}
	return body, true
}

// jsonPeek is how much of a body that is neither a form nor declared JSON is read to
// tell whether it is a JSON object.
const jsonPeek = 64

// inspectOtherBody checks a body that is not a form. passport-http-bearer and
// passport-jwt read access_token from req.body, which express.json() fills from
// application/json; FastAPI parses a body without a Content-Type as JSON, Starlette's
// request.json() whatever the type, and Python's json detects UTF-16 and UTF-32 by
// itself. So a body declared JSON (any media type naming json), and any other body
// whose first bytes are a JSON object's in UTF-8, UTF-16 or UTF-32, is read as JSON;
// one that is not UTF-8 is refused. Other bodies (uploads, gRPC) pass unread: of those
// with an unknown length only the declared JSON ones are read, and of the others only
// the first jsonPeek bytes, which the client has announced by their length.
func (m *Middleware) inspectOtherBody(req *http.Request, cts []string, now int64, in *inspection) {
	declared := len(cts) == 1 && strings.Contains(strings.ToLower(cts[0]), "json")
	if !declared {
		if req.ContentLength <= 0 {
			return
		}
		n := req.ContentLength
		if n > jsonPeek {
			n = jsonPeek
		}
		head := make([]byte, n)
		got, err := io.ReadFull(req.Body, head)
		head = head[:got]
		req.Body = io.NopCloser(io.MultiReader(bytes.NewReader(head), req.Body))
		if err != nil || !jsonObjectStart(head) {
			return
		}
	}
	body, ok := m.readBody(req, in, "The JSON body is larger than the gateway inspects")
	if !ok {
		return
	}
	m.inspectJSON(body, now, in)
}

// jsonObjectStart reports whether head begins a JSON object in any encoding a JSON
// parser detects: UTF-8 (with or without a byte order mark), UTF-16 or UTF-32 (their
// ASCII characters are the same bytes with NULs between them).
func jsonObjectStart(head []byte) bool {
	h := bytes.TrimPrefix(head, utf8BOM)
	if len(h) >= 2 && (h[0] == 0xFE && h[1] == 0xFF || h[0] == 0xFF && h[1] == 0xFE) {
		h = h[2:]
	}
	h = bytes.TrimLeft(bytes.ReplaceAll(h, []byte{0}, nil), " \t\r\n")
	return len(h) > 0 && h[0] == '{'
}

var utf8BOM = []byte("\ufeff")

// inspectJSON checks the access_token members of a JSON object body.
func (m *Middleware) inspectJSON(body []byte, now int64, in *inspection) {
	values, refuse := jsonMembers(body, "access_token")
	if refuse != "" {
		in.refuse(http.StatusBadRequest, refuse)
		return
	}
	for _, v := range values {
		m.checkToken(v, now, in)
		if in.verdict != passRequest {
			return
		}
	}
}

// jsonMembers returns the string values a backend may read as the top-level member
// name of a JSON object body (name is "access_token" or "refresh_token"), or why the
// body is refused. Node's and Python's parsers keep the last member named exactly name
// (after unescaping); Go's encoding/json fills a struct field from every member whose
// name matches it without regard to case (Unicode folding included), the last one
// winning. Both are read with one compiled decode and no loop over the members: the
// members named exactly name (escapes of its letters decoded first) are renamed to a
// name no JSON key folds to (jsonExactName), and one struct takes the last of those
// and, by Go's own matching, the last of the others. A value that is an array of
// strings is read too (some readers take its first element), up to maxCandidates of
// them. A body that is not a JSON object passes (no reader finds a member in it),
// except one that starts like an object yet does not parse here and may name the
// member (Python's json also takes NaN and Infinity, V8 nests deeper than Go): refused,
// as are bodies that are not UTF-8.
func jsonMembers(body []byte, name string) ([]string, string) {
	b := bytes.TrimPrefix(body, utf8BOM) // body-parser and Python strip it
	if bytes.IndexByte(b, 0) >= 0 || len(b) >= 2 && (b[0] == 0xFE && b[1] == 0xFF || b[0] == 0xFF && b[1] == 0xFE) {
		if jsonObjectStart(b) {
			return nil, "JSON bodies must be UTF-8"
		}
		return nil, ""
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, ""
	}
	s := string(b)
	if strings.Contains(s, `\u`) {
		s = nameEscapes.Replace(s)
	} else if !strings.Contains(strings.ReplaceAll(lowerForSearch(s), "\u017f", "s"), name) {
		// No key names it in any reader's spelling: without escapes, a key that Go's
		// folding (ASCII case, KELVIN SIGN, long s) reads as name holds name once
		// folded, and Node and Python read it only spelled exactly. Nothing to decode.
		return nil, ""
	}
	if strings.Contains(s, jsonExactName) {
		return nil, "The JSON body holds a member name the gateway reserves"
	}
	s = strings.ReplaceAll(s, `"`+name+`"`, `"`+jsonExactName+`"`)
	var folded json.RawMessage
	var exact json.RawMessage
	var err error
	if name == "refresh_token" {
		var f refreshTokenMembers
		err = json.Unmarshal([]byte(s), &f)
		folded = f.Folded
		exact = f.Exact
	} else {
		var f accessTokenMembers
		err = json.Unmarshal([]byte(s), &f)
		folded = f.Folded
		exact = f.Exact
	}
	if err != nil {
		if strings.Contains(lowerForSearch(s), name[:len(name)-len("_token")]) || strings.Contains(s, `\u`) || strings.Contains(s, jsonExactName) {
			return nil, "The JSON body cannot be read, and may name " + name
		}
		return nil, ""
	}
	var values []string
	ok := true
	if exact != nil {
		values, ok = appendJSONStrings(values, exact)
	}
	if folded != nil && ok {
		values, ok = appendJSONStrings(values, folded)
	}
	if !ok {
		return nil, "The JSON body's " + name + " member has more values than the gateway checks"
	}
	for i, v := range values {
		if v == jsonExactName {
			values[i] = name // a string value "access_token", renamed with the members
		}
	}
	return values, ""
}

// jsonExactName stands for the members named exactly name in jsonMembers: made of
// characters that no Unicode case folds to or from, so no other key matches it.
const jsonExactName = "%%0%%"

// nameEscapes decodes the \u escapes of the characters of access_token and
// refresh_token (and of jsonExactName), so that a member named with them is found by
// its plain name; no other escape is touched, so the JSON keeps its meaning.
var nameEscapes = func() *strings.Replacer {
	var pairs []string
	for _, c := range "acefhknorst_%0" {
		hex := strconv.FormatInt(int64(c), 16)
		pairs = append(pairs, `\u00`+hex, string(c))
		if up := strings.ToUpper(hex); up != hex {
			pairs = append(pairs, `\u00`+up, string(c))
		}
	}
	return strings.NewReplacer(pairs...)
}()

// The members of a JSON object body that Go's encoding/json matches: Exact is the last
// one named jsonExactName (exactly access_token, before renaming), Folded the last
// other one matching without regard to case.
type accessTokenMembers struct {
	Exact  json.RawMessage `json:"%%0%%"`
	Folded json.RawMessage `json:"access_token"`
}

type refreshTokenMembers struct {
	Exact  json.RawMessage `json:"%%0%%"`
	Folded json.RawMessage `json:"refresh_token"`
}

// appendJSONStrings appends raw if it is a JSON string, or the string elements of an
// array; false if that array has more than maxCandidates elements. raw is valid JSON
// (the body decoded). An array is read element by element, each decoded by a compiled
// call, and reading stops at the element one past maxCandidates: a body of thousands
// of strings costs as much as one of maxCandidates.
func appendJSONStrings(values []string, raw json.RawMessage) ([]string, bool) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	var s string
	if len(raw) == 0 {
		return values, true
	}
	if raw[0] != '[' {
		if json.Unmarshal(raw, &s) == nil { // a string, or null (read as "")
			values = append(values, s)
		}
		return values, true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return values, true
	}
	for n := 0; dec.More(); n++ {
		if n == maxCandidates {
			return values, false
		}
		var item json.RawMessage
		if dec.Decode(&item) != nil {
			return values, true
		}
		s = ""
		if json.Unmarshal(item, &s) == nil {
			values = append(values, s)
		}
	}
	return values, true
}

// inspectMultipart checks every part named access_token (whatever its disposition
// type, name given plainly, with quoted-string escapes or RFC 2231-encoded), raw and
// with a quoted-printable transfer encoding decoded (Go decodes it). Other transfer
// encodings of such a part (base64, uuencode: Python's email parser decodes them) are
// refused.
//
// Parsers disagree about what lies outside the parts, so the body must be strictly
// framed (strictParts): Django reads a part in the preamble or after the closing
// delimiter, where Go's reader sees none. And the parts are not walked one by one:
// only those whose text may name access_token (or that use RFC 2231 parameters, whose
// continuations split a name) are parsed (multipartCandidates).
func (m *Middleware) inspectMultipart(req *http.Request, body []byte, now int64, in *inspection) {
	_, params, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	boundary := params["boundary"]
	if err != nil || boundary == "" {
		in.refuse(http.StatusBadRequest, "The multipart body has no usable boundary")
		return
	}
	parts, refuse := strictParts(string(body), boundary)
	if refuse != "" {
		in.refuse(http.StatusBadRequest, refuse)
		return
	}
	ks, ok := multipartCandidates(string(body), boundary)
	if !ok {
		in.refuse(http.StatusBadRequest, "Too many multipart parts to inspect for an access token")
		return
	}
	for _, k := range ks {
		if k == 0 {
			continue // the (empty) preamble
		}
		m.inspectPart("--"+boundary+parts[k]+"\r\n--"+boundary+"--\r\n", boundary, now, in)
		if in.verdict != passRequest {
			return
		}
	}
}

// strictParts splits a multipart body into its preamble (always empty) and parts, each
// as the text after its delimiter line's "--boundary", or says why the body is refused:
// anything before the first delimiter, a delimiter not at the start of a line or not
// followed by CRLF (transport padding, bare LF line ends), no closing delimiter, or
// anything but white space after it. All of it in compiled calls (strings.Count finds a
// stray delimiter without a loop over the parts).
func strictParts(body, boundary string) ([]string, string) {
	delim := "--" + boundary
	if !strings.HasPrefix(body, delim) {
		return nil, "The multipart body does not start with its boundary"
	}
	full := "\r\n" + body
	lineDelim := "\r\n" + delim
	closing := strings.Index(full, lineDelim+"--")
	if closing < 0 {
		return nil, "The multipart body has no closing boundary"
	}
	if strings.Trim(full[closing+len(lineDelim)+2:], " \t\r\n") != "" {
		return nil, "The multipart body has content after its closing boundary"
	}
	framed := full[:closing]
	n := strings.Count(framed, lineDelim)
	if strings.Count(full, delim) != n+1 || strings.Count(framed, lineDelim+"\r\n") != n {
		return nil, "The multipart body has a boundary that does not delimit a part"
	}
	return strings.Split(framed, lineDelim), ""
}

// multipartCandidates returns the indexes of the parts that may carry an access_token
// part's name (or RFC 2231 parameters, whose continuations split a name), and false
// when there are too many. The parts are located like parameters, with their
// delimiters made NULs (and their own NULs 0x01 first).
func multipartCandidates(body, boundary string) ([]int, bool) {
	framed := "\r\n" + body
	framed = strings.ReplaceAll(strings.ReplaceAll(framed, "\x00", "\x01"), "\r\n--"+boundary, "\x00")
	return candidates(partLocator.locate(framed), "access_token", "name*")
}

// inspectPart checks the one part of the multipart body single (framed by boundary) if
// it is named access_token; a candidate part whose headers do not parse is refused.
func (m *Middleware) inspectPart(single, boundary string, now int64, in *inspection) {
	p, err := multipart.NewReader(strings.NewReader(single), boundary).NextRawPart()
	if err != nil {
		in.refuse(http.StatusBadRequest, "The multipart body could not be parsed")
		return
	}
	_, disp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		in.refuse(http.StatusBadRequest, "A multipart part that may name access_token has a malformed Content-Disposition")
		return
	}
	if !isTokenParam(disp["name"]) {
		return
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
}
