package tokenrevoke

import (
	"bytes"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

func TestSnapshotChunkRoundTrip(t *testing.T) {
	keys := [][32]byte{key(1), key(2), key(3)}
	exps := []int64{0, 1700000000, maxExpiry}
	data := encodeSnapshotChunk(keys, exps)
	if len(data) != snapshotHeaderLen+3*snapshotSlotLen || string(data[:4]) != snapshotMagic {
		t.Fatalf("chunk of %d bytes starting %q", len(data), data[:4])
	}
	k2, e2, ok := decodeSnapshotChunk(data)
	if !ok || len(k2) != 3 || len(e2) != 3 {
		t.Fatalf("decode: ok=%v %d keys %d exps", ok, len(k2), len(e2))
	}
	for i := range keys {
		if k2[i] != keys[i] || e2[i] != exps[i] {
			t.Fatalf("entry %d differs after the round trip", i)
		}
	}
	if bytes.Contains(data, []byte("token-")) {
		t.Fatal("a chunk carries token text")
	}
	bad := map[string][]byte{
		"empty":         nil,
		"short header":  data[:6],
		"wrong magic":   append([]byte("XXXX"), data[4:]...),
		"truncated":     data[:len(data)-1],
		"trailing byte": append(append([]byte(nil), data...), 0),
		"count too big": append(append([]byte(snapshotMagic), 0xff, 0xff, 0xff, 0x7f), data[8:]...),
	}
	for name, b := range bad {
		if _, _, ok := decodeSnapshotChunk(b); ok {
			t.Errorf("%s: malformed chunk accepted", name)
		}
	}
}

func TestManifestProblems(t *testing.T) {
	n := &natsSettings{subject: "tokens.revoked", stream: "REVOCATIONS"}
	created := time.Date(2026, 11, 30, 12, 0, 0, 123, time.UTC)
	info := &natsclient.StreamInfo{Created: created}
	info.State.LastSeq = 500
	good := func() snapshotManifest {
		return snapshotManifest{V: 1, ID: "0123456789abcdef", Stream: "REVOCATIONS", StreamCreated: created,
			Seq: 400, Slots: 10, Chunks: []uint64{7}}
	}
	m := good()
	if p := manifestProblem(&m, n, info); p != "" {
		t.Fatalf("good manifest refused: %s", p)
	}
	cases := []struct {
		name   string
		mutate func(m *snapshotManifest)
		want   string
	}{
		{"version", func(m *snapshotManifest) { m.V = 2 }, "version"},
		{"other stream", func(m *snapshotManifest) { m.Stream = "OTHER" }, "stream"},
		{"recreated stream", func(m *snapshotManifest) { m.StreamCreated = created.Add(time.Second) }, "recreated"},
		{"beyond the stream", func(m *snapshotManifest) { m.Seq = 501 }, "beyond"},
		{"no sequence", func(m *snapshotManifest) { m.Seq = 0 }, "beyond"},
		{"no chunks", func(m *snapshotManifest) { m.Chunks = nil }, "malformed"},
		{"too many slots", func(m *snapshotManifest) { m.Slots = snapshotChunkSlots + 1 }, "malformed"},
		{"bad id", func(m *snapshotManifest) { m.ID = "x" }, "malformed"},
	}
	for _, tc := range cases {
		m := good()
		tc.mutate(&m)
		if p := manifestProblem(&m, n, info); !strings.Contains(p, tc.want) {
			t.Errorf("%s: problem %q does not mention %q", tc.name, p, tc.want)
		}
	}
}

func TestSnapshotNaming(t *testing.T) {
	n := &natsSettings{subject: "tokens.revoked", stream: "REVOCATIONS", replicas: 3}
	c := wantedSnapshotStream(n)
	if c.Name != "REVOCATIONS_SNAPSHOTS" || len(c.Subjects) != 1 || c.Subjects[0] != "tokens.revoked-snapshots.>" ||
		c.Replicas != 3 || !c.AllowMsgTTL || c.MaxMsgsPerSubject != 1 {
		t.Fatalf("snapshot stream %+v", c)
	}
	if !strings.HasPrefix(n.chunkSubject("0123456789abcdef", 4), "tokens.revoked-snapshots.") ||
		strings.HasPrefix(n.manifestSubject(), n.subject+".") {
		t.Fatal("snapshot subjects fall inside the revocation subjects")
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
	keys, exps := s.copySlots(0, 100)
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
	if k, _ := s.copySlots(6, 10); k != nil {
		t.Fatal("copy past the end returned slots")
	}
	if k, _ := s.copySlots(4, 10); len(k) != 2 {
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
	for slot := s.head; slot != nilSlot; slot = s.next[slot] {
		if seen[slot] {
			t.Fatalf("%s: LRU list loops at slot %d", where, slot)
		}
		seen[slot] = true
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
	rng := rand.New(rand.NewSource(11))
	const capacity = 24
	s := newTokenCache(capacity, newLogger("t"))
	now := int64(3_000_000)
	var keys [][32]byte
	var exps []int64
	model := &lruModel{capacity: capacity}
	for i := 0; i < 22; i++ {
		k := key(i)
		exp := now + int64(rng.Intn(3000))
		if i%7 == 3 {
			exp = now - 1 // expired: skipped
		}
		keys = append(keys, k)
		exps = append(exps, exp)
		if exp > now { // loaded entries are older than anything added later
			model.ents = append([]modelEnt{{k, exp}}, model.ents...)
		}
	}
	if got := s.loadCold(keys, exps, now, 0); got != len(model.ents) {
		t.Fatalf("loadCold returned %d, want %d", got, len(model.ents))
	}
	checkCache(t, s, "after load")
	for step := 0; step < 5000; step++ {
		now += int64(rng.Intn(15))
		k := key(rng.Intn(70))
		switch rng.Intn(4) {
		case 0:
			exp := now + int64(1+rng.Intn(3000))
			s.add(k, exp, now)
			model.add(k, exp, now)
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
	if got := s.loadCold(keys, exps, now, 0); got != 3 {
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
	if got := s.loadCold(keys, exps, now, 0); got != -1 {
		t.Fatalf("loadCold on a non-empty store returned %d, want -1", got)
	}
	if got := s.loadCold([][32]byte{key(9)}, []int64{now + 10}, now, -1); got != -1 {
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
	if got := s.loadCold(keys, exps, now, 0); got != -1 || s.len() != 2 {
		t.Fatalf("loadCold into a too small store: %d, %d entries", got, s.len())
	}
	// Expiries beyond the supported range are skipped, not stored.
	s = newTokenCache(10, newLogger("t"))
	if got := s.loadCold([][32]byte{key(1), key(2)}, []int64{maxExpiry + 1, now + 5}, now, 0); got != 1 {
		t.Fatalf("out-of-range expiry: %d entries", got)
	}
	checkCache(t, s, "range")
}
