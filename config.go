package tokenrevoke

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults, in one place: CreateConfig starts from them, and parseConfig applies them to
// keys left empty (cacheSize has no fallback: 0 is refused).
const (
	defaultRevokePath    = "/api/id/v1/auth/token/revoke"
	defaultCacheSize     = 1000000
	defaultTokenTTL      = "24h" // defaultTTL
	defaultClockSkew     = "1m"
	defaultSubject       = "tokens.revoked" // nats.subject
	defaultReplicas      = 1                // nats.replicas
	defaultSnapshotEvery = 50000            // nats.snapshotEvery
)

// settings is a validated, normalised Config. Secrets are only kept as SHA-256 digests.
type settings struct {
	revokePath  string
	statusPath  string
	metricsPath string              // "" when off
	clients     map[string][32]byte // client id -> SHA-256 of its secret
	cacheSize   int
	defaultTTL  time.Duration
	clockSkew   time.Duration
	failClosed  bool
	nats        *natsSettings
	// maxBodyCheck is the largest form body inspected for tokens (bytes).
	maxBodyCheck int64
	// maxTTL caps every revocation's lifetime.
	maxTTL time.Duration
	// rates: client id -> revocations allowed per minute (absent: no limit).
	rates map[string]int
	// issuers are validated and their keys fetched by the domain (logout.go); kept
	// here as configured.
	issuers []IssuerConfig
	// maxTokenLifetime: how long a session or subject rule outlives its cutoff.
	maxTokenLifetime time.Duration
	// logoutPath is the back-channel logout receiver ("" when off).
	logoutPath string
	// forward mode, tokenPath and refreshRevokesSession: see parseForward (forward.go).
	forward               bool
	tokenPath             string
	refreshRevokesSession bool
	// places: tokenCookies and tokenHeaders (places.go); nil when neither is set.
	places *tokenPlaces
}

// Defaults of the optional settings.
const (
	defaultMaxBodyCheck  = 64 << 10
	defaultMaxTTL        = "2160h" // 90 days
	defaultRatePerMinute = 600
	defaultMaxTokenLife  = "24h"
)

// natsSettings is a validated NATSConfig.
type natsSettings struct {
	servers   []string
	subject   string
	name      string
	token     string
	user      string
	password  string
	nkeySeed  string
	credsFile string
	tls       *TLSConfig
	stream    string
	replicas  int
	// snapshotEvery: new stream messages between snapshots; 0 when snapshots are off.
	snapshotEvery uint64
	// defaultTTL is the middleware's, used to check an existing stream's max_age.
	defaultTTL time.Duration
	// maxTTL is the middleware's: no received revocation is held longer.
	maxTTL time.Duration
	// clockSkew and maxTokenLifetime are the middleware's: they cap received rules
	// (capRule).
	clockSkew        time.Duration
	maxTokenLifetime time.Duration
	// signer signs and verifies bus messages (nats.signing); nil without keys.
	signer *busSigner
	// metrics is not configuration: joinDomain sets it to the domain's metrics before
	// starting the link, so that the link and its stream follower, which all hold these
	// settings, reach the counters without more plumbing. Nil elsewhere (tests), where
	// the nil-safe metrics methods record nothing.
	metrics *metrics
}

