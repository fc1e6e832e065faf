package tokenrevoke

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Forward mode (revokeMode: forward): the identity provider behind the router answers
// revocation requests, and the gateway enforces what it accepted.
//
// A POST to revokePath goes to the next handler (the provider's RFC 7009 endpoint;
// operators map another path with Traefik's replacePath) with its method, headers and
// body byte for byte. The gateway reads the token and token_type_hint from the form
// first, bounded by maxBodyCheck, and refuses (400, 413) a request it cannot read the
// way the provider would: not application/x-www-form-urlencoded, a charset other than
// UTF-8, ASCII or Latin-1, a Content-Encoding,
// malformed form encoding, a repeated parameter, a query string naming a token (some
// providers merge query and body). Other methods get 405 as in local mode (RFC 7009
// takes POST only), except OPTIONS (a CORS preflight), which the provider answers.
// Then:
//
//   - the provider answers 200: the gateway applies and publishes the revocation (same
//     key and expiry as local mode) and relays the provider's 200 only once NATS
//     confirmed it; otherwise it answers 500 server_error (the provider's revocation
//     stands, and a retry is harmless: RFC 7009 answers 200 to a revoked token);
//   - any other answer (the provider's 400 or 401, Traefik's 502/503/504 when the
//     provider is unreachable) is relayed unchanged and nothing is revoked.
//
// The provider authenticates the client, so `clients` is optional in this mode (the
// status endpoint still authenticates with it). Rate limits: the client id the request
// claims (HTTP Basic, else client_id in the body, else the sub of a client_assertion)
// is only a claim until the provider answers 200, so a client over its rate gets 429
// before anything is forwarded, but a revocation only counts against the client after
// the provider's 200: a caller claiming another client's id with a wrong secret cannot
// use up that client's rate. A client listed in `clients` has its ratePerMinute; any
// other gets the default (600 a minute).

// parseForward reads revokeMode, tokenPath and refreshRevokesSession into s (after the
// paths are parsed, before the clients).
func parseForward(c *Config, s *settings) error {
	switch strings.ToLower(strings.TrimSpace(c.RevokeMode)) {
	case "", "local":
	case "forward":
		s.forward = true
	default:
		return fmt.Errorf("tokenrevoke: revokeMode: %q is not local or forward", strings.TrimSpace(c.RevokeMode))
	}
	s.tokenPath = strings.TrimSpace(c.TokenPath)
	if s.tokenPath != "" {
		if !strings.HasPrefix(s.tokenPath, "/") {
			return fmt.Errorf("tokenrevoke: tokenPath: %q must start with /", s.tokenPath)
		}
		if s.tokenPath == s.revokePath || s.tokenPath == s.statusPath || s.tokenPath == s.metricsPath {
			return errors.New("tokenrevoke: tokenPath: must differ from revokePath, statusPath and metricsPath")
		}
	}
	s.refreshRevokesSession = c.RefreshRevokesSession
	if s.forward && len(c.Clients) == 0 && s.statusPath != "" {
		return errors.New("tokenrevoke: statusPath: needs clients (the status endpoint authenticates them, in forward mode too)")
	}
	return nil
}

