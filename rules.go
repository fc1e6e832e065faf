package tokenrevoke

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"time"
)

// Session and subject rules (OpenID Connect Back-Channel Logout).
//
// A rule says "the tokens of issuer I whose session (sid) is S, or whose subject (sub) is
// U, issued at or before the cutoff T, are revoked". It is known by the SHA-256 of
// iss + "\x00" + sid (or sub), so a sid or sub value is never held or sent in clear, and
// it lasts until T plus the longest token lifetime (no token it denies can be alive
// later). A later rule for the same key moves the cutoff forward; an earlier one changes
// nothing, so rules from several publishers, in any order, end in the same state.
//
// Rules live in the token cache's lock (tokenCache.mu), so that adding one and
// forgetting the memory of passing tokens (which could hold a token the rule now
// denies) are one step. Each kind has a map keyed by the digest; expiry buckets, as for
// tokens, let the janitor drop expired rules without scanning them all, and a full set
// drops the rule that expires first.

// Rule kinds.
const (
	ruleSID = uint8(1) // a session: sid
	ruleSub = uint8(2) // a subject: sub (all of its sessions)
)

// Wire kinds of rules.
const (
	kindSID = "sid"
	kindSub = "sub"
)

// ruleEntry is one rule: tokens issued at or before cutoff are revoked, until exp.
type ruleEntry struct {
	cutoff int64
	exp    int64
}

// ruleRef names a rule in an expiry bucket (buckets may hold stale refs).
type ruleRef struct {
	key  [32]byte
	kind uint8
}

// ruleMap holds the rules of one kind: cutoffs and expiries in two maps of int64 (under
// yaegi v0.16.1 a probe of a map with struct values measured about 10 µs, one with int64
// values well under one).
type ruleMap struct {
	cut map[[32]byte]int64
	exp map[[32]byte]int64
}

func newRuleMap() ruleMap {
	return ruleMap{cut: make(map[[32]byte]int64), exp: make(map[[32]byte]int64)}
}

func (m ruleMap) get(key [32]byte) (ruleEntry, bool) {
	cut, ok := m.cut[key]
	if !ok {
		return ruleEntry{}, false
	}
	return ruleEntry{cutoff: cut, exp: m.exp[key]}, true
}

func (m ruleMap) set(key [32]byte, e ruleEntry) {
	m.cut[key] = e.cutoff
	m.exp[key] = e.exp
}

func (m ruleMap) del(key [32]byte) {
	delete(m.cut, key)
	delete(m.exp, key)
}

// ruleSet holds the rules; guarded by tokenCache.mu except count, which the request path
// reads atomically to skip the whole check while no rule is held.
type ruleSet struct {
	sids      ruleMap
	subs      ruleMap
	buckets   map[int64][]ruleRef
	bucketIDs []int64 // ascending
	count     int64   // len(sids) + len(subs); atomic
	max       int
	evictions int64 // live rules dropped because the set was full
	expired   int64
	// gen changes whenever a rule is added or its cutoff moves: the slow path reads it
	// before checking a token and remembers the token as passing only if it is unchanged.
	gen uint64
}

func newRuleSet(max int) *ruleSet {
	return &ruleSet{
		sids:    newRuleMap(),
		subs:    newRuleMap(),
		buckets: make(map[int64][]ruleRef),
		max:     max,
	}
}

// ruleKey is the digest a session or subject rule is known by.
func ruleKey(iss, value string) [32]byte {
	return sha256.Sum256([]byte(iss + "\x00" + value))
}

func (r *ruleSet) mapOf(kind uint8) ruleMap {
	if kind == ruleSub {
		return r.subs
	}
	return r.sids
}

// ruleGeneration returns the rule set's generation (see ruleSet.gen).
func (c *tokenCache) ruleGeneration() uint64 {
	return atomic.LoadUint64(&c.rules.gen)
}

// ruleCount returns the number of rules held (expired ones not swept yet included).
func (c *tokenCache) ruleCount() int {
	return int(atomic.LoadInt64(&c.rules.count))
}

