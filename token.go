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

// A token is only ever known by the SHA-256 of its exact string.
func hashToken(tok string) [32]byte {
	return sha256.Sum256([]byte(tok))
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
// allowed clock skew, or now + defaultTTL for a token whose expiry cannot be read.
func revocationExpiry(tok string, now time.Time, s *settings) int64 {
	if exp, ok := jwtExpiry(tok); ok {
		e := exp + int64(s.clockSkew/time.Second)
		if e > maxExpiry {
			e = maxExpiry
		}
		return e
	}
	return now.Add(s.defaultTTL).Unix()
}
