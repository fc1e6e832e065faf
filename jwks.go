package tokenrevoke

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// JWK sets (RFC 7517) and the per-issuer source that holds one: either inline (a JWKS
// document given in the configuration) or fetched from a jwks_uri. A fetched set is loaded
// in the background at start and fetched again only when a token names a kid the set
// does not hold (or when no key is held at all, or the set is older than jwksMaxAge), at
// most once per jwksMinRefetch per issuer. Only the verification of a back-channel logout
// or revocation token ever triggers a fetch; the last good set is kept when a fetch fails.

const (
	jwksFetchTimeout = 5 * time.Second
	jwksMaxBody      = 1 << 20
	jwksMinRefetch   = 10 * time.Second
	// jwksMaxAge: a set older than this is refreshed in the background (rate limited as
	// any fetch) by the next verification, so a key the IdP withdrew stops being trusted.
	jwksMaxAge = time.Hour
	// jwkMinRSABits is the smallest RSA modulus accepted.
	jwkMinRSABits = 2048
	// jwksMaxKeys bounds the usable keys kept from one document.
	jwksMaxKeys = 100
)

// jwk is one usable public verification key. It is never modified after parsing.
type jwk struct {
	Kid string
	Kty string // "RSA", "EC" or "OKP"
	Alg string // "" when the JWK does not restrict it
	Crv string // "P-256", "P-384", "P-521" or "Ed25519"
	rsa *rsa.PublicKey
	ec  *ecdsa.PublicKey
	ed  ed25519.PublicKey
}

// jwkSet is an immutable set of usable keys, plus why other keys of the document were
// skipped.
type jwkSet struct {
	keys    []*jwk
	skipped []string
}

// parseJWKS parses a JWKS document ({"keys":[...]}). Keys of an unknown kty or crv, keys
// not for signatures (use other than "sig", key_ops without "verify") and malformed or
// weak keys are skipped, not fatal; a document without any usable key is an error.
func parseJWKS(data []byte) (*jwkSet, error) {
	m, err := jsonObjectMembers(data)
	if err != nil {
		return nil, errors.New("the JWKS is not a JSON object")
	}
	raw, ok := m["keys"]
	if !ok || len(raw) == 0 || raw[0] != '[' {
		return nil, errors.New("the JWKS has no keys array")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errors.New("the JWKS keys member is not an array")
	}
	ks := &jwkSet{}
	for i, item := range items {
		k, why := parseJWK(item)
		if k == nil {
			ks.skipped = append(ks.skipped, "keys["+strconv.Itoa(i)+"]: "+why)
			continue
		}
		if len(ks.keys) >= jwksMaxKeys {
			ks.skipped = append(ks.skipped, "keys["+strconv.Itoa(i)+"]: more than "+strconv.Itoa(jwksMaxKeys)+" usable keys")
			continue
		}
		ks.keys = append(ks.keys, k)
	}
	if len(ks.keys) == 0 {
		if len(ks.skipped) > 0 {
			return nil, errors.New("the JWKS has no usable key (" + strings.Join(ks.skipped, "; ") + ")")
		}
		return nil, errors.New("the JWKS has no usable key")
	}
	return ks, nil
}

