// Package tokenrevoke is a Traefik middleware plugin that enforces OAuth 2.0 token
// revocation at the edge.
//
// It serves an RFC 7009 revocation endpoint itself, keeps the SHA-256 of every revoked
// token in a bounded in-memory store, rejects any request that presents a revoked bearer
// token with 401 before it reaches a backend, and (optionally) shares revocations
// between gateway instances over NATS.
//
// Traefik runs this package in the yaegi interpreter: every statement here is
// interpreted (roughly 100x slower than compiled Go) while stdlib calls run compiled.
// The request path in ServeHTTP is therefore written flat on purpose: no helper calls,
// no defer, one lock round trip and one stdlib hash call per bearer request (see the
// comment on ServeHTTP for the measured cost of each construct).
package tokenrevoke

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is the middleware's dynamic configuration. Traefik decodes the plugin's
// configuration map into it with mapstructure (field names match case-insensitively).
type Config struct {
	// RevokePath is the path the plugin answers revocation requests on.
	RevokePath string `json:"revokePath,omitempty"`
	// Clients may call the revoke endpoint.
	Clients []ClientConfig `json:"clients,omitempty"`
	// CacheSize is the most revoked tokens held at once.
	CacheSize int `json:"cacheSize,omitempty"`
	// DefaultTTL is how long a revoked token without a readable expiry is held,
	// as a Go duration ("24h", "90m").
	DefaultTTL string `json:"defaultTTL,omitempty"`
	// ClockSkew is added to a JWT's exp before the entry is dropped, so a backend
	// whose clock runs behind still never sees a revoked token as valid.
	ClockSkew string `json:"clockSkew,omitempty"`
	// NATS shares revocations between gateways; nil means this gateway works alone.
	NATS *NATSConfig `json:"nats,omitempty"`
	// FailClosed rejects bearer requests with 503 until the revocation stream is synced.
	FailClosed bool `json:"failClosed,omitempty"`
	// StatusPath, when set, serves a JSON status document to authenticated clients.
	StatusPath string `json:"statusPath,omitempty"`
	// MetricsPath, when set, serves Prometheus metrics without authentication (see
	// metrics.go: restrict it with a Traefik router of its own).
	MetricsPath string `json:"metricsPath,omitempty"`
	// MaxBodyCheck is the largest form body (bytes) inspected for an access_token
	// parameter; larger form bodies are refused with 413.
	MaxBodyCheck int `json:"maxBodyCheck,omitempty"`
	// MaxTTL caps how long any revocation is held (a Go duration), whatever expiry a
	// token or a NATS message claims.
	MaxTTL string `json:"maxTTL,omitempty"`
	// Issuers are the OpenID Providers whose back-channel logout tokens are accepted and
	// whose JWTs the revoke endpoint verifies before storing them.
	Issuers []IssuerConfig `json:"issuers,omitempty"`
	// MaxTokenLifetime is the longest lifetime of any token the issuers mint (a Go
	// duration): a session or subject rule is kept that long after its cutoff.
	MaxTokenLifetime string `json:"maxTokenLifetime,omitempty"`
	// BackchannelLogoutPath, when set, receives OpenID Connect back-channel logout
	// tokens (POST, form parameter logout_token).
	BackchannelLogoutPath string `json:"backchannelLogoutPath,omitempty"`
	// RevokeMode is "local" (the plugin authenticates clients and answers revocations)
	// or "forward" (the identity provider behind the router answers them; forward.go).
	RevokeMode string `json:"revokeMode,omitempty"`
	// TokenPath, when set, is the identity provider's token endpoint behind this router:
	// refresh grants presenting a revoked refresh token are refused there (refresh.go).
	TokenPath string `json:"tokenPath,omitempty"`
	// RefreshRevokesSession: a revoked JWT refresh token carrying sid also ends that
	// session (parsed; the behaviour comes with the session rules).
	RefreshRevokesSession bool `json:"refreshRevokesSession,omitempty"`
	// TokenCookies and TokenHeaders name the cookies and headers (besides
	// Authorization) that backends read tokens from (places.go).
	TokenCookies []string `json:"tokenCookies,omitempty"`
	TokenHeaders []string `json:"tokenHeaders,omitempty"`
}

