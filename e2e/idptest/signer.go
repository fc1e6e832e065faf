package idptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Signer stands in for an identity provider where a test needs thousands of tokens
// faster than logins through oidc-provider give them: it signs logout tokens and access
// tokens with one ES256 key (kid "k1") and publishes that key as an inline JWK set.
type Signer struct {
	Issuer string
	key    *ecdsa.PrivateKey
	jtis   atomic.Int64
}

// NewSigner makes a signer for issuer with a fresh P-256 key.
func NewSigner(t testing.TB, issuer string) *Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{Issuer: issuer, key: k}
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// JWKS is the public key as a JWK set document (for the plugin's issuers[].jwks).
func (s *Signer) JWKS() string {
	x, y := make([]byte, 32), make([]byte, 32)
	s.key.X.FillBytes(x)
	s.key.Y.FillBytes(y)
	doc, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256", "x": b64u(x), "y": b64u(y),
	}}})
	return string(doc)
}

// Sign signs claims with typ in the header.
func (s *Signer) Sign(t testing.TB, typ string, claims map[string]any) string {
	t.Helper()
	hb, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": "k1", "typ": typ})
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64u(hb) + "." + b64u(cb)
	d := sha256.Sum256([]byte(input))
	r, v, err := ecdsa.Sign(rand.Reader, s.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	v.FillBytes(sig[32:])
	return input + "." + b64u(sig)
}

// AccessToken is a JWT access token of sub in session sid (none when ""), issued at iat.
func (s *Signer) AccessToken(t testing.TB, sub, sid string, iat int64) string {
	c := map[string]any{"iss": s.Issuer, "sub": sub, "aud": "api", "iat": iat, "exp": iat + 600,
		"jti": "at-" + strconv.FormatInt(s.jtis.Add(1), 10)}
	if sid != "" {
		c["sid"] = sid
	}
	return s.Sign(t, "at+jwt", c)
}

// LogoutToken is a back-channel logout token for aud, ending session sid of sub (every
// session of sub when sid is ""), issued now.
func (s *Signer) LogoutToken(t testing.TB, aud, sub, sid string) string {
	now := time.Now().Unix()
	c := map[string]any{"iss": s.Issuer, "aud": aud, "iat": now, "exp": now + 120,
		"jti": "lt-" + strconv.FormatInt(s.jtis.Add(1), 10), "sub": sub,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	if sid != "" {
		c["sid"] = sid
	}
	return s.Sign(t, "logout+jwt", c)
}
