package differential

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A spelling re-writes a token into another string that verifiers may accept as the
// same token.
type spelling struct {
	name  string
	alg   string // "ES256", "HS256", or "ES256-session" (an ES256 token revoked by a session rule)
	extra bool   // not in the brief's list (marked + in the table)
	of    func(tok string) string
}

const b64alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func splitSig(tok string) (input, sig string) {
	i := strings.LastIndexByte(tok, '.')
	return tok[:i], tok[i+1:]
}

// lowBits flips the unused low bits of the signature's last base64url character.
func lowBits(tok string) string {
	input, sig := splitSig(tok)
	raw, _ := base64.RawURLEncoding.DecodeString(sig)
	unused := uint(6*len(sig) - 8*len(raw))
	last := strings.IndexByte(b64alphabet, sig[len(sig)-1])
	c := b64alphabet[last^(1<<unused-1)]
	return input + "." + sig[:len(sig)-1] + string(c)
}

// padded appends the '=' padding of standard base64.
func padded(tok string) string {
	_, sig := splitSig(tok)
	return tok + strings.Repeat("=", (4-len(sig)%4)%4)
}

// sTwin replaces the ES256 signature (r, s) with (r, n-s), which ECDSA verifiers that
// do not insist on low s accept.
func sTwin(tok string) string {
	input, sig := splitSig(tok)
	raw, _ := base64.RawURLEncoding.DecodeString(sig)
	s := new(big.Int).SetBytes(raw[32:])
	twin := make([]byte, 64)
	copy(twin, raw[:32])
	new(big.Int).Sub(elliptic.P256().Params().N, s).FillBytes(twin[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(twin)
}

func spellings() []spelling {
	same := func(tok string) string { return tok }
	extraSegment := func(tok string) string { return tok + ".x" }
	var out []spelling
	for _, alg := range []string{"ES256", "HS256", "ES256-session"} {
		out = append(out,
			spelling{name: "canonical", alg: alg, of: same},
			spelling{name: "low bits of last sig char", alg: alg, of: lowBits},
			spelling{name: "'=' padded sig", alg: alg, of: padded},
		)
		if alg != "HS256" {
			out = append(out, spelling{name: "s twin (r, n-s)", alg: alg, of: sTwin})
		}
		out = append(out, spelling{name: "4th segment (tok.x)", alg: alg, extra: true, of: extraSegment})
	}
	return out
}

// rawRequest is an HTTP/1.1 request written byte for byte (Go's client would normalise
// tabs, NBSP, duplicate headers and framing).
type rawRequest struct {
	Method  string
	Target  string   // path and query
	Headers []string // "Name: value" lines, as they are
	Body    []byte
	Chunked bool
	// preRendered, when set, is sent instead.
	preRendered []byte
}

func (r rawRequest) bytes(host string) []byte {
	if r.preRendered != nil {
		return r.preRendered
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.Method, r.Target, host)
	for _, h := range r.Headers {
		b.WriteString(h + "\r\n")
	}
	switch {
	case r.Chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case len(r.Body) > 0:
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.Body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	if r.Chunked {
		half := len(r.Body) / 2
		for _, c := range [][]byte{r.Body[:half], r.Body[half:]} {
			if len(c) > 0 {
				fmt.Fprintf(&b, "%x\r\n%s\r\n", len(c), c)
			}
		}
		b.WriteString("0\r\n\r\n")
	} else {
		b.Write(r.Body)
	}
	return b.Bytes()
}

// outcome is what the client got back.
type outcome struct {
	Status   int
	Backend  string // the backend that answered; "" when the gateway answered itself
	Accepted bool
	Via      string
	Token    string
	Err      error
}

// send writes req to addr over a fresh TCP connection and reads the answer.
func send(addr string, req rawRequest) outcome {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return outcome{Err: err}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second)) //nolint:errcheck
	if _, err := conn.Write(req.bytes(addr)); err != nil {
		return outcome{Err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return outcome{Err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	o := outcome{Status: resp.StatusCode, Backend: resp.Header.Get("X-Diff-Backend")}
	if o.Backend != "" {
		var v struct {
			Accepted bool   `json:"accepted"`
			Via      string `json:"via"`
			Token    string `json:"token"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			o.Err = fmt.Errorf("backend %s answered %q: %v", o.Backend, body, err)
		}
		o.Accepted, o.Via, o.Token = v.Accepted, v.Via, v.Token
	}
	return o
}

// A place is one way of carrying the token in a request.
type place struct {
	name  string
	extra bool // not in the brief's list (marked + in the table)
	// noReader, when set, says why none of the three backends is expected to read the
	// token here; the sanity check (a live token is accepted) is then not required.
	noReader string
	// round2: added for the framework backends (issue 18); sent with the canonical
	// tokens only (see sendsSpelling).
	round2 bool
	build  func(path, tok string) rawRequest
}

const (
	formType  = "application/x-www-form-urlencoded"
	boundary  = "XyZdiff"
	multiType = "multipart/form-data; boundary=" + boundary
)

func multipart(name string, partHeaders []string, value string) []byte {
	b := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n"
	for _, h := range partHeaders {
		b += h + "\r\n"
	}
	return []byte(b + "\r\n" + value + "\r\n--" + boundary + "--\r\n")
}

func gzipped(s string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(s)) //nolint:errcheck
	zw.Close()          //nolint:errcheck
	return buf.Bytes()
}

// uuencode is the classic uuencode body ("begin ... end") that Python's email package
// decodes for Content-Transfer-Encoding: x-uuencode.
func uuencode(data []byte) string {
	enc := func(c byte) byte {
		if c == 0 {
			return '`'
		}
		return c + 32
	}
	var b strings.Builder
	b.WriteString("begin 644 token\r\n")
	for i := 0; i < len(data); i += 45 {
		chunk := data[i:min(i+45, len(data))]
		b.WriteByte(enc(byte(len(chunk))))
		for j := 0; j < len(chunk); j += 3 {
			var x [3]byte
			copy(x[:], chunk[j:])
			b.WriteByte(enc(x[0] >> 2))
			b.WriteByte(enc(x[0]&3<<4 | x[1]>>4))
			b.WriteByte(enc(x[1]&15<<2 | x[2]>>6))
			b.WriteByte(enc(x[2] & 63))
		}
		b.WriteString("\r\n")
	}
	b.WriteString("`\r\nend")
	return b.String()
}

func places() []place {
	hdr := func(lines ...string) func(string, string) rawRequest {
		return func(path, tok string) rawRequest {
			r := rawRequest{Method: "GET", Target: path}
			for _, l := range lines {
				r.Headers = append(r.Headers, strings.ReplaceAll(l, "{T}", tok))
			}
			return r
		}
	}
	query := func(raw string) func(string, string) rawRequest {
		return func(path, tok string) rawRequest {
			return rawRequest{Method: "GET", Target: path + "?" + strings.ReplaceAll(raw, "{T}", url.QueryEscape(tok))}
		}
	}
	form := func(method, ct, body string, mod func(*rawRequest)) func(string, string) rawRequest {
		return func(path, tok string) rawRequest {
			r := rawRequest{Method: method, Target: path, Headers: []string{"Content-Type: " + ct},
				Body: []byte(strings.ReplaceAll(body, "{T}", url.QueryEscape(tok)))}
			if mod != nil {
				mod(&r)
			}
			return r
		}
	}
	multi := func(partHeaders []string, encode func(string) string) func(string, string) rawRequest {
		return func(path, tok string) rawRequest {
			return rawRequest{Method: "POST", Target: path, Headers: []string{"Content-Type: " + multiType},
				Body: multipart("access_token", partHeaders, encode(tok))}
		}
	}
	same := func(s string) string { return s }
	flood := strings.Repeat("p=1&", 10001)
	out := []place{
		{name: "hdr Bearer tok (canonical)", build: hdr("Authorization: Bearer {T}")},
		{name: "hdr bearer  tok (lower, 2 SP)", extra: true, build: hdr("Authorization: bearer  {T}")},
		{name: "hdr Bearer<TAB>tok", build: hdr("Authorization: Bearer\t{T}")},
		{name: "hdr Bearer <TAB>tok", build: hdr("Authorization: Bearer \t{T}")},
		{name: "hdr Bearer tok extra", build: hdr("Authorization: Bearer {T} extra")},
		{name: "hdr Token tok", build: hdr("Authorization: Token {T}")},
		{name: "hdr bare tok", build: hdr("Authorization: {T}")},
		{name: "hdr 2 headers, tok first", build: hdr("Authorization: Bearer {T}", "Authorization: Bearer other")},
		{name: "hdr 2 headers, tok second", build: hdr("Authorization: Bearer other", "Authorization: Bearer {T}"),
			noReader: "all three read the first Authorization header"},
		{name: "hdr Bearer tok<NBSP byte>", build: hdr("Authorization: Bearer {T}\xa0")},
		{name: "q access_token=", build: query("access_token={T}")},
		{name: "q access%5Ftoken=", build: query("access%5Ftoken={T}")},
		{name: "q %61ccess_token=", build: query("%61ccess_token={T}")},
		// Go drops pairs with ';', Node and Python 3.11 split on '&' only, but Traefik's
		// proxy rewrites ';' to '&' on the way to the backend, so all three read it.
		{name: "q x=1;access_token=", build: query("x=1;access_token={T}")},
		{name: "q access_token=&access_token=", build: query("access_token=&access_token={T}")},
		{name: "q 10,001 params, access_token", build: query(flood + "access_token={T}")},
		{name: "body POST form", build: form("POST", formType, "a=1&access_token={T}", nil)},
		{name: "body PUT form", build: form("PUT", formType, "access_token={T}", nil)},
		{name: "body PATCH form", build: form("PATCH", formType, "access_token={T}", nil)},
		{name: "body GET form", build: form("GET", formType, "access_token={T}", nil)},
		{name: "body DELETE form", extra: true, build: form("DELETE", formType, "access_token={T}", nil)},
		{name: "body form; charset=utf-8", build: form("POST", formType+"; charset=utf-8", "access_token={T}", nil)},
		{name: "body form, gzip", build: func(path, tok string) rawRequest {
			return rawRequest{Method: "POST", Target: path,
				Headers: []string{"Content-Type: " + formType, "Content-Encoding: gzip"},
				Body:    gzipped("access_token=" + url.QueryEscape(tok))}
		}},
		{name: "body form, chunked", build: form("POST", formType, "a=1&access_token={T}", func(r *rawRequest) { r.Chunked = true })},
		{name: "body multipart", build: multi(nil, same)},
		{name: "body multipart, chunked", extra: true, build: func(path, tok string) rawRequest {
			r := multi(nil, same)(path, tok)
			r.Chunked = true
			return r
		}},
		{name: "body form, CT 'form, text/plain'", extra: true,
			build: form("POST", formType+", text/plain", "access_token={T}", nil)},
		{name: "body multipart, part base64", extra: true, build: multi([]string{"Content-Transfer-Encoding: base64"},
			func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) })},
		{name: "body multipart, part x-uuencode", extra: true, build: multi([]string{"Content-Transfer-Encoding: x-uuencode"},
			func(s string) string { return uuencode([]byte(s)) })},
	}
	for _, p := range frameworkPlaces() {
		p.round2 = true
		out = append(out, p)
	}
	return out
}

// shortBytes quotes a request for a report, eliding the middle of long ones.
func shortBytes(b []byte, max int) string {
	if len(b) > max {
		b = append(append(append([]byte{}, b[:max/2]...), []byte("…"+strconv.Itoa(len(b)-max)+" bytes…")...), b[len(b)-max/2:]...)
	}
	return strconv.Quote(string(b))
}
