package tokenrevoke

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// JWS compact serialization (RFC 7515 §7.1) with signature verification against a JWK set,
// for tokens the plugin must trust (OpenID Connect back-channel logout tokens). Only
// asymmetric algorithms are accepted: "none" and every HMAC algorithm are refused, so a
// public key can never be turned into an HMAC secret (key confusion). The key must fit the
// algorithm (kty, crv, the JWK's own alg), and the header's jku, x5u, jwk and x5c members
// are never used to find a key: keys only come from the configured JWK set.
//
// Written for yaegi v0.16.1: errors are errors.New sentinels (compare with errors.Is or
// ==), and no error types are defined here.

// jwsMaxLen bounds the compact serialization accepted.
const jwsMaxLen = 64 << 10

// jwsMaxNumericDate clamps NumericDate claims (year 9999), keeping arithmetic safe.
const jwsMaxNumericDate = int64(253402300799)

// Errors returned by verify. Their texts are fit for an OAuth error_description: they
// never hold a value taken from the token.
var (
	errJWSUnknownKid    = errors.New("no key with the token's kid")
	errJWSNoKey         = errors.New("no key fits the token's alg")
	errJWSKeyMismatch   = errors.New("the key named by kid does not fit the token's alg")
	errJWSAlg           = errors.New("the token's alg is not allowed")
	errJWSBadSignature  = errors.New("the signature does not verify")
	errJWSSignatureSize = errors.New("the signature has the wrong size")
)

// jwsHeader is the protected header (all of it: a compact JWS has no unprotected one).
type jwsHeader struct {
	Alg string
	Kid string // "" when absent
	Typ string
	// HasTyp is set when the typ member is present.
	HasTyp bool
}

// jwsClaims are the registered and logout-related claims of the payload. A claim that is
// absent has its Has* flag (or, for strings, HasX) false.
type jwsClaims struct {
	Iss, Sub, Jti, Sid          string
	HasIss, HasSub, HasJti      bool
	HasSid, HasNonce, HasEvents bool
	Aud                         []string
	HasAud                      bool
	Exp, Iat, Nbf               int64 // NumericDate, seconds, floored, clamped to year 9999
	HasExp, HasIat, HasNbf      bool
	Events                      json.RawMessage
}

// jwsToken is a parsed, not yet verified, JWS compact token.
type jwsToken struct {
	Header       jwsHeader
	SigningInput string // "header.payload", exactly as received
	Signature    []byte
	Claims       jwsClaims
}

// parseJWS parses a JWS compact token strictly: exactly three base64url segments without
// padding or whitespace, a JSON object header without crit, a JSON object payload with
// well-typed claims, and no duplicate member names in either object.
func parseJWS(raw string) (*jwsToken, error) {
	if len(raw) > jwsMaxLen {
		return nil, errors.New("the token is too long")
	}
	segs := strings.Split(raw, ".")
	if len(segs) == 5 {
		return nil, errors.New("encrypted tokens (JWE) are not supported")
	}
	if len(segs) != 3 {
		return nil, errors.New("the token is not a JWS compact serialization (three segments)")
	}
	hdr, err := jwsSegment(segs[0])
	if err != nil {
		return nil, errors.New("the JWS header is not base64url")
	}
	payload, err := jwsSegment(segs[1])
	if err != nil {
		return nil, errors.New("the JWS payload is not base64url")
	}
	sig, err := jwsSegment(segs[2])
	if err != nil || len(sig) == 0 {
		return nil, errors.New("the JWS signature is missing or not base64url")
	}
	t := &jwsToken{SigningInput: segs[0] + "." + segs[1], Signature: sig}
	if err := parseJWSHeader(hdr, &t.Header); err != nil {
		return nil, err
	}
	if err := parseJWSClaims(payload, &t.Claims); err != nil {
		return nil, err
	}
	return t, nil
}