// addRule records a rule of kind for key with the given cutoff, kept until exp. It
// returns whether the set holds the key afterwards and the cutoff it holds (the later of
// the two when the key was already held).
func (c *tokenCache) addRule(kind uint8, key [32]byte, cutoff, exp, now int64) (bool, int64) {
	if exp <= now {
		return false, 0
	}
	c.mu.Lock()
	r := c.rules
	m := r.mapOf(kind)
	old, held := m.get(key)
	if held && old.exp <= now {
		held = false
	}
	if held {
		e := old
		if cutoff > e.cutoff {
			e.cutoff = cutoff
		}
		if exp > e.exp {
			e.exp = exp
		}
		if e != old {
			m.set(key, e)
			if bucketOf(e.exp) != bucketOf(old.exp) {
				r.addToBucketLocked(key, kind, e.exp)
			}
			if e.cutoff != old.cutoff {
				atomic.AddUint64(&r.gen, 1)
				c.forgetAllLocked()
			}
		}
		c.mu.Unlock()
		return true, e.cutoff
	}
	if _, present := m.cut[key]; !present {
		// (present: an expired rule not swept yet, already counted)
		for int(r.count) >= r.max {
			if !r.evictEarliestLocked(now) {
				break
			}
		}
		atomic.AddInt64(&r.count, 1)
	}
	m.set(key, ruleEntry{cutoff: cutoff, exp: exp})
	r.addToBucketLocked(key, kind, exp)
	atomic.AddUint64(&r.gen, 1)
	c.forgetAllLocked()
	c.mu.Unlock()
	return true, cutoff
}

func (r *ruleSet) addToBucketLocked(key [32]byte, kind uint8, exp int64) {
	b := bucketOf(exp)
	refs, ok := r.buckets[b]
	if !ok {
		r.bucketIDs = insertBucketID(r.bucketIDs, b)
	}
	r.buckets[b] = append(refs, ruleRef{key: key, kind: kind})
}

// liveInBucketLocked reports whether ref names a held rule whose expiry is in bucket b.
func (r *ruleSet) liveInBucketLocked(ref ruleRef, b int64) bool {
	exp, ok := r.mapOf(ref.kind).exp[ref.key]
	return ok && bucketOf(exp) == b
}

func (r *ruleSet) removeLocked(ref ruleRef) {
	r.mapOf(ref.kind).del(ref.key)
	atomic.AddInt64(&r.count, -1)
}

// sweepLocked drops the rules of every bucket whose whole range has expired.
func (r *ruleSet) sweepLocked(now int64) {
	for len(r.bucketIDs) > 0 && r.bucketIDs[0]*expiryBucket <= now {
		b := r.bucketIDs[0]
		for _, ref := range r.buckets[b] {
			if r.liveInBucketLocked(ref, b) {
				r.removeLocked(ref)
				r.expired++
			}
		}
		delete(r.buckets, b)
		r.bucketIDs = r.bucketIDs[1:]
	}
}

// evictEarliestLocked drops the rule that expires first (counted as an eviction when it
// was still alive). It reports false when there was none.
func (r *ruleSet) evictEarliestLocked(now int64) bool {
	for len(r.bucketIDs) > 0 {
		b := r.bucketIDs[0]
		refs := r.buckets[b]
		for i, ref := range refs {
			if !r.liveInBucketLocked(ref, b) {
				continue
			}
			e, _ := r.mapOf(ref.kind).get(ref.key)
			r.removeLocked(ref)
			if e.exp > now {
				r.evictions++
			} else {
				r.expired++
			}
			r.buckets[b] = refs[i+1:]
			return true
		}
		delete(r.buckets, b)
		r.bucketIDs = r.bucketIDs[1:]
	}
	return false
}

// ruleOf returns the cutoff and expiry held for a rule of kind for key, live at now.
func (c *tokenCache) ruleOf(kind uint8, key [32]byte, now int64) (int64, int64, bool) {
	c.mu.RLock()
	e, held := c.rules.mapOf(kind).get(key)
	c.mu.RUnlock()
	if !held || e.exp <= now {
		return 0, 0, false
	}
	return e.cutoff, e.exp, true
}

// ruleStats returns rules held, and live rules evicted because the set was full.
func (c *tokenCache) ruleStats() (held int, evictions int64) {
	c.mu.RLock()
	held = int(c.rules.count)
	evictions = c.rules.evictions
	c.mu.RUnlock()
	return held, evictions
}

// copyRules copies every live rule (for a snapshot), under the read lock: requests are
// not held up, only revocations wait.
func (c *tokenCache) copyRules(now int64) (keys [][32]byte, kinds []uint8, cutoffs, exps []int64) {
	c.mu.RLock()
	n := int(c.rules.count)
	keys = make([][32]byte, 0, n)
	kinds = make([]uint8, 0, n)
	cutoffs = make([]int64, 0, n)
	exps = make([]int64, 0, n)
	for k, exp := range c.rules.sids.exp {
		if exp > now {
			keys = append(keys, k)
			kinds = append(kinds, ruleSID)
			cutoffs = append(cutoffs, c.rules.sids.cut[k])
			exps = append(exps, exp)
		}
	}
	for k, exp := range c.rules.subs.exp {
		if exp > now {
			keys = append(keys, k)
			kinds = append(kinds, ruleSub)
			cutoffs = append(cutoffs, c.rules.subs.cut[k])
			exps = append(exps, exp)
		}
	}
	c.mu.RUnlock()
	return keys, kinds, cutoffs, exps
}

