package tokenrevoke

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// Snapshots (JetStream mode)
//
// Replaying a stream costs one NATS message per revocation, and under the interpreter
// that is tens of microseconds each: a million revocations took about 30 s. So synced
// gateways also keep a compact snapshot of their cache in a second stream, and a gateway
// that starts fresh loads the newest snapshot (a few dozen large messages, decoded by
// compiled stdlib calls) and then replays only the revocations stored after it.
//
//   - Stream <stream>_SNAPSHOTS, subjects <subject>-snapshots.> (outside the revocation
//     stream's <subject>.>, so ordinary consumers never see snapshots).
//   - A snapshot is chunk messages <subject>-snapshots.<id>.<n> (binary: "TRS1", a
//     little-endian uint32 count, count 32-byte SHA-256 keys, count int64 expiries) and
//     then a manifest on <subject>-snapshots.manifest (JSON, one message per subject, so
//     the newest manifest is the current snapshot).
//   - Session and subject rules (rules.go) follow the token chunks as chunks of their
//     own ("TRR1", see encodeRuleChunk), listed in the manifest's ruleChunks. A manifest
//     without withRules (an older gateway, or the tokenrevoke command) is used only if
//     the stream holds no rule message up to its sequence.
//   - The manifest names the revocation stream and its creation time (a snapshot of a
//     deleted and recreated stream is ignored) and the sequence up to which every
//     revocation is included: the loader starts its ordered consumer right after it.
//   - Only a synced gateway whose cache never evicted a live entry writes one, so a
//     snapshot holds every live revocation up to its sequence. It writes when the stream
//     has grown by snapshotEvery messages since the newest snapshot, then purges the
//     chunks of all older snapshots. Chunks and manifest carry a TTL (defaultTTL): a
//     snapshot that is never replaced simply expires, and the next new gateway replays
//     in full.
//   - The stream follower (stream.go) drives the snapshotter below: it asks it to load
//     the newest snapshot before its first replay, and, while synced, whether a
//     snapshot is due and to write one.
//   - The manifest lists the SHA-256 of every chunk (chunkSha256, ruleChunkSha256) and,
//     with nats.signing, carries the Tokenrevoke-Sig header (signing.go). A loader with
//     keys uses only a manifest a configured key signed, with digests, and checks every
//     chunk against its digest; digests present are checked in any case.
//   - The stream stays the source of truth: any problem with a snapshot (missing chunk,
//     bad data, other stream) makes the loader replay the whole stream instead.

const (
	snapshotMagic     = "TRS1"
	snapshotMagic2    = "TRS2"
	snapshotHeaderLen = 8
	snapshotSlotLen   = 32 + 8
	// snapshotChunkSlots bounds a chunk to ~512 KiB: half the default max_payload, so
	// the base64 copy in the stream's message-get reply stays under a megabyte. A chunk
	// must also fit one bulk load of the cache (checked below).
	snapshotChunkSlots = 13107
)

// A loaded chunk goes into the cache with one loadCold call, which takes at most
// coldLoadMax entries in bulk (a larger batch would fall back to the slower addBatch):
// this constant does not compile if a chunk could be larger.
const _ = uint(coldLoadMax - snapshotChunkSlots)