// jwsSegment decodes one unpadded base64url segment strictly: the decoder refuses '=',
// '+', '/', spaces and non-zero trailing bits, but skips CR and LF, refused here. (No
// per-byte loop: under yaegi each interpreted iteration costs about a microsecond.)
func jwsSegment(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("not base64url")
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

func parseJWSHeader(data []byte, h *jwsHeader) error {
	m, err := jsonObjectMembers(data)
	if err != nil {
		return errors.New("the JWS header is not a JSON object")
	}
	if _, ok := m["crit"]; ok {
		return errors.New("the JWS header has crit: no extension is supported")
	}
	raw, ok := m["alg"]
	if !ok {
		return errors.New("the JWS header has no alg")
	}
	if h.Alg, ok = jsonString(raw); !ok || h.Alg == "" {
		return errors.New("the JWS header's alg is not a string")
	}
	if raw, ok := m["kid"]; ok {
		if h.Kid, ok = jsonString(raw); !ok {
			return errors.New("the JWS header's kid is not a string")
		}
	}
	if raw, ok := m["typ"]; ok {
		if h.Typ, ok = jsonString(raw); !ok {
			return errors.New("the JWS header's typ is not a string")
		}
		h.HasTyp = true
	}
	return nil
}

func parseJWSClaims(data []byte, c *jwsClaims) error {
	m, err := jsonObjectMembers(data)
	if err != nil {
		return errors.New("the JWS payload is not a JSON object")
	}
	var ok bool
	if raw, present := m["iss"]; present {
		if c.Iss, ok = jsonString(raw); !ok {
			return errors.New("the iss claim is not a string")
		}
		c.HasIss = true
	}
	if raw, present := m["sub"]; present {
		if c.Sub, ok = jsonString(raw); !ok {
			return errors.New("the sub claim is not a string")
		}
		c.HasSub = true
	}
	if raw, present := m["jti"]; present {
		if c.Jti, ok = jsonString(raw); !ok {
			return errors.New("the jti claim is not a string")
		}
		c.HasJti = true
	}
	if raw, present := m["sid"]; present {
		if c.Sid, ok = jsonString(raw); !ok {
			return errors.New("the sid claim is not a string")
		}
		c.HasSid = true
	}
	if raw, present := m["aud"]; present {
		if c.Aud, ok = jsonAudience(raw); !ok {
			return errors.New("the aud claim is neither a string nor an array of strings")
		}
		c.HasAud = true
	}
	if raw, present := m["exp"]; present {
		if c.Exp, ok = jsonNumericDate(raw); !ok {
			return errors.New("the exp claim is not a valid NumericDate")
		}
		c.HasExp = true
	}
	if raw, present := m["iat"]; present {
		if c.Iat, ok = jsonNumericDate(raw); !ok {
			return errors.New("the iat claim is not a valid NumericDate")
		}
		c.HasIat = true
	}
	if raw, present := m["nbf"]; present {
		if c.Nbf, ok = jsonNumericDate(raw); !ok {
			return errors.New("the nbf claim is not a valid NumericDate")
		}
		c.HasNbf = true
	}
	if _, present := m["nonce"]; present {
		c.HasNonce = true
	}
	if raw, present := m["events"]; present {
		c.Events = raw
		c.HasEvents = true
	}
	return nil
}

// maxJOSEMembers bounds the members of a JOSE header or claims set read one by one
// (interpreted): a token with more is refused before its signature is checked.
const maxJOSEMembers = 64

// maxAudience bounds the items of an aud array.
const maxAudience = 16

// jsonObjectMembers splits a JSON object into its members, exactly as named (encoding/json
// would match struct fields case-insensitively and let a later duplicate win). Duplicate
// names, trailing data and anything but an object are refused.
func jsonObjectMembers(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	m := make(map[string]json.RawMessage)
	for dec.More() {
		if len(m) >= maxJOSEMembers {
			return nil, errors.New("too many members")
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad member name")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := m[name]; dup {
			return nil, errors.New("duplicate member name")
		}
		m[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}

// jsonString decodes a JSON string (not null, not a number).
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonAudience decodes aud: one string or an array of strings.
func jsonAudience(raw json.RawMessage) ([]string, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	if raw[0] == '"' {
		s, ok := jsonString(raw)
		if !ok {
			return nil, false
		}
		return []string{s}, true
	}
	if raw[0] != '[' {
		return nil, false
	}
	// A fixed array (elements past its end are scanned, not kept): more than
	// maxAudience items leave the last one set. A JSON null is kept as "null".
	var items [maxAudience + 1]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items[maxAudience] != nil {
		return nil, false
	}
	out := make([]string, 0, maxAudience)
	for _, it := range items {
		if it == nil {
			break
		}
		s, ok := jsonString(it)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// jsonNumericDate decodes a NumericDate (RFC 7519 §2): a JSON number, integer or not,
// never a string (encoding/json would put a numeric string into a json.Number), not
// negative. It is floored to whole seconds and clamped to year 9999.
func jsonNumericDate(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || !(raw[0] >= '0' && raw[0] <= '9') {
		return 0, false // '-' included: negative dates are refused
	}
	n := json.Number(raw)
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, false
	}
	if f >= float64(jwsMaxNumericDate) {
		return jwsMaxNumericDate, true
	}
	return int64(math.Floor(f)), true
}

// jwsAlgSpec describes one accepted algorithm.
type jwsAlgSpec struct {
	kty  string // "RSA", "EC" or "OKP"
	crv  string // EC and OKP curve
	hash crypto.Hash
	pss  bool
	size int // ECDSA: bytes per coordinate of the signature
}

// jwsAlgorithm returns the spec of an accepted alg. "none", HS* and anything else are
// refused.
func jwsAlgorithm(alg string) (jwsAlgSpec, bool) {
	switch alg {
	case "RS256":
		return jwsAlgSpec{kty: "RSA", hash: crypto.SHA256}, true
	case "RS384":
		return jwsAlgSpec{kty: "RSA", hash: crypto.SHA384}, true
	case "RS512":
		return jwsAlgSpec{kty: "RSA", hash: crypto.SHA512}, true
	case "PS256":
		return jwsAlgSpec{kty: "RSA", hash: crypto.SHA256, pss: true}, true
	case "PS384":
		return jwsAlgSpec{kty: "RSA", hash: crypto.SHA384, pss: true}, true
	case "PS512":
		return jwsAlgSpec{kty: "RSA", hash: crypto.SHA512, pss: true}, true
	case "ES256":
		return jwsAlgSpec{kty: "EC", crv: "P-256", hash: crypto.SHA256, size: 32}, true
	case "ES384":
		return jwsAlgSpec{kty: "EC", crv: "P-384", hash: crypto.SHA384, size: 48}, true
	case "ES512":
		return jwsAlgSpec{kty: "EC", crv: "P-521", hash: crypto.SHA512, size: 66}, true
	case "EdDSA":
		return jwsAlgSpec{kty: "OKP", crv: "Ed25519"}, true
	}
	return jwsAlgSpec{}, false
}

// jwkFits says whether k may verify a signature made with alg.
func jwkFits(k *jwk, alg string, spec jwsAlgSpec) bool {
	if k.Kty != spec.kty || (spec.crv != "" && k.Crv != spec.crv) {
		return false
	}
	return k.Alg == "" || k.Alg == alg
}

// verify checks the token's signature with ks. With a kid in the header only the keys
// with that kid are tried (errJWSUnknownKid when there is none: the caller may refetch
// the key set); without one every key fitting the alg is tried.
func (t *jwsToken) verify(ks *jwkSet) error {
	alg := t.Header.Alg
	spec, ok := jwsAlgorithm(alg)
	if !ok {
		return errJWSAlg
	}
	var keys []*jwk
	if ks != nil {
		keys = ks.keys
	}
	tried := 0
	named := false
	lastErr := errJWSBadSignature
	for _, k := range keys {
		if t.Header.Kid != "" {
			if k.Kid != t.Header.Kid {
				continue
			}
			named = true
		}
		if !jwkFits(k, alg, spec) {
			continue
		}
		tried++
		err := jwsVerifyWith(k, spec, []byte(t.SigningInput), t.Signature)
		if err == nil {
			return nil
		}
		lastErr = err
	}
	if tried > 0 {
		return lastErr
	}
	if t.Header.Kid != "" {
		if named {
			return errJWSKeyMismatch
		}
		return errJWSUnknownKid
	}
	return errJWSNoKey
}

// jwsDigest hashes msg with h (SHA-256, SHA-384 or SHA-512).
func jwsDigest(h crypto.Hash, msg []byte) []byte {
	if h == crypto.SHA384 {
		d := sha512.Sum384(msg)
		return d[:]
	}
	if h == crypto.SHA512 {
		d := sha512.Sum512(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

func jwsVerifyWith(k *jwk, spec jwsAlgSpec, msg, sig []byte) error {
	if spec.kty == "OKP" {
		if len(k.ed) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return errJWSSignatureSize
		}
		if !ed25519.Verify(k.ed, msg, sig) {
			return errJWSBadSignature
		}
		return nil
	}
	digest := jwsDigest(spec.hash, msg)
	if spec.kty == "RSA" {
		if k.rsa == nil || k.rsa.N.BitLen() < jwkMinRSABits {
			return errJWSNoKey
		}
		if len(sig) != k.rsa.Size() {
			return errJWSSignatureSize
		}
		var err error
		if spec.pss {
			err = rsa.VerifyPSS(k.rsa, spec.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			err = rsa.VerifyPKCS1v15(k.rsa, spec.hash, digest, sig)
		}
		if err != nil {
			return errJWSBadSignature
		}
		return nil
	}
	// ECDSA: the JWS signature is r||s, each left-padded to the curve's size (RFC 7518
	// §3.4). A DER (ASN.1) signature has another length and is refused.
	if k.ec == nil {
		return errJWSNoKey
	}
	if len(sig) != 2*spec.size {
		return errJWSSignatureSize
	}
	r := new(big.Int).SetBytes(sig[:spec.size])
	s := new(big.Int).SetBytes(sig[spec.size:])
	if !ecdsa.Verify(k.ec, digest, r, s) {
		return errJWSBadSignature
	}
	return nil
}
