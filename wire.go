package tokenrevoke

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Wire format, version 1 (documented in the README; an identity provider may publish it
// with nats.go or `nats pub`):
//
//	subject: <subject>.<sha256 hex of the token>
//	body:    {"v":1,"sha256":"<hex>","hint":"access_token","exp":<unix seconds>,
//	          "revokedAt":"<RFC 3339>","origin":"<gateway name>"}
//
// The raw token never leaves the gateway: only its SHA-256 is sent. This file holds the
// format only: encoding, decoding and validation, and the count of messages dropped as
// malformed. natsLink (nats.go) and streamFollower (stream.go) send and receive it.
type wireRevocation struct {
	V         int    `json:"v"`
	Sha256    string `json:"sha256"`
	Hint      string `json:"hint,omitempty"`
	Exp       int64  `json:"exp"`
	RevokedAt string `json:"revokedAt"`
	Origin    string `json:"origin"`
}

// encodeRevocation returns the body and subject of r's message; n gives the subject
// prefix and the origin.
func encodeRevocation(r revocation, n *natsSettings) ([]byte, string) {
	sum := hex.EncodeToString(r.sum[:])
	body, _ := json.Marshal(wireRevocation{
		V:         1,
		Sha256:    sum,
		Hint:      r.hint,
		Exp:       r.exp,
		RevokedAt: r.revokedAt.UTC().Format(time.RFC3339),
		Origin:    n.name,
	})
	return body, n.subject + "." + sum
}

// wireIn is the part of a wire message a gateway needs; decoding only these fields
// keeps the replay of a large stream fast under the interpreter.
type wireIn struct {
	V      int    `json:"v"`
	Sha256 string `json:"sha256"`
	Exp    int64  `json:"exp"`
}

// decodeRevocation validates a wire message; reason is non-empty when it is unusable.
// It runs once per message of a replay (a million times for a large stream), so it
// sticks to a few compiled calls.
func decodeRevocation(subject string, data []byte, prefix string) (sum [32]byte, exp int64, reason string) {
	var w wireIn
	if json.Unmarshal(data, &w) != nil {
		return sum, 0, "body is not a JSON object of the expected shape"
	}
	if w.V != 1 {
		return sum, 0, "unsupported version"
	}
	if len(w.Sha256) != 64 {
		return sum, 0, "sha256 is not 64 hex characters"
	}
	if _, err := hex.Decode(sum[:], []byte(w.Sha256)); err != nil {
		return sum, 0, "sha256 is not 64 hex characters"
	}
	if len(subject) != len(prefix)+65 || subject[len(prefix)+1:] != w.Sha256 && !strings.EqualFold(subject[len(prefix)+1:], w.Sha256) {
		return sum, 0, "subject does not end with the message's sha256"
	}
	if w.Exp <= 0 || w.Exp > maxExpiry {
		return sum, 0, "exp is missing or out of range"
	}
	return sum, w.Exp, ""
}

// dropWarnEvery rate-limits warnings about dropped (malformed) messages.
const dropWarnEvery = 10 * time.Second

// wireDrops counts the messages dropped because decodeRevocation refused them, and
// warns about them at most once every dropWarnEvery, with the number dropped since the
// last warning.
type wireDrops struct {
	dropped int64 // atomic

	mu         sync.Mutex
	lastWarnAt time.Time
	unreported int64
}

// drop counts one dropped message and logs it unless a warning went out recently.
func (d *wireDrops) drop(log *logger, subject, reason string) {
	atomic.AddInt64(&d.dropped, 1)
	d.mu.Lock()
	d.unreported++
	now := time.Now()
	if now.Sub(d.lastWarnAt) < dropWarnEvery {
		d.mu.Unlock()
		return
	}
	n := d.unreported
	d.unreported = 0
	d.lastWarnAt = now
	d.mu.Unlock()
	if len(subject) > 100 {
		subject = subject[:100] + "..."
	}
	log.warnf("nats: dropped %d malformed revocation message(s); latest on %q: %s", n, subject, reason)
}

// count returns the number of messages dropped so far.
func (d *wireDrops) count() int64 { return atomic.LoadInt64(&d.dropped) }
