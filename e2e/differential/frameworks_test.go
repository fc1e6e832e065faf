package differential

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf16"
)

// The places of issue 18: where the framework backends (Express 4/5 with qs,
// body-parser, cookie-parser, passport-http-bearer and passport-jwt; Django; Starlette)
// read a token that the first round's places do not cover.

// utf16LE is s in UTF-16, little endian, without a byte order mark.
func utf16LE(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

// utf16BOM is s in UTF-16 with the little-endian byte order mark, as Python's "utf-16"
// codec writes it.
func utf16BOM(s string) []byte { return append([]byte{0xff, 0xfe}, utf16LE(s)...) }

// pctAll percent-encodes every byte.
func pctAll(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "%%%02X", c)
	}
	return sb.String()
}

// cp500 is s in EBCDIC code page 500 (IBM International), for the characters of a
// form and a JWT.
func cp500(s string) []byte {
	var b []byte
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'i':
			b = append(b, byte(0x81+r-'a'))
		case r >= 'j' && r <= 'r':
			b = append(b, byte(0x91+r-'j'))
		case r >= 's' && r <= 'z':
			b = append(b, byte(0xa2+r-'s'))
		case r >= 'A' && r <= 'I':
			b = append(b, byte(0xc1+r-'A'))
		case r >= 'J' && r <= 'R':
			b = append(b, byte(0xd1+r-'J'))
		case r >= 'S' && r <= 'Z':
			b = append(b, byte(0xe2+r-'S'))
		case r >= '0' && r <= '9':
			b = append(b, byte(0xf0+r-'0'))
		default:
			c, ok := map[rune]byte{'_': 0x6d, '-': 0x60, '=': 0x7e, '.': 0x4b, '&': 0x50}[r]
			if !ok {
				panic(fmt.Sprintf("cp500: no byte for %q", r))
			}
			b = append(b, c)
		}
	}
	return b
}

// octalDots writes the dots of a token as the octal escape \056 inside a quoted cookie
// value, which Python's http.cookies unquoting (Django, Starlette) turns back into '.'.
func octalDots(tok string) string { return `"` + strings.ReplaceAll(tok, ".", `\056`) + `"` }

