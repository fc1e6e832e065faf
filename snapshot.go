package tokenrevoke

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// Snapshots (JetStream mode)
//
// Replaying a stream costs one NATS message per revocation, and under the interpreter
// that is tens of microseconds each: a million revocations took about 30 s. So synced
// gateways also keep a compact snapshot of their store in a second stream, and a gateway
// that starts fresh loads the newest snapshot (a few dozen large messages, decoded by
// compiled stdlib calls) and then replays only the revocations stored after it.
//
//   - Stream <stream>_SNAPSHOTS, subjects <subject>-snapshots.> (outside the revocation
//     stream's <subject>.>, so ordinary consumers never see snapshots).
//   - A snapshot is chunk messages <subject>-snapshots.<id>.<n> (binary: "TRS1", a
//     little-endian uint32 count, count 32-byte SHA-256 keys, count int64 expiries) and
//     then a manifest on <subject>-snapshots.manifest (JSON, one message per subject, so
//     the newest manifest is the current snapshot).
//   - The manifest names the revocation stream and its creation time (a snapshot of a
//     deleted and recreated stream is ignored) and the sequence up to which every
//     revocation is included: the loader starts its ordered consumer right after it.
//   - Only a synced gateway whose store never evicted a live entry writes one, so a
//     snapshot holds every live revocation up to its sequence. It writes when the stream
//     has grown by snapshotEvery messages since the newest snapshot, then purges the
//     chunks of all older snapshots. Chunks and manifest carry a TTL (defaultTTL): a snapshot that
//     is never replaced simply expires, and the next new gateway replays in full.
//   - The stream stays the source of truth: any problem with a snapshot (missing chunk,
//     bad data, other stream) makes the loader replay the whole stream instead.

const (
	snapshotMagic     = "TRS1"
	snapshotHeaderLen = 8
	snapshotSlotLen   = 32 + 8
	// snapshotChunkSlots bounds a chunk to ~512 KiB: half the default max_payload, so
	// the base64 copy in the stream's message-get reply stays under a megabyte.
	snapshotChunkSlots = 13107
	// snapshotPoll is how often a gateway checks whether a snapshot is due.
	snapshotPoll = 2 * time.Second
)

// snapshotManifest describes one complete snapshot.
type snapshotManifest struct {
	V             int       `json:"v"`
	ID            string    `json:"id"`
	Stream        string    `json:"stream"`
	StreamCreated time.Time `json:"streamCreated"`
	Seq           uint64    `json:"seq"`    // every revocation stored up to this sequence is included
	Slots         int       `json:"slots"`  // entries in all chunks (expired ones included)
	Chunks        []uint64  `json:"chunks"` // stream sequences of the chunk messages, in order
	Writer        string    `json:"writer"`
	WrittenAt     time.Time `json:"writtenAt"`
}

// snapshotStatus is the snapshot part of the status document.
type snapshotStatus struct {
	LoadedSeq      uint64 `json:"loadedSequence,omitempty"`
	LoadedEntries  int    `json:"loadedEntries,omitempty"`
	WrittenSeq     uint64 `json:"writtenSequence,omitempty"`
	WrittenEntries int    `json:"writtenEntries,omitempty"`
	LastError      string `json:"lastError,omitempty"`
}

func (n *natsSettings) snapshotStream() string  { return n.stream + "_SNAPSHOTS" }
func (n *natsSettings) snapshotPrefix() string  { return n.subject + "-snapshots" }
func (n *natsSettings) manifestSubject() string { return n.snapshotPrefix() + ".manifest" }

func (n *natsSettings) chunkSubject(id string, i int) string {
	return n.snapshotPrefix() + "." + id + "." + strconv.Itoa(i)
}

// wantedSnapshotStream is the revocation stream's configuration with its own name and
// subjects: file storage, the same replicas, one message per subject (the manifest is
// replaced in place), per-message TTLs.
func wantedSnapshotStream(n *natsSettings) natsclient.StreamConfig {
	c := wantedStream(n)
	c.Name = n.snapshotStream()
	c.Description = "tokenrevoke: snapshots of stream " + n.stream + " for fast gateway start"
	c.Subjects = []string{n.snapshotPrefix() + ".>"}
	return c
}

