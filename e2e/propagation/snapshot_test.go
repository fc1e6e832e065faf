package propagation

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// snapshotPart is the snapshot section of a gateway's status document.
type snapshotPart struct {
	NATS struct {
		Received int64 `json:"received"`
		Snapshot *struct {
			LoadedSequence  uint64 `json:"loadedSequence"`
			LoadedEntries   int    `json:"loadedEntries"`
			WrittenSequence uint64 `json:"writtenSequence"`
			WrittenEntries  int    `json:"writtenEntries"`
			LastError       string `json:"lastError"`
		} `json:"snapshot"`
	} `json:"nats"`
	Entries int  `json:"entries"`
	Synced  bool `json:"synced"`
}

func snapshotStatus(t *testing.T, g *gateway) snapshotPart {
	t.Helper()
	var s snapshotPart
	if err := json.Unmarshal([]byte(g.status()), &s); err != nil {
		t.Fatalf("status: %v", err)
	}
	if s.NATS.Snapshot == nil {
		t.Fatalf("status has no snapshot part: %s", g.status())
	}
	return s
}

// waitSnapshotStatus polls g's status until ok accepts it.
func waitSnapshotStatus(t *testing.T, g *gateway, timeout time.Duration, what string, ok func(snapshotPart) bool) snapshotPart {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := snapshotStatus(t, g)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %v; status %s\nlog:\n%s", what, timeout, g.status(), g.logged())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// snapshotManifest is the part of the current snapshot manifest the tests read.
type snapshotManifest struct {
	Seq    uint64   `json:"seq"`
	Chunks []uint64 `json:"chunks"`
}

// readManifest connects with nats.go and reads the current snapshot manifest; the
// JetStream context stays usable until the test ends.
func readManifest(t *testing.T, url string) (snapshotManifest, nats.JetStreamContext) {
	t.Helper()
	js := jetStreamOf(t, url)
	m, err := js.GetLastMsg("REVOCATIONS_SNAPSHOTS", "tokens.revoked-snapshots.manifest")
	if err != nil {
		t.Fatalf("no manifest: %v", err)
	}
	var man snapshotManifest
	if err := json.Unmarshal(m.Data, &man); err != nil || len(man.Chunks) == 0 {
		t.Fatalf("manifest %s: %v", m.Data, err)
	}
	return man, js
}

// snapshotFleet starts nats-server with JetStream, fills the stream with filled
// revocations (sync-token-0 ...), starts gateway A with snapshotEvery every and waits
// until A is synced and has written a snapshot covering them all. extra is A's nats
// settings, for the gateways a test starts next.
func snapshotFleet(t *testing.T, filled, every int) (*harness.NATS, map[string]interface{}, *gateway, snapshotPart) {
	t.Helper()
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	fillStream(t, srv.URL, filled)
	extra := map[string]interface{}{"stream": "REVOCATIONS", "snapshotEvery": every}
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", extra))
	st := waitSnapshotStatus(t, a, 60*time.Second, "A writes a snapshot", func(s snapshotPart) bool {
		return s.Synced && s.NATS.Snapshot.WrittenSequence >= uint64(filled)
	})
	return srv, extra, a, st
}

// A synced gateway writes a snapshot; a gateway started later loads it, replays only
// the revocations stored after it, and rejects every revoked token.
func TestSnapshotWrittenAndLoaded(t *testing.T) {
	const filled, tail = 3000, 40
	srv, extra, a, sa := snapshotFleet(t, filled, 1000)
	if sa.NATS.Snapshot.WrittenEntries != filled {
		t.Fatalf("A wrote a snapshot of %d entries, want %d", sa.NATS.Snapshot.WrittenEntries, filled)
	}
	// Revocations after the snapshot: B must get these from the stream.
	for i := 0; i < tail; i++ {
		if code := a.revoke("tail-token-" + strconv.Itoa(i)); code != 200 {
			t.Fatalf("revoke on A: %d", code)
		}
	}

	b := newGateway(t, natsConfig([]string{srv.URL}, "gw-b", extra))
	sb := waitSnapshotStatus(t, b, 60*time.Second, "B synced", func(s snapshotPart) bool {
		return s.Synced && s.Entries == filled+tail
	})
	snap := sb.NATS.Snapshot
	if snap.LoadedSequence != sa.NATS.Snapshot.WrittenSequence || snap.LoadedEntries != filled {
		t.Fatalf("B loaded sequence %d with %d entries, want A's snapshot at %d with %d; log:\n%s",
			snap.LoadedSequence, snap.LoadedEntries, sa.NATS.Snapshot.WrittenSequence, filled, b.logged())
	}
	// Only the tail came through the consumer.
	if sb.NATS.Received != tail {
		t.Fatalf("B received %d revocations from the stream, want only the %d after the snapshot", sb.NATS.Received, tail)
	}
	accepted := 0
	for i := 0; i < filled; i++ {
		if b.call("sync-token-"+strconv.Itoa(i)) != 401 {
			accepted++
		}
	}
	for i := 0; i < tail; i++ {
		if b.call("tail-token-"+strconv.Itoa(i)) != 401 {
			accepted++
		}
	}
	if accepted != 0 {
		t.Fatalf("B accepted %d revoked tokens", accepted)
	}
	if b.call("never-revoked") != 200 {
		t.Fatal("B rejects a token nobody revoked")
	}
	if strings.Contains(b.logged(), "sync-token-") || strings.Contains(a.logged(), "tail-token-") {
		t.Fatal("a raw token appears in a log")
	}
}

// A snapshot that lost a chunk is not used: the gateway replays the whole stream and
// still rejects everything.
func TestSnapshotWithMissingChunkFallsBackToReplay(t *testing.T) {
	const filled = 2000
	srv, extra, _, _ := snapshotFleet(t, filled, 500)

	man, js := readManifest(t, srv.URL)
	if err := js.DeleteMsg("REVOCATIONS_SNAPSHOTS", man.Chunks[0]); err != nil {
		t.Fatal(err)
	}

	c := newGateway(t, natsConfig([]string{srv.URL}, "gw-c", extra))
	sc := waitSnapshotStatus(t, c, 60*time.Second, "C synced", func(s snapshotPart) bool {
		return s.Synced && s.Entries == filled
	})
	if sc.NATS.Snapshot.LoadedSequence != 0 || !strings.Contains(sc.NATS.Snapshot.LastError, "chunk 0") {
		t.Fatalf("C used a broken snapshot: %+v", *sc.NATS.Snapshot)
	}
	if sc.NATS.Received != filled {
		t.Fatalf("C replayed %d revocations, want all %d", sc.NATS.Received, filled)
	}
	for i := 0; i < filled; i++ {
		if code := c.call("sync-token-" + strconv.Itoa(i)); code != 401 {
			t.Fatalf("C accepts revoked sync-token-%d (%d)", i, code)
		}
	}
}

// A snapshot written for an earlier incarnation of the stream (deleted and created
// again) is ignored.
func TestSnapshotOfRecreatedStreamIgnored(t *testing.T) {
	srv, extra, _, _ := snapshotFleet(t, 600, 200)
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream("REVOCATIONS"); err != nil {
		t.Fatal(err)
	}
	// A new stream with other revocations; the old snapshot's tokens are not in it.
	fillStreamFrom(t, srv.URL, 10000, 700)

	b := newGateway(t, natsConfig([]string{srv.URL}, "gw-b", extra))
	sb := waitSnapshotStatus(t, b, 60*time.Second, "B synced", func(s snapshotPart) bool {
		return s.Synced && s.Entries == 700
	})
	if sb.NATS.Snapshot.LoadedSequence != 0 || !strings.Contains(sb.NATS.Snapshot.LastError, "recreated") {
		t.Fatalf("B used the snapshot of the deleted stream: %+v", *sb.NATS.Snapshot)
	}
	if b.call("sync-token-1") != 200 || b.call("sync-token-10001") != 401 {
		t.Fatal("B enforces the old stream's revocations or misses the new stream's")
	}
}

// Without snapshots (snapshotEvery -1) nothing is written or read.
func TestSnapshotsOff(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	fillStream(t, srv.URL, 300)
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", map[string]interface{}{"stream": "REVOCATIONS", "snapshotEvery": -1}))
	if _, err := a.WaitSynced(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // more than two snapshot polls
	if strings.Contains(a.status(), `"snapshot"`) {
		t.Fatalf("status shows snapshots while they are off: %s", a.status())
	}
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.StreamInfo("REVOCATIONS_SNAPSHOTS"); err == nil {
		t.Fatal("a snapshot stream was created with snapshots off")
	}
}

// A newer snapshot replaces the older one: its chunks are purged, so the snapshot
// stream holds one snapshot (its chunks and the manifest).
func TestSnapshotReplacedAndPurged(t *testing.T) {
	srv, _, a, first := snapshotFleet(t, 1000, 500)
	fillStreamFrom(t, srv.URL, 1000, 600)
	second := waitSnapshotStatus(t, a, 60*time.Second, "second snapshot", func(s snapshotPart) bool {
		return s.NATS.Snapshot.WrittenSequence >= 1600
	})
	if second.NATS.Snapshot.WrittenEntries != 1600 || first.NATS.Snapshot.WrittenSequence >= second.NATS.Snapshot.WrittenSequence {
		t.Fatalf("snapshots: first %+v, second %+v", *first.NATS.Snapshot, *second.NATS.Snapshot)
	}
	man, js := readManifest(t, srv.URL)
	if man.Seq != second.NATS.Snapshot.WrittenSequence {
		t.Fatalf("manifest at sequence %d, the second snapshot is at %d", man.Seq, second.NATS.Snapshot.WrittenSequence)
	}
	info, err := js.StreamInfo("REVOCATIONS_SNAPSHOTS")
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(man.Chunks))+1 {
		t.Fatalf("snapshot stream holds %d messages, want %d chunks + 1 manifest (the older snapshot was not purged)", info.State.Msgs, len(man.Chunks))
	}
}

// Revocations keep arriving while a new gateway loads a snapshot and while the snapshot
// is rewritten: nothing acknowledged before, during or after the load is missing on it.
func TestSnapshotLoadDuringRevocations(t *testing.T) {
	const filled = 4000
	srv, extra, a, _ := snapshotFleet(t, filled, 150)

	// Revoke through A without pause until told to stop; only 200s count as acknowledged.
	stop := make(chan struct{})
	done := make(chan []string)
	go func() {
		var acked []string
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- acked
				return
			default:
			}
			tok := "during-token-" + strconv.Itoa(i)
			if a.revoke(tok) == 200 {
				acked = append(acked, tok)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	b := newGateway(t, natsConfig([]string{srv.URL}, "gw-b", extra))
	waitSnapshotStatus(t, b, 60*time.Second, "B synced", func(s snapshotPart) bool { return s.Synced })
	// Revocations after B's sync, until A has written a newer snapshot (and purged the
	// one B loaded) while they kept coming.
	waitSnapshotStatus(t, a, 30*time.Second, "A writes a newer snapshot", func(s snapshotPart) bool {
		return s.NATS.Snapshot.WrittenSequence > filled+150
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	acked := <-done
	if len(acked) < 100 {
		t.Fatalf("only %d revocations acknowledged during the test", len(acked))
	}
	sb := snapshotStatus(t, b)
	if sb.NATS.Snapshot.LoadedSequence == 0 {
		t.Fatalf("B did not load a snapshot: %+v", *sb.NATS.Snapshot)
	}
	accepted := 0
	for i := 0; i < filled; i++ {
		if b.call("sync-token-"+strconv.Itoa(i)) != 401 {
			accepted++
		}
	}
	for _, tok := range acked {
		if !b.waitRejected(tok, 2*time.Second) {
			accepted++
		}
	}
	t.Logf("%d revocations acknowledged while B loaded snapshot sequence %d; A wrote up to %d; revoked tokens accepted by B: %d",
		len(acked), sb.NATS.Snapshot.LoadedSequence, snapshotStatus(t, a).NATS.Snapshot.WrittenSequence, accepted)
	if accepted != 0 {
		t.Fatalf("B accepted %d revoked tokens", accepted)
	}
}