func frameworkPlaces() []place {
	sub := func(s, tok string) string { return strings.ReplaceAll(s, "{T}", tok) }
	q := func(raw string) func(string, string) rawRequest {
		return func(path, tok string) rawRequest {
			return rawRequest{Method: "GET", Target: path + "?" + sub(raw, url.QueryEscape(tok))}
		}
	}
	// qct is a GET whose query is built by query, with a Content-Type header (Django
	// decodes the query with its charset).
	qct := func(ct string, query func(tok string) string) func(string, string) rawRequest {
		return func(path, tok string) rawRequest {
			return rawRequest{Method: "GET", Target: path + "?" + query(tok), Headers: []string{"Content-Type: " + ct}}
		}
	}
	body := func(method string, headers []string, data func(tok string) []byte) func(string, string) rawRequest {
		return func(path, tok string) rawRequest {
			return rawRequest{Method: method, Target: path, Headers: headers, Body: data(tok)}
		}
	}
	text := func(s string) func(string) []byte {
		return func(tok string) []byte { return []byte(sub(s, tok)) }
	}
	form := func(s string) func(string, string) rawRequest {
		return body("POST", []string{"Content-Type: " + formType}, text(s))
	}
	json := func(ct, s string) func(string, string) rawRequest {
		var h []string
		if ct != "" {
			h = []string{"Content-Type: " + ct}
		}
		return body("POST", h, text(s))
	}
	hdr := func(lines ...string) func(string, string) rawRequest {
		return func(path, tok string) rawRequest {
			r := rawRequest{Method: "GET", Target: path}
			for _, l := range lines {
				r.Headers = append(r.Headers, sub(l, tok))
			}
			return r
		}
	}
	multi := func(s string) func(string, string) rawRequest {
		return body("POST", []string{"Content-Type: " + multiType}, text(strings.ReplaceAll(s, "{B}", boundary)))
	}
	const cd = "Content-Disposition: form-data; name="
	const tokJSON = `{"access_token":"{T}"}`
	return []place{
		// qs (Express 4's query parser, Express 5's "extended", body-parser's extended
		// urlencoded) strips brackets: [access_token] is access_token, access_token[]
		// and access_token[0] an array of one (read by apps that take its first element).
		{name: "q [access_token]=", build: q("[access_token]={T}")},
		{name: "q %5Baccess_token%5D=", build: q("%5Baccess_token%5D={T}")},
		{name: "q access_token[]=", build: q("access_token[]={T}")},
		{name: "q access_token%5B%5D=", build: q("access_token%5B%5D={T}")},
		{name: "q access_token[0]=", build: q("access_token[0]={T}")},
		{name: "q access_token%5B0%5D=", build: q("access_token%5B0%5D={T}")},
		{name: "body form [access_token]=", build: form("a=1&[access_token]={T}")},
		{name: "body form %5Baccess_token%5D=", build: form("a=1&%5Baccess_token%5D={T}")},
		{name: "body form access_token[]=", build: form("a=1&access_token[]={T}")},
		{name: "body form access_token%5B%5D=", build: form("a=1&access_token%5B%5D={T}")},
		{name: "body form access_token[0]=", build: form("a=1&access_token[0]={T}")},
		{name: "body form access_token%5B0%5D=", build: form("a=1&access_token%5B0%5D={T}")},

		// JSON bodies: passport-http-bearer and passport-jwt read req.body.access_token,
		// Django apps json.loads(request.body), Starlette handlers await request.json().
		{name: "json {access_token}", build: json("application/json", tokJSON)},
		{name: "json dup key, token last", build: json("application/json", `{"access_token":"x","access_token":"{T}"}`)},
		{name: `json \u0061ccess_token key`, build: json("application/json", `{"\u0061ccess_token":"{T}"}`)},
		{name: `json value \u-escaped`, build: func(path, tok string) rawRequest {
			return json("application/json", fmt.Sprintf(`{"access_token":"\u%04x%s"}`, tok[0], tok[1:]))(path, "")
		}},
		{name: "json UTF-8 BOM", build: body("POST", []string{"Content-Type: application/json"},
			func(tok string) []byte { return append([]byte("\xef\xbb\xbf"), sub(tokJSON, tok)...) })},
		{name: "json charset=utf-16 (BOM)", build: body("POST", []string{"Content-Type: application/json; charset=utf-16"},
			func(tok string) []byte { return utf16BOM(sub(tokJSON, tok)) })},
		{name: "json charset=utf-16le", build: body("POST", []string{"Content-Type: application/json; charset=utf-16le"},
			func(tok string) []byte { return utf16LE(sub(tokJSON, tok)) })},
		{name: "json CT application/vnd.api+json", build: json("application/vnd.api+json", tokJSON)},
		{name: "json CT Application/JSON", build: json("Application/JSON", tokJSON)},
		{name: "json CT text/plain", build: json("text/plain", tokJSON)},
		{name: "json no Content-Type", build: json("", tokJSON)},
		{name: "json GET body", build: body("GET", []string{"Content-Type: application/json"}, text(tokJSON))},
		{name: "json PUT body", build: body("PUT", []string{"Content-Type: application/json"}, text(tokJSON))},
		{name: "json gzip", build: body("POST", []string{"Content-Type: application/json", "Content-Encoding: gzip"},
			func(tok string) []byte { return gzipped(sub(tokJSON, tok)) })},
		{name: "json chunked", build: func(path, tok string) rawRequest {
			r := json("application/json", tokJSON)(path, tok)
			r.Chunked = true
			return r
		}},

		// A byte order mark before the first key (body-parser strips it).
		{name: "body form, UTF-8 BOM first", build: body("POST", []string{"Content-Type: " + formType},
			text("\xef\xbb\xbfaccess_token={T}"))},

		// Charsets from Content-Type: Django decodes the body and the query with it.
		{name: "body form; charset=utf-16", build: body("POST", []string{"Content-Type: " + formType + "; charset=utf-16"},
			func(tok string) []byte { return utf16BOM("access_token=" + tok) })},
		{name: "body form; charset=utf-16le", build: body("POST", []string{"Content-Type: " + formType + "; charset=utf-16le"},
			func(tok string) []byte { return utf16LE("access_token=" + tok) })},
		{name: "body form; charset=utf-7 (+AF8-)", build: body("POST", []string{"Content-Type: " + formType + "; charset=utf-7"},
			text("access+AF8-token={T}"))},
		{name: "body form; charset=cp500", build: body("POST", []string{"Content-Type: " + formType + "; charset=cp500"},
			func(tok string) []byte { return cp500("a=1&access_token=" + tok) })},
		// The query is ASCII; Django's QueryDict falls back to Latin-1 when it does not
		// decode in the charset (an odd length in UTF-16), then percent-decodes in it.
		{name: "q UTF-16LE %-bytes, CT charset=utf-16", build: qct("text/plain; charset=utf-16", func(tok string) string {
			return pctAll(utf16LE("access_token")) + "=" + pctAll(utf16LE(tok))
		})},
		{name: "q UTF-16LE %-bytes, CT charset=utf-16le", build: qct(formType+"; charset=utf-16le", func(tok string) string {
			return pctAll(utf16LE("access_token")) + "=" + pctAll(utf16LE(tok))
		})},
		{name: "q access%2BAF8-token, CT charset=utf-7", build: qct("text/plain; charset=utf-7", func(tok string) string {
			return "access%2BAF8-token=" + tok
		})},
		{name: "q raw cp500 bytes, CT charset=cp500", build: qct("text/plain; charset=cp500", func(tok string) string {
			return string(cp500("access_token=" + tok))
		})},

		// multipart/form-data that Go's reader (and so the gateway) parses differently
		// from Django's MultiPartParser.
		{name: "multipart token part in preamble", build: multi(cd + "\"access_token\"\r\n\r\n{T}\r\n--{B}\r\n" +
			cd + "\"a\"\r\n\r\n1\r\n--{B}--\r\n")},
		{name: "multipart token after close (epilogue)", build: multi("--{B}\r\n" + cd + "\"a\"\r\n\r\n1\r\n--{B}--\r\n" +
			cd + "\"access_token\"\r\n\r\n{T}")},
		{name: "multipart part after close boundary", build: multi("--{B}\r\n" + cd + "\"a\"\r\n\r\n1\r\n--{B}--\r\n--{B}\r\n" +
			cd + "\"access_token\"\r\n\r\n{T}\r\n--{B}--\r\n")},
		{name: "multipart boundary not at line start", build: multi("--{B}\r\n" + cd + "\"a\"\r\n\r\n1--{B}\r\n" +
			cd + "\"access_token\"\r\n\r\n{T}\r\n--{B}--\r\n")},

		// Cookies (cookie-parser: first of a name wins, %-decoded, quotes stripped;
		// Django and Starlette: last wins, Python's cookie unquoting).
		{name: "cookie access_token=", build: hdr("Cookie: access_token={T}")},
		{name: "cookie jwt=", build: hdr("Cookie: jwt={T}")},
		{name: `cookie access_token="tok"`, build: hdr(`Cookie: access_token="{T}"`)},
		{name: "cookie access_token=%-encoded", build: func(path, tok string) rawRequest {
			return hdr("Cookie: access_token="+pctAll([]byte(tok)))(path, tok)
		}},
		{name: `cookie access_token="\056 for dots"`, build: func(path, tok string) rawRequest {
			return hdr("Cookie: access_token="+octalDots(tok))(path, tok)
		}},
		{name: "cookie dup, token last", build: hdr("Cookie: access_token=x; access_token={T}")},
		{name: "cookie dup, token first", build: hdr("Cookie: access_token={T}; access_token=x")},
		{name: "cookie 2 Cookie headers", build: hdr("Cookie: a=1", "Cookie: access_token={T}")},
		{name: "cookie access_token = tok (spaces)", build: hdr("Cookie: a=1;access_token = {T} ")},

		// Headers other than Authorization.
		{name: "hdr X-Forwarded-Access-Token: tok", build: hdr("X-Forwarded-Access-Token: {T}")},
		{name: "hdr X-Forwarded-Access-Token: Bearer", build: hdr("X-Forwarded-Access-Token: Bearer {T}")},
		{name: "hdr X-Auth-Token: tok", build: hdr("X-Auth-Token: {T}")},
		{name: "hdr X-Auth-Token: Bearer tok", build: hdr("X-Auth-Token: Bearer {T}")},
		{name: "hdr X_Forwarded_Access_Token: tok", build: hdr("X_Forwarded_Access_Token: {T}")},
		{name: "hdr X_Auth_Token: tok", build: hdr("X_Auth_Token: {T}")},
		{name: "hdr Authorization: JWT tok", build: hdr("Authorization: JWT {T}")},
		{name: "hdr X-Forwarded_Access-Token: tok", build: hdr("X-Forwarded_Access-Token: {T}")},
		{name: "hdr X-Auth-Token: bearer tok", build: hdr("X-Auth-Token: bearer {T}")},

		// Spellings of the same ideas that parsers differ on.
		{name: "q [access_token]=tok&access_token=x", build: q("[access_token]={T}&access_token=x")},
		{name: "json access_token: [tok]", build: json("application/json", `{"access_token":["{T}"]}`)},
		{name: `body form; charset="utf-16" (quoted)`, build: body("POST", []string{"Content-Type: " + formType + `; charset="utf-16"`},
			func(tok string) []byte { return utf16BOM("access_token=" + tok) })},
		{name: "body form; charset=UTF-16 (upper)", build: body("POST", []string{"Content-Type: " + formType + "; charset=UTF-16"},
			func(tok string) []byte { return utf16BOM("access_token=" + tok) })},
		{name: "body form; charset = utf-16 (spaces)", build: body("POST", []string{"Content-Type: " + formType + "; charset = utf-16"},
			func(tok string) []byte { return utf16BOM("access_token=" + tok) })},
		// gunicorn keeps the last Content-Type, Go (and so the gateway) the first.
		{name: "body form, 2nd Content-Type charset=utf-16", build: body("POST",
			[]string{"Content-Type: " + formType, "Content-Type: " + formType + "; charset=utf-16"},
			func(tok string) []byte { return utf16BOM("access_token=" + tok) })},
		{name: "json, 1st CT text/plain, 2nd application/json", build: body("POST",
			[]string{"Content-Type: text/plain", "Content-Type: application/json"}, text(tokJSON))},
		// Python's cgi.parse_header keeps the last of two boundary parameters.
		{name: "multipart two boundary params (last used)", build: body("POST",
			[]string{"Content-Type: multipart/form-data; boundary=other; boundary=" + boundary},
			text(strings.ReplaceAll("--{B}\r\n"+cd+"\"access_token\"\r\n\r\n{T}\r\n--{B}--\r\n", "{B}", boundary)))},
	}
}
