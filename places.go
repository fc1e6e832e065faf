package tokenrevoke

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
)

// Other places a backend reads tokens from: cookies and headers the operator names.
//
//	tokenCookies: ["access_token"]                        # Cookie: access_token=<token>
//	tokenHeaders: ["X-Forwarded-Access-Token", "X-Auth-Token"]  # <token> or "Bearer <token>"
//
// Neither has a standard name, so only configuration can tell the gateway where the
// backends behind it look (oauth2-proxy sets X-Forwarded-Access-Token; Express apps
// read cookies with cookie-parser, Django with request.COOKIES, passport-jwt with
// ExtractJwt.fromHeader). Each is read as leniently as the backends read it:
//
//   - a token header's value is checked by the Authorization rules (a bare token or a
//     scheme and a token; several words as lenient readers split them). The header is
//     found whatever the case of its name and with '_' for '-' (CGI and WSGI servers,
//     and so Django, Flask and Rails, read X_Auth_Token as X-Auth-Token); more than one
//     such header is refused (Node joins them with ", ", Go takes the first, WSGI the
//     last);
//   - a cookie's name is matched with its spaces trimmed, case folded, percent-decoded
//     and with '.' and ' ' read as '_' (PHP decodes and mangles cookie names); its value
//     is checked as sent, without its double quotes (Go and Python drop them), and
//     percent-decoded (cookie-parser and PHP decode it). A quoted value holding a
//     backslash is refused: Python's cookie parser reads octal escapes there. Cookies
//     are split at ';' and ',' (some parsers take ',' too), in every Cookie header.
//
// A request with neither a Cookie header nor a token header costs nothing more: the
// middleware only sends requests that carry one to the slow path (placesMiddleware).

// tokenPlaces is the validated tokenCookies and tokenHeaders.
type tokenPlaces struct {
	cookies []string // each name located: lower case, '.' and ' ' as '_'
	// headers: for each configured header, the canonical keys of every spelling with
	// '-' or '_' at each separator (at most 2^maxHeaderSeparators).
	headers [][]string
}

// maxHeaderSeparators bounds a token header's '-' and '_' (each doubles the spellings
// looked up).
const maxHeaderSeparators = 5

// parsePlaces reads tokenCookies and tokenHeaders (nil when neither is set).
func parsePlaces(c *Config) (*tokenPlaces, error) {
	if len(c.TokenCookies) == 0 && len(c.TokenHeaders) == 0 {
		return nil, nil
	}
	p := &tokenPlaces{}
	for i, name := range c.TokenCookies {
		name = strings.TrimSpace(name)
		if name == "" || strings.ContainsAny(name, "=;, \t\"") {
			return nil, fmt.Errorf("tokenrevoke: tokenCookies[%d]: %q is not a cookie name", i, name)
		}
		p.cookies = append(p.cookies, locatedName(name))
	}
	for i, name := range c.TokenHeaders {
		name = strings.TrimSpace(name)
		if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return nil, fmt.Errorf("tokenrevoke: tokenHeaders[%d]: %q is not a header name (letters, digits, '-' and '_')", i, name)
		}
		switch strings.ToLower(name) {
		case "authorization":
			return nil, fmt.Errorf("tokenrevoke: tokenHeaders[%d]: Authorization is always checked", i)
		case "cookie":
			return nil, fmt.Errorf("tokenrevoke: tokenHeaders[%d]: name cookies in tokenCookies", i)
		}
		if strings.Count(name, "-")+strings.Count(name, "_") > maxHeaderSeparators {
			return nil, fmt.Errorf("tokenrevoke: tokenHeaders[%d]: %q has more than %d '-' or '_'", i, name, maxHeaderSeparators)
		}
		p.headers = append(p.headers, headerSpellings(name))
	}
	return p, nil
}

// locatedName is a cookie name as the cookie locator spells it.
func locatedName(name string) string {
	return strings.ToLower(paramNameFolder.Replace(name))
}

