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
//     found without scanning the whole store: removal is amortised O(1) per entry.

// expiryBucket is the width, in seconds, of one expiry bucket.
const expiryBucket = 60

// nilSlot marks the end of the LRU list.
const nilSlot = int32(-1)

// coldSlot, in prev and next, marks an entry bulk-loaded from a snapshot that has not
// been used since: it is in no list, and counts as older than every listed entry.
const coldSlot = int32(-2)

// store is the bounded set of revoked token hashes, each with an expiry (unix seconds).
// It evicts expired entries first and then the least recently used one.
type store struct {
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

	evictions   int64 // unexpired entries dropped because the store was full
	expired     int64 // entries dropped because their token expired
	unwarned    int64 // evictions not yet reported in a log line
	lastWarning time.Time
	log         *logger
}

func init() {
	coldTemplate = make([]int32, snapshotChunkSlots)
	for i := range coldTemplate {
		coldTemplate[i] = coldSlot
	}
}

func newStore(capacity int, log *logger) *store {
	return &store{
		index:    make(map[[32]byte]int32),
		head:     nilSlot,
		tail:     nilSlot,
		capacity: capacity,
		buckets:  make(map[int64][]int32),
		log:      log,
	}
}

// hasLegacy reports whether a version-1 message was ever applied (see legacy).
func (s *store) hasLegacy() bool {
	s.mu.RLock()
	l := s.legacy
	s.mu.RUnlock()
	return l
}

// setLegacy records that a version-1 message was applied.
func (s *store) setLegacy() {
	s.mu.Lock()
	s.legacy = true
	s.mu.Unlock()
}

// len returns the number of entries held, expired or not.
func (s *store) len() int {
	s.mu.RLock()
	n := s.count
	s.mu.RUnlock()
	return n
}

// contains reports whether key is held and unexpired at now; a hit counts as a use.
func (s *store) contains(key [32]byte, now int64) bool {
	s.mu.RLock()
	_, ok := s.index[key]
	s.mu.RUnlock()
	if !ok {
		return false
	}
	return s.hit(key, now)
}

// hit is the slow half of a lookup, taken only when the read-locked probe found the key:
// it drops the entry if it has expired, otherwise marks it most recently used.
func (s *store) hit(key [32]byte, now int64) bool {
	s.mu.Lock()
	slot, ok := s.index[key]
	if !ok {
		s.mu.Unlock()
		return false
	}
	if s.exps[slot] <= now {
		s.removeLocked(slot)
		s.expired++
		s.mu.Unlock()
		return false
	}
	s.moveToFrontLocked(slot)
	s.mu.Unlock()
	return true
}

// add records key as revoked until exp (unix seconds). A key already held keeps the
// later of the two expiries. It reports whether the store now holds the key.
func (s *store) add(key [32]byte, exp int64, now int64) bool {
	if exp <= now {
		return false
	}
	s.mu.Lock()
	s.addLocked(key, exp, now)
	s.mu.Unlock()
	return true
}

// addBatch adds many entries under one lock (a JetStream replay delivers them by the
// thousand); entries already expired at now are skipped. It returns how many it added.
// The insertion of a new key is written out in the loop (the same steps as addLocked):
// under yaegi a call per entry would cost a frame allocation per entry.
func (s *store) addBatch(keys [][32]byte, exps []int64, now int64) int {
	n := 0
	s.mu.Lock()
	for i := 0; i < len(keys); i++ {
		exp := exps[i]
		if exp <= now {
			continue
		}
		n++
		key := keys[i]
		if _, held := s.index[key]; held || s.count >= s.capacity || len(s.free) > 0 || len(s.keys) == cap(s.keys) ||
			(len(s.bucketIDs) > 0 && s.bucketIDs[0]*expiryBucket <= now) {
			s.addLocked(key, exp, now)
			continue
		}
		slot := int32(len(s.keys))
		s.keys = append(s.keys, key)
		s.exps = append(s.exps, exp)
		s.prev = append(s.prev, nilSlot)
		s.next = append(s.next, s.head)
		s.index[key] = slot
		s.count++
		if s.head != nilSlot {
			s.prev[s.head] = slot
		} else {
			s.tail = slot
		}
		s.head = slot
		b := (exp + expiryBucket - 1) / expiryBucket
		slots, ok := s.buckets[b]
		if !ok {
			s.newBucketLocked(b)
		}
		s.buckets[b] = append(slots, slot)
	}
	s.mu.Unlock()
	return n
}

