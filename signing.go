package tokenrevoke

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Bus message signatures (docs/bus-signing.md).
//
// With nats.signing.keys configured, every message a gateway publishes on <subject>.>
// and on the snapshot manifest subject carries one NATS header
//
//	Tokenrevoke-Sig: v1;<alg>;<kid>;<base64url, no padding, of the signature>
//
// over "tokenrevoke-sig-v1\n" + subject + "\n" + body, with alg ed25519 or hs256
// (HMAC-SHA256). Received messages are verified against every configured key; unsigned
// ones (unless acceptUnsigned) and wrongly signed ones are dropped and counted. Without
// keys nothing is signed or checked: the bus is trusted.
//
// Whatever the configuration, the cache origin of a received message (eviction
// fairness, cache.go) is what its signature proves: "@<kid>" for a message signed by a
// configured key, "@unsigned" for every other one. The body's origin and client fields
// are never used for it.

// SigningConfig is nats.signing: the keys that sign and verify bus messages.
type SigningConfig struct {
	// Keys are the keys messages are verified with (all of them) and signed with (the
	// one SignWith names).
	Keys []SigningKeyConfig `json:"keys,omitempty"`
	// SignWith is the id of the key this gateway signs with (required with keys); it
	// must hold ed25519PrivateKey or hmacSecret.
	SignWith string `json:"signWith,omitempty"`
	// AcceptUnsigned applies messages without a signature header (a migration aid);
	// wrongly signed messages are dropped either way.
	AcceptUnsigned bool `json:"acceptUnsigned,omitempty"`
}

// SigningKeyConfig is one key: exactly one of Ed25519PrivateKey, Ed25519PublicKey and
// HMACSecret.
type SigningKeyConfig struct {
	// ID is the key id carried in the header: 1-64 characters of [A-Za-z0-9._-].
	ID string `json:"id,omitempty"`
	// Ed25519PrivateKey is the base64 (standard or URL alphabet, padded or not) of the
	// 32-byte seed: signs and verifies.
	Ed25519PrivateKey string `json:"ed25519PrivateKey,omitempty"`
	// Ed25519PublicKey is the base64 of the 32-byte public key: verifies only.
	Ed25519PublicKey string `json:"ed25519PublicKey,omitempty"`
	// HMACSecret is a shared secret of at least 32 bytes (HMAC-SHA256): signs and
	// verifies.
	HMACSecret string `json:"hmacSecret,omitempty"`
}

// Signature header and algorithms.
const (
	sigHeader  = "Tokenrevoke-Sig"
	sigContext = "tokenrevoke-sig-v1\n"
	algEd25519 = "ed25519"
	algHS256   = "hs256"
	// originUnsigned is the cache origin of every message a configured key did not sign.
	originUnsigned = "@unsigned"
	minHMACSecret  = 32
	maxKeyIDLen    = 64
)

// sigHeaderLine finds the header in an unparsed NATS header block (every header line
// follows the "NATS/1.0" line's CRLF).
var sigHeaderLine = []byte("\r\n" + sigHeader + ":")

// Why a received message's signature is refused (0: accepted).
const (
	sigUnsigned = uint8(1) // no signature header (and acceptUnsigned is off)
	sigBad      = uint8(2) // several headers, unknown alg or kid, wrong alg, bad signature
)

// sigKey is one configured key.
type sigKey struct {
	alg    string
	origin string // "@" + id
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey // nil for a verify-only key
	secret []byte             // hs256
}

// busSigner signs what a gateway publishes and verifies what it receives. A nil
// *busSigner (no keys configured) signs nothing and accepts everything as unsigned.
type busSigner struct {
	keys           map[string]*sigKey
	signKid        string
	sign           *sigKey
	acceptUnsigned bool
	// fingerprint identifies the configuration (keys included) for natsSettings.key,
	// which hashes it again.
	fingerprint string
}

