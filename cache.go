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

// tokenCache is the bounded set of revoked token hashes, each with an expiry (unix
// seconds). It evicts expired entries first and then the least recently used one.
type tokenCache struct {
	mu    sync.RWMutex
	index map[[32]byte]int32

	// Per-slot data.
	keys [][32]byte
	exps []int64
	prev []int32
	next []int32

	head, tail int32 // most and least recently used slots
	coldScan   int   // no slot below this is cold
	free       []int32
	count      int
	capacity   int

	buckets   map[int64][]int32 // expiry bucket -> slots (may hold stale slots)
	bucketIDs []int64           // keys of buckets, ascending

	// legacy is set once a version-1 wire message was applied: its key is the SHA-256
	// of the exact token even for a JWS, so JWS and JWE tokens are then also looked up
	// by their exact string. Read under mu (the request path reads it with the index).
	legacy bool

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
	return &tokenCache{
		index:    make(map[[32]byte]int32),
		head:     nilSlot,
		tail:     nilSlot,
		capacity: capacity,
		buckets:  make(map[int64][]int32),
		log:      log,
	}
}

// hasLegacy reports whether a version-1 message was ever applied (see legacy).
func (c *tokenCache) hasLegacy() bool {
	c.mu.RLock()
	l := c.legacy
	c.mu.RUnlock()
	return l
}

// setLegacy records that a version-1 message was applied.
func (c *tokenCache) setLegacy() {
	c.mu.Lock()
	c.legacy = true
	c.mu.Unlock()
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
	c.addLocked(key, exp, now)
	c.mu.Unlock()
	return true
}