// snapshotManifest describes one complete snapshot.
type snapshotManifest struct {
	V             int       `json:"v"`
	ID            string    `json:"id"`
	Stream        string    `json:"stream"`
	StreamCreated time.Time `json:"streamCreated"`
	Seq           uint64    `json:"seq"`    // every revocation stored up to this sequence is included
	Slots         int       `json:"slots"`  // entries in all chunks (expired ones included)
	Chunks        []uint64  `json:"chunks"` // stream sequences of the chunk messages, in order
	// WithRules is set by writers that include session and subject rules: RuleChunks
	// (possibly none) hold RuleSlots rules. A manifest without it (an older writer, or
	// the tokenrevoke command) is used only if the stream holds no rule up to Seq.
	WithRules  bool     `json:"withRules,omitempty"`
	RuleSlots  int      `json:"ruleSlots,omitempty"`
	RuleChunks []uint64 `json:"ruleChunks,omitempty"`
	// ChunkSha256 and RuleChunkSha256 are the hex SHA-256 of each chunk message's body,
	// in the order of Chunks and RuleChunks: the manifest's signature (nats.signing)
	// covers them, and so the chunks. A loader with keys refuses a manifest without.
	ChunkSha256     []string  `json:"chunkSha256,omitempty"`
	RuleChunkSha256 []string  `json:"ruleChunkSha256,omitempty"`
	Writer          string    `json:"writer"`
	WrittenAt       time.Time `json:"writtenAt"`
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

// snapshotter writes snapshots of the cache into the snapshot stream and loads the
// newest one into a fresh cache. It keeps its own state under its own lock; the stream
// follower decides when to ask it (load before the first replay, due and write while
// synced).
type snapshotter struct {
	conn  *natsclient.Conn
	n     *natsSettings
	cache *tokenCache
	log   *logger

	// loadOrigin and loadVerified: the cache origin the loaded manifest's signature
	// proves, and whether a configured key signed it (set by load before the chunks are
	// fetched, read by its fetchers).
	loadOrigin   string
	loadVerified bool

	mu       sync.Mutex
	knownSeq uint64         // sequence of the newest snapshot known to exist
	st       snapshotStatus // for the status document
}

func newSnapshotter(conn *natsclient.Conn, n *natsSettings, cache *tokenCache, log *logger) *snapshotter {
	return &snapshotter{conn: conn, n: n, cache: cache, log: log}
}

// status returns a copy of the snapshot part of the status document.
func (s *snapshotter) status() snapshotStatus {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	return st
}

// ensureStream creates the snapshot stream when it is missing. Snapshots are an
// optimisation: a failure only makes new gateways replay the whole stream.
func (s *snapshotter) ensureStream() {
	n := s.n
	_, err := s.conn.StreamInfo(n.snapshotStream(), publishTimeout)
	if err == natsclient.ErrStreamNotFound {
		_, err = s.conn.AddStream(wantedSnapshotStream(n), publishTimeout)
		if err == nil {
			s.log.infof("nats: created stream %s (subjects %s.>) for snapshots of %s", n.snapshotStream(), n.snapshotPrefix(), n.stream)
		}
	}
	if err != nil {
		s.fail("nats: snapshot stream " + n.snapshotStream() + " unavailable (" + err.Error() + "); new gateways replay the whole stream")
	}
}

// fail records a snapshot problem and logs it once per distinct message.
func (s *snapshotter) fail(msg string) {
	s.mu.Lock()
	repeat := s.st.LastError == msg
	s.st.LastError = msg
	s.mu.Unlock()
	if !repeat {
		s.log.warnf("%s", msg)
	}
}

// load loads the newest usable snapshot into the cache and returns the stream sequence
// it covers (0: none, replay everything). info is the revocation stream's.
func (s *snapshotter) load(info *natsclient.StreamInfo) uint64 {
	n := s.n
	start := time.Now()
	m, err := s.conn.GetMsg(n.snapshotStream(), natsclient.GetMsgRequest{LastBySubject: n.manifestSubject()}, publishTimeout)
	if err == natsclient.ErrMsgNotFound || err == natsclient.ErrStreamNotFound {
		return 0
	}
	if err != nil {
		s.fail("nats: cannot read the snapshot manifest (" + err.Error() + "); replaying the whole stream")
		return 0
	}
	origin, why := n.signer.checkHeader(n.manifestSubject(), m.Data, m.Header)
	if why != 0 {
		s.fail("nats: snapshot manifest not used (" + sigDropReason(why) + "); replaying the whole stream")
		return 0
	}
	var man snapshotManifest
	if err := json.Unmarshal(m.Data, &man); err != nil {
		s.fail("nats: snapshot manifest is not valid JSON; replaying the whole stream")
		return 0
	}
	if problem := manifestProblem(&man, n, info); problem != "" {
		s.fail("nats: snapshot " + man.ID + " not used (" + problem + "); replaying the whole stream")
		return 0
	}
	// The chunks' origin names are the writer's accounting; a verified writer's own
	// revocations (its clients) count as its key's, as they would when replayed, and an
	// unverified snapshot's entries are all of origin "@unsigned".
	s.loadOrigin = origin
	s.loadVerified = n.signer != nil && origin != originUnsigned
	// Chunks are fetched and decoded by a few goroutines at once (the round trips
	// overlap, and decoding runs compiled on the other core) while this goroutine adds
	// them to the cache in order.
	chunks := make([]snapshotChunk, len(man.Chunks))
	for i := range chunks {
		chunks[i].done = make(chan struct{})
	}
	var next int64 = -1
	for w := 0; w < snapshotFetchers; w++ {
		go s.fetchChunks(&man, chunks, &next)
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
		loaded = s.cache.loadCold(chunks[i].keys, chunks[i].exps, chunks[i].origins, chunks[i].names, now, now+int64(n.maxTTL/time.Second), loaded)
		total += len(chunks[i].keys)
		chunks[i].keys = nil
		chunks[i].exps = nil
		chunks[i].origins = nil
	}
	if problem != "" {
		s.fail("nats: snapshot " + man.ID + " " + problem + "; replaying the whole stream")
		return 0
	}
	if total != man.Slots {
		s.fail("nats: snapshot " + man.ID + " holds " + strconv.Itoa(total) + " entries, its manifest says " + strconv.Itoa(man.Slots) + "; replaying the whole stream")
		return 0
	}
	if problem := s.loadRules(&man); problem != "" {
		s.fail("nats: snapshot " + man.ID + " " + problem + "; replaying the whole stream")
		return 0
	}
	entries := s.cache.len()
	s.mu.Lock()
	s.st.LoadedSeq = man.Seq
	s.st.LoadedEntries = entries
	s.st.LastError = ""
	s.knownSeq = man.Seq
	s.mu.Unlock()
	s.log.infof("nats: loaded snapshot %s of stream %s (sequence %d, %d revocations held) in %s; replaying from sequence %d",
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
	origins []uint16 // nil in a version-1 chunk
	names   []string
	problem string
}

// fetchChunks takes chunk numbers from next (atomically) until none are left, reads
// and decodes each, and closes its done channel.
func (s *snapshotter) fetchChunks(man *snapshotManifest, chunks []snapshotChunk, next *int64) {
	n := s.n
	for {
		i := int(atomic.AddInt64(next, 1))
		if i >= len(chunks) {
			return
		}
		c := &chunks[i]
		cm, err := s.conn.GetMsg(n.snapshotStream(), natsclient.GetMsgRequest{Seq: man.Chunks[i]}, publishTimeout)
		if err != nil {
			c.problem = "chunk " + strconv.Itoa(i) + " unreadable (" + err.Error() + ")"
		} else if cm.Subject != n.chunkSubject(man.ID, i) {
			c.problem = "chunk " + strconv.Itoa(i) + " has subject " + strconv.Quote(cm.Subject)
		} else if len(man.ChunkSha256) > 0 && !digestMatches(cm.Data, man.ChunkSha256[i]) {
			c.problem = "chunk " + strconv.Itoa(i) + " does not match its digest in the manifest"
		} else {
			keys, exps, origins, names, ok := decodeSnapshotChunk(cm.Data)
			if ok {
				c.keys = keys
				c.exps = exps
				c.origins = origins
				c.names = s.chunkOrigins(names)
				if origins == nil && !s.loadVerified {
					// A version-1 chunk (no origins): origin "" would be the local one.
					c.origins = make([]uint16, len(keys))
					c.names = []string{originUnsigned}
				} else if origins == nil {
					c.origins = make([]uint16, len(keys))
					c.names = []string{s.loadOrigin}
				}
			} else {
				c.problem = "chunk " + strconv.Itoa(i) + " is malformed"
			}
		}
		close(c.done)
	}
}

// ruleChunkSlots bounds a rule chunk (49 bytes a rule: about 480 KiB).
const ruleChunkSlots = 10000

// ruleSnapshotMagic starts a chunk of session and subject rules.
const ruleSnapshotMagic = "TRR1"

// loadRules adds the manifest's rules to the cache, or, for a manifest written without
// rules, makes sure the stream holds none that the snapshot should have carried. It
// returns a problem ("" when fine).
func (s *snapshotter) loadRules(man *snapshotManifest) string {
	n := s.n
	if !man.WithRules {
		for _, kind := range []string{kindSID, kindSub} {
			m, err := s.conn.GetMsg(n.stream, natsclient.GetMsgRequest{Seq: 1, NextBySubject: n.subject + "." + kind + ".*"}, publishTimeout)
			if err == natsclient.ErrMsgNotFound {
				continue
			}
			if err != nil {
				return "cannot be checked for rules (" + err.Error() + ")"
			}
			if m.Seq <= man.Seq {
				return "was written without session and subject rules, and the stream holds some"
			}
		}
		return ""
	}
	now := time.Now().Unix()
	limit := now + int64(n.maxTTL/time.Second)
	total := 0
	for i, seq := range man.RuleChunks {
		cm, err := s.conn.GetMsg(n.snapshotStream(), natsclient.GetMsgRequest{Seq: seq}, publishTimeout)
		if err != nil {
			return "rule chunk " + strconv.Itoa(i) + " unreadable (" + err.Error() + ")"
		}
		if cm.Subject != n.chunkSubject(man.ID, len(man.Chunks)+i) {
			return "rule chunk " + strconv.Itoa(i) + " has subject " + strconv.Quote(cm.Subject)
		}
		if len(man.RuleChunkSha256) > 0 && !digestMatches(cm.Data, man.RuleChunkSha256[i]) {
			return "rule chunk " + strconv.Itoa(i) + " does not match its digest in the manifest"
		}
		keys, kinds, cutoffs, exps, ok := decodeRuleChunk(cm.Data)
		if !ok {
			return "rule chunk " + strconv.Itoa(i) + " is malformed"
		}
		for j := range keys {
			if cutoffs[j] > 0 && cutoffs[j] <= exps[j] && (kinds[j] == ruleSID || kinds[j] == ruleSub) {
				cutoff, exp := n.capRule(cutoffs[j], exps[j], now, now)
				if exp > limit {
					exp = limit
				}
				s.cache.addRule(kinds[j], keys[j], cutoff, exp, now)
			}
		}
		total += len(keys)
	}
	if total != man.RuleSlots {
		return "holds " + strconv.Itoa(total) + " rules, its manifest says " + strconv.Itoa(man.RuleSlots)
	}
	return ""
}

// encodeRuleChunk lays out rules: "TRR1", count uint32, count keys [32]byte, count
// kinds uint8 (ruleSID, ruleSub), count cutoffs int64, count expiries int64; little-endian.
func encodeRuleChunk(keys [][32]byte, kinds []uint8, cutoffs, exps []int64) []byte {
	var b bytes.Buffer
	b.Grow(snapshotHeaderLen + len(keys)*49)
	b.WriteString(ruleSnapshotMagic)
	var count [4]byte
	binary.LittleEndian.PutUint32(count[:], uint32(len(keys)))
	b.Write(count[:])
	_ = binary.Write(&b, binary.LittleEndian, keys)
	b.Write(kinds)
	_ = binary.Write(&b, binary.LittleEndian, cutoffs)
	_ = binary.Write(&b, binary.LittleEndian, exps)
	return b.Bytes()
}

// decodeRuleChunk reverses encodeRuleChunk, refusing a chunk of the wrong shape.
func decodeRuleChunk(data []byte) ([][32]byte, []uint8, []int64, []int64, bool) {
	if len(data) < snapshotHeaderLen || string(data[:4]) != ruleSnapshotMagic {
		return nil, nil, nil, nil, false
	}
	n := int(binary.LittleEndian.Uint32(data[4:8]))
	if n > ruleChunkSlots || len(data) != snapshotHeaderLen+n*49 {
		return nil, nil, nil, nil, false
	}
	r := bytes.NewReader(data[snapshotHeaderLen:])
	keys := make([][32]byte, n)
	kinds := make([]uint8, n)
	cutoffs := make([]int64, n)
	exps := make([]int64, n)
	if binary.Read(r, binary.LittleEndian, keys) != nil || binary.Read(r, binary.LittleEndian, kinds) != nil ||
		binary.Read(r, binary.LittleEndian, cutoffs) != nil || binary.Read(r, binary.LittleEndian, exps) != nil {
		return nil, nil, nil, nil, false
	}
	return keys, kinds, cutoffs, exps, true
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
	if len(man.ID) != 16 || len(man.Chunks)+len(man.RuleChunks) == 0 || man.Slots < 0 || man.Slots > len(man.Chunks)*snapshotChunkSlots {
		return "malformed manifest"
	}
	if n.signer != nil && (len(man.ChunkSha256) == 0 && len(man.Chunks) > 0 || len(man.RuleChunkSha256) == 0 && len(man.RuleChunks) > 0) {
		return "it has no chunk digests (chunkSha256, ruleChunkSha256), required with nats.signing"
	}
	if len(man.ChunkSha256) > 0 && len(man.ChunkSha256) != len(man.Chunks) || len(man.RuleChunkSha256) > 0 && len(man.RuleChunkSha256) != len(man.RuleChunks) {
		return "its chunk digests do not match its chunks"
	}
	return ""
}

// digestMatches reports whether data's SHA-256 is want (hex).
func digestMatches(data []byte, want string) bool {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]) == strings.ToLower(want)
}