// ensureSnapshotStream creates the snapshot stream when it is missing. Snapshots are an
// optimisation: a failure only makes new gateways replay the whole stream.
func (j *js) ensureSnapshotStream(l *natsLink) {
	n := l.n
	_, err := l.conn.StreamInfo(n.snapshotStream(), publishTimeout)
	if err == natsclient.ErrStreamNotFound {
		_, err = l.conn.AddStream(wantedSnapshotStream(n), publishTimeout)
		if err == nil {
			l.log.infof("nats: created stream %s (subjects %s.>) for snapshots of %s", n.snapshotStream(), n.snapshotPrefix(), n.stream)
		}
	}
	if err != nil {
		j.snapFail(l, "nats: snapshot stream "+n.snapshotStream()+" unavailable ("+err.Error()+"); new gateways replay the whole stream")
	}
}

// snapFail records a snapshot problem and logs it once per distinct message.
func (j *js) snapFail(l *natsLink, msg string) {
	j.mu.Lock()
	repeat := j.snap.LastError == msg
	j.snap.LastError = msg
	j.mu.Unlock()
	if !repeat {
		l.log.warnf("%s", msg)
	}
}

// loadSnapshot loads the newest usable snapshot into the store and returns the stream
// sequence it covers (0: none, replay everything). info is the revocation stream's.
func (j *js) loadSnapshot(l *natsLink, info *natsclient.StreamInfo) uint64 {
	n := l.n
	start := time.Now()
	m, err := l.conn.GetMsg(n.snapshotStream(), natsclient.GetMsgRequest{LastBySubject: n.manifestSubject()}, publishTimeout)
	if err == natsclient.ErrMsgNotFound || err == natsclient.ErrStreamNotFound {
		return 0
	}
	if err != nil {
		j.snapFail(l, "nats: cannot read the snapshot manifest ("+err.Error()+"); replaying the whole stream")
		return 0
	}
	var man snapshotManifest
	if err := json.Unmarshal(m.Data, &man); err != nil {
		j.snapFail(l, "nats: snapshot manifest is not valid JSON; replaying the whole stream")
		return 0
	}
	if problem := manifestProblem(&man, n, info); problem != "" {
		j.snapFail(l, "nats: snapshot "+man.ID+" not used ("+problem+"); replaying the whole stream")
		return 0
	}
	// Chunks are fetched and decoded by a few goroutines at once (the round trips
	// overlap, and decoding runs compiled on the other core) while this goroutine adds
	// them to the store in order.
	chunks := make([]snapshotChunk, len(man.Chunks))
	for i := range chunks {
		chunks[i].done = make(chan struct{})
	}
	var next int64 = -1
	for w := 0; w < snapshotFetchers; w++ {
		go fetchChunks(l, &man, chunks, &next)
	}
	now := time.Now().Unix()
	total := 0
	loaded := 0
	var problem string
	for i := range chunks {
		<-chunks[i].done
		if problem != "" {
			continue // let the fetchers finish; nothing more is added
		}
		if chunks[i].problem != "" {
			problem = chunks[i].problem
			continue
		}
		loaded = l.d.cache.loadCold(chunks[i].keys, chunks[i].exps, now, loaded)
		total += len(chunks[i].keys)
		chunks[i].keys = nil
		chunks[i].exps = nil
	}
	if problem != "" {
		j.snapFail(l, "nats: snapshot "+man.ID+" "+problem+"; replaying the whole stream")
		return 0
	}
	if total != man.Slots {
		j.snapFail(l, "nats: snapshot "+man.ID+" holds "+strconv.Itoa(total)+" entries, its manifest says "+strconv.Itoa(man.Slots)+"; replaying the whole stream")
		return 0
	}
	entries := l.d.cache.len()
	j.mu.Lock()
	j.snap.LoadedSeq = man.Seq
	j.snap.LoadedEntries = entries
	j.snap.LastError = ""
	j.knownSnapSeq = man.Seq
	j.mu.Unlock()
	l.log.infof("nats: loaded snapshot %s of stream %s (sequence %d, %d revocations held) in %s; replaying from sequence %d",
		man.ID, n.stream, man.Seq, entries, time.Since(start).Round(time.Millisecond), man.Seq+1)
	return man.Seq
}

// snapshotFetchers is how many chunks are fetched at once.
const snapshotFetchers = 4

// snapshotChunk is one chunk as fetched by fetchChunks; done is closed when it is in.
type snapshotChunk struct {
	done    chan struct{}
	keys    [][32]byte
	exps    []int64
	problem string
}

