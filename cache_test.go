package tokenrevoke

import (
	"bytes"
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func key(i int) [32]byte {
	return hashToken("token-" + string(rune('a'+i%26)) + string(rune('0'+i/26%10)) + string(rune('0'+i/260)))
}

func TestCacheLRUEvictsLeastRecentlyUsed(t *testing.T) {
	s := newTokenCache(3, newLogger("t"))
	now := int64(1000)
	for i := 0; i < 3; i++ {
		s.add(key(i), now+3600, now)
	}
	if !s.contains(key(0), now) { // key 0 becomes most recently used
		t.Fatal("key 0 missing")
	}
	s.add(key(3), now+3600, now) // evicts key 1, the least recently used
	if s.contains(key(1), now) {
		t.Error("key 1 should have been evicted")
	}
	for _, i := range []int{0, 2, 3} {
		if !s.contains(key(i), now) {
			t.Errorf("key %d evicted, want kept", i)
		}
	}
	if _, ev, _ := s.stats(); ev != 1 {
		t.Errorf("evictions = %d, want 1", ev)
	}
}

func TestCacheDropsExpiredBeforeLive(t *testing.T) {
	s := newTokenCache(3, newLogger("t"))
	now := int64(100000)
	s.add(key(0), now+10, now)   // expires soon
	s.add(key(1), now+3600, now) // least recently used among the live ones
	s.add(key(2), now+3600, now)
	s.contains(key(0), now) // make the short-lived one most recently used
	later := now + 20       // key 0 has expired, in a bucket that is only partly past
	s.add(key(3), later+3600, later)
	if !s.contains(key(1), later) || !s.contains(key(2), later) || !s.contains(key(3), later) {
		t.Fatal("a live entry was evicted while an expired one was held")
	}
	entries, ev, exp := s.stats()
	if entries != 3 || ev != 0 || exp != 1 {
		t.Fatalf("entries=%d evictions=%d expired=%d, want 3 0 1", entries, ev, exp)
	}
}

func TestCacheExpiry(t *testing.T) {
	s := newTokenCache(10, newLogger("t"))
	now := int64(5000)
	if s.add(key(0), now, now) {
		t.Error("an entry expiring now was stored")
	}
	s.add(key(1), now+5, now)
	if !s.contains(key(1), now+4) {
		t.Error("entry gone before its expiry")
	}
	if s.contains(key(1), now+5) {
		t.Error("entry still enforced at its expiry")
	}
	if s.len() != 0 {
		t.Errorf("expired entry not removed on lookup: len %d", s.len())
	}
	s.add(key(2), now+5, now)
	s.sweep(now + 2*expiryBucket)
	if s.len() != 0 {
		t.Errorf("sweep left %d entries", s.len())
	}
}

func TestCacheReAddKeepsLaterExpiry(t *testing.T) {
	s := newTokenCache(10, newLogger("t"))
	now := int64(7000)
	s.add(key(0), now+100, now)
	s.add(key(0), now+5000, now)
	s.add(key(0), now+50, now)
	if s.len() != 1 {
		t.Fatalf("duplicate revocations made %d entries", s.len())
	}
	s.sweep(now + 1000)
	if !s.contains(key(0), now+1000) {
		t.Fatal("the later expiry was not kept")
	}
}

func TestCacheShrinkEvicts(t *testing.T) {
	s := newTokenCache(10, newLogger("t"))
	now := int64(100)
	for i := 0; i < 10; i++ {
		s.add(key(i), now+1000, now)
	}
	s.setCapacity(4, now)
	if s.len() != 4 {
		t.Fatalf("len after shrink = %d", s.len())
	}
	for i := 6; i < 10; i++ {
		if !s.contains(key(i), now) {
			t.Errorf("most recent key %d dropped", i)
		}
	}
}

// lruModel is the reference the cache is checked against: entries in recency order,
// most recent first.
type lruModel struct {
	capacity int
	ents     []modelEnt
	order    []string // origins in the order they first appeared
}

type modelEnt struct {
	k      [32]byte
	exp    int64
	origin string
}

func (m *lruModel) find(k [32]byte) int {
	for i, e := range m.ents {
		if e.k == k {
			return i
		}
	}
	return -1
}

// add is tokenCache.add: a held key keeps the later expiry (or takes the new one if its own
// has passed) and becomes the most recent; a new key first makes every expired entry
// go, then the least recent ones while the cache is full.
func (m *lruModel) add(k [32]byte, exp, now int64) { m.addFrom(k, exp, now, "") }

// addFrom is tokenCache.addFrom: as add, but a full cache evicts the least recent entry
// of the origin holding the most (origins compared in the order they first appeared,
// the new entry's own origin winning a tie). A held key keeps its origin unless the new
// one ranks higher (originRank).
func (m *lruModel) addFrom(k [32]byte, exp, now int64, origin string) {
	if i := m.find(k); i >= 0 {
		e := m.ents[i]
		if exp > e.exp || e.exp <= now {
			e.exp = exp
		}
		m.see(origin) // the cache registers it either way
		if originRank(origin) > originRank(e.origin) {
			e.origin = origin
		}
		m.ents = append(m.ents[:i], m.ents[i+1:]...)
		m.ents = append([]modelEnt{e}, m.ents...)
		return
	}
	kept := m.ents[:0]
	for _, e := range m.ents {
		if e.exp > now {
			kept = append(kept, e)
		}
	}
	m.ents = kept
	m.see(origin)
	for len(m.ents) >= m.capacity {
		counts := map[string]int{}
		for _, e := range m.ents {
			counts[e.origin]++
		}
		best := origin
		for _, o := range m.order {
			if counts[o] > counts[best] {
				best = o
			}
		}
		for i := len(m.ents) - 1; i >= 0; i-- {
			if m.ents[i].origin == best {
				m.ents = append(m.ents[:i], m.ents[i+1:]...)
				break
			}
		}
	}
	m.ents = append([]modelEnt{{k, exp, origin}}, m.ents...)
}

// see records the order in which origins first appear ("" is always first).
func (m *lruModel) see(origin string) {
	if len(m.order) == 0 {
		m.order = []string{""}
	}
	for _, o := range m.order {
		if o == origin {
			return
		}
	}
	m.order = append(m.order, origin)
}

// contains is tokenCache.contains: a live entry becomes the most recent, an expired one goes.
func (m *lruModel) contains(k [32]byte, now int64) bool {
	i := m.find(k)
	if i < 0 {
		return false
	}
	e := m.ents[i]
	m.ents = append(m.ents[:i], m.ents[i+1:]...)
	if e.exp <= now {
		return false
	}
	m.ents = append([]modelEnt{e}, m.ents...)
	return true
}

// TestCacheMatchesModel drives the cache with random operations and compares it with a
// plain reference implementation (a slice in recency order).
func TestCacheMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	const capacity = 16
	s := newTokenCache(capacity, newLogger("t"))
	model := &lruModel{capacity: capacity}
	now := int64(1_000_000)
	for step := 0; step < 20000; step++ {
		now += int64(rng.Intn(20))
		k := key(rng.Intn(60))
		switch rng.Intn(3) {
		case 0, 1:
			exp := now + int64(1+rng.Intn(400))
			if !s.add(k, exp, now) {
				t.Fatalf("step %d: add of a live entry returned false", step)
			}
			model.add(k, exp, now)
		case 2:
			if got, want := s.contains(k, now), model.contains(k, now); got != want {
				t.Fatalf("step %d: contains = %v, want %v", step, got, want)
			}
		}
	}
}

