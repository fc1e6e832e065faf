// Package wire is the tokenrevoke NATS wire format as the command writes and reads it:
// version 2 (kinds token, jws, sid, sub) for everything it publishes, and version 1
// ({"v":1,"sha256":...}) read as kind token.
//
// Every entry is known only by a SHA-256 digest: raw tokens, session ids and subjects
// never leave the machine.
package wire

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Kinds of entries.
const (
	KindToken = "token" // sha256(exact token string)
	KindJWS   = "jws"   // sha256(signing input): the token up to its last dot
	KindJWE   = "jwe"   // sha256(canonical spelling): every segment decoded and re-encoded
	KindSID   = "sid"   // sha256(iss "\x00" sid): a session rule
	KindSub   = "sub"   // sha256(iss "\x00" sub): a subject rule
)

// MaxExpiry bounds expiries (year 9999), as the gateways do.
const MaxExpiry = int64(253402300799)

// Key is a SHA-256 digest.
type Key [32]byte

// Hex is the key as it travels: lowercase hex.
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// ParseKey reads 64 hex characters (either case).
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != 64 {
		return k, fmt.Errorf("a SHA-256 digest is 64 hex characters, got %d", len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, errors.New("a SHA-256 digest is 64 hex characters: " + err.Error())
	}
	return k, nil
}

// IsJWS reports whether tok is a JWS compact token by the version-2 rule: exactly two
// dots and a first segment that starts with "e" (the base64url of '{'), as the gateways
// decide it.
func IsJWS(tok string) bool {
	return strings.Count(tok, ".") == 2 && strings.HasPrefix(tok, "e")
}

// TokenKey returns the kind and key of a raw token: kind jws keys the signing input
// (the signature has many spellings a lenient verifier accepts), anything else is kind
// token, the digest of the exact string.
func TokenKey(tok string) (kind string, key Key) {
	if IsJWS(tok) {
		return KindJWS, sha256.Sum256([]byte(tok[:strings.LastIndexByte(tok, '.')]))
	}
	if strings.HasPrefix(tok, "e") && strings.Count(tok, ".") == 4 {
		if c, ok := canonicalJWE(tok); ok {
			return KindJWE, sha256.Sum256([]byte(c))
		}
	}
	return KindToken, sha256.Sum256([]byte(tok))
}

// canonicalJWE re-spells the five segments of a JWE compact token: each decoded
// leniently (padding dropped, unused bits ignored, as verifiers decode) and encoded
// again without padding. The gateways key a JWE by the SHA-256 of this spelling.
func canonicalJWE(tok string) (string, bool) {
	parts := strings.Split(tok, ".")
	for i, p := range parts {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p, "="))
		if err != nil {
			return "", false
		}
		parts[i] = base64.RawURLEncoding.EncodeToString(raw)
	}
	return strings.Join(parts, "."), true
}

// V1Key is the version-1 key of a token: the digest of the exact string. For a JWS it
// differs from the version-2 key; gateways that still publish version 1 use it.
func V1Key(tok string) Key { return sha256.Sum256([]byte(tok)) }

// RuleKey is the key of a sid or sub rule: sha256(iss + "\x00" + value).
func RuleKey(iss, value string) Key {
	h := sha256.New()
	h.Write([]byte(iss))
	h.Write([]byte{0})
	h.Write([]byte(value))
	var k Key
	h.Sum(k[:0])
	return k
}

// JWTExpiry returns the exp claim of a three-segment token, read without verifying
// anything (it only decides how long a revocation is kept), exactly as the gateways
// read it.
func JWTExpiry(tok string) (int64, bool) {
	dot := strings.IndexByte(tok, '.')
	if dot <= 0 {
		return 0, false
	}
	rest := tok[dot+1:]
	dot = strings.IndexByte(rest, '.')
	if dot <= 0 || strings.IndexByte(rest[dot+1:], '.') >= 0 {
		return 0, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(rest[:dot], "="))
	if err != nil || len(raw) < 2 || raw[0] != '{' {
		return 0, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil || claims.Exp == "" {
		return 0, false
	}
	f, err := claims.Exp.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0, false
	}
	if f > float64(MaxExpiry) {
		return MaxExpiry, true
	}
	return int64(math.Ceil(f)), true
}

// TokenExpiry is how long a revocation of tok must be kept: its JWT exp plus skew, or
// now + ttl when it has no readable exp.
func TokenExpiry(tok string, now time.Time, skew, ttl time.Duration) int64 {
	if exp, ok := JWTExpiry(tok); ok {
		e := exp + int64(skew/time.Second)
		if e > MaxExpiry {
			e = MaxExpiry
		}
		return e
	}
	return now.Add(ttl).Unix()
}