// parseConfig validates c. Every error names the offending key and never echoes a secret.
func parseConfig(c *Config) (*settings, error) {
	if c == nil {
		return nil, errors.New("tokenrevoke: no configuration")
	}
	s := &settings{
		revokePath:  strings.TrimSpace(c.RevokePath),
		statusPath:  strings.TrimSpace(c.StatusPath),
		metricsPath: strings.TrimSpace(c.MetricsPath),
		cacheSize:   c.CacheSize,
		failClosed:  c.FailClosed,
		clients:     make(map[string][32]byte),
	}
	if s.revokePath == "" {
		s.revokePath = defaultRevokePath
	}
	if !strings.HasPrefix(s.revokePath, "/") {
		return nil, fmt.Errorf("tokenrevoke: revokePath: %q must start with /", s.revokePath)
	}
	if s.statusPath != "" {
		if !strings.HasPrefix(s.statusPath, "/") {
			return nil, fmt.Errorf("tokenrevoke: statusPath: %q must start with /", s.statusPath)
		}
		if s.statusPath == s.revokePath {
			return nil, errors.New("tokenrevoke: statusPath: must differ from revokePath")
		}
	}
	if s.metricsPath != "" {
		if !strings.HasPrefix(s.metricsPath, "/") {
			return nil, fmt.Errorf("tokenrevoke: metricsPath: %q must start with /", s.metricsPath)
		}
		if s.metricsPath == s.revokePath || s.metricsPath == s.statusPath {
			return nil, errors.New("tokenrevoke: metricsPath: must differ from revokePath and statusPath")
		}
	}
	if s.cacheSize < 1 {
		return nil, fmt.Errorf("tokenrevoke: cacheSize: must be at least 1, got %d", s.cacheSize)
	}
	if s.cacheSize > 1<<30 {
		return nil, fmt.Errorf("tokenrevoke: cacheSize: %d is more than the maximum %d", s.cacheSize, 1<<30)
	}
	ttl, err := parseDuration("defaultTTL", c.DefaultTTL, defaultTokenTTL)
	if err != nil {
		return nil, err
	}
	s.defaultTTL = ttl
	skew, err := parseDuration("clockSkew", c.ClockSkew, defaultClockSkew)
	if err != nil {
		return nil, err
	}
	s.clockSkew = skew
	maxTTL, err := parseDuration("maxTTL", c.MaxTTL, defaultMaxTTL)
	if err != nil {
		return nil, err
	}
	if maxTTL < s.defaultTTL {
		return nil, fmt.Errorf("tokenrevoke: maxTTL: %s is shorter than defaultTTL %s", maxTTL, s.defaultTTL)
	}
	s.maxTTL = maxTTL
	switch {
	case c.MaxBodyCheck == 0:
		s.maxBodyCheck = defaultMaxBodyCheck
	case c.MaxBodyCheck < 1024 || c.MaxBodyCheck > 64<<20:
		return nil, fmt.Errorf("tokenrevoke: maxBodyCheck: must be between 1024 and %d bytes, got %d", 64<<20, c.MaxBodyCheck)
	default:
		s.maxBodyCheck = int64(c.MaxBodyCheck)
	}
	s.rates = make(map[string]int)
	places, err := parsePlaces(c)
	if err != nil {
		return nil, err
	}
	s.places = places
	if err := parseForward(c, s); err != nil {
		return nil, err
	}
	if len(c.Clients) == 0 && !s.forward {
		return nil, errors.New("tokenrevoke: clients: at least one client (id and secret or secretSha256) is required")
	}
	for i, cl := range c.Clients {
		id := strings.TrimSpace(cl.ID)
		if id == "" {
			return nil, fmt.Errorf("tokenrevoke: clients[%d].id: is required", i)
		}
		if _, dup := s.clients[id]; dup {
			return nil, fmt.Errorf("tokenrevoke: clients[%d].id: duplicate client id %q", i, id)
		}
		switch {
		case cl.Secret != "" && cl.SecretSha256 != "":
			return nil, fmt.Errorf("tokenrevoke: clients[%d] (%s): set secret or secretSha256, not both", i, id)
		case cl.Secret != "":
			s.clients[id] = sha256.Sum256([]byte(cl.Secret))
		case cl.SecretSha256 != "":
			raw, err := hex.DecodeString(strings.TrimSpace(cl.SecretSha256))
			if err != nil || len(raw) != 32 {
				return nil, fmt.Errorf("tokenrevoke: clients[%d].secretSha256 (%s): must be 64 hex characters", i, id)
			}
			var d [32]byte
			copy(d[:], raw)
			s.clients[id] = d
		default:
			return nil, fmt.Errorf("tokenrevoke: clients[%d].secret: client %q needs a secret or secretSha256", i, id)
		}
		switch {
		case cl.RatePerMinute == 0:
			s.rates[id] = defaultRatePerMinute
		case cl.RatePerMinute == -1:
		case cl.RatePerMinute < 0:
			return nil, fmt.Errorf("tokenrevoke: clients[%d].ratePerMinute (%s): must be positive, 0 (default %d) or -1 (no limit), got %d", i, id, defaultRatePerMinute, cl.RatePerMinute)
		default:
			s.rates[id] = cl.RatePerMinute
		}
	}
	if c.NATS != nil {
		n, err := parseNATS(c.NATS)
		if err != nil {
			return nil, err
		}
		s.nats = n
	}
	if err := parseLogoutConfig(c, s); err != nil {
		return nil, err
	}
	if s.nats != nil {
		s.nats.defaultTTL = s.defaultTTL
		s.nats.maxTTL = s.maxTTL
		s.nats.clockSkew = s.clockSkew
		s.nats.maxTokenLifetime = s.maxTokenLifetime
	}
	if s.failClosed && (s.nats == nil || s.nats.stream == "") {
		return nil, errors.New("tokenrevoke: failClosed: needs nats.stream (it waits for the JetStream replay)")
	}
	return s, nil
}