// lruOrder lists the keys from most to least recently used.
func lruOrder(s *tokenCache) [][32]byte {
	var out [][32]byte
	for slot := s.heads[0]; slot != nilSlot; slot = s.next[slot] {
		out = append(out, s.keys[slot])
	}
	return out
}

// TestAddBatchEqualsAdds checks that the flattened batch insert leaves the cache in
// exactly the state one add per entry would, including duplicates, expired entries,
// evictions and expiry-bucket sweeps.
func TestAddBatchEqualsAdds(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	one := newTokenCache(40, newLogger("t"))
	batch := newTokenCache(40, newLogger("t"))
	now := int64(2_000_000)
	for round := 0; round < 300; round++ {
		now += int64(rng.Intn(90))
		n := 1 + rng.Intn(30)
		keys := make([][32]byte, n)
		exps := make([]int64, n)
		for i := range keys {
			keys[i] = key(rng.Intn(120))
			exps[i] = now - 5 + int64(rng.Intn(600))
		}
		added := 0
		for i := range keys {
			if one.add(keys[i], exps[i], now) {
				added++
			}
		}
		if got := batch.addBatch(keys, exps, nil, now, 0); got != added {
			t.Fatalf("round %d: addBatch added %d, add added %d", round, got, added)
		}
		a, b := lruOrder(one), lruOrder(batch)
		if len(a) != len(b) {
			t.Fatalf("round %d: %d entries vs %d", round, len(a), len(b))
		}
		for i := range a {
			if a[i] != b[i] || one.exps[one.index[a[i]]] != batch.exps[batch.index[b[i]]] {
				t.Fatalf("round %d: stores differ at position %d", round, i)
			}
		}
	}
	e1, ev1, x1 := one.stats()
	e2, ev2, x2 := batch.stats()
	if e1 != e2 || ev1 != ev2 || x1 != x2 {
		t.Fatalf("stats differ: %d/%d/%d vs %d/%d/%d", e1, ev1, x1, e2, ev2, x2)
	}
	if ev1 == 0 || x1 == 0 {
		t.Fatalf("the test did not exercise evictions (%d) and expiry (%d)", ev1, x1)
	}
}

