package tokenrevoke

import (
	"sort"
	"sync"
	"time"
)

// Why this design (measured under yaegi v0.16.1, see BENCHMARKS.md):
//
//   - golang-lru/v2 cannot run in Traefik at all (generic recursive types), and
//     golang-lru v1 costs ~16 µs per lookup interpreted: its Contains/Get are
//     interpreted code.
//   - A Go map lookup is a single interpreted operation that runs the compiled map code,
//     so the hot path (a token that is NOT revoked) is one RLock/RUnlock pair around
//     one map read, with nothing else interpreted.
//   - Keys are the raw 32-byte SHA-256 arrays, so the path needs no hex encoding or
//     string conversion, and the map holds no pointers: the garbage collector never
//     scans it, however many entries there are.
//   - The LRU list and the expiry data live in parallel slices indexed by slot number
//     (int32), not in per-entry structs linked by pointers: no allocation per entry,
//     no self-referential interpreted types (which yaegi handles poorly), ~100 bytes
//     per entry.
//   - Expiry is indexed by one-minute buckets (bucket -> slots), so expired entries are
//     found without scanning the whole cache: removal is amortised O(1) per entry.
//   - Every entry has an origin: the client that revoked it at a gateway's endpoint, or
//     the publisher of a NATS message without a client. Each origin has its own LRU
//     list, and a full cache evicts from the origin holding the most entries. RFC 7009
//     answers 200 to junk, so an authenticated client could otherwise flush everyone
//     else's revocations with its own: this way a flood evicts the flooder's entries
//     first, and evicts another origin's only while that origin holds more.

// expiryBucket is the width, in seconds, of one expiry bucket.
const expiryBucket = 60

// nilSlot marks the end of the LRU list.
const nilSlot = int32(-1)

// coldSlot, in prev and next, marks an entry bulk-loaded by loadCold that has not been
// used since: it is in no list, and counts as older than every listed entry.
const coldSlot = int32(-2)

// coldLoadMax is the most entries one loadCold call adds in bulk; a larger batch falls
// back to addBatch.
const coldLoadMax = 16384

// maxOrigins bounds the origins told apart; later ones share origin 0 ("").
const maxOrigins = 1024

// tokenCache is the bounded set of revoked token hashes, each with an expiry (unix
// seconds) and an origin. It evicts expired entries first, then the least recently used
// entry of the origin holding the most.
type tokenCache struct {
	mu    sync.RWMutex
	index map[[32]byte]int32

	// Per-slot data.
	keys    [][32]byte
	exps    []int64
	prev    []int32
	next    []int32
	origins []uint16

	// Per-origin data, indexed by origin id (0 is the unnamed origin "").
	originIDs   map[string]uint16
	originNames []string
	heads       []int32 // most recently used slot of each origin's list
	tails       []int32 // least recently used
	counts      []int   // entries held
	colds       []int   // cold entries held (in no list)
	coldScans   []int   // no cold slot of the origin below this

	free     []int32
	count    int
	capacity int

	buckets   map[int64][]int32 // expiry bucket -> slots (may hold stale slots)
	bucketIDs []int64           // keys of buckets, ascending

	// legacy is set once a version-1 wire message was applied: its key is the SHA-256
	// of the exact token even for a JWS, so JWS and JWE tokens are then also looked up
	// by their exact string. Read under mu (the request path reads it with the index).
	legacy bool

	// passing holds the SHA-256 of bearer tokens that the slow path read and found
	// valid (RFC 6750 characters, length), looked up by a single key, and not revoked:
	// the request path passes them with one hash and one probe. spellings maps each
	// such key to the one token digest remembered for it, so that a revocation of the
	// key forgets the token at once (forgetLocked). Digests only, at most maxPassing;
	// both are emptied when full, and when the keying rules change (legacy); passing is
	// never replaced (the request path holds it). Read under mu.
	passing   map[[32]byte]bool
	spellings map[[32]byte][32]byte

	// rules are the session and subject rules (rules.go), at most capacity of them.
	rules *ruleSet

	evictions   int64 // unexpired entries dropped because the cache was full
	expired     int64 // entries dropped because their token expired
	unwarned    int64 // evictions not yet reported in a log line
	lastWarning time.Time
	log         *logger
}