// ruleClaims are the claims of a JWT that rules are matched on. An iat that is missing,
// null, not a number or out of float64's range is left 0, before every cutoff: a token
// of a session or subject with a rule and no readable iat counts as revoked.
type ruleClaims struct {
	Iss string  `json:"iss"`
	Sid string  `json:"sid"`
	Sub string  `json:"sub"`
	Iat float64 `json:"iat"`
}

// ruleRevoked reports whether a live rule denies tok: a JWS-shaped token (starting with
// 'e' and holding at least two dots; a verifier that keeps the first three parts reads
// the same claims) whose payload names an issuer and a session or subject held by a
// rule, and whose iat is at or before the rule's cutoff or missing. The claims are read
// without checking the signature: a rule only ever denies, so a forged token can at
// worst deny itself. Payload segments an issuer did not produce (not base64url, not a
// JSON object) match no rule: no verifier accepts them, since the signature covers the
// segment exactly as issued.
//
// It runs for every token the slow path has not seen pass before (checkOne calls it
// only while rules are held), so it is written flat for the interpreter: under yaegi
// every stdlib call costs 0.5-4 µs whatever it does, so it makes as few as it can
// (two to find the payload, one to decode it, one to read its claims, one hash per
// claim present and one read lock for all probes).
func (m *Middleware) ruleRevoked(tok string, now int64) bool {
	if len(tok) == 0 || tok[0] != 'e' {
		return false
	}
	i := strings.IndexByte(tok, '.')
	if i < 0 {
		return false
	}
	seg := tok[i+1:]
	j := strings.IndexByte(seg, '.')
	if j < 0 {
		return false
	}
	seg = seg[:j]
	if j > 0 && seg[j-1] == '=' {
		seg = strings.TrimRight(seg, "=")
	}
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || len(raw) < 2 || raw[0] != '{' {
		return false
	}
	var cl ruleClaims
	if err := json.Unmarshal(raw, &cl); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return false
		}
	}
	if cl.Iss == "" || cl.Sid == "" && cl.Sub == "" {
		return false
	}
	var sidKey, subKey [32]byte
	if cl.Sid != "" {
		sidKey = sha256.Sum256([]byte(cl.Iss + "\x00" + cl.Sid))
	}
	if cl.Sub != "" {
		subKey = sha256.Sum256([]byte(cl.Iss + "\x00" + cl.Sub))
	}
	r := m.cache.rules
	m.rlock.Lock()
	sidCut, sidHeld := r.sids.cut[sidKey]
	sidExp := r.sids.exp[sidKey]
	subCut, subHeld := r.subs.cut[subKey]
	subExp := r.subs.exp[subKey]
	m.rlock.Unlock()
	if sidHeld && cl.Sid != "" && sidExp > now && cl.Iat <= float64(sidCut) {
		return true
	}
	return subHeld && cl.Sub != "" && subExp > now && cl.Iat <= float64(subCut)
}

// readClaims reads the payload of a JWS-shaped token (starting with 'e', at least two
// dots) without checking anything else.
func readClaims(tok string) (ruleClaims, bool) {
	var cl ruleClaims
	if len(tok) == 0 || tok[0] != 'e' {
		return cl, false
	}
	i := strings.IndexByte(tok, '.')
	if i < 0 {
		return cl, false
	}
	j := strings.IndexByte(tok[i+1:], '.')
	if j < 0 {
		return cl, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(tok[i+1:i+1+j], "="))
	if err != nil || len(raw) < 2 || raw[0] != '{' {
		return cl, false
	}
	if err := json.Unmarshal(raw, &cl); err != nil {
		// A claim of an unexpected type (say a numeric sub) leaves that field empty and
		// the others read; anything else is not a JSON object.
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return cl, false
		}
	}
	return cl, true
}

// capRule bounds a rule received over NATS (or from a snapshot) at arrival, in unix
// seconds (now for core NATS; a stream message's stored time, never later than now):
// its cutoff to arrival + clockSkew, so that a far-future cutoff ends only the tokens
// issued before it arrived (and a later genuine logout, with a later cutoff, still
// moves it on); its expiry to cutoff + maxTokenLifetime + clockSkew, when no token the
// rule denies is alive any more, and to now + maxTTL.
func (n *natsSettings) capRule(cutoff, exp, arrival, now int64) (int64, int64) {
	skew := int64(n.clockSkew / time.Second)
	if arrival <= 0 || arrival > now {
		arrival = now
	}
	if limit := arrival + skew; cutoff > limit {
		cutoff = limit
	}
	if n.maxTokenLifetime > 0 {
		if limit := cutoff + int64(n.maxTokenLifetime/time.Second) + skew; exp > limit {
			exp = limit
		}
	}
	return cutoff, capExpiry(exp, now, n.maxTTL)
}