// serveForward handles a request to revokePath in forward mode.
func serveForward(m *Middleware, rw http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodOptions {
		m.next.ServeHTTP(rw, req) // CORS preflight: the provider answers; it revokes nothing
		return
	}
	if req.Method != http.MethodPost {
		// RFC 7009 §2.1: POST only. A provider that also took GET would revoke what
		// the gateway never read.
		rw.Header().Set("Allow", http.MethodPost)
		writeError(rw, http.StatusMethodNotAllowed, errInvalidRequest, "The revocation endpoint only accepts POST")
		return
	}
	f, status, desc := m.readForwardForm(req)
	if status != 0 {
		if status == http.StatusRequestEntityTooLarge || status == http.StatusRequestURITooLong {
			atomic.AddInt64(&m.metrics.rejectedTooLarge, 1)
		} else {
			atomic.AddInt64(&m.metrics.rejectedRefused, 1)
		}
		writeError(rw, status, errInvalidRequest, desc)
		return
	}
	rate := m.forwardRate(f.client)
	if ok, wait := m.domain.limiter.peek(f.client, rate, time.Now()); !ok {
		atomic.AddInt64(&m.metrics.rejectedRateLimited, 1)
		writeTooManyRequests(rw, wait)
		return
	}
	w := &forwardWriter{rw: rw, header: make(http.Header)}
	m.next.ServeHTTP(w, req)
	if w.status == 0 {
		w.status = http.StatusOK // a handler that wrote nothing: net/http answers 200
	}
	if w.status != http.StatusOK {
		return // relayed as it came; nothing revoked
	}
	// A token longer than any the gateway lets through needs no entry (as in local mode).
	if f.token != "" && len(f.token) <= maxTokenLength {
		now := time.Now()
		m.domain.limiter.allow(f.client, rate, now) // counts now that the provider authenticated it
		key, kind := tokenKey(f.token)
		// With issuers, a configured issuer's JWT is verified first (the provider answers
		// 200 to a forgery too, RFC 7009): a forgery is relayed and not stored.
		if exp, store := m.verifiedExpiry(f.token, kind, now); store {
			r := revocation{sum: key, kind: kind, hint: f.hint, exp: exp, revokedAt: now, client: f.client}
			err := m.domain.revoke(r)
			if err == nil {
				err = m.endRefreshSession(f.token, f.hint, f.client, now)
			}
			if err != nil {
				m.log.errorf("revocation of token %s accepted by the identity provider, kept locally but not confirmed by NATS: %v", shortHash(key), err)
				writeError(rw, http.StatusInternalServerError, errServerError,
					"The revocation could not be shared with the other gateways; retry the request")
				return
			}
		} else {
			atomic.AddInt64(&m.metrics.forgedRefused, 1)
		}
	}
	atomic.AddInt64(&m.metrics.revokedEndpoint, 1)
	h := rw.Header()
	for k, v := range w.header {
		h[k] = v
	}
	if w.overflow {
		h.Del("Content-Length")
		rw.WriteHeader(http.StatusOK)
		return
	}
	rw.WriteHeader(http.StatusOK)
	_, _ = rw.Write(w.body.Bytes())
}

// forwardForm is what the gateway read of a revocation request before forwarding it.
type forwardForm struct {
	token  string
	hint   string // access_token, refresh_token or ""
	client string // the client id the request claims ("" when it names none)
}

// readForwardForm reads the form of a revocation request (at most maxBodyCheck bytes)
// and puts the same bytes back as the request body.
func (m *Middleware) readForwardForm(req *http.Request) (forwardForm, int, string) {
	var f forwardForm
	if len(req.URL.RawQuery) > int(m.settings.maxBodyCheck) {
		return f, http.StatusRequestURITooLong, "The query string is longer than the gateway inspects"
	}
	if queryNamesToken(req.URL.RawQuery) {
		// Some providers merge query and body parameters: the gateway could read
		// another token than the provider revokes.
		return f, http.StatusBadRequest, "The revocation parameters go in the request body, not the query string"
	}
	limit := m.settings.maxBodyCheck
	if req.ContentLength > limit {
		return f, http.StatusRequestEntityTooLarge, "The request body is larger than the gateway reads"
	}
	cts := req.Header["Content-Type"]
	if len(cts) != 1 {
		return f, http.StatusBadRequest, "The request must be application/x-www-form-urlencoded"
	}
	if mt, _, err := mime.ParseMediaType(cts[0]); err != nil || mt != "application/x-www-form-urlencoded" {
		return f, http.StatusBadRequest, "The request must be application/x-www-form-urlencoded"
	}
	if !asciiCharset(strings.ToLower(cts[0])) {
		return f, http.StatusBadRequest, "The request body's charset is not one the gateway reads"
	}
	if ce := req.Header["Content-Encoding"]; len(ce) > 0 && !(len(ce) == 1 && strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		return f, http.StatusBadRequest, "Revocation requests with a Content-Encoding are not accepted"
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
		if err != nil {
			return f, http.StatusBadRequest, "The request body could not be read"
		}
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(b))
		body = b
	}
	if int64(len(body)) > limit {
		return f, http.StatusRequestEntityTooLarge, "The request body is larger than the gateway reads"
	}
	form, status, desc := parseForm(body)
	if status != 0 {
		return f, status, desc
	}
	f.token = form.Get("token")
	if h := form.Get("token_type_hint"); h == "access_token" || h == "refresh_token" {
		f.hint = h
	}
	f.client = claimedClient(req, form)
	return f, 0, ""
}