// fetchChunks takes chunk numbers from next (atomically) until none are left, reads
// and decodes each, and closes its done channel.
func fetchChunks(l *natsLink, man *snapshotManifest, chunks []snapshotChunk, next *int64) {
	n := l.n
	for {
		i := int(atomic.AddInt64(next, 1))
		if i >= len(chunks) {
			return
		}
		c := &chunks[i]
		cm, err := l.conn.GetMsg(n.snapshotStream(), natsclient.GetMsgRequest{Seq: man.Chunks[i]}, publishTimeout)
		if err != nil {
			c.problem = "chunk " + strconv.Itoa(i) + " unreadable (" + err.Error() + ")"
		} else if cm.Subject != n.chunkSubject(man.ID, i) {
			c.problem = "chunk " + strconv.Itoa(i) + " has subject " + strconv.Quote(cm.Subject)
		} else {
			keys, exps, ok := decodeSnapshotChunk(cm.Data)
			if ok {
				c.keys = keys
				c.exps = exps
			} else {
				c.problem = "chunk " + strconv.Itoa(i) + " is malformed"
			}
		}
		close(c.done)
	}
}

// manifestProblem says why a manifest cannot be used for this stream, or "".
func manifestProblem(man *snapshotManifest, n *natsSettings, info *natsclient.StreamInfo) string {
	if man.V != 1 {
		return "unsupported version " + strconv.Itoa(man.V)
	}
	if man.Stream != n.stream {
		return "it is of stream " + strconv.Quote(man.Stream)
	}
	if !man.StreamCreated.Equal(info.Created) {
		return "the stream was recreated since"
	}
	if man.Seq == 0 || man.Seq > info.State.LastSeq {
		return "its sequence " + strconv.FormatUint(man.Seq, 10) + " is beyond the stream's last " + strconv.FormatUint(info.State.LastSeq, 10)
	}
	if len(man.ID) != 16 || len(man.Chunks) == 0 || man.Slots < 0 || man.Slots > len(man.Chunks)*snapshotChunkSlots {
		return "malformed manifest"
	}
	return ""
}

// encodeSnapshotChunk lays out one chunk; binary.Write runs compiled, so the per-entry
// work is not interpreted.
func encodeSnapshotChunk(keys [][32]byte, exps []int64) []byte {
	var b bytes.Buffer
	b.Grow(snapshotHeaderLen + len(keys)*snapshotSlotLen)
	b.WriteString(snapshotMagic)
	var count [4]byte
	binary.LittleEndian.PutUint32(count[:], uint32(len(keys)))
	b.Write(count[:])
	_ = binary.Write(&b, binary.LittleEndian, keys)
	_ = binary.Write(&b, binary.LittleEndian, exps)
	return b.Bytes()
}

// decodeSnapshotChunk reverses encodeSnapshotChunk, refusing a chunk of the wrong shape.
func decodeSnapshotChunk(data []byte) ([][32]byte, []int64, bool) {
	if len(data) < snapshotHeaderLen || string(data[:4]) != snapshotMagic {
		return nil, nil, false
	}
	n := int(binary.LittleEndian.Uint32(data[4:8]))
	if n > snapshotChunkSlots || len(data) != snapshotHeaderLen+n*snapshotSlotLen {
		return nil, nil, false
	}
	split := snapshotHeaderLen + 32*n
	keys := make([][32]byte, n)
	if binary.Read(bytes.NewReader(data[snapshotHeaderLen:split]), binary.LittleEndian, keys) != nil {
		return nil, nil, false
	}
	exps := make([]int64, n)
	if binary.Read(bytes.NewReader(data[split:]), binary.LittleEndian, exps) != nil {
		return nil, nil, false
	}
	// Expiries are range-checked where they are used (store.loadCold), not in another
	// interpreted pass over the chunk.
	return keys, exps, true
}

// snapshotLoop runs for the life of the link and writes a snapshot whenever one is due.
// It polls (no select: yaegi v0.16.1 shares a select's cases between goroutines that
// run the same statement, and a process may hold several links).
func (l *natsLink) snapshotLoop() {
	j := &l.js
	for {
		time.Sleep(snapshotPoll + jitterUpTo(snapshotPoll))
		if l.conn.IsClosed() {
			return
		}
		if j.snapshotDue(l) {
			j.writeSnapshot(l)
		}
	}
}

func jitterUpTo(d time.Duration) time.Duration {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return d * time.Duration(binary.LittleEndian.Uint16(b[:])) / 65536
}

