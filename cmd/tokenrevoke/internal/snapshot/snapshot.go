// Package snapshot writes gateway snapshots in exactly the format the plugin loads
// (snapshot.go at the repository root):
//
//   - stream <stream>_SNAPSHOTS, subjects <subject>-snapshots.>
//   - chunk messages <subject>-snapshots.<id>.<n>: "TRS1", a little-endian uint32
//     count, count 32-byte keys, then count little-endian int64 expiries; at most
//     ChunkSlots entries each
//   - session and subject rules after them, numbered on: "TRR1", a little-endian
//     uint32 count, count 32-byte keys, count kinds (1 sid, 2 sub), count int64
//     cutoffs, count int64 expiries; at most RuleChunkSlots each
//   - then a JSON manifest on <subject>-snapshots.manifest naming the stream, its
//     creation time, the sequence covered and the chunks' stream sequences in order
//     (withRules: rule chunks in ruleChunks; a gateway uses a manifest without it only
//     if the stream holds no rule up to its sequence), and the hex SHA-256 of each
//     chunk body (chunkSha256, ruleChunkSha256); the manifest message is signed when
//     the command has a signing key.
package snapshot

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"
)

const (
	Magic     = "TRS1"
	HeaderLen = 8
	SlotLen   = 32 + 8
	// ChunkSlots bounds a chunk to ~512 KiB, as the plugin does (it refuses larger).
	ChunkSlots = 13107
	// RuleMagic starts a chunk of rules; RuleChunkSlots bounds one (the plugin's limit).
	RuleMagic      = "TRR1"
	RuleSlotLen    = 32 + 1 + 8 + 8
	RuleChunkSlots = 10000
	// Rule kinds in a rule chunk.
	RuleSID = 1
	RuleSub = 2
)

// Manifest describes one complete snapshot (version 1).
type Manifest struct {
	V             int       `json:"v"`
	ID            string    `json:"id"`
	Stream        string    `json:"stream"`
	StreamCreated time.Time `json:"streamCreated"`
	Seq           uint64    `json:"seq"`
	Slots         int       `json:"slots"`
	Chunks        []uint64  `json:"chunks"`
	WithRules     bool      `json:"withRules,omitempty"`
	RuleSlots     int       `json:"ruleSlots,omitempty"`
	RuleChunks    []uint64  `json:"ruleChunks,omitempty"`
	Writer        string    `json:"writer"`
	WrittenAt     time.Time `json:"writtenAt"`
	// ChunkSha256 and RuleChunkSha256 are the hex SHA-256 of each chunk's body, in the
	// order of Chunks and RuleChunks (checked by gateways that verify signatures).
	ChunkSha256     []string `json:"chunkSha256"`
	RuleChunkSha256 []string `json:"ruleChunkSha256"`
}

// Digest is the hex SHA-256 of a chunk body, as the manifest lists it.
func Digest(body []byte) string {
	d := sha256.Sum256(body)
	return hex.EncodeToString(d[:])
}

// Names of the snapshot stream and subjects for a revocation stream and subject prefix.
func StreamName(stream string) string       { return stream + "_SNAPSHOTS" }
func Prefix(subject string) string          { return subject + "-snapshots" }
func ManifestSubject(subject string) string { return Prefix(subject) + ".manifest" }
func ChunkSubject(subject, id string, i int) string {
	return Prefix(subject) + "." + id + "." + strconv.Itoa(i)
}

// ChunkFilter matches every chunk of every snapshot (and not the manifest).
func ChunkFilter(subject string) string { return Prefix(subject) + ".*.*" }

// NewID is a random 16-hex-character snapshot id.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// EncodeChunk lays out one chunk.
func EncodeChunk(keys [][32]byte, exps []int64) []byte {
	n := len(keys)
	b := make([]byte, HeaderLen+n*SlotLen)
	copy(b, Magic)
	binary.LittleEndian.PutUint32(b[4:8], uint32(n))
	off := HeaderLen
	for i := range keys {
		copy(b[off:], keys[i][:])
		off += 32
	}
	for _, e := range exps {
		binary.LittleEndian.PutUint64(b[off:], uint64(e))
		off += 8
	}
	return b
}

// EncodeRuleChunk lays out one chunk of rules.
func EncodeRuleChunk(keys [][32]byte, kinds []uint8, cutoffs, exps []int64) []byte {
	n := len(keys)
	b := make([]byte, HeaderLen+n*RuleSlotLen)
	copy(b, RuleMagic)
	binary.LittleEndian.PutUint32(b[4:8], uint32(n))
	off := HeaderLen
	for i := range keys {
		copy(b[off:], keys[i][:])
		off += 32
	}
	off += copy(b[off:], kinds)
	for _, c := range cutoffs {
		binary.LittleEndian.PutUint64(b[off:], uint64(c))
		off += 8
	}
	for _, e := range exps {
		binary.LittleEndian.PutUint64(b[off:], uint64(e))
		off += 8
	}
	return b
}
