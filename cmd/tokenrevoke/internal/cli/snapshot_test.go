package cli

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testManifest and decodeTestChunk are an independent reading of the snapshot format
// (snapshot.go at the repository root): what a gateway accepts.
type testManifest struct {
	V             int       `json:"v"`
	ID            string    `json:"id"`
	Stream        string    `json:"stream"`
	StreamCreated time.Time `json:"streamCreated"`
	Seq           uint64    `json:"seq"`
	Slots         int       `json:"slots"`
	Chunks        []uint64  `json:"chunks"`
	WithRules     bool      `json:"withRules"`
	RuleSlots     int       `json:"ruleSlots"`
	RuleChunks    []uint64  `json:"ruleChunks"`
	Writer        string    `json:"writer"`
	WrittenAt     time.Time `json:"writtenAt"`
}

const testChunkSlots = 13107

func decodeTestChunk(t *testing.T, data []byte) (keys []string, exps []int64) {
	t.Helper()
	if len(data) < 8 || string(data[:4]) != "TRS1" {
		t.Fatalf("chunk does not start with TRS1")
	}
	n := int(binary.LittleEndian.Uint32(data[4:8]))
	if n > testChunkSlots || len(data) != 8+n*40 {
		t.Fatalf("chunk of %d bytes claims %d slots", len(data), n)
	}
	for i := 0; i < n; i++ {
		keys = append(keys, hex.EncodeToString(data[8+32*i:8+32*i+32]))
		exps = append(exps, int64(binary.LittleEndian.Uint64(data[8+32*n+8*i:])))
	}
	return keys, exps
}

// readTestSnapshot reads and validates the current snapshot as a gateway would, and
// returns its manifest and entries.
func readTestSnapshot(t *testing.T, js jetstream.JetStream) (testManifest, map[string]int64) {
	t.Helper()
	ctx := context.Background()
	mm := lastMsg(t, js, "REVOCATIONS_SNAPSHOTS", "tokens.revoked-snapshots.manifest")
	if mm.Header.Get("Nats-TTL") == "" {
		t.Fatal("manifest without Nats-TTL")
	}
	var man testManifest
	if err := json.Unmarshal(mm.Data, &man); err != nil {
		t.Fatalf("manifest %s: %v", mm.Data, err)
	}
	info := streamInfo(t, js, "REVOCATIONS")
	switch {
	case man.V != 1:
		t.Fatalf("manifest version %d", man.V)
	case man.Stream != "REVOCATIONS":
		t.Fatalf("manifest of stream %q", man.Stream)
	case !man.StreamCreated.Equal(info.Created):
		t.Fatalf("manifest streamCreated %v, stream created %v", man.StreamCreated, info.Created)
	case man.Seq == 0 || man.Seq > info.State.LastSeq:
		t.Fatalf("manifest seq %d, stream last %d", man.Seq, info.State.LastSeq)
	case len(man.ID) != 16 || len(man.Chunks) == 0 || man.Slots < 0 || man.Slots > len(man.Chunks)*testChunkSlots:
		t.Fatalf("malformed manifest %s", mm.Data)
	case man.Writer == "" || man.WrittenAt.IsZero():
		t.Fatalf("manifest without writer or writtenAt: %s", mm.Data)
	}
	st, err := js.Stream(ctx, "REVOCATIONS_SNAPSHOTS")
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]int64{}
	total := 0
	prevExp := int64(0)
	for i, seq := range man.Chunks {
		cm, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("chunk %d (seq %d): %v", i, seq, err)
		}
		if want := "tokens.revoked-snapshots." + man.ID + "." + strconv.Itoa(i); cm.Subject != want {
			t.Fatalf("chunk %d on %s, want %s", i, cm.Subject, want)
		}
		if cm.Header.Get("Nats-TTL") == "" {
			t.Fatalf("chunk %d without Nats-TTL", i)
		}
		keys, exps := decodeTestChunk(t, cm.Data)
		for j, k := range keys {
			// Sorted by expiry, which the gateways' loader takes fastest.
			if exps[j] < prevExp {
				t.Fatalf("chunk %d entry %d: exp %d after %d", i, j, exps[j], prevExp)
			}
			prevExp = exps[j]
			if _, dup := entries[k]; dup {
				t.Fatalf("key %s twice in the snapshot", k)
			}
			entries[k] = exps[j]
		}
		total += len(keys)
	}
	if total != man.Slots {
		t.Fatalf("chunks hold %d entries, manifest says %d", total, man.Slots)
	}
	return man, entries
}