func init() {
	coldTemplate = make([]int32, coldLoadMax)
	for i := range coldTemplate {
		coldTemplate[i] = coldSlot
	}
}

func newTokenCache(capacity int, log *logger) *tokenCache {
	c := &tokenCache{
		index:     make(map[[32]byte]int32),
		passing:   make(map[[32]byte]bool),
		spellings: make(map[[32]byte][32]byte),
		originIDs: make(map[string]uint16),
		capacity:  capacity,
		buckets:   make(map[int64][]int32),
		rules:     newRuleSet(capacity),
		log:       log,
	}
	c.originLocked("")
	return c
}

// originRank orders origins by trust, for a key revoked by several: a local client
// (or "") 2, a signing key's origin ("@<kid>") 1, "@unsigned" 0. A held entry moves to
// the origin revoking it again only if that one ranks higher, so a forged message that
// got a key in first cannot keep a local revocation of it in the flooded origin.
func originRank(name string) int {
	if len(name) == 0 || name[0] != '@' {
		return 2
	}
	if name == originUnsigned {
		return 0
	}
	return 1
}

// originLocked returns the id of origin name, registering it on first use.
func (c *tokenCache) originLocked(name string) uint16 {
	if id, ok := c.originIDs[name]; ok {
		return id
	}
	if len(c.originNames) >= maxOrigins {
		return 0
	}
	id := uint16(len(c.originNames))
	c.originIDs[name] = id
	c.originNames = append(c.originNames, name)
	c.heads = append(c.heads, nilSlot)
	c.tails = append(c.tails, nilSlot)
	c.counts = append(c.counts, 0)
	c.colds = append(c.colds, 0)
	c.coldScans = append(c.coldScans, 0)
	return id
}

// hasLegacy reports whether a version-1 message was ever applied (see legacy).
func (c *tokenCache) hasLegacy() bool {
	c.mu.RLock()
	l := c.legacy
	c.mu.RUnlock()
	return l
}

// setLegacy records that a version-1 message was applied.
// JWTs validated before then were remembered with their JWS key alone, so the memory
// of validated tokens is dropped.
func (c *tokenCache) setLegacy() {
	c.mu.Lock()
	c.legacy = true
	c.forgetAllLocked()
	c.mu.Unlock()
}

// forgetAllLocked empties the memory of passing tokens. passing is emptied in place
// (the request path holds the map); at most maxPassing deletions, once per maxPassing
// new tokens.
func (c *tokenCache) forgetAllLocked() {
	if len(c.spellings) == 0 && len(c.passing) == 0 {
		return
	}
	for k := range c.passing {
		delete(c.passing, k)
	}
	c.spellings = make(map[[32]byte][32]byte)
}

// isPassing reports whether the token whose SHA-256 is full is remembered as passing.
func (c *tokenCache) isPassing(full [32]byte) bool {
	c.mu.RLock()
	p := c.passing[full]
	c.mu.RUnlock()
	return p
}

// maxPassing bounds the memory of passing tokens (about 150 bytes each).
const maxPassing = 1 << 15