func TestCopySlotsMarksFreeSlots(t *testing.T) {
	s := newTokenCache(10, newLogger("t"))
	now := int64(10000)
	for i := 0; i < 5; i++ {
		s.add(key(i), now+3600+int64(i), now)
	}
	s.add(key(5), now+30, now) // expires first
	s.sweep(now + 120)         // frees its slot
	keys, exps, _, _ := s.copySlots(0, 100)
	if len(keys) != 6 {
		t.Fatalf("copied %d slots, want 6", len(keys))
	}
	live := 0
	for i := range keys {
		if exps[i] > now+120 {
			live++
			if !s.contains(keys[i], now+120) {
				t.Fatalf("slot %d copied as live but not held", i)
			}
		} else if exps[i] != 0 {
			t.Fatalf("free slot %d copied with expiry %d, want 0", i, exps[i])
		}
	}
	if live != 5 {
		t.Fatalf("%d live slots copied, want 5", live)
	}
	if k, _, _, _ := s.copySlots(6, 10); k != nil {
		t.Fatal("copy past the end returned slots")
	}
	if k, _, _, _ := s.copySlots(4, 10); len(k) != 2 {
		t.Fatalf("copy of the last slots returned %d", len(k))
	}
}

// checkCache verifies the cache's internal invariants: the index, the LRU list and the
// cold slots describe the same entries, and the count matches.
func checkCache(t *testing.T, s *tokenCache, where string) {
	t.Helper()
	if len(s.index) != s.count {
		t.Fatalf("%s: index holds %d keys, count %d", where, len(s.index), s.count)
	}
	seen := make(map[int32]bool)
	for o := range s.heads {
		n := 0
		last := nilSlot
		for slot := s.heads[o]; slot != nilSlot; slot = s.next[slot] {
			if seen[slot] {
				t.Fatalf("%s: LRU list of origin %d loops at slot %d", where, o, slot)
			}
			if int(s.origins[slot]) != o {
				t.Fatalf("%s: slot %d of origin %d is in the list of origin %d", where, slot, s.origins[slot], o)
			}
			seen[slot] = true
			last = slot
			n++
		}
		if s.tails[o] != last {
			t.Fatalf("%s: tail of origin %d is %d, the list ends at %d", where, o, s.tails[o], last)
		}
		cold := 0
		for slot := range s.prev {
			if s.prev[slot] == coldSlot && int(s.origins[slot]) == o {
				cold++
			}
		}
		if cold != s.colds[o] || n+cold != s.counts[o] {
			t.Fatalf("%s: origin %d: %d listed + %d cold, counts say %d and %d cold", where, o, n, cold, s.counts[o], s.colds[o])
		}
	}
	for slot := range s.prev {
		if s.prev[slot] == coldSlot {
			if seen[int32(slot)] {
				t.Fatalf("%s: slot %d both cold and listed", where, slot)
			}
			seen[int32(slot)] = true
		}
	}
	if len(seen) != s.count {
		t.Fatalf("%s: %d slots listed or cold, count %d", where, len(seen), s.count)
	}
	for k, slot := range s.index {
		if !seen[slot] || s.keys[slot] != k {
			t.Fatalf("%s: index entry for slot %d is not a held entry", where, slot)
		}
	}
}

// TestLoadColdMatchesModel loads a snapshot chunk into a cache and then drives it with
// random operations, comparing it with a reference model in which the loaded entries are
// the least recently used, the first loaded the oldest.
func TestLoadColdMatchesModel(t *testing.T) {
	t.Run("one origin", func(t *testing.T) { loadColdMatchesModel(t, nil) })
	t.Run("several origins", func(t *testing.T) { loadColdMatchesModel(t, []string{"", "portal", "@idp"}) })
}