// Subject is where an entry of kind with key is published under prefix.
func Subject(prefix, kind string, key Key) string {
	switch kind {
	case KindSID, KindSub:
		return prefix + "." + kind + "." + key.Hex()
	}
	return prefix + "." + key.Hex()
}

// Entry is one revocation (kinds token, jws) or rule (sid, sub).
type Entry struct {
	V         int    `json:"v"`
	Kind      string `json:"kind"`
	Key       string `json:"key"`
	Cutoff    int64  `json:"cutoff,omitempty"`
	Exp       int64  `json:"exp"`
	Hint      string `json:"hint,omitempty"`
	RevokedAt string `json:"revokedAt,omitempty"`
	Origin    string `json:"origin"`
	Client    string `json:"client,omitempty"`
}

// Encode returns the version-2 body of e (e.V is ignored).
func (e *Entry) Encode() []byte {
	// A hand-built body: import encodes a million of these.
	b := make([]byte, 0, 200)
	b = append(b, `{"v":2,"kind":`...)
	b = strconv.AppendQuote(b, e.Kind)
	b = append(b, `,"key":"`...)
	b = append(b, e.Key...)
	b = append(b, '"')
	if e.Kind == KindSID || e.Kind == KindSub {
		b = append(b, `,"cutoff":`...)
		b = strconv.AppendInt(b, e.Cutoff, 10)
	}
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, e.Exp, 10)
	if e.Hint != "" {
		b = append(b, `,"hint":`...)
		b = appendJSONString(b, e.Hint)
	}
	if e.RevokedAt != "" {
		b = append(b, `,"revokedAt":`...)
		b = appendJSONString(b, e.RevokedAt)
	}
	b = append(b, `,"origin":`...)
	b = appendJSONString(b, e.Origin)
	if e.Client != "" {
		b = append(b, `,"client":`...)
		b = appendJSONString(b, e.Client)
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// wireIn is every field of either version.
type wireIn struct {
	V         int    `json:"v"`
	Kind      string `json:"kind"`
	Key       string `json:"key"`
	Sha256    string `json:"sha256"`
	Cutoff    int64  `json:"cutoff"`
	Exp       int64  `json:"exp"`
	Hint      string `json:"hint"`
	RevokedAt string `json:"revokedAt"`
	Origin    string `json:"origin"`
	Client    string `json:"client"`
}

// Decode validates a message on subject (under prefix) by the gateways' rules and
// returns it as a version-2 entry (a version-1 message becomes kind token with V 1).
func Decode(prefix, subject string, data []byte) (Entry, Key, error) {
	var w wireIn
	var k Key
	if !fastParse(data, &w) {
		w = wireIn{}
		if err := json.Unmarshal(data, &w); err != nil {
			return Entry{}, k, errors.New("body is not a JSON object of the expected shape")
		}
	}
	e := Entry{V: w.V, Kind: w.Kind, Key: w.Key, Cutoff: w.Cutoff, Exp: w.Exp, Hint: w.Hint,
		RevokedAt: w.RevokedAt, Origin: w.Origin, Client: w.Client}
	switch w.V {
	case 1:
		e.Kind, e.Key, e.Cutoff, e.Client = KindToken, w.Sha256, 0, ""
	case 2:
		switch w.Kind {
		case KindToken, KindJWS, KindJWE:
		case KindSID, KindSub:
			if w.Cutoff <= 0 {
				return e, k, errors.New("cutoff is missing")
			}
		default:
			return e, k, fmt.Errorf("unknown kind %q", w.Kind)
		}
	default:
		return e, k, fmt.Errorf("unsupported version %d", w.V)
	}
	k, err := ParseKey(e.Key)
	if err != nil {
		return e, k, errors.New("key is not 64 hex characters")
	}
	e.Key = k.Hex()
	if !strings.EqualFold(subject, Subject(prefix, e.Kind, k)) {
		return e, k, errors.New("subject does not match the message's kind and key")
	}
	if e.Exp <= 0 || e.Exp > MaxExpiry {
		return e, k, errors.New("exp is missing or out of range")
	}
	return e, k, nil
}

// TTL is the Nats-TTL header value for an entry that expires at exp: the remaining
// lifetime in whole seconds, rounded up, at least 1s.
func TTL(exp int64, now time.Time) string {
	d := time.Unix(exp, 0).Sub(now)
	secs := int64(d / time.Second)
	if d%time.Second != 0 {
		secs++
	}
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10) + "s"
}