// rememberPassing records that the token whose SHA-256 is full is valid and decided by
// key alone, unless key is revoked now (the check and the insert share the lock with
// every add, so a revocation either comes first and is seen here, or comes after and
// forgets the token). A JWS is not remembered once a version-1 message was applied
// (its exact string must be checked too).
//
// gen is the rule generation (ruleSet.gen) read before the token was checked; rules
// change it under the same lock, so a rule that came after the check is seen here.
func (c *tokenCache) rememberPassing(full, key [32]byte, jws bool, gen uint64) {
	c.mu.Lock()
	if _, revoked := c.index[key]; !revoked && !(jws && c.legacy) && c.rules.gen == gen {
		if len(c.passing) >= maxPassing {
			c.forgetAllLocked()
		}
		if old, ok := c.spellings[key]; ok {
			delete(c.passing, old)
		}
		c.spellings[key] = full
		c.passing[full] = true
	}
	c.mu.Unlock()
}

// forgetLocked drops the passing token remembered for key, which is being revoked.
func (c *tokenCache) forgetLocked(key [32]byte) {
	if full, ok := c.spellings[key]; ok {
		delete(c.passing, full)
		delete(c.spellings, key)
	}
}

// len returns the number of entries held, expired or not.
func (c *tokenCache) len() int {
	c.mu.RLock()
	n := c.count
	c.mu.RUnlock()
	return n
}

// contains reports whether key is held and unexpired at now; a hit counts as a use.
func (c *tokenCache) contains(key [32]byte, now int64) bool {
	c.mu.RLock()
	_, ok := c.index[key]
	c.mu.RUnlock()
	if !ok {
		return false
	}
	return c.hit(key, now)
}

// hit is the slow half of a lookup, taken only when the read-locked probe found the key:
// it drops the entry if it has expired, otherwise marks it most recently used.
func (c *tokenCache) hit(key [32]byte, now int64) bool {
	c.mu.Lock()
	slot, ok := c.index[key]
	if !ok {
		c.mu.Unlock()
		return false
	}
	if c.exps[slot] <= now {
		c.removeLocked(slot)
		c.expired++
		c.mu.Unlock()
		return false
	}
	c.moveToFrontLocked(slot)
	c.mu.Unlock()
	return true
}

// add records key as revoked until exp (unix seconds). A key already held keeps the
// later of the two expiries. It reports whether the cache now holds the key.
func (c *tokenCache) add(key [32]byte, exp int64, now int64) bool {
	if exp <= now {
		return false
	}
	c.mu.Lock()
	c.addLocked(key, exp, now, 0)
	c.mu.Unlock()
	return true
}

// addFrom is add for an entry of the named origin (see tokenCache).
func (c *tokenCache) addFrom(key [32]byte, exp int64, now int64, origin string) bool {
	if exp <= now {
		return false
	}
	c.mu.Lock()
	c.addLocked(key, exp, now, c.originLocked(origin))
	c.mu.Unlock()
	return true
}

// addBatch adds many entries under one lock (a JetStream replay delivers them by the
// thousand); entries already expired at now are skipped. It returns how many it added.
// The insertion of a new key is written out in the loop (the same steps as addLocked):
// under yaegi a call per entry would cost a frame allocation per entry. origins names
// each entry's origin; nil means origin "" for all. No expiry is kept beyond limit
// (now + maxTTL; 0: no limit).
func (c *tokenCache) addBatch(keys [][32]byte, exps []int64, origins []string, now, limit int64) int {
	n := 0
	c.mu.Lock()
	var o uint16
	last := ""
	forget := len(c.spellings) > 0
	for i := 0; i < len(keys); i++ {
		exp := exps[i]
		if exp <= now {
			continue
		}
		if limit > 0 && exp > limit {
			exp = limit
		}
		n++
		key := keys[i]
		if origins != nil {
			if origins[i] != last {
				// Consecutive entries mostly share their origin: a string comparison
				// instead of a call per entry.
				last = origins[i]
				o = c.originLocked(last)
			}
		}
		if _, held := c.index[key]; held || c.count >= c.capacity || len(c.free) > 0 || len(c.keys) == cap(c.keys) ||
			(len(c.bucketIDs) > 0 && c.bucketIDs[0]*expiryBucket <= now) {
			c.addLocked(key, exp, now, o)
			continue
		}
		if forget {
			c.forgetLocked(key)
		}
		slot := int32(len(c.keys))
		head := c.heads[o]
		c.keys = append(c.keys, key)
		c.exps = append(c.exps, exp)
		c.prev = append(c.prev, nilSlot)
		c.next = append(c.next, head)
		c.origins = append(c.origins, o)
		c.index[key] = slot
		c.count++
		c.counts[o]++
		if head != nilSlot {
			c.prev[head] = slot
		} else {
			c.tails[o] = slot
		}
		c.heads[o] = slot
		b := (exp + expiryBucket - 1) / expiryBucket
		slots, ok := c.buckets[b]
		if !ok {
			c.newBucketLocked(b)
		}
		c.buckets[b] = append(slots, slot)
	}
	c.mu.Unlock()
	return n
}