// chunkDigest is the hex SHA-256 of a chunk body, as the manifest lists it.
func chunkDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// chunkOrigins maps a chunk's origin names (the writer's accounting) to this gateway's:
// with a manifest a configured key signed, names of received entries ("@...") are kept
// and the writer's own revocations (client ids) become the signing key's origin; an
// unverified snapshot's entries are all "@unsigned" (a forged chunk must not claim a
// local client's origin).
func (s *snapshotter) chunkOrigins(names []string) []string {
	if names == nil {
		return nil
	}
	out := make([]string, len(names))
	for i, name := range names {
		switch {
		case !s.loadVerified:
			out[i] = originUnsigned
		case strings.HasPrefix(name, "@"):
			out[i] = name
		default:
			out[i] = s.loadOrigin
		}
	}
	return out
}

// encodeSnapshotChunk lays out one chunk (version 2: with origins); binary.Write runs
// compiled, so the per-entry work is not interpreted.
//
//	"TRS2", count uint32, count keys [32]byte, count expiries int64, count origin ids
//	uint16, then the origin names: a uint16 count and, for each, a uint16 length and
//	its bytes. An origin id indexes the names. All little-endian.
//
// Version 1 ("TRS1") has no origin ids and no names: every entry is of origin "".
func encodeSnapshotChunk(keys [][32]byte, exps []int64, origins []uint16, names []string) []byte {
	var b bytes.Buffer
	b.Grow(snapshotHeaderLen + len(keys)*(snapshotSlotLen+2) + 2 + 34*len(names))
	b.WriteString(snapshotMagic2)
	var count [4]byte
	binary.LittleEndian.PutUint32(count[:], uint32(len(keys)))
	b.Write(count[:])
	_ = binary.Write(&b, binary.LittleEndian, keys)
	_ = binary.Write(&b, binary.LittleEndian, exps)
	_ = binary.Write(&b, binary.LittleEndian, origins)
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(names)))
	for _, name := range names {
		if len(name) > 0xFFFF {
			name = name[:0xFFFF]
		}
		_ = binary.Write(&b, binary.LittleEndian, uint16(len(name)))
		b.WriteString(name)
	}
	return b.Bytes()
}

