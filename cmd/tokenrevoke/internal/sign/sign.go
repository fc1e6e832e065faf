// Package sign implements the bus message signature of tokenrevoke (the contract the
// gateways verify): one NATS header
//
//	Tokenrevoke-Sig: v1;<alg>;<kid>;<base64url, no padding, of the signature>
//
// over the bytes "tokenrevoke-sig-v1\n" + subject + "\n" + body, with alg ed25519
// (a 32-byte seed) or hs256 (HMAC-SHA256 with a secret of at least 32 bytes).
package sign

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Header is the NATS header that carries the signature.
const Header = "Tokenrevoke-Sig"

// Algorithms.
const (
	AlgEd25519 = "ed25519"
	AlgHS256   = "hs256"
)

const (
	version   = "v1"
	domain    = "tokenrevoke-sig-v1\n"
	minSecret = 32
)

// Key is one signing or verifying key.
type Key struct {
	ID  string
	Alg string

	priv   ed25519.PrivateKey // ed25519, signs
	pub    ed25519.PublicKey  // ed25519, verifies
	secret []byte             // hs256, signs and verifies
}

// ValidID says whether id is a key id: 1-64 characters of [A-Za-z0-9._-].
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
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

func checkID(id string) error {
	if !ValidID(id) {
		return errors.New("the key id must be 1-64 characters of A-Z a-z 0-9 . _ -")
	}
	return nil
}

// DecodeBase64 reads standard or URL base64, padded or not.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// NewEd25519 is a signing key from the base64 of a 32-byte Ed25519 seed. Errors never
// contain the seed.
func NewEd25519(id, seed string) (*Key, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	b, err := DecodeBase64(seed)
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, errors.New("the Ed25519 private key must be 32 bytes of base64 (the seed)")
	}
	priv := ed25519.NewKeyFromSeed(b)
	return &Key{ID: id, Alg: AlgEd25519, priv: priv, pub: priv.Public().(ed25519.PublicKey)}, nil
}

// NewEd25519Public is a verify-only key from the base64 of a 32-byte public key.
func NewEd25519Public(id, pub string) (*Key, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	b, err := DecodeBase64(pub)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("the Ed25519 public key must be 32 bytes of base64")
	}
	return &Key{ID: id, Alg: AlgEd25519, pub: ed25519.PublicKey(b)}, nil
}

// NewHMAC is an HMAC-SHA256 key; the secret is used as is and must be at least 32 bytes.
func NewHMAC(id, secret string) (*Key, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if len(secret) < minSecret {
		return nil, fmt.Errorf("the HMAC secret must be at least %d bytes", minSecret)
	}
	return &Key{ID: id, Alg: AlgHS256, secret: []byte(secret)}, nil
}

// CanSign says whether the key holds a private part.
func (k *Key) CanSign() bool { return k.priv != nil || k.secret != nil }

// PublicBase64 is the standard base64 of an Ed25519 key's public key ("" for HMAC).
func (k *Key) PublicBase64() string {
	if k.pub == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(k.pub)
}

func signedBytes(subject string, body []byte) []byte {
	b := make([]byte, 0, len(domain)+len(subject)+1+len(body))
	b = append(b, domain...)
	b = append(b, subject...)
	b = append(b, '\n')
	return append(b, body...)
}

func (k *Key) raw(subject string, body []byte) []byte {
	msg := signedBytes(subject, body)
	if k.Alg == AlgEd25519 {
		return ed25519.Sign(k.priv, msg)
	}
	m := hmac.New(sha256.New, k.secret)
	m.Write(msg)
	return m.Sum(nil)
}

// Sign returns the header value for body published on subject. The key must be able
// to sign.
func (k *Key) Sign(subject string, body []byte) string {
	return version + ";" + k.Alg + ";" + k.ID + ";" + base64.RawURLEncoding.EncodeToString(k.raw(subject, body))
}

// Status of a message's signature.
const (
	Unsigned   = "unsigned"   // no header
	Unverified = "unverified" // signed, no verify keys given
	Valid      = "valid"      // verifies with the configured key of its kid
	UnknownKid = "unknownKid" // verify keys given, but none with this kid
	WrongAlg   = "wrongAlg"   // the kid's key has another algorithm
	Invalid    = "invalid"    // the signature does not verify
	Malformed  = "malformed"  // several headers, bad syntax, unknown alg or version
)

// Result is what Check found.
type Result struct {
	Status string `json:"status"`
	Alg    string `json:"alg,omitempty"`
	Kid    string `json:"kid,omitempty"`
}

// Parse splits a header value into its algorithm, key id and signature.
func Parse(v string) (alg, kid string, sig []byte, err error) {
	parts := strings.Split(v, ";")
	if len(parts) != 4 || parts[0] != version {
		return "", "", nil, errors.New("not v1;alg;kid;sig")
	}
	alg, kid = parts[1], parts[2]
	if !ValidID(kid) {
		return "", "", nil, errors.New("bad key id")
	}
	if sig, err = base64.RawURLEncoding.DecodeString(parts[3]); err != nil {
		return "", "", nil, errors.New("signature is not unpadded base64url")
	}
	switch {
	case alg == AlgEd25519 && len(sig) == ed25519.SignatureSize, alg == AlgHS256 && len(sig) == sha256.Size:
	case alg == AlgEd25519 || alg == AlgHS256:
		return "", "", nil, errors.New("signature of the wrong length")
	default:
		return "", "", nil, errors.New("unknown algorithm")
	}
	return alg, kid, sig, nil
}

// Check reads the signature headers of a message (values: every Tokenrevoke-Sig
// header) and, when keys is not empty, verifies it against the key of its kid.
func Check(keys map[string]*Key, subject string, body []byte, values []string) Result {
	if len(values) == 0 {
		return Result{Status: Unsigned}
	}
	if len(values) > 1 {
		return Result{Status: Malformed}
	}
	alg, kid, sig, err := Parse(values[0])
	if err != nil {
		return Result{Status: Malformed}
	}
	r := Result{Alg: alg, Kid: kid}
	if len(keys) == 0 {
		r.Status = Unverified
		return r
	}
	k := keys[kid]
	switch {
	case k == nil:
		r.Status = UnknownKid
	case k.Alg != alg:
		r.Status = WrongAlg
	case k.verify(subject, body, sig):
		r.Status = Valid
	default:
		r.Status = Invalid
	}
	return r
}

func (k *Key) verify(subject string, body []byte, sig []byte) bool {
	if k.Alg == AlgEd25519 {
		return ed25519.Verify(k.pub, signedBytes(subject, body), sig)
	}
	return hmac.Equal(k.raw(subject, body), sig)
}

// Generate makes a fresh Ed25519 key and returns the standard base64 of its seed and of
// its public key.
func Generate() (seed, pub string, err error) {
	p, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(priv.Seed()), base64.StdEncoding.EncodeToString(p), nil
}