// addLocked inserts one live entry. It runs once per revocation, a million times in a
// large replay, so the common case (a new key, room left) is written out flat: under
// yaegi every extra call costs a frame allocation.
func (c *tokenCache) addLocked(key [32]byte, exp int64, now int64, o uint16) {
	if slot, ok := c.index[key]; ok {
		if exp > c.exps[slot] {
			c.exps[slot] = exp
			c.addToBucketLocked(slot, exp)
		}
		if o != c.origins[slot] && originRank(c.originNames[o]) > originRank(c.originNames[c.origins[slot]]) {
			// Revoked again by a more trusted origin (see originRank): the entry is
			// that origin's now, so a flood of the first one cannot evict it.
			c.unlinkLocked(slot)
			c.counts[c.origins[slot]]--
			c.origins[slot] = o
			c.counts[o]++
			c.pushFrontLocked(slot)
			return
		}
		c.moveToFrontLocked(slot)
		return
	}
	if len(c.spellings) > 0 {
		c.forgetLocked(key)
	}
	if len(c.bucketIDs) > 0 && c.bucketIDs[0]*expiryBucket <= now {
		c.expireLocked(now)
	}
	if c.count >= c.capacity {
		c.makeRoomLocked(now, o)
	}
	var slot int32
	if n := len(c.free); n > 0 {
		slot = c.free[n-1]
		c.free = c.free[:n-1]
		c.keys[slot] = key
		c.exps[slot] = exp
		c.origins[slot] = o
	} else {
		if len(c.keys) == cap(c.keys) {
			c.growLocked()
		}
		slot = int32(len(c.keys))
		c.keys = append(c.keys, key)
		c.exps = append(c.exps, exp)
		c.prev = append(c.prev, nilSlot)
		c.next = append(c.next, nilSlot)
		c.origins = append(c.origins, o)
	}
	c.index[key] = slot
	c.count++
	c.counts[o]++
	// Push to the front of the origin's LRU list.
	head := c.heads[o]
	c.prev[slot] = nilSlot
	c.next[slot] = head
	if head != nilSlot {
		c.prev[head] = slot
	} else {
		c.tails[o] = slot
	}
	c.heads[o] = slot
	// Index by expiry bucket.
	b := (exp + expiryBucket - 1) / expiryBucket
	slots, ok := c.buckets[b]
	if !ok {
		c.newBucketLocked(b)
	}
	c.buckets[b] = append(slots, slot)
}

// oldestColdLocked returns the lowest-numbered cold slot of origin o (the first
// loaded), or nilSlot. The scan only moves forward, so finding victims costs O(1)
// amortised per origin.
func (c *tokenCache) oldestColdLocked(o uint16) int32 {
	if c.colds[o] == 0 {
		return nilSlot
	}
	for i := c.coldScans[o]; i < len(c.prev); i++ {
		if c.prev[i] == coldSlot && c.origins[i] == o {
			c.coldScans[o] = i
			return int32(i)
		}
	}
	c.coldScans[o] = len(c.prev)
	return nilSlot
}