// ClientConfig is a client allowed to revoke tokens.
type ClientConfig struct {
	ID string `json:"id,omitempty"`
	// Secret is the client secret in clear text.
	Secret string `json:"secret,omitempty"`
	// SecretSha256 is the lowercase hex SHA-256 of the secret, for configs that
	// should not hold the secret itself.
	SecretSha256 string `json:"secretSha256,omitempty"`
	// RatePerMinute is how many revocations the client may make per minute (with a
	// burst of as many); 0 means the default (600), -1 no limit.
	RatePerMinute int `json:"ratePerMinute,omitempty"`
}

// NATSConfig connects the gateway to a NATS server or cluster.
type NATSConfig struct {
	Servers   []string   `json:"servers,omitempty"`
	Subject   string     `json:"subject,omitempty"`
	Name      string     `json:"name,omitempty"`
	Token     string     `json:"token,omitempty"`
	User      string     `json:"user,omitempty"`
	Password  string     `json:"password,omitempty"`
	NKeySeed  string     `json:"nkeySeed,omitempty"`
	CredsFile string     `json:"credsFile,omitempty"`
	TLS       *TLSConfig `json:"tls,omitempty"`
	// Stream is the JetStream stream holding revocations; empty means core NATS only.
	Stream   string `json:"stream,omitempty"`
	Replicas int    `json:"replicas,omitempty"`
	// SnapshotEvery is how many new stream messages make a synced gateway write a fresh
	// snapshot of its revocations (JetStream mode), from which a new gateway loads
	// instead of replaying the whole stream. 0 means the default (50000); -1 turns
	// snapshots off (neither written nor read).
	SnapshotEvery int `json:"snapshotEvery,omitempty"`
	// Signing signs what this gateway publishes and verifies what it receives
	// (signing.go, docs/bus-signing.md); nil: the bus is trusted.
	Signing *SigningConfig `json:"signing,omitempty"`
}