// parseJWK returns the key, or nil and why it was skipped.
func parseJWK(data []byte) (*jwk, string) {
	m, err := jsonObjectMembers(data)
	if err != nil {
		return nil, "not a JSON object"
	}
	str := func(name string) (string, bool) {
		raw, present := m[name]
		if !present {
			return "", true
		}
		return jsonString(raw)
	}
	k := &jwk{}
	var ok bool
	if k.Kty, ok = str("kty"); !ok || k.Kty == "" {
		return nil, "no kty"
	}
	if k.Kid, ok = str("kid"); !ok {
		return nil, "kid is not a string"
	}
	name := "kty " + strconv.Quote(k.Kty)
	if k.Kid != "" {
		name = "kid " + strconv.Quote(k.Kid)
	}
	if k.Alg, ok = str("alg"); !ok {
		return nil, name + ": alg is not a string"
	}
	use, ok := str("use")
	if !ok || (use != "" && use != "sig") {
		return nil, name + ": use is not sig"
	}
	if raw, present := m["key_ops"]; present {
		var ops []string
		if err := json.Unmarshal(raw, &ops); err != nil {
			return nil, name + ": key_ops is not an array of strings"
		}
		verify := false
		for _, op := range ops {
			if op == "verify" {
				verify = true
			}
		}
		if !verify {
			return nil, name + ": key_ops lacks verify"
		}
	}
	if k.Crv, ok = str("crv"); !ok {
		return nil, name + ": crv is not a string"
	}
	b64 := func(member string) ([]byte, bool) {
		s, ok := str(member)
		if !ok || s == "" {
			return nil, false
		}
		b, err := jwsSegment(s)
		return b, err == nil
	}
	if k.Kty == "RSA" {
		n, okN := b64("n")
		e, okE := b64("e")
		if !okN || !okE {
			return nil, name + ": n or e missing or not base64url"
		}
		mod := new(big.Int).SetBytes(n)
		if mod.BitLen() < jwkMinRSABits {
			return nil, name + ": RSA modulus of " + strconv.Itoa(mod.BitLen()) + " bits, at least " + strconv.Itoa(jwkMinRSABits) + " needed"
		}
		if mod.Bit(0) == 0 {
			return nil, name + ": RSA modulus is even"
		}
		exp := new(big.Int).SetBytes(e)
		if exp.BitLen() > 31 || exp.Int64() < 3 || exp.Bit(0) == 0 {
			return nil, name + ": RSA exponent out of range"
		}
		if k.Alg != "" && !strings.HasPrefix(k.Alg, "RS") && !strings.HasPrefix(k.Alg, "PS") {
			return nil, name + ": alg " + strconv.Quote(k.Alg) + " does not fit an RSA key"
		}
		k.Crv = ""
		k.rsa = &rsa.PublicKey{N: mod, E: int(exp.Int64())}
		return k, ""
	}
	if k.Kty == "EC" {
		// One statement per variable: yaegi mishandles some tuple assignments.
		var curve elliptic.Curve
		var ecdhCurve ecdh.Curve
		size := 0
		want := ""
		if k.Crv == "P-256" {
			curve = elliptic.P256()
			ecdhCurve = ecdh.P256()
			size = 32
			want = "ES256"
		} else if k.Crv == "P-384" {
			curve = elliptic.P384()
			ecdhCurve = ecdh.P384()
			size = 48
			want = "ES384"
		} else if k.Crv == "P-521" {
			curve = elliptic.P521()
			ecdhCurve = ecdh.P521()
			size = 66
			want = "ES512"
		} else {
			return nil, name + ": unsupported EC curve"
		}
		x, okX := b64("x")
		y, okY := b64("y")
		if !okX || !okY || len(x) > size || len(y) > size {
			return nil, name + ": x or y missing, not base64url or too long"
		}
		// 0x04 || X || Y, each coordinate left-padded: crypto/ecdh checks that the point
		// is on the curve (and not the point at infinity).
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1+size-len(x):1+size], x)
		copy(point[1+2*size-len(y):], y)
		if _, err := ecdhCurve.NewPublicKey(point); err != nil {
			return nil, name + ": the point is not on the curve"
		}
		if k.Alg != "" && k.Alg != want {
			return nil, name + ": alg " + strconv.Quote(k.Alg) + " does not fit curve " + k.Crv
		}
		k.ec = &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		return k, ""
	}
	if k.Kty == "OKP" {
		if k.Crv != "Ed25519" {
			return nil, name + ": unsupported OKP curve"
		}
		x, okX := b64("x")
		if !okX || len(x) != ed25519.PublicKeySize {
			return nil, name + ": x missing or not 32 bytes"
		}
		if k.Alg != "" && k.Alg != "EdDSA" {
			return nil, name + ": alg " + strconv.Quote(k.Alg) + " does not fit an Ed25519 key"
		}
		k.ed = ed25519.PublicKey(x)
		return k, ""
	}
	return nil, name + ": unsupported kty"
}

// jwksSource holds the key set of one issuer.
type jwksSource struct {
	issuer  string
	url     string // "" for an inline set
	display string // "inline" or the URL without its password
	client  *http.Client
	log     *logger // may be nil

	mu        sync.Mutex
	keys      *jwkSet
	fetchedAt time.Time // last successful fetch
	attemptAt time.Time // start of the last fetch
	lastErr   string
	fetches   int
	failures  int
	done      chan struct{} // non-nil while a fetch runs; closed when it ends
}

// newInlineJWKSSource holds a JWKS given in the configuration.
func newInlineJWKSSource(issuer, doc string) (*jwksSource, error) {
	ks, err := parseJWKS([]byte(doc))
	if err != nil {
		return nil, err
	}
	return &jwksSource{issuer: issuer, display: "inline", keys: ks}, nil
}

// newURLJWKSSource fetches the JWKS from rawURL (http or https). timeout <= 0 means
// jwksFetchTimeout. Call start to begin the first fetch.
func newURLJWKSSource(issuer, rawURL string, timeout time.Duration, log *logger) (*jwksSource, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("must be an absolute http or https URL")
	}
	if timeout <= 0 {
		timeout = jwksFetchTimeout
	}
	client := &http.Client{
		Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return errors.New("redirect from https to http refused")
			}
			return nil
		},
	}
	return &jwksSource{issuer: issuer, url: rawURL, display: u.Redacted(), client: client, log: log}, nil
}

// start begins the first fetch in the background; it never blocks.
func (s *jwksSource) start(now time.Time) {
	if s.url == "" {
		return
	}
	s.mu.Lock()
	s.startFetchLocked(now)
	s.mu.Unlock()
}

// current returns the keys held (nil if none yet). It never waits; a set older than
// jwksMaxAge gets a background refresh, rate limited.
func (s *jwksSource) current(now time.Time) *jwkSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.url != "" && s.keys != nil && now.Sub(s.fetchedAt) > jwksMaxAge && s.mayFetchLocked(now) {
		s.startFetchLocked(now)
	}
	return s.keys
}