// coldTemplate is a run of coldSlot marks copied into prev and next by loadCold, and
// zeroOrigins a run of origin 0 copied into origins.
var (
	coldTemplate []int32
	zeroOrigins  = make([]uint16, coldLoadMax)
)

// loadCold adds a batch of entries whose use is unknown (a gateway starting from a copy
// of another's entries): the bulk version of addBatch for a cache that holds nothing but
// what earlier loadCold calls of the same load added (count equals loaded). Batches of
// up to coldLoadMax entries are loaded in bulk: keys and expiries are appended with two
// compiled copies and left out of the LRU list (marked cold), so each entry costs one
// map store and, when its expiry bucket differs from the previous entry's, one bucket
// lookup: about a third of addBatch under the interpreter. Entries already expired are
// skipped; expiries beyond limit (now + maxTTL; 0: maxExpiry) are capped to it. loaded is what the previous call returned
// (0 for the first batch): the cache's entry count, or -1 once a call had to fall back to
// addBatch (the cache then holds other entries, or is full, or the batch was too large),
// after which every call does. Entry i's origin is names[origins[i]] (origins nil: all
// origin "").
func (c *tokenCache) loadCold(keys [][32]byte, exps []int64, origins []uint16, names []string, now, limit int64, loaded int) int {
	n := len(keys)
	if limit <= 0 || limit > maxExpiry {
		limit = maxExpiry
	}
	c.mu.Lock()
	if c.count != loaded || c.count+n > c.capacity || n > len(coldTemplate) {
		c.mu.Unlock()
		for i := range exps {
			if exps[i] > maxExpiry {
				exps[i] = maxExpiry
			}
		}
		var perEntry []string
		if origins != nil {
			perEntry = make([]string, n)
			for i := range perEntry {
				if int(origins[i]) < len(names) {
					perEntry[i] = names[origins[i]]
				}
			}
		}
		c.addBatch(keys, exps, perEntry, now, limit)
		return -1
	}
	// Every possible id has a place (ids beyond names are origin 0), so a malformed
	// chunk cannot index out of range.
	ids := make([]uint16, 1<<16)
	for i, name := range names {
		if i < len(ids) {
			ids[i] = c.originLocked(name)
		}
	}
	base := len(c.keys)
	if need := base + n; need > cap(c.keys) {
		size := 2 * cap(c.keys)
		if size < need {
			size = need
		}
		if size > c.capacity && c.capacity >= need {
			size = c.capacity
		}
		c.growToLocked(size)
	}
	c.keys = append(c.keys, keys...)
	c.exps = append(c.exps, exps...)
	c.prev = append(c.prev, coldTemplate[:n]...)
	c.next = append(c.next, coldTemplate[:n]...)
	c.origins = append(c.origins, zeroOrigins[:n]...)
	before := len(c.index)
	// Per-origin bookkeeping is kept out of the per-entry loop where it can be: the
	// scan start of every origin the chunk names, and the cold counts (from the change
	// in each origin's count).
	countsBefore := append([]int(nil), c.counts...)
	if origins == nil {
		if c.colds[0] == 0 || c.coldScans[0] > base {
			c.coldScans[0] = base
		}
	}
	for i := range names {
		if o := ids[i]; c.colds[o] == 0 || c.coldScans[o] > base {
			c.coldScans[o] = base
		}
	}
	added := 0
	lastB := int64(-1)
	var run []int32
	slot := int32(base)
	for i := 0; i < n; i++ {
		exp := exps[i]
		if exp > limit {
			exp = limit
			c.exps[slot] = exp
		}
		if exp <= now {
			c.prev[slot] = nilSlot
			c.next[slot] = nilSlot
			c.exps[slot] = 0
			c.free = append(c.free, slot)
			slot++
			continue
		}
		if origins != nil {
			o := ids[origins[i]]
			c.origins[slot] = o
			c.counts[o]++
		}
		c.index[keys[i]] = slot
		added++
		if b := (exp + expiryBucket - 1) / expiryBucket; b != lastB {
			if lastB >= 0 {
				c.buckets[lastB] = run
			}
			existing, ok := c.buckets[b]
			if !ok {
				c.newBucketLocked(b)
			}
			run = existing
			lastB = b
		}
		run = append(run, slot)
		slot++
	}
	if lastB >= 0 {
		c.buckets[lastB] = run
	}
	c.count += added
	if origins == nil {
		c.counts[0] += added
	}
	for o := range c.counts {
		if o < len(countsBefore) {
			c.colds[o] += c.counts[o] - countsBefore[o]
		} else {
			c.colds[o] += c.counts[o]
		}
	}
	if len(c.spellings) > 0 { // only a load while requests were served has any
		for i := range keys {
			c.forgetLocked(keys[i])
		}
	}
	if len(c.index) != before+added {
		c.dropColdDuplicatesLocked(base, n)
	}
	count := c.count
	c.mu.Unlock()
	return count
}