// decodeSnapshotChunk reverses encodeSnapshotChunk (and reads version-1 chunks),
// refusing a chunk of the wrong shape. An origin id beyond the names stands for origin
// "" (tokenCache.loadCold maps ids through a full-size table, so no id is checked here).
func decodeSnapshotChunk(data []byte) ([][32]byte, []int64, []uint16, []string, bool) {
	if len(data) < snapshotHeaderLen {
		return nil, nil, nil, nil, false
	}
	magic := string(data[:4])
	if magic != snapshotMagic && magic != snapshotMagic2 {
		return nil, nil, nil, nil, false
	}
	n := int(binary.LittleEndian.Uint32(data[4:8]))
	end := snapshotHeaderLen + n*snapshotSlotLen
	if n > snapshotChunkSlots || len(data) < end || magic == snapshotMagic && len(data) != end {
		return nil, nil, nil, nil, false
	}
	split := snapshotHeaderLen + 32*n
	keys := make([][32]byte, n)
	if binary.Read(bytes.NewReader(data[snapshotHeaderLen:split]), binary.LittleEndian, keys) != nil {
		return nil, nil, nil, nil, false
	}
	exps := make([]int64, n)
	if binary.Read(bytes.NewReader(data[split:end]), binary.LittleEndian, exps) != nil {
		return nil, nil, nil, nil, false
	}
	// Expiries are range-checked where they are used (tokenCache.loadCold), not in another
	// interpreted pass over the chunk.
	if magic == snapshotMagic {
		return keys, exps, nil, nil, true
	}
	r := bytes.NewReader(data[end:])
	origins := make([]uint16, n)
	var count uint16
	if binary.Read(r, binary.LittleEndian, origins) != nil || binary.Read(r, binary.LittleEndian, &count) != nil {
		return nil, nil, nil, nil, false
	}
	names := make([]string, count)
	for i := range names {
		var l uint16
		if binary.Read(r, binary.LittleEndian, &l) != nil || int(l) > r.Len() {
			return nil, nil, nil, nil, false
		}
		b := make([]byte, l)
		_, _ = r.Read(b)
		names[i] = string(b)
	}
	if r.Len() != 0 {
		return nil, nil, nil, nil, false
	}
	return keys, exps, origins, names, true
}