// parseLogoutConfig reads issuers, maxTokenLifetime and backchannelLogoutPath. The
// issuers' entries are checked in full when the domain builds them (newLogoutIssuers).
func parseLogoutConfig(c *Config, s *settings) error {
	life, err := parseDuration("maxTokenLifetime", c.MaxTokenLifetime, defaultMaxTokenLife)
	if err != nil {
		return err
	}
	if life == 0 {
		return errors.New("tokenrevoke: maxTokenLifetime: must be positive")
	}
	if life > s.maxTTL {
		return fmt.Errorf("tokenrevoke: maxTokenLifetime: %s is longer than maxTTL %s (rules would be dropped before the tokens they deny expire)", life, s.maxTTL)
	}
	s.maxTokenLifetime = life
	s.issuers = c.Issuers
	if s.refreshRevokesSession && len(c.Issuers) == 0 {
		return errors.New("tokenrevoke: refreshRevokesSession: needs issuers (a refresh token's signature is verified before its session is ended)")
	}
	s.logoutPath = strings.TrimSpace(c.BackchannelLogoutPath)
	if s.logoutPath == "" {
		return nil
	}
	if !strings.HasPrefix(s.logoutPath, "/") {
		return fmt.Errorf("tokenrevoke: backchannelLogoutPath: %q must start with /", s.logoutPath)
	}
	if s.logoutPath == s.revokePath || s.logoutPath == s.statusPath || s.logoutPath == s.metricsPath || s.logoutPath == s.tokenPath {
		return errors.New("tokenrevoke: backchannelLogoutPath: must differ from revokePath, statusPath, metricsPath and tokenPath")
	}
	if len(c.Issuers) == 0 {
		return errors.New("tokenrevoke: backchannelLogoutPath: needs issuers (whose logout tokens it accepts)")
	}
	return nil
}

// parseDuration reads a Go duration ("24h", "90m") or a whole number of seconds.
// Traefik's config decoder has no duration hook, so durations arrive as strings.
func parseDuration(key, v, def string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		v = def
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(n) * time.Second
	} else {
		d, err = time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("tokenrevoke: %s: %q is not a duration (use e.g. \"24h\", \"90m\" or seconds)", key, v)
		}
	}
	if d < 0 || (d == 0 && (key == "defaultTTL" || key == "maxTTL")) {
		return 0, fmt.Errorf("tokenrevoke: %s: %q must be positive", key, v)
	}
	return d, nil
}