// parseSigning validates nats.signing; nil in, nil out.
func parseSigning(c *SigningConfig) (*busSigner, error) {
	if c == nil {
		return nil, nil
	}
	if len(c.Keys) == 0 {
		return nil, errors.New("tokenrevoke: nats.signing.keys: at least one key is required when nats.signing is set")
	}
	s := &busSigner{keys: make(map[string]*sigKey), acceptUnsigned: c.AcceptUnsigned}
	fp := []string{"accept=" + fmt.Sprint(c.AcceptUnsigned)}
	for i, k := range c.Keys {
		where := fmt.Sprintf("tokenrevoke: nats.signing.keys[%d]", i)
		id := strings.TrimSpace(k.ID)
		if id == "" {
			return nil, errors.New(where + ".id: is required")
		}
		if !validKeyID(id) {
			return nil, fmt.Errorf("%s.id: %q must be 1-%d characters of A-Z, a-z, 0-9, '.', '_', '-'", where, id, maxKeyIDLen)
		}
		if _, dup := s.keys[id]; dup {
			return nil, fmt.Errorf("%s.id: duplicate key id %q", where, id)
		}
		set := 0
		for _, v := range []string{k.Ed25519PrivateKey, k.Ed25519PublicKey, k.HMACSecret} {
			if v != "" {
				set++
			}
		}
		if set != 1 {
			return nil, fmt.Errorf("%s (%s): set exactly one of ed25519PrivateKey, ed25519PublicKey, hmacSecret", where, id)
		}
		key := &sigKey{origin: "@" + id}
		switch {
		case k.Ed25519PrivateKey != "":
			seed, ok := decodeKeyBase64(k.Ed25519PrivateKey)
			if !ok || len(seed) != ed25519.SeedSize {
				return nil, fmt.Errorf("%s.ed25519PrivateKey (%s): must be 32 bytes of base64 (the Ed25519 seed)", where, id)
			}
			key.alg = algEd25519
			key.priv = ed25519.NewKeyFromSeed(seed)
			key.pub = ed25519.PublicKey(key.priv[ed25519.SeedSize:])
		case k.Ed25519PublicKey != "":
			pub, ok := decodeKeyBase64(k.Ed25519PublicKey)
			if !ok || len(pub) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("%s.ed25519PublicKey (%s): must be 32 bytes of base64", where, id)
			}
			key.alg = algEd25519
			key.pub = ed25519.PublicKey(pub)
		default:
			if len(k.HMACSecret) < minHMACSecret {
				return nil, fmt.Errorf("%s.hmacSecret (%s): must be at least %d bytes", where, id, minHMACSecret)
			}
			key.alg = algHS256
			key.secret = []byte(k.HMACSecret)
		}
		s.keys[id] = key
		material := hex.EncodeToString(key.pub)
		if key.priv != nil {
			material = "priv:" + hex.EncodeToString(key.priv.Seed())
		}
		if key.secret != nil {
			material = "hmac:" + hex.EncodeToString(key.secret)
		}
		fp = append(fp, id+"="+key.alg+":"+material)
	}
	signWith := strings.TrimSpace(c.SignWith)
	if signWith == "" {
		return nil, errors.New("tokenrevoke: nats.signing.signWith: is required when keys are set (the id of the key this gateway signs with)")
	}
	key, ok := s.keys[signWith]
	if !ok {
		return nil, fmt.Errorf("tokenrevoke: nats.signing.signWith: %q names no key in nats.signing.keys", signWith)
	}
	if key.priv == nil && key.secret == nil {
		return nil, fmt.Errorf("tokenrevoke: nats.signing.signWith: key %q is verify-only (ed25519PublicKey); name a key with ed25519PrivateKey or hmacSecret", signWith)
	}
	s.signKid = signWith
	s.sign = key
	sort.Strings(fp[1:])
	s.fingerprint = "sign=" + signWith + "\x00" + strings.Join(fp, "\x00")
	return s, nil
}