// addLocked inserts one live entry. It runs once per revocation, a million times in a
// large replay, so the common case (a new key, room left) is written out flat: under
// yaegi every extra call costs a frame allocation.
func (s *store) addLocked(key [32]byte, exp int64, now int64) {
	if slot, ok := s.index[key]; ok {
		if exp > s.exps[slot] {
			s.exps[slot] = exp
			s.addToBucketLocked(slot, exp)
		}
		s.moveToFrontLocked(slot)
		return
	}
	if len(s.bucketIDs) > 0 && s.bucketIDs[0]*expiryBucket <= now {
		s.expireLocked(now)
	}
	if s.count >= s.capacity {
		s.makeRoomLocked(now)
	}
	var slot int32
	if n := len(s.free); n > 0 {
		slot = s.free[n-1]
		s.free = s.free[:n-1]
		s.keys[slot] = key
		s.exps[slot] = exp
	} else {
		if len(s.keys) == cap(s.keys) {
			s.growLocked()
		}
		slot = int32(len(s.keys))
		s.keys = append(s.keys, key)
		s.exps = append(s.exps, exp)
		s.prev = append(s.prev, nilSlot)
		s.next = append(s.next, s.head)
	}
	s.index[key] = slot
	s.count++
	// Push to the front of the LRU list.
	s.prev[slot] = nilSlot
	s.next[slot] = s.head
	if s.head != nilSlot {
		s.prev[s.head] = slot
	} else {
		s.tail = slot
	}
	s.head = slot
	// Index by expiry bucket.
	b := (exp + expiryBucket - 1) / expiryBucket
	slots, ok := s.buckets[b]
	if !ok {
		s.newBucketLocked(b)
	}
	s.buckets[b] = append(slots, slot)
}

// oldestColdLocked returns the lowest-numbered cold slot (the first loaded), or nilSlot.
// The scan only moves forward, so finding victims costs O(1) amortised.
func (s *store) oldestColdLocked() int32 {
	for s.coldScan < len(s.prev) {
		if s.prev[s.coldScan] == coldSlot {
			return int32(s.coldScan)
		}
		s.coldScan++
	}
	return nilSlot
}

// coldTemplate is a run of coldSlot marks copied into prev and next by loadCold.
var coldTemplate []int32

// loadCold adds a chunk of a snapshot: the bulk version of addBatch for a store that
// holds nothing but what earlier loadCold calls of the same load added (count equals
// loaded). Keys and expiries are appended with two compiled copies and left out of the
// LRU list (marked cold), so each entry costs one map store and, when its expiry bucket
// differs from the previous entry's, one bucket lookup: about a third of addBatch
// under the interpreter. Entries already expired, or with an expiry beyond maxExpiry,
// are skipped. loaded is what the previous call returned (0 for the first chunk): the
// store's entry count, or -1 once a call had to fall back to addBatch (the store then
// holds other entries, or is full), after which every call does.
func (s *store) loadCold(keys [][32]byte, exps []int64, now int64, loaded int) int {
	n := len(keys)
	s.mu.Lock()
	if s.count != loaded || s.count+n > s.capacity || n > len(coldTemplate) {
		s.mu.Unlock()
		for i := range exps {
			if exps[i] > maxExpiry {
				exps[i] = maxExpiry
			}
		}
		s.addBatch(keys, exps, now)
		return -1
	}
	base := len(s.keys)
	if need := base + n; need > cap(s.keys) {
		c := 2 * cap(s.keys)
		if c < need {
			c = need
		}
		if c > s.capacity && s.capacity >= need {
			c = s.capacity
		}
		s.growToLocked(c)
	}
	s.keys = append(s.keys, keys...)
	s.exps = append(s.exps, exps...)
	s.prev = append(s.prev, coldTemplate[:n]...)
	s.next = append(s.next, coldTemplate[:n]...)
	if base < s.coldScan {
		s.coldScan = base
	}
	before := len(s.index)
	added := 0
	lastB := int64(-1)
	var run []int32
	slot := int32(base)
	for i := 0; i < n; i++ {
		exp := exps[i]
		if exp <= now || exp > maxExpiry {
			s.prev[slot] = nilSlot
			s.next[slot] = nilSlot
			s.exps[slot] = 0
			s.free = append(s.free, slot)
			slot++
			continue
		}
		s.index[keys[i]] = slot
		added++
		if b := (exp + expiryBucket - 1) / expiryBucket; b != lastB {
			if lastB >= 0 {
				s.buckets[lastB] = run
			}
			existing, ok := s.buckets[b]
			if !ok {
				s.newBucketLocked(b)
			}
			run = existing
			lastB = b
		}
		run = append(run, slot)
		slot++
	}
	if lastB >= 0 {
		s.buckets[lastB] = run
	}
	s.count += added
	if len(s.index) != before+added {
		s.dropColdDuplicatesLocked(base, n)
	}
	count := s.count
	s.mu.Unlock()
	return count
}