func parseNATS(c *NATSConfig) (*natsSettings, error) {
	n := &natsSettings{
		subject:   strings.TrimSpace(c.Subject),
		name:      strings.TrimSpace(c.Name),
		token:     c.Token,
		user:      c.User,
		password:  c.Password,
		nkeySeed:  strings.TrimSpace(c.NKeySeed),
		credsFile: strings.TrimSpace(c.CredsFile),
		tls:       c.TLS,
		stream:    strings.TrimSpace(c.Stream),
		replicas:  c.Replicas,
	}
	for i, srv := range c.Servers {
		srv = strings.TrimSpace(srv)
		if srv == "" {
			continue
		}
		u := srv
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			return nil, fmt.Errorf("tokenrevoke: nats.servers[%d]: not a NATS URL", i)
		}
		switch p.Scheme {
		case "nats", "tls":
		default:
			return nil, fmt.Errorf("tokenrevoke: nats.servers[%d]: scheme %q is not nats:// or tls://", i, p.Scheme)
		}
		n.servers = append(n.servers, u)
	}
	if len(n.servers) == 0 {
		return nil, errors.New("tokenrevoke: nats.servers: at least one server URL is required when nats is set")
	}
	if n.subject == "" {
		n.subject = defaultSubject
	}
	if strings.ContainsAny(n.subject, " \t\r\n*>") || strings.HasPrefix(n.subject, ".") ||
		strings.HasSuffix(n.subject, ".") || strings.Contains(n.subject, "..") {
		return nil, fmt.Errorf("tokenrevoke: nats.subject: %q is not a valid subject prefix (no wildcards, spaces or empty tokens)", n.subject)
	}
	if n.name == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "gateway"
		}
		n.name = host + "-" + strconv.Itoa(os.Getpid())
	}
	auth := 0
	if n.token != "" {
		auth++
	}
	if n.user != "" || n.password != "" {
		if n.user == "" {
			return nil, errors.New("tokenrevoke: nats.user: is required with nats.password")
		}
		auth++
	}
	if n.nkeySeed != "" {
		auth++
	}
	if n.credsFile != "" {
		auth++
	}
	if auth > 1 {
		return nil, errors.New("tokenrevoke: nats: set only one of token, user+password, nkeySeed, credsFile")
	}
	if n.stream != "" && strings.ContainsAny(n.stream, " \t.*>/\\") {
		return nil, fmt.Errorf("tokenrevoke: nats.stream: %q is not a valid stream name", n.stream)
	}
	if n.replicas == 0 {
		n.replicas = defaultReplicas
	}
	if n.replicas < 1 || n.replicas > 5 {
		return nil, fmt.Errorf("tokenrevoke: nats.replicas: must be 1 to 5, got %d", n.replicas)
	}
	switch {
	case c.SnapshotEvery == 0:
		n.snapshotEvery = defaultSnapshotEvery
	case c.SnapshotEvery == -1:
		n.snapshotEvery = 0
	case c.SnapshotEvery < 0:
		return nil, fmt.Errorf("tokenrevoke: nats.snapshotEvery: must be a positive number of messages, 0 (default) or -1 (off), got %d", c.SnapshotEvery)
	default:
		n.snapshotEvery = uint64(c.SnapshotEvery)
	}
	signer, err := parseSigning(c.Signing)
	if err != nil {
		return nil, err
	}
	n.signer = signer
	return n, nil
}

// key identifies a distinct NATS configuration: middlewares with equal keys share one
// connection, subscription and store in the Traefik process.
func (n *natsSettings) key() string {
	servers := append([]string(nil), n.servers...)
	sort.Strings(servers)
	parts := []string{
		strings.Join(servers, ","), n.subject, n.name, n.stream, strconv.Itoa(n.replicas),
		strconv.FormatUint(n.snapshotEvery, 10),
		n.token, n.user, n.password, n.nkeySeed, n.credsFile,
	}
	if n.tls != nil {
		parts = append(parts, n.tls.CA, n.tls.Cert, n.tls.Key, strconv.FormatBool(n.tls.InsecureSkipVerify))
	}
	if n.signer != nil {
		parts = append(parts, "signing", n.signer.fingerprint)
	}
	// Hash so that secrets inside the key never sit in a map key that could be printed.
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])
}