func loadColdMatchesModel(t *testing.T, names []string) {
	rng := rand.New(rand.NewSource(11))
	const capacity = 24
	s := newTokenCache(capacity, newLogger("t"))
	now := int64(3_000_000)
	var keys [][32]byte
	var exps []int64
	var origins []uint16
	model := &lruModel{capacity: capacity}
	model.see("")
	for _, n := range names {
		model.see(n)
	}
	for i := 0; i < 22; i++ {
		o := ""
		if names != nil {
			origins = append(origins, uint16(i%len(names)))
			o = names[i%len(names)]
		}
		k := key(i)
		exp := now + int64(rng.Intn(3000))
		if i%7 == 3 {
			exp = now - 1 // expired: skipped
		}
		keys = append(keys, k)
		exps = append(exps, exp)
		if exp > now { // loaded entries are older than anything added later
			model.ents = append([]modelEnt{{k, exp, o}}, model.ents...)
		}
	}
	if got := s.loadCold(keys, exps, origins, names, now, 0, 0); got != len(model.ents) {
		t.Fatalf("loadCold returned %d, want %d", got, len(model.ents))
	}
	checkCache(t, s, "after load")
	for step := 0; step < 5000; step++ {
		now += int64(rng.Intn(15))
		k := key(rng.Intn(70))
		switch rng.Intn(4) {
		case 0:
			exp := now + int64(1+rng.Intn(3000))
			o := ""
			if names != nil {
				o = names[rng.Intn(len(names))]
			}
			s.addFrom(k, exp, now, o)
			model.addFrom(k, exp, now, o)
		case 1, 2:
			if got, want := s.contains(k, now), model.contains(k, now); got != want {
				t.Fatalf("step %d: contains = %v, want %v", step, got, want)
			}
		case 3:
			s.sweep(now)
			kept := model.ents[:0]
			for _, e := range model.ents {
				if (e.exp+expiryBucket-1)/expiryBucket*expiryBucket > now || e.exp > now {
					kept = append(kept, e)
				}
			}
			model.ents = kept
		}
		if step%250 == 0 {
			checkCache(t, s, "step")
		}
	}
	checkCache(t, s, "end")
	if _, ev, _ := s.stats(); ev == 0 {
		t.Fatal("the test did not exercise evictions")
	}
}

func TestLoadColdDuplicatesAndFallback(t *testing.T) {
	now := int64(4_000_000)
	// A chunk that repeats a key (a malformed snapshot): one entry, the last expiry.
	s := newTokenCache(100, newLogger("t"))
	keys := [][32]byte{key(1), key(2), key(1), key(3)}
	exps := []int64{now + 100, now + 200, now + 300, now + 400}
	if got := s.loadCold(keys, exps, nil, nil, now, 0, 0); got != 3 {
		t.Fatalf("loadCold with a duplicate returned %d entries, want 3", got)
	}
	checkCache(t, s, "duplicates")
	if s.exps[s.index[key(1)]] != now+300 {
		t.Fatal("the duplicate did not keep its last expiry")
	}
	// Every entry can still be evicted, leaving an empty, consistent cache.
	s.setCapacity(1, now)
	s.setCapacity(0, now)
	checkCache(t, s, "emptied")
	if s.len() != 0 {
		t.Fatalf("%d entries left", s.len())
	}

	// A cache that already holds other entries falls back to addBatch (and says so).
	s = newTokenCache(100, newLogger("t"))
	s.add(key(1), now+50, now)
	if got := s.loadCold(keys, exps, nil, nil, now, 0, 0); got != -1 {
		t.Fatalf("loadCold on a non-empty store returned %d, want -1", got)
	}
	if got := s.loadCold([][32]byte{key(9)}, []int64{now + 10}, nil, nil, now, 0, -1); got != -1 {
		t.Fatalf("a later chunk returned %d, want -1", got)
	}
	checkCache(t, s, "fallback")
	for _, i := range []int{1, 2, 3, 9} {
		if !s.contains(key(i), now) {
			t.Fatalf("key %d missing after the fallback", i)
		}
	}
	// A full cache falls back too, and evicts as addBatch does.
	s = newTokenCache(2, newLogger("t"))
	if got := s.loadCold(keys, exps, nil, nil, now, 0, 0); got != -1 || s.len() != 2 {
		t.Fatalf("loadCold into a too small store: %d, %d entries", got, s.len())
	}
	// Expiries beyond the supported range are skipped, not stored.
	s = newTokenCache(10, newLogger("t"))
	if got := s.loadCold([][32]byte{key(1), key(2)}, []int64{maxExpiry + 1, now + 5}, nil, nil, now, 0, 0); got != 2 || s.exps[s.index[key(1)]] != maxExpiry {
		t.Fatalf("out-of-range expiry: %d entries, expiry %d", got, s.exps[s.index[key(1)]])
	}
	// A snapshot cannot plant an entry beyond now + maxTTL either.
	s = newTokenCache(10, newLogger("t"))
	if got := s.loadCold([][32]byte{key(3)}, []int64{now + 1e9}, nil, nil, now, now+3600, 0); got != 1 || s.exps[s.index[key(3)]] != now+3600 {
		t.Fatalf("expiry beyond the limit: %d entries, expiry %d", got, s.exps[s.index[key(3)]])
	}
	checkCache(t, s, "range")
}