// refetch is for a token naming an unknown kid, or any token while no key is held: it
// starts a fetch unless one ran less than jwksMinRefetch ago, waits for the fetch in
// flight (bounded by the client timeout) and returns the keys held then. It reports
// whether a fetch was waited for.
func (s *jwksSource) refetch(now time.Time) (*jwkSet, bool) {
	s.mu.Lock()
	if s.url == "" {
		ks := s.keys
		s.mu.Unlock()
		return ks, false
	}
	if s.done == nil && s.mayFetchLocked(now) {
		s.startFetchLocked(now)
	}
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return s.snapshot(), false
	}
	<-done
	return s.snapshot(), true
}

// wait waits for the fetch in flight, if any.
func (s *jwksSource) wait() {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (s *jwksSource) snapshot() *jwkSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys
}

func (s *jwksSource) mayFetchLocked(now time.Time) bool {
	return s.done == nil && (s.attemptAt.IsZero() || now.Sub(s.attemptAt) >= jwksMinRefetch)
}

func (s *jwksSource) startFetchLocked(now time.Time) {
	if s.done != nil {
		return
	}
	done := make(chan struct{})
	s.done = done
	s.attemptAt = now
	s.fetches++
	go s.fetch(done, now)
}

// fetch downloads and parses the set, then publishes the outcome. It always ends the
// fetch (waiters are released) even if the download panicked.
func (s *jwksSource) fetch(done chan struct{}, at time.Time) {
	ks, err := s.safeDownload()
	s.mu.Lock()
	if err != nil {
		s.failures++
		s.lastErr = err.Error()
	} else {
		s.keys = ks
		s.fetchedAt = at
		s.lastErr = ""
	}
	s.done = nil
	s.mu.Unlock()
	close(done)
	if s.log != nil {
		if err != nil {
			s.log.warnf("backchannel logout: JWKS of issuer %q from %s: %v (keeping the keys held)", s.issuer, s.display, err)
		} else if len(ks.skipped) > 0 {
			s.log.infof("backchannel logout: JWKS of issuer %q: %d keys, skipped %s", s.issuer, len(ks.keys), strings.Join(ks.skipped, "; "))
		}
	}
}

// safeDownload turns a panic of the download into an error: a last line of defence, as
// a panic in a plugin goroutine would take Traefik down.
func (s *jwksSource) safeDownload() (ks *jwkSet, err error) {
	defer func() {
		if r := recover(); r != nil {
			ks = nil
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	return s.download()
}

func (s *jwksSource) download() (*jwkSet, error) {
	req, err := http.NewRequest(http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %v", err)
	}
	if len(body) > jwksMaxBody {
		return nil, fmt.Errorf("the body is larger than %d bytes", jwksMaxBody)
	}
	return parseJWKS(body)
}

// jwksStatus describes one issuer's key set for the status endpoint.
type jwksStatus struct {
	Issuer        string    `json:"issuer"`
	Source        string    `json:"source"` // "inline" or the jwksURL (password removed)
	Keys          []jwkInfo `json:"keys"`
	FetchedAt     string    `json:"fetchedAt,omitempty"`     // RFC 3339, last successful fetch
	LastAttemptAt string    `json:"lastAttemptAt,omitempty"` // RFC 3339
	LastError     string    `json:"lastError,omitempty"`
	Fetches       int       `json:"fetches"`
	Failures      int       `json:"failures"`
	Fetching      bool      `json:"fetching,omitempty"`
	Skipped       []string  `json:"skipped,omitempty"`
}

// jwkInfo names a key held, without its material.
type jwkInfo struct {
	Kid  string `json:"kid,omitempty"`
	Kty  string `json:"kty"`
	Alg  string `json:"alg,omitempty"`
	Crv  string `json:"crv,omitempty"`
	Bits int    `json:"bits,omitempty"` // RSA modulus size
}

func (s *jwksSource) status() jwksStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := jwksStatus{
		Issuer:    s.issuer,
		Source:    s.display,
		Keys:      []jwkInfo{},
		LastError: s.lastErr,
		Fetches:   s.fetches,
		Failures:  s.failures,
		Fetching:  s.done != nil,
	}
	if !s.fetchedAt.IsZero() {
		st.FetchedAt = s.fetchedAt.UTC().Format(time.RFC3339)
	}
	if !s.attemptAt.IsZero() {
		st.LastAttemptAt = s.attemptAt.UTC().Format(time.RFC3339)
	}
	if s.keys != nil {
		for _, k := range s.keys.keys {
			info := jwkInfo{Kid: k.Kid, Kty: k.Kty, Alg: k.Alg, Crv: k.Crv}
			if k.rsa != nil {
				info.Bits = k.rsa.N.BitLen()
			}
			st.Keys = append(st.Keys, info)
		}
		st.Skipped = append(st.Skipped, s.keys.skipped...)
	}
	return st
}
