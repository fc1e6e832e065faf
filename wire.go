package tokenrevoke

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Wire format (documented in the README; an identity provider or the tokenrevoke command
// may publish it with nats.go or `nats pub`). Version 2, which gateways publish:
//
//	subject: <subject>.<key hex>
//	body:    {"v":2,"kind":"jws","key":"<hex>","exp":<unix seconds>,"hint":"access_token",
//	          "revokedAt":"<RFC 3339>","origin":"<gateway name>","client":"<client id>"}
//
// kind says what the key is the SHA-256 of: "token" (the exact token), "jws" (a JWS's
// signing input) or "jwe" (a JWE's canonical spelling); see tokenKey. Kinds "sid" and
// "sub" are session and subject rules (rules.go): the key is the SHA-256 of
// iss + "\x00" + sid (or sub), the subject <subject>.sid.<key hex> (or .sub.), and the
// body carries "cutoff": tokens of that session or subject issued at or before it are
// revoked, until exp (cutoff + the issuer's longest token lifetime).
// Version 1, still accepted, is {"v":1,"sha256":"<hex>","exp":...,"origin":...}: kind
// token, key sha256.
//
// The raw token never leaves the gateway, nor does a sid or sub: only digests are sent.
// This file holds the format only: encoding, decoding and validation, and the count of
// messages dropped as malformed. natsLink (nats.go) and streamFollower (stream.go) send
// and receive it.
type wireRevocation struct {
	V         int    `json:"v"`
	Kind      string `json:"kind"`
	Key       string `json:"key"`
	Cutoff    int64  `json:"cutoff,omitempty"`
	Exp       int64  `json:"exp"`
	Hint      string `json:"hint,omitempty"`
	RevokedAt string `json:"revokedAt"`
	Origin    string `json:"origin"`
	Client    string `json:"client,omitempty"`
}

// encodeRevocation returns the body and subject of r's message; n gives the subject
// prefix and the origin.
func encodeRevocation(r revocation, n *natsSettings) ([]byte, string) {
	key := hex.EncodeToString(r.sum[:])
	kind := r.kind
	if kind == "" {
		kind = kindToken
	}
	body, _ := json.Marshal(wireRevocation{
		V:         2,
		Kind:      kind,
		Key:       key,
		Cutoff:    r.cutoff,
		Exp:       r.exp,
		Hint:      r.hint,
		RevokedAt: r.revokedAt.UTC().Format(time.RFC3339),
		Origin:    n.name,
		Client:    r.client,
	})
	if kind == kindSID || kind == kindSub {
		return body, n.subject + "." + kind + "." + key
	}
	return body, n.subject + "." + key
}

// wireIn is the part of a wire message a gateway needs; decoding only these fields
// keeps the replay of a large stream fast under the interpreter.
type wireIn struct {
	V      int    `json:"v"`
	Sha256 string `json:"sha256"`
	Kind   string `json:"kind"`
	Key    string `json:"key"`
	Cutoff int64  `json:"cutoff"`
	Exp    int64  `json:"exp"`
}

// decodeRevocation validates a wire message; reason is non-empty when it is unusable.
// The body's origin and client fields are not read: a received entry's cache origin is
// what its signature proves (busSigner.check). v1 reports a version-1 message (keyed by
// the exact token). rule
// is ruleSID or ruleSub for a session or subject rule (with its cutoff), 0 otherwise.
// It runs once per message of a replay (a million times for a large stream), so it
// sticks to a few compiled calls.
func decodeRevocation(subject string, data []byte, prefix string) ([32]byte, int64, bool, uint8, int64, string) {
	// No named results: under yaegi v0.16.1 a named result that a call leaves unset keeps
	// the value an earlier call gave it, so a token message after a rule message came
	// out as a rule (TestDecodeKeepsNoStateBetweenMessages). Every value is set here.
	var sum [32]byte
	v1 := false
	rule := uint8(0)
	cutoff := int64(0)
	var w wireIn
	if json.Unmarshal(data, &w) != nil {
		return sum, 0, false, 0, 0, "body is not a JSON object of the expected shape"
	}
	key := w.Key
	keyAt := len(prefix) + 1 // where the key starts in the subject
	switch w.V {
	case 1:
		key = w.Sha256
		v1 = true
	case 2:
		switch w.Kind {
		case kindToken, kindJWS, kindJWE:
		case kindSID, kindSub:
			rule = ruleSID
			if w.Kind == kindSub {
				rule = ruleSub
			}
			keyAt += 4
			if len(subject) < keyAt || subject[len(prefix)+1:keyAt] != w.Kind+"." {
				return sum, 0, false, 0, 0, "subject does not match the message's kind"
			}
			if w.Cutoff <= 0 || w.Cutoff > w.Exp {
				return sum, 0, false, 0, 0, "cutoff is missing or later than exp"
			}
			cutoff = w.Cutoff
		default:
			return sum, 0, false, 0, 0, "unknown kind"
		}
	default:
		return sum, 0, false, 0, 0, "unsupported version"
	}
	if len(key) != 64 {
		return sum, 0, false, 0, 0, "key is not 64 hex characters"
	}
	if _, err := hex.Decode(sum[:], []byte(key)); err != nil {
		return sum, 0, false, 0, 0, "key is not 64 hex characters"
	}
	if len(subject) != keyAt+64 || subject[keyAt:] != key && !strings.EqualFold(subject[keyAt:], key) {
		return sum, 0, false, 0, 0, "subject does not end with the message's key"
	}
	if w.Exp <= 0 || w.Exp > maxExpiry {
		return sum, 0, false, 0, 0, "exp is missing or out of range"
	}
	return sum, w.Exp, v1, rule, cutoff, ""
}

// dropWarnEvery rate-limits warnings about dropped messages.
const dropWarnEvery = 10 * time.Second

// wireDrops counts the messages dropped because decodeRevocation refused them
// (malformed) or their signature was missing or wrong (busSigner.check), and warns about
// them at most once every dropWarnEvery, with the number dropped since the last warning.
type wireDrops struct {
	dropped  int64 // atomic: all reasons
	unsigned int64 // atomic
	badSig   int64 // atomic

	mu         sync.Mutex
	lastWarnAt time.Time
	unreported int64
}

// drop counts one malformed message and logs it unless a warning went out recently.
func (d *wireDrops) drop(log *logger, subject, reason string) {
	d.dropAs(log, subject, 0, reason)
}

// dropSig counts one message refused for its signature (why: sigUnsigned or sigBad).
func (d *wireDrops) dropSig(log *logger, subject string, why uint8) {
	if why == sigUnsigned {
		atomic.AddInt64(&d.unsigned, 1)
	} else {
		atomic.AddInt64(&d.badSig, 1)
	}
	d.dropAs(log, subject, why, sigDropReason(why))
}

func (d *wireDrops) dropAs(log *logger, subject string, why uint8, reason string) {
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
	what := "malformed"
	if why != 0 {
		what = "unsigned or wrongly signed"
	}
	log.warnf("nats: dropped %d revocation message(s) since the last warning; latest on %q (%s): %s", n, subject, what, reason)
}

// count returns the number of messages dropped so far (all reasons).
func (d *wireDrops) count() int64 { return atomic.LoadInt64(&d.dropped) }

// sigCounts returns the messages dropped as unsigned and as wrongly signed.
func (d *wireDrops) sigCounts() (int64, int64) {
	return atomic.LoadInt64(&d.unsigned), atomic.LoadInt64(&d.badSig)
}