// snapshot writes chunks and a manifest that decode by the gateways' rules and hold
// exactly the live token/jws revocations; a second snapshot purges the first's chunks.
func TestSnapshotMatchesGatewayFormat(t *testing.T) {
	const n = 30000 // three chunks
	url := startNATS(t)
	nc, js := client(t, url)
	path, subjects := importFile(t, n, "s")
	mustRun(t, url, "", 0, "import", path)

	ctx := context.Background()
	now := time.Now().Unix()
	pub := func(subject, body string) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Header.Set("Nats-TTL", "3600s")
		m.Data = []byte(body)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	v1 := sumHex("a-v1-token")
	v1Exp := now + 1800
	pub("tokens.revoked."+v1, `{"v":1,"sha256":"`+v1+`","exp":`+strconv.FormatInt(v1Exp, 10)+`,"origin":"gw-old"}`)
	stale := sumHex("stale")
	pub("tokens.revoked."+stale, `{"v":2,"kind":"token","key":"`+stale+`","exp":1000,"origin":"x"}`)
	pub("tokens.revoked."+sumHex("bad"), `{"v":2,"kind":"token","key":"`+sumHex("other")+`","exp":4102444800}`)
	mustRun(t, url, "", 0, "revoke-session", "--issuer", "iss", "--sid", "s1")
	_ = nc

	r := mustRun(t, url, "", 0, "snapshot", "--json")
	var res snapshotResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%s: %v", r.stdout, err)
	}
	info := streamInfo(t, js, "REVOCATIONS")
	if !res.Written || res.Slots != n+1 || res.Chunks != 4 || res.Expired != 1 || res.Malformed != 1 ||
		res.Rules != 1 || res.Seq != info.State.LastSeq || res.Read != int64(n+4) {
		t.Fatalf("snapshot result %+v (stream last seq %d)", res, info.State.LastSeq)
	}

	man, entries := readTestSnapshot(t, js)
	if man.ID != res.ID || man.Seq != res.Seq || len(man.Chunks) != 3 || !man.WithRules || man.RuleSlots != 1 || len(man.RuleChunks) != 1 {
		t.Fatalf("manifest %+v, result %+v", man, res)
	}
	if len(entries) != n+1 {
		t.Fatalf("snapshot holds %d entries, want %d", len(entries), n+1)
	}
	for _, s := range subjects {
		k := strings.TrimPrefix(s, "tokens.revoked.")
		exp, ok := entries[k]
		if !ok {
			t.Fatalf("%s missing from the snapshot", s)
		}
		if exp <= now || exp > now+25*3600 {
			t.Fatalf("%s has exp %d", s, exp)
		}
	}
	if entries[v1] != v1Exp {
		t.Fatalf("v1 entry exp %d, want %d", entries[v1], v1Exp)
	}
	if _, ok := entries[stale]; ok {
		t.Fatal("an expired entry is in the snapshot")
	}

	// A newer revocation, then a second snapshot: it covers it, and the first
	// snapshot's chunks are gone.
	mustRun(t, url, "", 0, "revoke", "late-token")
	r = mustRun(t, url, "", 0, "snapshot", "--json")
	var res2 snapshotResult
	_ = json.Unmarshal([]byte(r.stdout), &res2)
	if !res2.Written || !res2.PurgedOlder || res2.Slots != n+2 || res2.Seq != res.Seq+1 {
		t.Fatalf("second snapshot %+v", res2)
	}
	man2, entries2 := readTestSnapshot(t, js)
	if _, ok := entries2[sumHex("late-token")]; !ok || man2.ID == man.ID {
		t.Fatal("the second snapshot misses the late revocation")
	}
	st, _ := js.Stream(ctx, "REVOCATIONS_SNAPSHOTS")
	for _, seq := range man.Chunks {
		if _, err := st.GetMsg(ctx, seq); err == nil {
			t.Fatalf("chunk seq %d of the replaced snapshot is still there", seq)
		}
	}
	if si := streamInfo(t, js, "REVOCATIONS_SNAPSHOTS"); si.State.Msgs != uint64(len(man2.Chunks)+len(man2.RuleChunks)+1) {
		t.Fatalf("snapshot stream holds %d messages, want %d chunks, %d rule chunks + manifest", si.State.Msgs, len(man2.Chunks), len(man2.RuleChunks))
	}
}

// snapshot of a stream without live revocations or rules writes nothing; rules alone
// make a snapshot.
func TestSnapshotNothingLive(t *testing.T) {
	url := startNATS(t)
	mustRun(t, url, "", 0, "revoke", "short-lived", "--ttl", "1s")
	time.Sleep(1100 * time.Millisecond)
	r := mustRun(t, url, "", 0, "snapshot")
	if !strings.Contains(r.stdout, "no snapshot written") || !strings.Contains(r.stdout, "nothing to snapshot") {
		t.Fatalf("snapshot of an expired revocation:\n%s", r.stdout)
	}
	mustRun(t, url, "", 0, "revoke-session", "--issuer", "i", "--sid", "s")
	r = mustRun(t, url, "", 0, "snapshot")
	if !strings.Contains(r.stdout, "0 entries and 1 rules") {
		t.Fatalf("snapshot of rules only:\n%s", r.stdout)
	}
	mustRun(t, url, "", 1, "snapshot", "--stream", "NOSUCH")
	mustRun(t, url, "", 2, "snapshot", "--stream", "")
}

// purge --force empties the revocation stream and its snapshot stream; without
// --force and without a terminal it refuses and purges nothing.
func TestPurge(t *testing.T) {
	url := startNATS(t)
	_, js := client(t, url)
	for i := 0; i < 20; i++ {
		mustRun(t, url, "", 0, "revoke", "purge-me-"+strconv.Itoa(i))
	}
	mustRun(t, url, "", 0, "snapshot")
	if si := streamInfo(t, js, "REVOCATIONS_SNAPSHOTS"); si.State.Msgs != 2 {
		t.Fatalf("snapshot stream holds %d messages", si.State.Msgs)
	}
	mustRun(t, url, "REVOCATIONS\n", ExitUsage, "purge")
	if si := streamInfo(t, js, "REVOCATIONS"); si.State.Msgs != 20 {
		t.Fatalf("purge without --force removed messages: %d left", si.State.Msgs)
	}
	r := mustRun(t, url, "", 0, "purge", "--force", "--json")
	var res purgeResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Purged != 20 || res.SnapshotsPurged != 2 {
		t.Fatalf("purge printed %s (%v)", r.stdout, err)
	}
	for _, s := range []string{"REVOCATIONS", "REVOCATIONS_SNAPSHOTS"} {
		if si := streamInfo(t, js, s); si.State.Msgs != 0 {
			t.Fatalf("%s holds %d messages after purge", s, si.State.Msgs)
		}
	}
	mustRun(t, url, "", 3, "check", "purge-me-1")
}
