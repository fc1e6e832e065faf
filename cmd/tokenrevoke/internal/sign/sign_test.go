package sign

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// golden is testdata/signing/golden.json of the plugin module, the vector both the
// gateways and this command are tested against.
type golden struct {
	Body                string `json:"body"`
	Ed25519PrivateKey   string `json:"ed25519PrivateKey"`
	Ed25519PublicKey    string `json:"ed25519PublicKey"`
	Ed25519PublicKeyHex string `json:"ed25519PublicKeyHex"`
	Ed25519SeedHex      string `json:"ed25519SeedHex"`
	HeaderEd25519       string `json:"headerEd25519"`
	HeaderHS256         string `json:"headerHS256"`
	HMACSecret          string `json:"hmacSecret"`
	Kid                 string `json:"kid"`
	Subject             string `json:"subject"`
}

func readGolden(t *testing.T) golden {
	t.Helper()
	b, err := os.ReadFile("../../../../testdata/signing/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if g.Kid == "" || g.HeaderEd25519 == "" || g.HeaderHS256 == "" {
		t.Fatal("golden.json lacks fields")
	}
	return g
}

func TestGolden(t *testing.T) {
	g := readGolden(t)
	ed, err := NewEd25519(g.Kid, g.Ed25519PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := ed.Sign(g.Subject, []byte(g.Body)); got != g.HeaderEd25519 {
		t.Errorf("ed25519 header\n got %s\nwant %s", got, g.HeaderEd25519)
	}
	if ed.PublicBase64() != g.Ed25519PublicKey {
		t.Errorf("public key %s, want %s", ed.PublicBase64(), g.Ed25519PublicKey)
	}
	if hex.EncodeToString(ed.pub) != g.Ed25519PublicKeyHex || hex.EncodeToString(ed.priv.Seed()) != g.Ed25519SeedHex {
		t.Error("hex forms of the golden keys differ")
	}
	hs, err := NewHMAC(g.Kid, g.HMACSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := hs.Sign(g.Subject, []byte(g.Body)); got != g.HeaderHS256 {
		t.Errorf("hs256 header\n got %s\nwant %s", got, g.HeaderHS256)
	}

	pub, err := NewEd25519Public(g.Kid, g.Ed25519PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(g.Body)
	for _, c := range []struct {
		name    string
		keys    map[string]*Key
		subject string
		body    []byte
		values  []string
		want    string
	}{
		{"ed25519 valid", map[string]*Key{g.Kid: pub}, g.Subject, body, []string{g.HeaderEd25519}, Valid},
		{"hs256 valid", map[string]*Key{g.Kid: hs}, g.Subject, body, []string{g.HeaderHS256}, Valid},
		{"no keys", nil, g.Subject, body, []string{g.HeaderEd25519}, Unverified},
		{"unsigned", map[string]*Key{g.Kid: pub}, g.Subject, body, nil, Unsigned},
		{"other subject", map[string]*Key{g.Kid: pub}, g.Subject + "0", body, []string{g.HeaderEd25519}, Invalid},
		{"other body", map[string]*Key{g.Kid: hs}, g.Subject, append([]byte(g.Body), ' '), []string{g.HeaderHS256}, Invalid},
		{"unknown kid", map[string]*Key{"other": pub}, g.Subject, body, []string{g.HeaderEd25519}, UnknownKid},
		{"wrong alg", map[string]*Key{g.Kid: hs}, g.Subject, body, []string{g.HeaderEd25519}, WrongAlg},
		{"two headers", map[string]*Key{g.Kid: pub}, g.Subject, body, []string{g.HeaderEd25519, g.HeaderEd25519}, Malformed},
		{"unknown alg", map[string]*Key{g.Kid: pub}, g.Subject, body, []string{strings.Replace(g.HeaderEd25519, "ed25519", "rs256", 1)}, Malformed},
		{"padded sig", map[string]*Key{g.Kid: hs}, g.Subject, body, []string{g.HeaderHS256 + "="}, Malformed},
	} {
		if r := Check(c.keys, c.subject, c.body, c.values); r.Status != c.want {
			t.Errorf("%s: %s, want %s", c.name, r.Status, c.want)
		}
	}
}

func TestKeyErrorsHideSecrets(t *testing.T) {
	secret := "short-secret-XYZ"
	if _, err := NewHMAC("k", secret); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("short secret: %v", err)
	}
	seed := "c2VjcmV0LXNlZWQtdG9vLXNob3J0"
	if _, err := NewEd25519("k", seed); err == nil || strings.Contains(err.Error(), seed) {
		t.Fatalf("short seed: %v", err)
	}
	if _, err := NewEd25519("bad id", "MQbUoR7Vu0MifPA/ebXgUdMF0Xir5Rr0cv8dBuWwggY="); err == nil {
		t.Fatal("a key id with a space was accepted")
	}
	// Every base64 spelling of the seed is accepted.
	for _, s := range []string{"MQbUoR7Vu0MifPA/ebXgUdMF0Xir5Rr0cv8dBuWwggY=", "MQbUoR7Vu0MifPA/ebXgUdMF0Xir5Rr0cv8dBuWwggY", "MQbUoR7Vu0MifPA_ebXgUdMF0Xir5Rr0cv8dBuWwggY="} {
		if _, err := NewEd25519("k", s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}

// The cost of signing one revocation message (import signs each of its messages).
func BenchmarkSign(b *testing.B) {
	ed, _ := NewEd25519("k", "MQbUoR7Vu0MifPA/ebXgUdMF0Xir5Rr0cv8dBuWwggY=")
	hs, _ := NewHMAC("k", "golden-hmac-secret-0123456789abcdef")
	subject := "tokens.revoked.6d1b1a7f3e0f1c2b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f708192a3b4c5d"
	body := []byte(`{"v":2,"kind":"token","key":"6d1b1a7f3e0f1c2b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f708192a3b4c5d","exp":1893456000,"revokedAt":"2026-12-07T20:00:00Z","origin":"cli"}`)
	for _, k := range []*Key{ed, hs} {
		b.Run(k.Alg, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				_ = k.Sign(subject, body)
			}
		})
	}
}