// dropColdDuplicatesLocked repairs a batch that repeated a key (only malformed input
// does): the index points at the key's last slot, so every other slot of the batch
// holding the same key is freed.
func (c *tokenCache) dropColdDuplicatesLocked(base, n int) {
	for slot := int32(base); slot < int32(base+n); slot++ {
		if c.prev[slot] != coldSlot {
			continue
		}
		if cur, ok := c.index[c.keys[slot]]; !ok || cur != slot {
			o := c.origins[slot]
			c.prev[slot] = nilSlot
			c.next[slot] = nilSlot
			c.exps[slot] = 0
			c.free = append(c.free, slot)
			c.count--
			c.counts[o]--
			c.colds[o]--
		}
	}
}

// growLocked doubles the per-slot slices (never beyond capacity). append alone grows
// large slices by only 1.25x, which copies a million-entry cache several times over.
func (c *tokenCache) growLocked() {
	n := 2 * cap(c.keys)
	if n < 1024 {
		n = 1024
	}
	if n > c.capacity && c.capacity >= len(c.keys)+1 {
		n = c.capacity
	}
	c.growToLocked(n)
}

// growToLocked reallocates the per-slot slices with room for n slots.
func (c *tokenCache) growToLocked(n int) {
	keys := make([][32]byte, len(c.keys), n)
	copy(keys, c.keys)
	c.keys = keys
	exps := make([]int64, len(c.exps), n)
	copy(exps, c.exps)
	c.exps = exps
	prev := make([]int32, len(c.prev), n)
	copy(prev, c.prev)
	c.prev = prev
	next := make([]int32, len(c.next), n)
	copy(next, c.next)
	c.next = next
	origins := make([]uint16, len(c.origins), n)
	copy(origins, c.origins)
	c.origins = origins
}

// makeRoomLocked frees one place for an entry of origin o: an expired entry if there is
// one, else the least recently used entry of the heaviest origin (o itself on a tie).
func (c *tokenCache) makeRoomLocked(now int64, o uint16) {
	c.expireEarliestLocked(now)
	for c.count >= c.capacity && c.count > 0 {
		c.evictTailLocked(now, o)
	}
}

// heaviestLocked returns the origin holding the most entries, preferring o on a tie.
func (c *tokenCache) heaviestLocked(o uint16) uint16 {
	best := o
	if int(o) >= len(c.counts) {
		best = 0
	}
	for i, n := range c.counts {
		if n > c.counts[best] {
			best = uint16(i)
		}
	}
	return best
}

// setCapacity changes the most entries held; shrinking evicts at once.
func (c *tokenCache) setCapacity(capacity int, now int64) {
	c.mu.Lock()
	c.capacity = capacity
	c.rules.max = capacity
	for int(c.rules.count) > capacity {
		if !c.rules.evictEarliestLocked(now) {
			break
		}
	}
	if c.count > capacity {
		c.expireLocked(now)
		c.expireEarliestLocked(now)
	}
	for c.count > capacity && c.count > 0 {
		c.evictTailLocked(now, 0)
	}
	c.mu.Unlock()
}

