package tokenrevoke

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// encodeSnapshotChunkV1 writes a version-1 chunk (no origins), as older gateways and
// the tokenrevoke command write them.
func encodeSnapshotChunkV1(keys [][32]byte, exps []int64) []byte {
	var b bytes.Buffer
	b.WriteString(snapshotMagic)
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(keys)))
	_ = binary.Write(&b, binary.LittleEndian, keys)
	_ = binary.Write(&b, binary.LittleEndian, exps)
	return b.Bytes()
}

func TestSnapshotChunkRoundTrip(t *testing.T) {
	keys := [][32]byte{key(1), key(2), key(3)}
	exps := []int64{0, 1700000000, maxExpiry}
	origins := []uint16{0, 2, 1}
	names := []string{"", "portal", "@idp"}
	data := encodeSnapshotChunk(keys, exps, origins, names)
	if string(data[:4]) != snapshotMagic2 {
		t.Fatalf("chunk starts %q", data[:4])
	}
	k2, e2, o2, n2, ok := decodeSnapshotChunk(data)
	if !ok || len(k2) != 3 || len(e2) != 3 || len(o2) != 3 || len(n2) != 3 {
		t.Fatalf("decode: ok=%v %d keys %d exps %d origins %d names", ok, len(k2), len(e2), len(o2), len(n2))
	}
	for i := range keys {
		if k2[i] != keys[i] || e2[i] != exps[i] || n2[o2[i]] != names[origins[i]] {
			t.Fatalf("entry %d differs after the round trip", i)
		}
	}
	if bytes.Contains(data, []byte("token-")) {
		t.Fatal("a chunk carries token text")
	}
	// Version-1 chunks still load, as origin "".
	v1 := encodeSnapshotChunkV1(keys, exps)
	k1, e1, o1, _, ok := decodeSnapshotChunk(v1)
	if !ok || len(k1) != 3 || e1[2] != maxExpiry || o1 != nil {
		t.Fatalf("version-1 chunk: ok=%v %d keys, origins %v", ok, len(k1), o1)
	}
	bad := map[string][]byte{
		"empty":              nil,
		"short header":       data[:6],
		"wrong magic":        append([]byte("XXXX"), data[4:]...),
		"truncated":          data[:len(data)-1],
		"trailing byte":      append(append([]byte(nil), data...), 0),
		"v1 truncated":       v1[:len(v1)-1],
		"v1 trailing byte":   append(append([]byte(nil), v1...), 0),
		"count too big":      append(append([]byte(snapshotMagic2), 0xff, 0xff, 0xff, 0x7f), data[8:]...),
		"name past the end":  append(append([]byte(nil), data[:len(data)-4]...), 0xff, 0x00),
		"no origins section": data[:snapshotHeaderLen+3*snapshotSlotLen],
	}
	for name, b := range bad {
		if _, _, _, _, ok := decodeSnapshotChunk(b); ok {
			t.Errorf("%s: malformed chunk accepted", name)
		}
	}
}

// TestLoadColdKeepsOrigins loads a version-2 chunk and checks every entry's origin, and
// that an origin id beyond the names (a malformed chunk) is origin "" rather than a panic.
func TestLoadColdKeepsOrigins(t *testing.T) {
	c := newTokenCache(100, newLogger("t"))
	now := int64(5_000_000)
	keys := [][32]byte{key(1), key(2), key(3), key(4)}
	exps := []int64{now + 100, now + 200, now + 300, now + 400}
	data := encodeSnapshotChunk(keys, exps, []uint16{1, 1, 2, 9}, []string{"", "portal", "@idp"})
	k, e, o, n, ok := decodeSnapshotChunk(data)
	if !ok {
		t.Fatal("decode failed")
	}
	if got := c.loadCold(k, e, o, n, now, 0, 0); got != 4 {
		t.Fatalf("loaded %d", got)
	}
	counts := c.originCounts()
	if counts["portal"] != 2 || counts["@idp"] != 1 || counts[""] != 1 {
		t.Fatalf("origin counts %v", counts)
	}
	checkCache(t, c, "after loadCold")
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