// TLSConfig holds file paths for a TLS connection to NATS.
type TLSConfig struct {
	CA                 string `json:"ca,omitempty"`
	Cert               string `json:"cert,omitempty"`
	Key                string `json:"key,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
}

// CreateConfig returns the default configuration.
func CreateConfig() *Config {
	return &Config{
		RevokePath: defaultRevokePath,
		CacheSize:  defaultCacheSize,
		DefaultTTL: defaultTokenTTL,
		ClockSkew:  defaultClockSkew,
	}
}

// Middleware is the http.Handler Traefik puts in front of the next handler.
type Middleware struct {
	next        http.Handler
	revokePath  string
	statusPath  string
	metricsPath string
	endpoints   map[string]bool // paths the plugin answers itself
	cache       *tokenCache
	rlock       sync.Locker       // the cache's read lock (cache.mu.RLocker()), for the fast path
	passing     map[[32]byte]bool // the cache's passing tokens (the map is never replaced)
	settings    *settings
	log         *logger
	domain      *domain
	metrics     *metrics       // the domain's (metrics.go): counters on the slow path
	logoutPath  string         // back-channel logout receiver ("" when off)
	issuers     *logoutIssuers // nil without issuers
	places      *tokenPlaces   // tokenCookies and tokenHeaders; nil without
}

// New builds the middleware. Traefik calls it for every router that uses the middleware
// and again on every configuration reload, so anything long-lived (the cache, the NATS
// connection) is shared per process through the domain registry instead of being
// created here.
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	s, err := parseConfig(config)
	if err != nil {
		return nil, err
	}
	log := newLogger(name)
	d, err := joinDomain(s, log)
	if err != nil {
		return nil, err
	}
	m := newMiddleware(next, name, s, d, log)
	if len(s.issuers) > 0 {
		if m.issuers, err = d.logoutIssuers(s, log); err != nil {
			return nil, err
		}
	}
	var h http.Handler = m
	if m.places != nil {
		h = &placesMiddleware{m: m}
	}
	if s.failClosed {
		return &failClosedMiddleware{m: m, next: h}, nil
	}
	return h, nil
}

// failClosedMiddleware answers 503 to bearer requests while the revocation stream is
// not synced, and otherwise hands over to the middleware. It is a separate type so the
// common configuration pays nothing for the check on its request path.
type failClosedMiddleware struct {
	m    *Middleware
	next http.Handler // m, or its placesMiddleware
}

func (f *failClosedMiddleware) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	m := f.m
	if m.domain.isSynced() || m.endpoints[req.URL.Path] {
		f.next.ServeHTTP(rw, req)
		return
	}
	// Not synced: a request that carries a token anywhere a backend could read one waits.
	in := m.inspect(req, time.Now().Unix())
	if !in.found && m.settings.tokenPath != "" && atTokenPath(req.URL.Path, m.settings.tokenPath) {
		in.found = refreshPresented(m, req) // a refresh grant waits too
	}
	switch {
	case in.verdict != passRequest:
		reject(m, rw, &in)
	case in.found:
		atomic.AddInt64(&m.metrics.rejectedUnavailable, 1)
		writeUnavailable(rw)
	default:
		m.next.ServeHTTP(rw, req)
	}
}

func newMiddleware(next http.Handler, name string, s *settings, d *domain, log *logger) *Middleware {
	endpoints := map[string]bool{s.revokePath: true}
	if s.statusPath != "" {
		endpoints[s.statusPath] = true
	}
	if s.metricsPath != "" {
		endpoints[s.metricsPath] = true
	}
	if s.logoutPath != "" {
		endpoints[s.logoutPath] = true
	}
	return &Middleware{
		logoutPath:  s.logoutPath,
		endpoints:   endpoints,
		next:        next,
		revokePath:  s.revokePath,
		statusPath:  s.statusPath,
		metricsPath: s.metricsPath,
		cache:       d.cache,
		rlock:       d.cache.mu.RLocker(),
		passing:     d.cache.passing,
		settings:    s,
		log:         log,
		domain:      d,
		metrics:     d.metrics,
		places:      s.places,
	}
}

// ServeHTTP answers the revoke endpoint and rejects requests bearing a revoked token.
//
// It decides the common cases itself: no query string, no body, not one of the plugin's
// own paths, and either no Authorization header or exactly one "Bearer <token>" header
// whose token is known to pass: the slow path read it, found it canonical and valid,
// keyed by a single key that is not revoked, and remembered it (tokenCache.passing,
// indexed by the SHA-256 of the token; a revocation of its key forgets it at once).
// Everything else (the endpoints, tokens seen for the first time, other spellings,
// several headers, query strings, bodies, JWEs, revoked tokens) goes to serveSlow, which
// applies the full rules of extract.go; the fast path only ever passes requests that
// serveSlow would pass too (TestFastPathMatchesSlowPath). Validating a token costs
// three or four stdlib calls under the interpreter (its characters, its dots, its
// signing input), as much as the rest of the check together, so it is done once per
// token, not once per request, and the request path probes one map, as before.
//
// The shape follows from what code costs under yaegi v0.16.1. Each call of an
// interpreted function allocates a value for every slot of its frame (every local and
// every intermediate result in the whole body, branches not taken included; about 30 ns
// each), and each stdlib call goes through reflect.Value.Call. So the body keeps its
// slots few:
//   - nested ifs rather than && chains (each && is a slot of its own);
//   - the header value in one local t, tested with two string comparisons:
//     "Bearer !" <= t < "Bearer!" holds exactly when t starts with "Bearer " and the
//     next byte is above the space, a case in which serveSlow hashes t[7:] unchanged
//     too (4 slots in all, where the length, prefix and space tests on a[0] took 12);
//   - the plugin's own paths found with one map probe (comparing with each path takes
//     more slots), and serveSlow as a plain function (a method call costs a slot for the
//     method value);
//   - the read lock through the cache's RLocker: the sync.Locker interface call measured
//     about 0.1 µs cheaper than RLock/RUnlock on the *sync.RWMutex. The hash is computed
//     inside the locked section because a local for the key costs 0.1 µs more.
//
// Measured with BenchmarkYaegiAdded1M (1M entries, a non-revoked 300-byte bearer token,
// against the pass-through plugin in the same process): in the quietest runs, with the
// pass-through at 0.9-1.0 µs, this shape adds 2.7 µs per request (median over blocks;
// 34 slots, 54 allocations) where the previous one added 3.2 µs (46 slots, 69
// allocations). Under load both grow with the pass-through, to about 3.1 and 3.75 times
// its cost. On an idle machine (pass-through 0.8 µs) it adds 2.6 µs: about 1.0 µs for
// the query, path and header tests, 0.4 µs for the lock pair, 0.9 µs for the hash
// (0.4 µs of it SHA-256 itself) and 0.2 µs for the map probe. Natively the whole check
// costs about 0.4 µs, nearly all of it SHA-256.
func (m *Middleware) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	pass := false
	if req.URL.RawQuery == "" {
		if req.ContentLength == 0 {
			if !m.endpoints[req.URL.Path] {
				if a := req.Header["Authorization"]; len(a) == 1 {
					if t := a[0]; t >= "Bearer !" {
						if t < "Bearer!" && len(t) <= maxTokenLength+7 {
							m.rlock.Lock()
							pass = m.passing[sha256.Sum256([]byte(t[7:]))]
							m.rlock.Unlock()
						}
					}
				} else if a == nil {
					pass = true
				}
			}
		}
	}
	if pass {
		m.next.ServeHTTP(rw, req)
		return
	}
	serveSlow(m, rw, req)
}

// serveSlow handles every request the fast path in ServeHTTP did not decide. It is a
// function rather than a method only to keep ServeHTTP's frame one slot smaller.
func serveSlow(m *Middleware, rw http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case m.revokePath:
		if m.settings.forward {
			serveForward(m, rw, req)
		} else {
			m.serveRevoke(rw, req)
		}
		return
	case m.statusPath:
		if m.statusPath != "" {
			m.serveStatus(rw, req)
			return
		}
	case m.metricsPath:
		if m.metricsPath != "" {
			m.serveMetrics(rw, req)
			return
		}
	case m.logoutPath:
		if m.logoutPath != "" {
			m.serveBackchannelLogout(rw, req)
			return
		}
	}
	if m.settings.tokenPath != "" && len(req.URL.Path) > int(m.settings.maxBodyCheck) {
		// Cleaning so long a path (it might clean to tokenPath) would cost more than
		// any request should.
		atomic.AddInt64(&m.metrics.rejectedTooLarge, 1)
		writeError(rw, http.StatusRequestURITooLong, errInvalidRequest, "The path is longer than the gateway inspects")
		return
	}
	if m.settings.tokenPath != "" && atTokenPath(req.URL.Path, m.settings.tokenPath) && refuseRevokedRefresh(m, rw, req) {
		return
	}
	in := m.inspect(req, time.Now().Unix())
	if in.verdict != passRequest {
		reject(m, rw, &in)
		return
	}
	m.next.ServeHTTP(rw, req)
}

// reject answers a request the inspection did not pass (401 revoked, or 400/413
// refused) and counts it. It is a function of its own so that serveSlow, which every
// request with a query string runs, keeps a small frame (see ServeHTTP).
func reject(m *Middleware, rw http.ResponseWriter, in *inspection) {
	if in.verdict == revokedRequest {
		atomic.AddInt64(&m.metrics.rejectedRevoked, 1)
		writeRevoked(rw)
		return
	}
	if in.status == http.StatusRequestEntityTooLarge || in.status == http.StatusRequestURITooLong || in.status == http.StatusRequestHeaderFieldsTooLarge {
		atomic.AddInt64(&m.metrics.rejectedTooLarge, 1)
	} else {
		atomic.AddInt64(&m.metrics.rejectedRefused, 1)
	}
	writeError(rw, in.status, errInvalidRequest, in.desc)
}

// revoked reports whether tok is revoked: by its key, or (for a JWS or JWE once this
// gateway has applied a version-1 message, whose key is always the exact string) by
// its exact string.
//
// A string that starts like a JWS but has more than two dots is also looked up by the
// key of its first two segments: verifiers that split on dots and take the first three
// parts ignore the rest, so "<revoked JWS>.x" would be accepted as the revoked token.
func (m *Middleware) revoked(tok string, now int64) bool {
	key, kind := tokenKey(tok)
	if m.cache.contains(key, now) {
		return true
	}
	if kind != kindJWS && len(tok) > 0 && tok[0] == 'e' {
		if i := strings.IndexByte(tok, '.'); i > 0 {
			if j := strings.IndexByte(tok[i+1:], '.'); j >= 0 {
				if m.cache.contains(sha256.Sum256([]byte(tok[:i+1+j])), now) {
					return true
				}
			}
		}
	}
	return kind != kindToken && m.cache.hasLegacy() && m.cache.contains(hashToken(tok), now)
}