// due reports whether a snapshot should be written now, given the stream sequence
// applied to the cache and the stream's creation time; the follower asks only while
// synced. One is due when the cache never dropped a live entry and the stream grew by
// snapshotEvery messages since the newest snapshot (this gateway's, the one it loaded,
// or one another gateway wrote).
func (s *snapshotter) due(applied uint64, created time.Time) bool {
	s.mu.Lock()
	known := s.knownSeq
	s.mu.Unlock()
	if applied < known+s.n.snapshotEvery {
		return false
	}
	if _, evictions, _ := s.cache.stats(); evictions > 0 {
		return false
	}
	if _, ruleEvictions := s.cache.ruleStats(); ruleEvictions > 0 {
		return false
	}
	m, err := s.conn.GetMsg(s.n.snapshotStream(), natsclient.GetMsgRequest{LastBySubject: s.n.manifestSubject()}, publishTimeout)
	if err != nil {
		return err == natsclient.ErrMsgNotFound
	}
	var man snapshotManifest
	if _, why := s.n.signer.checkHeader(s.n.manifestSubject(), m.Data, m.Header); why != 0 {
		// A manifest this gateway would not load (with nats.signing): replace it.
		return true
	}
	if json.Unmarshal(m.Data, &man) != nil || man.Stream != s.n.stream || !man.StreamCreated.Equal(created) {
		return true
	}
	s.mu.Lock()
	if man.Seq > s.knownSeq {
		s.knownSeq = man.Seq
	}
	s.mu.Unlock()
	return applied >= man.Seq+s.n.snapshotEvery
}

