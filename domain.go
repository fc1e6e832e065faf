package tokenrevoke

import (
	"sync"
	"time"
)

// A domain is the revocation state one Traefik process keeps for one NATS configuration
// (or for "no NATS"): the cache of revoked tokens plus, when configured, the NATS link
// that shares it. Traefik calls New for every router and every reload; all those
// middleware instances join the same domain, so a reload never forgets a revocation and
// never opens a second connection.
type domain struct {
	cache   *tokenCache
	log     *logger
	link    link         // nil without NATS
	limiter *rateLimiter // per-client revocation rates
	metrics *metrics     // counters for metricsPath (metrics.go)

	mu         sync.Mutex
	issuerSets map[string]*logoutIssuers // by issuerSetKey (backchannel.go)
	jti        *jtiGuard                 // logout tokens' jti already accepted
	folds      *sessionFolds             // session rules per subject (folds.go)
}

// link shares revocations with other gateways (implemented over NATS).
type link interface {
	// publish sends one revocation and returns once the NATS server confirmed it.
	publish(r revocation) error
	// synced reports whether the replay of stored revocations has completed.
	synced() bool
	// status describes the connection for the status endpoint.
	status() linkStatus
}

// revocation is one revoked token as shared between gateways.
type revocation struct {
	sum       [32]byte
	kind      string // kindToken, kindJWS, kindJWE, or kindSID / kindSub for a rule
	cutoff    int64  // rules: tokens issued at or before it are revoked
	hint      string
	exp       int64 // unix seconds
	revokedAt time.Time
	client    string // the client that asked for it at this gateway's endpoint
}

type linkStatus struct {
	Connected bool   `json:"connected"`
	Server    string `json:"server,omitempty"`
	Stream    string `json:"stream,omitempty"`
	StreamSeq uint64 `json:"streamSequence,omitempty"`
	Synced    bool   `json:"synced"`
	LastError string `json:"lastError,omitempty"`
	Received  int64  `json:"received"`
	Dropped   int64  `json:"dropped"`
	// Unsigned and BadSignature are the part of Dropped refused for their signature
	// (nats.signing): no Tokenrevoke-Sig header, or a wrong one.
	Unsigned     int64 `json:"unsigned"`
	BadSignature int64 `json:"badSignature"`
	// Signed reports that nats.signing is configured (published messages are signed,
	// received ones verified).
	Signed      bool  `json:"signed"`
	Published   int64 `json:"published"`
	PublishFail int64 `json:"publishFailures"`
	// Snapshot is set in JetStream mode with snapshots on.
	Snapshot *snapshotStatus `json:"snapshot,omitempty"`
}

// janitorEvery is how often expired entries are swept from a domain's cache.
const janitorEvery = 30 * time.Second

var (
	domainsMu sync.Mutex
	domains   = make(map[string]*domain)
)

// joinDomain returns the process-wide domain for s, creating it (and its NATS link)
// on first use. A later New with a different cacheSize resizes the shared cache.
func joinDomain(s *settings, log *logger) (*domain, error) {
	key := "local"
	if s.nats != nil {
		key = "nats:" + s.nats.key()
	}
	domainsMu.Lock()
	defer domainsMu.Unlock()
	if d, ok := domains[key]; ok {
		if d.cache.capacity != s.cacheSize {
			d.cache.setCapacity(s.cacheSize, time.Now().Unix())
		}
		return d, nil
	}
	d := newDomain(s.cacheSize, log)
	if s.nats != nil {
		s.nats.metrics = d.metrics
		l, err := startNATSLink(d.cache, s.nats, log)
		if err != nil {
			return nil, err
		}
		d.link = l
	}
	domains[key] = d
	go d.janitor()
	return d, nil
}

// newDomain returns a domain with an empty store and no NATS link.
func newDomain(cacheSize int, log *logger) *domain {
	return &domain{cache: newTokenCache(cacheSize, log), log: log, limiter: newRateLimiter(), metrics: newMetrics(),
		issuerSets: make(map[string]*logoutIssuers), jti: newJTIGuard(logoutReplayMax), folds: newSessionFolds()}
}

// janitor sweeps expired entries for the life of the process (domains are never
// dropped: Traefik gives plugins no shutdown hook, and a reload must keep them).
// It also logs the cache evictions that the once-a-second warning held back.
func (d *domain) janitor() {
	for i := 1; ; i++ {
		time.Sleep(janitorTick)
		d.cache.flushEvictionWarning()
		if i%int(janitorEvery/janitorTick) == 0 {
			d.cache.sweep(time.Now().Unix())
		}
	}
}

// janitorTick is how often held-back eviction warnings are logged.
const janitorTick = 5 * time.Second

// revoke applies a revocation locally (its origin is the client), then shares it. The
// local entry is kept even when sharing fails, so this gateway enforces it while the
// client retries.
func (d *domain) revoke(r revocation) error {
	if !d.cache.addFrom(r.sum, r.exp, r.revokedAt.Unix(), r.client) {
		return nil // already expired: nothing left to enforce
	}
	if d.link == nil {
		return nil
	}
	return d.link.publish(r)
}

func (d *domain) isSynced() bool {
	return d.link == nil || d.link.synced()
}
