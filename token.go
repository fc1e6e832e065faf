package tokenrevoke

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// hashToken is the SHA-256 of a token's exact string: the key of version-1 wire
// messages, and of every token that is not a JWS or JWE compact token.
func hashToken(tok string) [32]byte {
	return sha256.Sum256([]byte(tok))
}

// Key kinds (wire format version 2).
const (
	kindToken = "token" // SHA-256 of the exact token
	kindJWS   = "jws"   // SHA-256 of the JWS signing input (header.payload)
	kindJWE   = "jwe"   // SHA-256 of the JWE's canonical spelling
)

// tokenKey is the key a token is revoked and looked up by, and its kind.
//
// A signed JWT has many spellings that verifiers accept as the same token: the unused
// low bits of the signature's last base64url character, '=' padding, and for ECDSA the
// high-s twin of the signature. None of them changes the signing input (the header and
// payload text, which the signature covers exactly), so a JWS compact token (exactly
// two dots, header segment starting with 'e', the base64url of '{') is known by the
// SHA-256 of its signing input. A JWE compact token (four dots) is known by the
// SHA-256 of its canonical spelling: each segment decoded (leniently, as verifiers do)
// and encoded again without padding. Any other token is known by its exact string.
func tokenKey(tok string) ([32]byte, string) {
	if len(tok) > 0 && tok[0] == 'e' {
		switch strings.Count(tok, ".") {
		case 2:
			return sha256.Sum256([]byte(tok[:strings.LastIndexByte(tok, '.')])), kindJWS
		case 4:
			if c, ok := canonicalJWE(tok); ok {
				return sha256.Sum256([]byte(c)), kindJWE
			}
		}
	}
	return sha256.Sum256([]byte(tok)), kindToken
}

// canonicalJWE re-spells the five segments of a JWE compact token canonically.
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

// shortHash names a token in log lines without revealing it.
func shortHash(sum [32]byte) string {
	return hex.EncodeToString(sum[:6])
}

// maxExpiry bounds expiries read from tokens (year 9999), keeping arithmetic safe.
const maxExpiry = int64(253402300799)

// jwtExpiry returns the exp claim of a JWS compact token (header.payload.signature),
// read without verifying the signature: the plugin only ever uses it to decide how long
// to keep denying the token, never to accept one.
func jwtExpiry(tok string) (int64, bool) {
	dot := strings.IndexByte(tok, '.')
	if dot <= 0 {
		return 0, false
	}
	rest := tok[dot+1:]
	dot = strings.IndexByte(rest, '.')
	if dot <= 0 || strings.IndexByte(rest[dot+1:], '.') >= 0 {
		return 0, false // not three segments (a JWE has five; its claims are encrypted)
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
	if f > float64(maxExpiry) {
		return maxExpiry, true
	}
	return int64(math.Ceil(f)), true
}

// revocationExpiry is when a revocation of tok stops mattering: the JWT's exp plus the
// allowed clock skew, or now + defaultTTL for a token whose expiry cannot be read, and
// never later than now + maxTTL (the exp of an unverified JWT is whatever its sender
// wrote: 1e30 would otherwise plant an entry until the year 9999).
func revocationExpiry(tok string, now time.Time, s *settings) int64 {
	e := now.Add(s.defaultTTL).Unix()
	if exp, ok := jwtExpiry(tok); ok {
		e = exp + int64(s.clockSkew/time.Second)
	}
	return capExpiry(e, now.Unix(), s.maxTTL)
}

// capExpiry bounds an expiry to now + maxTTL.
func capExpiry(exp, now int64, maxTTL time.Duration) int64 {
	if limit := now + int64(maxTTL/time.Second); exp > limit {
		return limit
	}
	return exp
}