// write writes the cache as a snapshot covering every revocation up to stream sequence
// seq. The follower reads seq before the cache is copied, so each revocation up to it is
// in the copy; later ones that slip in are harmless (the loader's replay repeats them).
func (s *snapshotter) write(seq uint64, created time.Time) {
	n := s.n
	start := time.Now()
	_, evictionsBefore, _ := s.cache.stats()
	id := randomSnapshotID()
	chunkTTL := natsclient.FormatTTL(n.defaultTTL + time.Minute)
	var chunks []uint64
	var digests []string
	slots := 0
	for from := 0; ; from += snapshotChunkSlots {
		keys, exps, origins, names := s.cache.copySlots(from, snapshotChunkSlots)
		if len(keys) == 0 {
			break
		}
		hdr := natsclient.Header{}
		hdr.Set(natsclient.HeaderMsgTTL, chunkTTL)
		data := encodeSnapshotChunk(keys, exps, origins, names)
		ack, err := s.conn.PublishJS(n.chunkSubject(id, len(chunks)), hdr, data, publishTimeout)
		if err != nil {
			s.fail("nats: writing a snapshot failed (" + err.Error() + ")")
			return
		}
		chunks = append(chunks, ack.Seq)
		digests = append(digests, chunkDigest(data))
		slots += len(keys)
	}
	// Rules follow the token chunks, numbered after them.
	rkeys, rkinds, rcutoffs, rexps := s.cache.copyRules(time.Now().Unix())
	var ruleChunks []uint64
	var ruleDigests []string
	for from := 0; from < len(rkeys); from += ruleChunkSlots {
		to := from + ruleChunkSlots
		if to > len(rkeys) {
			to = len(rkeys)
		}
		hdr := natsclient.Header{}
		hdr.Set(natsclient.HeaderMsgTTL, chunkTTL)
		data := encodeRuleChunk(rkeys[from:to], rkinds[from:to], rcutoffs[from:to], rexps[from:to])
		ack, err := s.conn.PublishJS(n.chunkSubject(id, len(chunks)+len(ruleChunks)), hdr, data, publishTimeout)
		if err != nil {
			s.fail("nats: writing a snapshot failed (" + err.Error() + ")")
			return
		}
		ruleChunks = append(ruleChunks, ack.Seq)
		ruleDigests = append(ruleDigests, chunkDigest(data))
	}
	if len(chunks) == 0 && len(ruleChunks) == 0 {
		return
	}
	if _, evictions, _ := s.cache.stats(); evictions != evictionsBefore {
		// A live entry was dropped while the cache was being copied: the chunks may
		// miss it, so they get no manifest (they expire by themselves).
		s.fail("nats: snapshot abandoned: the store evicted live entries while it was written (raise cacheSize)")
		return
	}
	body, _ := json.Marshal(snapshotManifest{
		V: 1, ID: id, Stream: n.stream, StreamCreated: created, Seq: seq, Slots: slots,
		Chunks: chunks, WithRules: true, RuleSlots: len(rkeys), RuleChunks: ruleChunks,
		ChunkSha256: digests, RuleChunkSha256: ruleDigests,
		Writer: n.name, WrittenAt: time.Now().UTC(),
	})
	hdr := natsclient.Header{}
	hdr.Set(natsclient.HeaderMsgTTL, natsclient.FormatTTL(n.defaultTTL))
	n.signer.addTo(hdr, n.manifestSubject(), body)
	if _, err := s.conn.PublishJS(n.manifestSubject(), hdr, body, publishTimeout); err != nil {
		s.fail("nats: writing a snapshot manifest failed (" + err.Error() + ")")
		return
	}
	entries, _, _ := s.cache.stats()
	s.mu.Lock()
	s.knownSeq = seq
	s.st.WrittenSeq = seq
	s.st.WrittenEntries = entries
	s.st.LastError = ""
	s.mu.Unlock()
	s.log.infof("nats: wrote snapshot %s of stream %s (sequence %d, %d revocations, %d rules, %d chunks) in %s",
		id, n.stream, seq, entries, len(rkeys), len(chunks)+len(ruleChunks), time.Since(start).Round(time.Millisecond))
	// Remove the chunks of every older snapshot (the one replaced, and any left by a
	// gateway that wrote at the same time and lost): all chunk messages stored before
	// this snapshot's first chunk. (A purge below sequence 1 would mean no limit at all.)
	first := append(chunks, ruleChunks...)[0]
	if first <= 1 {
		return
	}
	if _, err := s.conn.PurgeStream(n.snapshotStream(), natsclient.PurgeRequest{Filter: n.snapshotPrefix() + ".*.*", Seq: first}, publishTimeout); err != nil {
		s.log.infof("nats: could not purge replaced snapshots (%v); they expire by themselves", err)
	}
}

func randomSnapshotID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