// sweep drops every expired entry in whole buckets that are past; the janitor calls it.
func (c *tokenCache) sweep(now int64) {
	c.mu.Lock()
	c.expireLocked(now)
	c.rules.sweepLocked(now)
	c.mu.Unlock()
}

// copySlots copies up to n slots starting at slot from: keys, expiries and origin ids of
// live entries (expiry 0 for free slots), and the names of all origins (an id indexes
// it). Bulk copies under the read lock: requests are held up for microseconds, not for
// the time the caller then spends on the copy.
func (c *tokenCache) copySlots(from, n int) ([][32]byte, []int64, []uint16, []string) {
	c.mu.RLock()
	if from >= len(c.keys) {
		c.mu.RUnlock()
		return nil, nil, nil, nil
	}
	if from+n > len(c.keys) {
		n = len(c.keys) - from
	}
	keys := make([][32]byte, n)
	copy(keys, c.keys[from:from+n])
	exps := make([]int64, n)
	copy(exps, c.exps[from:from+n])
	origins := make([]uint16, n)
	copy(origins, c.origins[from:from+n])
	names := make([]string, len(c.originNames))
	copy(names, c.originNames)
	c.mu.RUnlock()
	return keys, exps, origins, names
}

// originCounts returns the entries held per origin name (origins holding none left out).
func (c *tokenCache) originCounts() map[string]int {
	c.mu.RLock()
	out := make(map[string]int)
	for i, n := range c.counts {
		if n > 0 {
			out[c.originNames[i]] = n
		}
	}
	c.mu.RUnlock()
	return out
}

// stats returns entries held, unexpired evictions and expiries so far.
func (c *tokenCache) stats() (entries int, evictions, expired int64) {
	c.mu.RLock()
	entries, evictions, expired = c.count, c.evictions, c.expired
	c.mu.RUnlock()
	return entries, evictions, expired
}

// expireLocked removes the entries of every bucket whose whole range has expired.
func (c *tokenCache) expireLocked(now int64) {
	for len(c.bucketIDs) > 0 && c.bucketIDs[0]*expiryBucket <= now {
		b := c.bucketIDs[0]
		for _, slot := range c.buckets[b] {
			if c.liveInBucketLocked(slot, b) && c.exps[slot] <= now {
				c.removeLocked(slot)
				c.expired++
			}
		}
		delete(c.buckets, b)
		c.bucketIDs = c.bucketIDs[1:]
	}
}

// expireEarliestLocked scans the earliest, partly expired bucket, so that a full cache
// drops entries that expired seconds ago before it drops anything still alive.
func (c *tokenCache) expireEarliestLocked(now int64) {
	if len(c.bucketIDs) == 0 {
		return
	}
	b := c.bucketIDs[0]
	if (b-1)*expiryBucket >= now {
		return // nothing in it has expired yet
	}
	slots := c.buckets[b]
	kept := slots[:0]
	for _, slot := range slots {
		if !c.liveInBucketLocked(slot, b) {
			continue
		}
		if c.exps[slot] <= now {
			c.removeLocked(slot)
			c.expired++
			continue
		}
		kept = append(kept, slot)
	}
	c.buckets[b] = kept
}

// liveInBucketLocked reports whether slot holds a live entry that belongs to bucket b
// (buckets keep stale slot numbers after removals and expiry changes).
func (c *tokenCache) liveInBucketLocked(slot int32, b int64) bool {
	cur, ok := c.index[c.keys[slot]]
	return ok && cur == slot && bucketOf(c.exps[slot]) == b
}

func bucketOf(exp int64) int64 {
	return (exp + expiryBucket - 1) / expiryBucket
}

