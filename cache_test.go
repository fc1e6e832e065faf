package tokenrevoke

import (
	"math/rand"
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
}

type modelEnt struct {
	k   [32]byte
	exp int64
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
func (m *lruModel) add(k [32]byte, exp, now int64) {
	if i := m.find(k); i >= 0 {
		e := m.ents[i]
		if exp > e.exp || e.exp <= now {
			e.exp = exp
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
	for len(m.ents) >= m.capacity {
		m.ents = m.ents[:len(m.ents)-1]
	}
	m.ents = append([]modelEnt{{k, exp}}, m.ents...)
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
	for slot := s.head; slot != nilSlot; slot = s.next[slot] {
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
		if got := batch.addBatch(keys, exps, now); got != added {
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