// addBatch adds many entries under one lock (a JetStream replay delivers them by the
// thousand); entries already expired at now are skipped. It returns how many it added.
// The insertion of a new key is written out in the loop (the same steps as addLocked):
// under yaegi a call per entry would cost a frame allocation per entry.
func (c *tokenCache) addBatch(keys [][32]byte, exps []int64, now int64) int {
	n := 0
	c.mu.Lock()
	for i := 0; i < len(keys); i++ {
		exp := exps[i]
		if exp <= now {
			continue
		}
		n++
		key := keys[i]
		if _, held := c.index[key]; held || c.count >= c.capacity || len(c.free) > 0 || len(c.keys) == cap(c.keys) ||
			(len(c.bucketIDs) > 0 && c.bucketIDs[0]*expiryBucket <= now) {
			c.addLocked(key, exp, now)
			continue
		}
		slot := int32(len(c.keys))
		c.keys = append(c.keys, key)
		c.exps = append(c.exps, exp)
		c.prev = append(c.prev, nilSlot)
		c.next = append(c.next, c.head)
		c.index[key] = slot
		c.count++
		if c.head != nilSlot {
			c.prev[c.head] = slot
		} else {
			c.tail = slot
		}
		c.head = slot
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
func (c *tokenCache) addLocked(key [32]byte, exp int64, now int64) {
	if slot, ok := c.index[key]; ok {
		if exp > c.exps[slot] {
			c.exps[slot] = exp
			c.addToBucketLocked(slot, exp)
		}
		c.moveToFrontLocked(slot)
		return
	}
	if len(c.bucketIDs) > 0 && c.bucketIDs[0]*expiryBucket <= now {
		c.expireLocked(now)
	}
	if c.count >= c.capacity {
		c.makeRoomLocked(now)
	}
	var slot int32
	if n := len(c.free); n > 0 {
		slot = c.free[n-1]
		c.free = c.free[:n-1]
		c.keys[slot] = key
		c.exps[slot] = exp
	} else {
		if len(c.keys) == cap(c.keys) {
			c.growLocked()
		}
		slot = int32(len(c.keys))
		c.keys = append(c.keys, key)
		c.exps = append(c.exps, exp)
		c.prev = append(c.prev, nilSlot)
		c.next = append(c.next, c.head)
	}
	c.index[key] = slot
	c.count++
	// Push to the front of the LRU list.
	c.prev[slot] = nilSlot
	c.next[slot] = c.head
	if c.head != nilSlot {
		c.prev[c.head] = slot
	} else {
		c.tail = slot
	}
	c.head = slot
	// Index by expiry bucket.
	b := (exp + expiryBucket - 1) / expiryBucket
	slots, ok := c.buckets[b]
	if !ok {
		c.newBucketLocked(b)
	}
	c.buckets[b] = append(slots, slot)
}

// oldestColdLocked returns the lowest-numbered cold slot (the first loaded), or nilSlot.
// The scan only moves forward, so finding victims costs O(1) amortised.
func (c *tokenCache) oldestColdLocked() int32 {
	for c.coldScan < len(c.prev) {
		if c.prev[c.coldScan] == coldSlot {
			return int32(c.coldScan)
		}
		c.coldScan++
	}
	return nilSlot
}

// coldTemplate is a run of coldSlot marks copied into prev and next by loadCold.
var coldTemplate []int32

// loadCold adds a batch of entries whose use is unknown (a gateway starting from a copy
// of another's entries): the bulk version of addBatch for a cache that holds nothing but
// what earlier loadCold calls of the same load added (count equals loaded). Batches of
// up to coldLoadMax entries are loaded in bulk: keys and expiries are appended with two
// compiled copies and left out of the LRU list (marked cold), so each entry costs one
// map store and, when its expiry bucket differs from the previous entry's, one bucket
// lookup: about a third of addBatch under the interpreter. Entries already expired, or
// with an expiry beyond maxExpiry, are skipped. loaded is what the previous call returned
// (0 for the first batch): the cache's entry count, or -1 once a call had to fall back to
// addBatch (the cache then holds other entries, or is full, or the batch was too large),
// after which every call does.
func (c *tokenCache) loadCold(keys [][32]byte, exps []int64, now int64, loaded int) int {
	n := len(keys)
	c.mu.Lock()
	if c.count != loaded || c.count+n > c.capacity || n > len(coldTemplate) {
		c.mu.Unlock()
		for i := range exps {
			if exps[i] > maxExpiry {
				exps[i] = maxExpiry
			}
		}
		c.addBatch(keys, exps, now)
		return -1
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
	if base < c.coldScan {
		c.coldScan = base
	}
	before := len(c.index)
	added := 0
	lastB := int64(-1)
	var run []int32
	slot := int32(base)
	for i := 0; i < n; i++ {
		exp := exps[i]
		if exp <= now || exp > maxExpiry {
			c.prev[slot] = nilSlot
			c.next[slot] = nilSlot
			c.exps[slot] = 0
			c.free = append(c.free, slot)
			slot++
			continue
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
			c.prev[slot] = nilSlot
			c.next[slot] = nilSlot
			c.exps[slot] = 0
			c.free = append(c.free, slot)
			c.count--
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
}

// makeRoomLocked frees one place: an expired entry if there is one, else the least
// recently used.
func (c *tokenCache) makeRoomLocked(now int64) {
	c.expireEarliestLocked(now)
	for c.count >= c.capacity && c.count > 0 {
		c.evictTailLocked(now)
	}
}

// setCapacity changes the most entries held; shrinking evicts at once.
func (c *tokenCache) setCapacity(capacity int, now int64) {
	c.mu.Lock()
	c.capacity = capacity
	if c.count > capacity {
		c.expireLocked(now)
		c.expireEarliestLocked(now)
	}
	for c.count > capacity && c.count > 0 {
		c.evictTailLocked(now)
	}
	c.mu.Unlock()
}

// sweep drops every expired entry in whole buckets that are past; the janitor calls it.
func (c *tokenCache) sweep(now int64) {
	c.mu.Lock()
	c.expireLocked(now)
	c.mu.Unlock()
}

// copySlots copies up to n slots starting at slot from: keys and expiries of live
// entries, and expiry 0 for free slots. Two bulk copies under the read lock: requests
// are held up for microseconds, not for the time the caller then spends on the copy.
func (c *tokenCache) copySlots(from, n int) ([][32]byte, []int64) {
	c.mu.RLock()
	if from >= len(c.keys) {
		c.mu.RUnlock()
		return nil, nil
	}
	if from+n > len(c.keys) {
		n = len(c.keys) - from
	}
	keys := make([][32]byte, n)
	copy(keys, c.keys[from:from+n])
	exps := make([]int64, n)
	copy(exps, c.exps[from:from+n])
	c.mu.RUnlock()
	return keys, exps
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
	ids := c.bucketIDs
	i := sort.Search(len(ids), func(j int) bool { return ids[j] >= b })
	c.bucketIDs = append(ids, 0)
	copy(c.bucketIDs[i+1:], c.bucketIDs[i:])
	c.bucketIDs[i] = b
}

// evictTailLocked drops the least recently used entry. It is alive (expired ones were
// dropped first), so its token is accepted again: count it and warn, at most once a
// second, with the number dropped since the last warning.
func (c *tokenCache) evictTailLocked(now int64) {
	slot := c.oldestColdLocked()
	if slot == nilSlot {
		slot = c.tail
	}
	if c.exps[slot] <= now {
		c.removeLocked(slot)
		c.expired++
		return
	}
	c.removeLocked(slot)
	c.evictions++
	c.unwarned++
	t := time.Now()
	if t.Sub(c.lastWarning) >= time.Second {
		c.log.warnf("revoked-token cache is full (cacheSize %d): dropped %d unexpired revoked token(s) since the last warning, %d in all; those tokens are accepted again until they expire, raise cacheSize",
			c.capacity, c.unwarned, c.evictions)
		c.unwarned = 0
		c.lastWarning = t
	}
}

func (c *tokenCache) removeLocked(slot int32) {
	delete(c.index, c.keys[slot])
	c.exps[slot] = 0 // a free slot reads as expired (copySlots)
	c.unlinkLocked(slot)
	c.free = append(c.free, slot)
	c.count--
}

func (c *tokenCache) pushFrontLocked(slot int32) {
	c.prev[slot] = nilSlot
	c.next[slot] = c.head
	if c.head != nilSlot {
		c.prev[c.head] = slot
	}
	c.head = slot
	if c.tail == nilSlot {
		c.tail = slot
	}
}

func (c *tokenCache) unlinkLocked(slot int32) {
	p := c.prev[slot]
	n := c.next[slot]
	if p == coldSlot {
		c.prev[slot] = nilSlot
		c.next[slot] = nilSlot
		return
	}
	if p != nilSlot {
		c.next[p] = n
	} else {
		c.head = n
	}
	if n != nilSlot {
		c.prev[n] = p
	} else {
		c.tail = p
	}
	c.prev[slot] = nilSlot
	c.next[slot] = nilSlot
}

func (c *tokenCache) moveToFrontLocked(slot int32) {
	if c.head == slot {
		return
	}
	c.unlinkLocked(slot)
	c.pushFrontLocked(slot)
}