func (c *tokenCache) addToBucketLocked(slot int32, exp int64) {
	b := bucketOf(exp)
	slots, ok := c.buckets[b]
	if !ok {
		c.newBucketLocked(b)
	}
	c.buckets[b] = append(slots, slot)
}

// newBucketLocked inserts bucket id b into the sorted bucketIDs.
func (c *tokenCache) newBucketLocked(b int64) {
	c.bucketIDs = insertBucketID(c.bucketIDs, b)
}

// insertBucketID inserts b into the ascending ids (b is not in it) and returns them.
func insertBucketID(ids []int64, b int64) []int64 {
	i := sort.Search(len(ids), func(j int) bool { return ids[j] >= b })
	ids = append(ids, 0)
	copy(ids[i+1:], ids[i:])
	ids[i] = b
	return ids
}

// evictTailLocked drops the least recently used entry of the heaviest origin (its
// oldest cold entry first), preferring origin o on a tie. It is alive (expired ones were
// dropped first), so its token is accepted again: count it and warn, at most once a
// second, with the number dropped since the last warning (flushEvictionWarning reports
// the rest).
func (c *tokenCache) evictTailLocked(now int64, o uint16) {
	victim := c.heaviestLocked(o)
	slot := c.oldestColdLocked(victim)
	if slot == nilSlot {
		slot = c.tails[victim]
	}
	if c.exps[slot] <= now {
		c.removeLocked(slot)
		c.expired++
		return
	}
	c.removeLocked(slot)
	c.evictions++
	c.unwarned++
	if t := time.Now(); t.Sub(c.lastWarning) >= time.Second {
		c.warnEvictionsLocked(t)
	}
}

// warnEvictionsLocked logs the evictions not reported yet.
func (c *tokenCache) warnEvictionsLocked(t time.Time) {
	c.log.warnf("revoked-token cache is full (cacheSize %d): dropped %d unexpired revoked token(s) since the last warning, %d in all; those tokens are accepted again until they expire, raise cacheSize",
		c.capacity, c.unwarned, c.evictions)
	c.unwarned = 0
	c.lastWarning = t
}

// flushEvictionWarning logs the evictions that the once-a-second limit held back, so
// that the counts in the log always add up to the total. The janitor calls it.
func (c *tokenCache) flushEvictionWarning() {
	c.mu.Lock()
	if c.unwarned > 0 {
		c.warnEvictionsLocked(time.Now())
	}
	c.mu.Unlock()
}

func (c *tokenCache) removeLocked(slot int32) {
	delete(c.index, c.keys[slot])
	c.exps[slot] = 0 // a free slot reads as expired (copySlots)
	c.unlinkLocked(slot)
	c.free = append(c.free, slot)
	c.count--
	c.counts[c.origins[slot]]--
}

func (c *tokenCache) pushFrontLocked(slot int32) {
	o := c.origins[slot]
	head := c.heads[o]
	c.prev[slot] = nilSlot
	c.next[slot] = head
	if head != nilSlot {
		c.prev[head] = slot
	}
	c.heads[o] = slot
	if c.tails[o] == nilSlot {
		c.tails[o] = slot
	}
}

func (c *tokenCache) unlinkLocked(slot int32) {
	o := c.origins[slot]
	p := c.prev[slot]
	n := c.next[slot]
	if p == coldSlot {
		c.prev[slot] = nilSlot
		c.next[slot] = nilSlot
		c.colds[o]--
		return
	}
	if p != nilSlot {
		c.next[p] = n
	} else {
		c.heads[o] = n
	}
	if n != nilSlot {
		c.prev[n] = p
	} else {
		c.tails[o] = p
	}
	c.prev[slot] = nilSlot
	c.next[slot] = nilSlot
}

func (c *tokenCache) moveToFrontLocked(slot int32) {
	if c.heads[c.origins[slot]] == slot {
		return
	}
	c.unlinkLocked(slot)
	c.pushFrontLocked(slot)
}