// headerSpellings returns the canonical header keys of name with each of its '-' and
// '_' written either way.
func headerSpellings(name string) []string {
	out := []string{""}
	for i := 0; i < len(name); i++ {
		c := name[i]
		var next []string
		for _, prefix := range out {
			if c == '-' || c == '_' {
				next = append(next, prefix+"-", prefix+"_")
			} else {
				next = append(next, prefix+name[i:i+1])
			}
		}
		out = next
	}
	for i, s := range out {
		out[i] = textproto.CanonicalMIMEHeaderKey(s)
	}
	return out
}

// carries reports whether req has a Cookie header (with cookies configured) or a token
// header.
func (p *tokenPlaces) carries(req *http.Request) bool {
	if len(p.cookies) > 0 && len(req.Header["Cookie"]) > 0 {
		return true
	}
	for _, spellings := range p.headers {
		for _, k := range spellings {
			if len(req.Header[k]) > 0 {
				return true
			}
		}
	}
	return false
}

// placesMiddleware sends requests that carry a configured place to the slow path.
type placesMiddleware struct {
	m *Middleware
}

func (p *placesMiddleware) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if p.m.places.carries(req) {
		serveSlow(p.m, rw, req)
		return
	}
	p.m.ServeHTTP(rw, req)
}

// inspectPlaces checks the configured token headers and cookies of req.
func (m *Middleware) inspectPlaces(req *http.Request, now int64, in *inspection) {
	for _, spellings := range m.places.headers {
		var values []string
		for _, k := range spellings {
			values = append(values, req.Header[k]...)
		}
		if len(values) == 0 {
			continue
		}
		in.found = true
		if len(values) > 1 {
			in.refuse(http.StatusBadRequest, "The request has more than one "+spellings[0]+" header")
			return
		}
		m.inspectAuthValue(values[0], now, in)
		if in.verdict != passRequest {
			return
		}
	}
	if len(m.places.cookies) > 0 {
		if cs := req.Header["Cookie"]; len(cs) > 0 {
			m.inspectCookies(strings.Join(cs, ";"), now, in)
		}
	}
}

// inspectCookies checks the cookies of a Cookie header value (all Cookie headers
// joined) named like a configured cookie, finding them as namedParams finds
// parameters.
func (m *Middleware) inspectCookies(raw string, now int64, in *inspection) {
	if len(raw) > int(m.settings.maxBodyCheck) {
		in.refuse(http.StatusRequestHeaderFieldsTooLarge, "The Cookie header is longer than the gateway inspects")
		return
	}
	located := cookieLocator.locate(raw)
	var pieces []string
	for _, name := range m.places.cookies {
		ks, ok := candidates(located, name)
		if !ok {
			in.refuse(http.StatusBadRequest, "Too many cookies to inspect for a token")
			return
		}
		if len(ks) == 0 {
			continue
		}
		if pieces == nil {
			pieces = strings.Split(commaAsSemicolon.Replace(raw), ";")
		}
		for _, k := range ks {
			key, value, _ := strings.Cut(pieces[k], "=")
			if locatedName(trimAnySpace(lenientUnescape(trimAnySpace(key)))) != name {
				continue
			}
			in.found = true
			m.checkCookieValue(trimAnySpace(value), now, in)
			if in.verdict != passRequest {
				return
			}
		}
	}
}

var commaAsSemicolon = strings.NewReplacer(",", ";")

// checkCookieValue checks the spellings of a cookie value that backends read.
func (m *Middleware) checkCookieValue(v string, now int64, in *inspection) {
	if len(v) > maxEncodedToken {
		m.checkToken(v, now, in) // longer than any token in every spelling: refused
		return
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		if strings.IndexByte(v, '\\') >= 0 {
			in.refuse(http.StatusBadRequest, "A quoted cookie that may carry a token holds a backslash")
			return
		}
		m.checkToken(v, now, in)
		v = v[1 : len(v)-1]
	}
	m.checkToken(v, now, in)
	if strings.IndexByte(v, '%') >= 0 {
		m.checkToken(percentDecoder.Replace(v), now, in)
	}
	if strings.IndexByte(v, '%') >= 0 || strings.IndexByte(v, '+') >= 0 {
		m.checkToken(lenientUnescape(v), now, in)
	}
}