// dropColdDuplicatesLocked repairs a chunk that repeated a key (only a malformed
// snapshot does): the index points at the key's last slot, so every other slot of the
// chunk holding the same key is freed.
func (s *store) dropColdDuplicatesLocked(base, n int) {
	for slot := int32(base); slot < int32(base+n); slot++ {
		if s.prev[slot] != coldSlot {
			continue
		}
		if cur, ok := s.index[s.keys[slot]]; !ok || cur != slot {
			s.prev[slot] = nilSlot
			s.next[slot] = nilSlot
			s.exps[slot] = 0
			s.free = append(s.free, slot)
			s.count--
		}
	}
}

// growLocked doubles the per-slot slices (never beyond capacity). append alone grows
// large slices by only 1.25x, which copies a million-entry store several times over.
func (s *store) growLocked() {
	n := 2 * cap(s.keys)
	if n < 1024 {
		n = 1024
	}
	if n > s.capacity && s.capacity >= len(s.keys)+1 {
		n = s.capacity
	}
	s.growToLocked(n)
}

// growToLocked reallocates the per-slot slices with room for n slots.
func (s *store) growToLocked(n int) {
	keys := make([][32]byte, len(s.keys), n)
	copy(keys, s.keys)
	s.keys = keys
	exps := make([]int64, len(s.exps), n)
	copy(exps, s.exps)
	s.exps = exps
	prev := make([]int32, len(s.prev), n)
	copy(prev, s.prev)
	s.prev = prev
	next := make([]int32, len(s.next), n)
	copy(next, s.next)
	s.next = next
}

// makeRoomLocked frees one place: an expired entry if there is one, else the least
// recently used.
func (s *store) makeRoomLocked(now int64) {
	s.expireEarliestLocked(now)
	for s.count >= s.capacity && s.count > 0 {
		s.evictTailLocked(now)
	}
}

// setCapacity changes the most entries held; shrinking evicts at once.
func (s *store) setCapacity(capacity int, now int64) {
	s.mu.Lock()
	s.capacity = capacity
	if s.count > capacity {
		s.expireLocked(now)
		s.expireEarliestLocked(now)
	}
	for s.count > capacity && s.count > 0 {
		s.evictTailLocked(now)
	}
	s.mu.Unlock()
}

// sweep drops every expired entry in whole buckets that are past; the janitor calls it.
func (s *store) sweep(now int64) {
	s.mu.Lock()
	s.expireLocked(now)
	s.mu.Unlock()
}

// copySlots copies up to n slots starting at slot from: keys and expiries of live
// entries, and expiry 0 for free slots. Two bulk copies under the read lock: requests
// are held up for microseconds, not for the time it takes to encode a snapshot.
func (s *store) copySlots(from, n int) ([][32]byte, []int64) {
	s.mu.RLock()
	if from >= len(s.keys) {
		s.mu.RUnlock()
		return nil, nil
	}
	if from+n > len(s.keys) {
		n = len(s.keys) - from
	}
	keys := make([][32]byte, n)
	copy(keys, s.keys[from:from+n])
	exps := make([]int64, n)
	copy(exps, s.exps[from:from+n])
	s.mu.RUnlock()
	return keys, exps
}

// stats returns entries held, unexpired evictions and expiries so far.
func (s *store) stats() (entries int, evictions, expired int64) {
	s.mu.RLock()
	entries, evictions, expired = s.count, s.evictions, s.expired
	s.mu.RUnlock()
	return entries, evictions, expired
}

