package idptest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
)

// JWT is a decoded (not necessarily verified) compact JWS.
type JWT struct {
	Header map[string]any
	Claims map[string]any
	Raw    string

	signingInput string
	signature    []byte
}

// ParseJWT decodes a compact JWS without checking its signature.
func ParseJWT(token string) (*JWT, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("jwt: %d parts, want 3", len(parts))
	}
	j := &JWT{Raw: token, signingInput: parts[0] + "." + parts[1]}
	for i, dst := range []*map[string]any{&j.Header, &j.Claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, fmt.Errorf("jwt part %d: %w", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			return nil, fmt.Errorf("jwt part %d: %w", i, err)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("jwt signature: %w", err)
	}
	j.signature = sig
	return j, nil
}

// MustParseJWT is ParseJWT failing the test on error.
func MustParseJWT(t testing.TB, token string) *JWT {
	t.Helper()
	j, err := ParseJWT(token)
	if err != nil {
		t.Fatalf("idptest: %v", err)
	}
	return j
}

// String is a string claim ("" when absent or not a string).
func (j *JWT) String(name string) string {
	s, _ := j.Claims[name].(string)
	return s
}

// Int is a numeric claim (0 when absent).
func (j *JWT) Int(name string) int64 {
	f, _ := j.Claims[name].(float64)
	return int64(f)
}

// Alg and Kid are the header's.
func (j *JWT) Alg() string { s, _ := j.Header["alg"].(string); return s }
func (j *JWT) Kid() string { s, _ := j.Header["kid"].(string); return s }
func (j *JWT) Typ() string { s, _ := j.Header["typ"].(string); return s }

// JWK is a public JSON Web Key (RSA, EC P-256 or OKP Ed25519).
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// FetchJWKS reads a JWKS from url.
func FetchJWKS(ctx context.Context, url string) (JWKS, error) {
	var s JWKS
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return s, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return s, err
	}
	if res.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET %s: %d", url, res.StatusCode)
	}
	return s, json.Unmarshal(b, &s)
}

// JWKS fetches the provider's signing keys.
func (idp *IdP) JWKS(t testing.TB) JWKS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ClientTimeout)
	defer cancel()
	s, err := FetchJWKS(ctx, idp.JWKSURL)
	if err != nil {
		t.Fatalf("idptest: jwks: %v", err)
	}
	return s
}

// Verify checks the signature of token against the key its header's kid names
// (RS256, ES256, EdDSA/Ed25519) and returns the decoded token. Claims are not checked.
func (s JWKS) Verify(token string) (*JWT, error) {
	j, err := ParseJWT(token)
	if err != nil {
		return nil, err
	}
	var key *JWK
	for i := range s.Keys {
		if s.Keys[i].Kid == j.Kid() {
			key = &s.Keys[i]
			break
		}
	}
	if key == nil {
		return nil, fmt.Errorf("jwt: no key with kid %q", j.Kid())
	}
	if err := verify(key, j.Alg(), []byte(j.signingInput), j.signature); err != nil {
		return nil, err
	}
	return j, nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}

func verify(k *JWK, alg string, input, sig []byte) error {
	switch alg {
	case "RS256":
		if k.Kty != "RSA" {
			return fmt.Errorf("jwt: alg %s with a %s key", alg, k.Kty)
		}
		n, err := b64int(k.N)
		if err != nil {
			return err
		}
		e, err := b64int(k.E)
		if err != nil {
			return err
		}
		h := sha256.Sum256(input)
		return rsa.VerifyPKCS1v15(&rsa.PublicKey{N: n, E: int(e.Int64())}, crypto.SHA256, h[:], sig)
	case "ES256":
		if k.Kty != "EC" || k.Crv != "P-256" {
			return fmt.Errorf("jwt: alg %s with a %s %s key", alg, k.Kty, k.Crv)
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil {
			return err
		}
		y, err := base64.RawURLEncoding.DecodeString(k.Y)
		if err != nil {
			return err
		}
		if len(x) != 32 || len(y) != 32 {
			return errors.New("jwt: bad P-256 key coordinates")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return err
		}
		if len(sig) != 64 {
			return fmt.Errorf("jwt: ES256 signature of %d bytes", len(sig))
		}
		h := sha256.Sum256(input)
		if !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return errors.New("jwt: bad ES256 signature")
		}
		return nil
	case "EdDSA", "Ed25519":
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			return fmt.Errorf("jwt: alg %s with a %s %s key", alg, k.Kty, k.Crv)
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil {
			return err
		}
		if len(x) != ed25519.PublicKeySize || !ed25519.Verify(ed25519.PublicKey(x), input, sig) {
			return fmt.Errorf("jwt: bad %s signature", alg)
		}
		return nil
	default:
		return fmt.Errorf("jwt: unsupported alg %q", alg)
	}
}