// TestCacheOriginsMatchModel drives a cache with entries of several origins (one of
// them flooding) and compares it with the reference model after every step.
func TestCacheOriginsMatchModel(t *testing.T) {
	rng := rand.New(rand.NewSource(99))
	const capacity = 20
	c := newTokenCache(capacity, newLogger("t"))
	model := &lruModel{capacity: capacity}
	origins := []string{"portal", "flood", "@idp", "", "@unsigned"}
	now := int64(4_000_000)
	for step := 0; step < 20000; step++ {
		now += int64(rng.Intn(10))
		o := origins[rng.Intn(len(origins))]
		if rng.Intn(2) == 0 {
			o = "flood" // half of all additions
		}
		k := key(rng.Intn(80))
		if rng.Intn(4) < 3 {
			exp := now + int64(1+rng.Intn(600))
			c.addFrom(k, exp, now, o)
			model.addFrom(k, exp, now, o)
		} else if got, want := c.contains(k, now), model.contains(k, now); got != want {
			t.Fatalf("step %d: contains = %v, want %v", step, got, want)
		}
		if step%500 == 0 {
			checkCache(t, c, "step")
		}
	}
	checkCache(t, c, "end")
}

// TestFloodEvictsOnlyTheFlooder is the scenario of the issue: with cacheSize 100, one
// client's 200 junk revocations must not re-open another client's revoked token, and
// every eviction is counted, in the status and in the log.
func TestFloodEvictsOnlyTheFlooder(t *testing.T) {
	var logs bytes.Buffer
	logSinkMu.Lock()
	logSink = &logs
	logSinkMu.Unlock()
	defer func() {
		logSinkMu.Lock()
		logSink = nil
		logSinkMu.Unlock()
	}()
	m, _ := newTestMiddleware(t, func(c *Config) {
		c.CacheSize = 100
		c.Clients[0].RatePerMinute = -1
		c.Clients[1].RatePerMinute = -1
	})
	for i := 0; i < 40; i++ {
		serve(m, revokeReq("token=victim-"+strconv.Itoa(i), basic("portal", "s3cret")))
	}
	for i := 0; i < 200; i++ {
		serve(m, revokeReq("token=junk-"+strconv.Itoa(i), basic("hashed", "other-secret")))
	}
	for i := 0; i < 40; i++ {
		if rec := serve(m, bearerReq("victim-"+strconv.Itoa(i))); rec.Code != http.StatusUnauthorized {
			t.Fatalf("victim-%d was re-opened by the flood: %d", i, rec.Code)
		}
	}
	entries, evictions, _ := m.cache.stats()
	if entries != 100 || evictions != 140 {
		t.Fatalf("entries %d, evictions %d; want 100 and 140 (the flooder's 200 into 60 places)", entries, evictions)
	}
	if counts := m.cache.originCounts(); counts["portal"] != 40 || counts["hashed"] != 60 {
		t.Fatalf("origin counts %v", counts)
	}
	m.cache.flushEvictionWarning()
	logged := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if i := strings.Index(line, "dropped "); i >= 0 && strings.Contains(line, "cache is full") {
			n, err := strconv.Atoi(strings.Fields(line[i+len("dropped "):])[0])
			if err != nil {
				t.Fatalf("cannot read %q", line)
			}
			logged += n
		}
	}
	if logged != 140 {
		t.Fatalf("the log reports %d evictions, want 140:\n%s", logged, logs.String())
	}
}