// expireLocked removes the entries of every bucket whose whole range has expired.
func (s *store) expireLocked(now int64) {
	for len(s.bucketIDs) > 0 && s.bucketIDs[0]*expiryBucket <= now {
		b := s.bucketIDs[0]
		for _, slot := range s.buckets[b] {
			if s.liveInBucketLocked(slot, b) && s.exps[slot] <= now {
				s.removeLocked(slot)
				s.expired++
			}
		}
		delete(s.buckets, b)
		s.bucketIDs = s.bucketIDs[1:]
	}
}

// expireEarliestLocked scans the earliest, partly expired bucket, so that a full store
// drops entries that expired seconds ago before it drops anything still alive.
func (s *store) expireEarliestLocked(now int64) {
	if len(s.bucketIDs) == 0 {
		return
	}
	b := s.bucketIDs[0]
	if (b-1)*expiryBucket >= now {
		return // nothing in it has expired yet
	}
	slots := s.buckets[b]
	kept := slots[:0]
	for _, slot := range slots {
		if !s.liveInBucketLocked(slot, b) {
			continue
		}
		if s.exps[slot] <= now {
			s.removeLocked(slot)
			s.expired++
			continue
		}
		kept = append(kept, slot)
	}
	s.buckets[b] = kept
}

// liveInBucketLocked reports whether slot holds a live entry that belongs to bucket b
// (buckets keep stale slot numbers after removals and expiry changes).
func (s *store) liveInBucketLocked(slot int32, b int64) bool {
	cur, ok := s.index[s.keys[slot]]
	return ok && cur == slot && bucketOf(s.exps[slot]) == b
}

func bucketOf(exp int64) int64 {
	return (exp + expiryBucket - 1) / expiryBucket
}

func (s *store) addToBucketLocked(slot int32, exp int64) {
	b := bucketOf(exp)
	slots, ok := s.buckets[b]
	if !ok {
		s.newBucketLocked(b)
	}
	s.buckets[b] = append(slots, slot)
}

// newBucketLocked inserts bucket id b into the sorted bucketIDs.
func (s *store) newBucketLocked(b int64) {
	ids := s.bucketIDs
	i := sort.Search(len(ids), func(j int) bool { return ids[j] >= b })
	s.bucketIDs = append(ids, 0)
	copy(s.bucketIDs[i+1:], s.bucketIDs[i:])
	s.bucketIDs[i] = b
}

// evictTailLocked drops the least recently used entry. It is alive (expired ones were
// dropped first), so its token is accepted again: count it and warn, at most once a
// second, with the number dropped since the last warning.
func (s *store) evictTailLocked(now int64) {
	slot := s.oldestColdLocked()
	if slot == nilSlot {
		slot = s.tail
	}
	if s.exps[slot] <= now {
		s.removeLocked(slot)
		s.expired++
		return
	}
	s.removeLocked(slot)
	s.evictions++
	s.unwarned++
	t := time.Now()
	if t.Sub(s.lastWarning) >= time.Second {
		s.log.warnf("revoked-token cache is full (cacheSize %d): dropped %d unexpired revoked token(s) since the last warning, %d in all; those tokens are accepted again until they expire, raise cacheSize",
			s.capacity, s.unwarned, s.evictions)
		s.unwarned = 0
		s.lastWarning = t
	}
}

func (s *store) removeLocked(slot int32) {
	delete(s.index, s.keys[slot])
	s.exps[slot] = 0 // a free slot reads as expired (copySlots)
	s.unlinkLocked(slot)
	s.free = append(s.free, slot)
	s.count--
}

func (s *store) pushFrontLocked(slot int32) {
	s.prev[slot] = nilSlot
	s.next[slot] = s.head
	if s.head != nilSlot {
		s.prev[s.head] = slot
	}
	s.head = slot
	if s.tail == nilSlot {
		s.tail = slot
	}
}

func (s *store) unlinkLocked(slot int32) {
	p := s.prev[slot]
	n := s.next[slot]
	if p == coldSlot {
		s.prev[slot] = nilSlot
		s.next[slot] = nilSlot
		return
	}
	if p != nilSlot {
		s.next[p] = n
	} else {
		s.head = n
	}
	if n != nilSlot {
		s.prev[n] = p
	} else {
		s.tail = p
	}
	s.prev[slot] = nilSlot
	s.next[slot] = nilSlot
}

func (s *store) moveToFrontLocked(slot int32) {
	if s.head == slot {
		return
	}
	s.unlinkLocked(slot)
	s.pushFrontLocked(slot)
}
