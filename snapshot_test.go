package tokenrevoke

import (
	"bytes"
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