// snapshotDue reports whether this gateway should write a snapshot now: it is synced, its
// store never dropped a live entry, and the stream grew by snapshotEvery messages since
// the newest snapshot (its own, the one it loaded, or one another gateway wrote).
func (j *js) snapshotDue(l *natsLink) bool {
	if !j.synced() {
		return false
	}
	applied := atomic.LoadUint64(&j.applied)
	j.mu.Lock()
	known := j.knownSnapSeq
	created := j.created
	j.mu.Unlock()
	if applied < known+l.n.snapshotEvery {
		return false
	}
	if _, evictions, _ := l.d.cache.stats(); evictions > 0 {
		return false
	}
	m, err := l.conn.GetMsg(l.n.snapshotStream(), natsclient.GetMsgRequest{LastBySubject: l.n.manifestSubject()}, publishTimeout)
	if err != nil {
		return err == natsclient.ErrMsgNotFound
	}
	var man snapshotManifest
	if json.Unmarshal(m.Data, &man) != nil || man.Stream != l.n.stream || !man.StreamCreated.Equal(created) {
		return true
	}
	j.mu.Lock()
	if man.Seq > j.knownSnapSeq {
		j.knownSnapSeq = man.Seq
	}
	j.mu.Unlock()
	return applied >= man.Seq+l.n.snapshotEvery
}

// writeSnapshot writes the store as a snapshot covering every revocation applied so far.
// The sequence is read before the store is copied, so each revocation up to it is in the
// copy; later ones that slip in are harmless (the loader's replay repeats them).
func (j *js) writeSnapshot(l *natsLink) {
	n := l.n
	start := time.Now()
	seq := atomic.LoadUint64(&j.applied)
	j.mu.Lock()
	created := j.created
	j.mu.Unlock()
	_, evictionsBefore, _ := l.d.cache.stats()
	id := randomSnapshotID()
	chunkTTL := natsclient.FormatTTL(n.defaultTTL + time.Minute)
	var chunks []uint64
	slots := 0
	for from := 0; ; from += snapshotChunkSlots {
		keys, exps := l.d.cache.copySlots(from, snapshotChunkSlots)
		if len(keys) == 0 {
			break
		}
		hdr := natsclient.Header{}
		hdr.Set(natsclient.HeaderMsgTTL, chunkTTL)
		ack, err := l.conn.PublishJS(n.chunkSubject(id, len(chunks)), hdr, encodeSnapshotChunk(keys, exps), publishTimeout)
		if err != nil {
			j.snapFail(l, "nats: writing a snapshot failed ("+err.Error()+")")
			return
		}
		chunks = append(chunks, ack.Seq)
		slots += len(keys)
	}
	if len(chunks) == 0 {
		return
	}
	if _, evictions, _ := l.d.cache.stats(); evictions != evictionsBefore {
		// A live entry was dropped while the store was being copied: the chunks may
		// miss it, so they get no manifest (they expire by themselves).
		j.snapFail(l, "nats: snapshot abandoned: the store evicted live entries while it was written (raise cacheSize)")
		return
	}
	body, _ := json.Marshal(snapshotManifest{
		V: 1, ID: id, Stream: n.stream, StreamCreated: created, Seq: seq, Slots: slots,
		Chunks: chunks, Writer: n.name, WrittenAt: time.Now().UTC(),
	})
	hdr := natsclient.Header{}
	hdr.Set(natsclient.HeaderMsgTTL, natsclient.FormatTTL(n.defaultTTL))
	if _, err := l.conn.PublishJS(n.manifestSubject(), hdr, body, publishTimeout); err != nil {
		j.snapFail(l, "nats: writing a snapshot manifest failed ("+err.Error()+")")
		return
	}
	entries, _, _ := l.d.cache.stats()
	j.mu.Lock()
	j.knownSnapSeq = seq
	j.snap.WrittenSeq = seq
	j.snap.WrittenEntries = entries
	j.snap.LastError = ""
	j.mu.Unlock()
	l.log.infof("nats: wrote snapshot %s of stream %s (sequence %d, %d revocations, %d chunks) in %s",
		id, n.stream, seq, entries, len(chunks), time.Since(start).Round(time.Millisecond))
	// Remove the chunks of every older snapshot (the one replaced, and any left by a
	// gateway that wrote at the same time and lost): all chunk messages stored before
	// this snapshot's first chunk. (A purge below sequence 1 would mean no limit at all.)
	if chunks[0] <= 1 {
		return
	}
	if _, err := l.conn.PurgeStream(n.snapshotStream(), natsclient.PurgeRequest{Filter: n.snapshotPrefix() + ".*.*", Seq: chunks[0]}, publishTimeout); err != nil {
		l.log.infof("nats: could not purge replaced snapshots (%v); they expire by themselves", err)
	}
}

func randomSnapshotID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