// queryNamesToken reports whether a query string, decoded leniently and case-folded,
// holds "token" (token, token_type_hint, Token, ...): in a name, or (read broadly, in
// one compiled pass instead of a loop over the parameters) in a value.
func queryNamesToken(raw string) bool {
	return strings.Contains(strings.ToLower(lenientUnescape(raw)), "token")
}

// claimedClient is the client id a revocation request names: HTTP Basic (form-decoded
// as RFC 6749 §2.3.1 says, raw when that fails), else client_id in the body, else the
// sub of a client_assertion (RFC 7523: the client id). Unverified: the provider decides.
func claimedClient(req *http.Request, form url.Values) string {
	if b := basicHeader(req); b != "" {
		if raw, err := base64.StdEncoding.DecodeString(b); err == nil {
			if i := bytes.IndexByte(raw, ':'); i >= 0 {
				if id, err := url.QueryUnescape(string(raw[:i])); err == nil {
					return id
				}
				return string(raw[:i])
			}
		}
	}
	if id := form.Get("client_id"); id != "" {
		return id
	}
	if a := strings.Split(form.Get("client_assertion"), "."); len(a) == 3 {
		if p, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(a[1], "=")); err == nil {
			var claims struct {
				Sub string `json:"sub"`
			}
			if json.Unmarshal(p, &claims) == nil {
				return claims.Sub
			}
		}
	}
	return ""
}

// forwardRate is the revocation rate of a client in forward mode: its ratePerMinute when
// it is listed in clients (-1 there: no limit), else the default.
func (m *Middleware) forwardRate(client string) int {
	if r, ok := m.settings.rates[client]; ok {
		return r
	}
	if _, listed := m.settings.clients[client]; listed {
		return 0
	}
	return defaultRatePerMinute
}

// peek reports whether client could take one revocation now, without taking it, and
// otherwise how long until it could.
func (r *rateLimiter) peek(client string, perMinute int, now time.Time) (bool, time.Duration) {
	if perMinute <= 0 {
		return true, 0
	}
	perSecond := float64(perMinute) / 60
	r.mu.Lock()
	b, ok := r.buckets[client]
	r.mu.Unlock()
	if !ok {
		return true, 0
	}
	tokens := b.tokens
	if now.After(b.at) {
		tokens += now.Sub(b.at).Seconds() * perSecond
	}
	if tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - tokens) / perSecond * float64(time.Second))
}

// forwardWriter is the ResponseWriter the provider answers through: an answer other
// than 200 goes straight to the client; a 200 is held (headers and body) until the
// revocation is shared.
type forwardWriter struct {
	rw     http.ResponseWriter
	header http.Header
	status int
	body   bytes.Buffer
	// overflow: the 200 answer outgrew maxHeldAnswer; an empty 200 is relayed instead.
	overflow bool
}

func (w *forwardWriter) Header() http.Header {
	return w.header
}

func (w *forwardWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 {
		return // informational answers are the server's business
	}
	w.status = code
	if code != http.StatusOK {
		h := w.rw.Header()
		for k, v := range w.header {
			h[k] = v
		}
		w.rw.WriteHeader(code)
	}
}

func (w *forwardWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.status != http.StatusOK {
		return w.rw.Write(b)
	}
	if w.body.Len()+len(b) > maxHeldAnswer {
		w.overflow = true
		return 0, errors.New("tokenrevoke: the identity provider's 200 answer is too large")
	}
	return w.body.Write(b)
}

// Flush passes a flush on for answers already relayed (Traefik's proxy flushes).
func (w *forwardWriter) Flush() {
	if w.status != 0 && w.status != http.StatusOK {
		if f, ok := w.rw.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// maxHeldAnswer bounds the provider's 200 answer held until NATS confirms (RFC 7009's
// is empty).
const maxHeldAnswer = 1 << 20