// validKeyID reports whether id is 1-64 characters of [A-Za-z0-9._-].
func validKeyID(id string) bool {
	if len(id) == 0 || len(id) > maxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// decodeKeyBase64 reads base64 in the standard or URL alphabet, padded or not.
func decodeKeyBase64(v string) ([]byte, bool) {
	v = strings.TrimRight(strings.TrimSpace(v), "=")
	v = strings.NewReplacer("-", "+", "_", "/").Replace(v)
	b, err := base64.RawStdEncoding.DecodeString(v)
	return b, err == nil
}

// signedBytes is what a signature covers.
func signedBytes(subject string, body []byte) []byte {
	b := make([]byte, 0, len(sigContext)+len(subject)+1+len(body))
	b = append(b, sigContext...)
	b = append(b, subject...)
	b = append(b, '\n')
	return append(b, body...)
}

// headerValue returns the Tokenrevoke-Sig value for a message on subject with body,
// signed with the signWith key.
func (s *busSigner) headerValue(subject string, body []byte) string {
	msg := signedBytes(subject, body)
	var sig []byte
	if s.sign.alg == algEd25519 {
		sig = ed25519.Sign(s.sign.priv, msg)
	} else {
		mac := hmac.New(sha256.New, s.sign.secret)
		mac.Write(msg)
		sig = mac.Sum(nil)
	}
	return "v1;" + s.sign.alg + ";" + s.signKid + ";" + base64.RawURLEncoding.EncodeToString(sig)
}

// addTo sets the signature header for subject and body in hdr (nothing without keys).
func (s *busSigner) addTo(hdr map[string][]string, subject string, body []byte) {
	if s == nil {
		return
	}
	hdr[sigHeader] = []string{s.headerValue(subject, body)}
}

// check verifies a received message: value is its Tokenrevoke-Sig header, count how
// many such headers it carried (0: unsigned). It returns the message's cache origin
// and why it is refused (0 when it is accepted).
func (s *busSigner) check(subject string, body []byte, value string, count int) (string, uint8) {
	if s == nil {
		return originUnsigned, 0
	}
	if count == 0 {
		if s.acceptUnsigned {
			return originUnsigned, 0
		}
		return originUnsigned, sigUnsigned
	}
	if count > 1 {
		return originUnsigned, sigBad
	}
	parts := strings.Split(value, ";")
	if len(parts) != 4 || parts[0] != "v1" {
		return originUnsigned, sigBad
	}
	key := s.keys[parts[2]]
	if key == nil || key.alg != parts[1] {
		return originUnsigned, sigBad
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil {
		return originUnsigned, sigBad
	}
	msg := signedBytes(subject, body)
	if key.alg == algEd25519 {
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(key.pub, msg, sig) {
			return originUnsigned, sigBad
		}
		return key.origin, 0
	}
	mac := hmac.New(sha256.New, key.secret)
	mac.Write(msg)
	if len(sig) != sha256.Size || !hmac.Equal(mac.Sum(nil), sig) {
		return originUnsigned, sigBad
	}
	return key.origin, 0
}

// checkHeader is check for a message whose headers were parsed (nil: none).
func (s *busSigner) checkHeader(subject string, body []byte, hdr map[string][]string) (string, uint8) {
	if s == nil {
		return originUnsigned, 0
	}
	vals := hdr[sigHeader]
	if len(vals) == 0 {
		return s.check(subject, body, "", 0)
	}
	return s.check(subject, body, vals[0], len(vals))
}

// checkRaw is check for a message whose header block was left unparsed (the stream
// follower's minimal deliveries): a couple of compiled searches instead of a parse.
func (s *busSigner) checkRaw(subject string, body, raw []byte) (string, uint8) {
	if s == nil {
		return originUnsigned, 0
	}
	i := bytes.Index(raw, sigHeaderLine)
	if i < 0 {
		return s.check(subject, body, "", 0)
	}
	rest := raw[i+len(sigHeaderLine):]
	j := bytes.Index(rest, sigHeaderLine[:2])
	if j < 0 {
		return originUnsigned, sigBad
	}
	if bytes.Contains(rest[j:], sigHeaderLine) {
		return originUnsigned, sigBad
	}
	return s.check(subject, body, string(bytes.TrimSpace(rest[:j])), 1)
}

// dropReason is the text logged for a refused signature.
func sigDropReason(why uint8) string {
	if why == sigUnsigned {
		return "no " + sigHeader + " header (nats.signing is configured)"
	}
	return "wrong " + sigHeader + " signature (several headers, unknown key id or algorithm, or a signature that does not verify)"
}
