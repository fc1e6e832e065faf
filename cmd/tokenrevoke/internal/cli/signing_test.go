package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/sign"
)

// goldenVector is testdata/signing/golden.json of the plugin module (the repository
// root), the vector the gateways are tested against too.
type goldenVector struct {
	Body              string `json:"body"`
	Ed25519PrivateKey string `json:"ed25519PrivateKey"`
	Ed25519PublicKey  string `json:"ed25519PublicKey"`
	HeaderEd25519     string `json:"headerEd25519"`
	HeaderHS256       string `json:"headerHS256"`
	HMACSecret        string `json:"hmacSecret"`
	Kid               string `json:"kid"`
	Subject           string `json:"subject"`
}

func loadGolden(t *testing.T) goldenVector {
	t.Helper()
	b, err := os.ReadFile("../../../../testdata/signing/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenVector
	if err := json.Unmarshal(b, &g); err != nil || g.Kid == "" {
		t.Fatalf("golden.json: %v", err)
	}
	return g
}

// runWith runs the command with environment variables and a clock of its own.
func runWith(t *testing.T, url string, envVars map[string]string, now time.Time, stdin string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	env := Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return envVars[k] }}
	if !now.IsZero() {
		env.Now = func() time.Time { return now }
	}
	code := Run(context.Background(), append([]string{"-s", url}, args...), env)
	return result{code, out.String(), errb.String()}
}

func verifyKeys(t *testing.T, g goldenVector) map[string]*sign.Key {
	t.Helper()
	k, err := sign.NewEd25519Public(g.Kid, g.Ed25519PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*sign.Key{g.Kid: k}
}

// The command reproduces the golden message byte for byte, and its header.
func TestSignGoldenRevoke(t *testing.T) {
	g := loadGolden(t)
	url := startNATS(t)
	_, js := client(t, url)
	var body struct {
		Key, Kind, Hint, RevokedAt, Origin, Client string
		Exp                                        int64
	}
	if err := json.Unmarshal([]byte(g.Body), &body); err != nil {
		t.Fatal(err)
	}
	now, _ := time.Parse(time.RFC3339, body.RevokedAt)
	args := []string{"revoke", "--sha256", body.Key, "--kind", body.Kind, "--exp", "1893456000",
		"--hint", body.Hint, "--origin", body.Origin, "--client", body.Client}
	for _, c := range []struct {
		name string
		env  map[string]string
		flag []string
		want string
	}{
		{"ed25519 env", map[string]string{envSignKeyID: g.Kid, envSignEd25519: g.Ed25519PrivateKey}, nil, g.HeaderEd25519},
		{"hs256 flags", nil, []string{"--sign-key-id", g.Kid, "--sign-hmac-secret", g.HMACSecret}, g.HeaderHS256},
	} {
		r := runWith(t, url, c.env, now, "", append(args, c.flag...)...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", c.name, r.code, r.stderr)
		}
		m := lastMsg(t, js, "REVOCATIONS", g.Subject)
		if string(m.Data) != g.Body {
			t.Fatalf("%s: body\n%s\nwant\n%s", c.name, m.Data, g.Body)
		}
		if got := m.Header.Values(sign.Header); len(got) != 1 || got[0] != c.want {
			t.Fatalf("%s: header %v, want %s", c.name, got, c.want)
		}
		if m.Header.Get(jetstream.MsgTTLHeader) == "" {
			t.Fatalf("%s: Nats-TTL lost", c.name)
		}
	}
}

// Every publishing command signs; the signatures verify with the public key.
func TestSignEveryPublish(t *testing.T) {
	g := loadGolden(t)
	keys := verifyKeys(t, g)
	url := startNATS(t)
	nc, js := client(t, url)
	env := map[string]string{envSignKeyID: g.Kid, envSignEd25519: g.Ed25519PrivateKey}
	mustOK := func(stdin string, args ...string) result {
		t.Helper()
		r := runWith(t, url, env, time.Time{}, stdin, args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		return r
	}
	verify := func(subject string, m *jetstream.RawStreamMsg) {
		t.Helper()
		if r := sign.Check(keys, subject, m.Data, m.Header.Values(sign.Header)); r.Status != sign.Valid {
			t.Fatalf("%s: signature %s", subject, r.Status)
		}
	}
	pubOf := func(r result) string {
		t.Helper()
		var p published
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || !p.Published {
			t.Fatalf("not published: %s", r.stdout)
		}
		return p.Subject
	}
	s1 := pubOf(mustOK("", "--json", "revoke", "opaque-token-1"))
	s2 := pubOf(mustOK("", "--json", "revoke-session", "--issuer", "iss", "--sid", "sid-1"))
	s3 := pubOf(mustOK("", "--json", "revoke-subject", "--issuer", "iss", "--sub", "sub-1"))
	for _, s := range []string{s1, s2, s3} {
		verify(s, lastMsg(t, js, "REVOCATIONS", s))
	}

	dir := t.TempDir()
	file := dir + "/in.txt"
	if err := os.WriteFile(file, []byte("imp-1\nimp-2\n{\"token\":\"imp-3\",\"exp\":4102444800}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustOK("", "import", file)
	info := streamInfo(t, js, "REVOCATIONS")
	if info.State.Msgs != 6 {
		t.Fatalf("stream holds %d messages, want 6", info.State.Msgs)
	}
	ctx := context.Background()
	st, _ := js.Stream(ctx, "REVOCATIONS")
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		verify(m.Subject, m)
		if m.Header.Get(jetstream.MsgTTLHeader) == "" {
			t.Fatalf("seq %d without Nats-TTL", seq)
		}
	}

	// The snapshot manifest is signed and lists each chunk body's digest.
	mustOK("", "snapshot")
	mm := lastMsg(t, js, "REVOCATIONS_SNAPSHOTS", "tokens.revoked-snapshots.manifest")
	verify(mm.Subject, mm)
	var man struct {
		Chunks          []uint64 `json:"chunks"`
		RuleChunks      []uint64 `json:"ruleChunks"`
		ChunkSha256     []string `json:"chunkSha256"`
		RuleChunkSha256 []string `json:"ruleChunkSha256"`
	}
	if err := json.Unmarshal(mm.Data, &man); err != nil {
		t.Fatal(err)
	}
	if len(man.Chunks) != 1 || len(man.RuleChunks) != 1 || len(man.ChunkSha256) != 1 || len(man.RuleChunkSha256) != 1 {
		t.Fatalf("manifest %s", mm.Data)
	}
	snap, _ := js.Stream(ctx, "REVOCATIONS_SNAPSHOTS")
	for i, seq := range append(man.Chunks, man.RuleChunks...) {
		m, err := snap.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256(m.Data)
		if want := append(man.ChunkSha256, man.RuleChunkSha256...)[i]; hex.EncodeToString(d[:]) != want {
			t.Fatalf("chunk %d digest %x, manifest says %s", i, d, want)
		}
	}

	// Core NATS: revoke and import sign too.
	sub, err := nc.SubscribeSync("tokens.revoked.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	mustOK("", "--stream", "", "revoke", "core-token")
	mustOK("core-imp-1\ncore-imp-2\n", "--stream", "", "import", "-")
	for i := 0; i < 3; i++ {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("core message %d: %v", i, err)
		}
		if r := sign.Check(keys, m.Subject, m.Data, m.Header.Values(sign.Header)); r.Status != sign.Valid {
			t.Fatalf("core %s: %s", m.Subject, r.Status)
		}
	}
}

// Bad signing settings are usage errors that never echo the key.
func TestSignFlagErrors(t *testing.T) {
	g := loadGolden(t)
	shortSecret := "too-short-secret-Q9"
	badSeed := "bm90LWEtc2VlZA=="
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
		hide string
	}{
		{nil, []string{"--sign-key-id", "k1"}, "needs a key", ""},
		{nil, []string{"--sign-ed25519-key", g.Ed25519PrivateKey}, "needs its id", g.Ed25519PrivateKey},
		{map[string]string{envSignKeyID: "k1", envSignEd25519: g.Ed25519PrivateKey, envSignHMAC: g.HMACSecret}, nil, "not both", g.HMACSecret},
		{nil, []string{"--sign-key-id", "k1", "--sign-hmac-secret", shortSecret}, "at least 32 bytes", shortSecret},
		{map[string]string{envSignKeyID: "k1", envSignEd25519: badSeed}, nil, "32 bytes of base64", badSeed},
		{nil, []string{"--sign-key-id", "bad id", "--sign-ed25519-key", g.Ed25519PrivateKey}, "key id", g.Ed25519PrivateKey},
	} {
		// No server needed: the key is checked before connecting.
		r := runWith(t, "nats://127.0.0.1:1", c.env, time.Time{}, "", append([]string{"revoke", "tok"}, c.args...)...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v %v: exit %d, stderr %q (want %q)", c.env != nil, c.args, r.code, r.stderr, c.want)
		}
		if c.hide != "" && (strings.Contains(r.stderr, c.hide) || strings.Contains(r.stdout, c.hide)) {
			t.Errorf("%v: the secret is echoed: %s", c.args, r.stderr)
		}
	}
	r := runWith(t, "nats://127.0.0.1:1", nil, time.Time{}, "", "check", "tok", "--verify-hmac-secret", "k1="+shortSecret)
	if r.code != ExitUsage || strings.Contains(r.stderr, shortSecret) {
		t.Errorf("check with a short verify secret: exit %d, %s", r.code, r.stderr)
	}
}

// keygen prints YAML the plugin reads: the private key signs, the public key verifies,
// and the command signs with the printed environment.
func TestKeygen(t *testing.T) {
	r := mustRun(t, "nats://127.0.0.1:1", "", 0, "keygen", "--id", "ops-2026-12")
	type cfg struct {
		NATS struct {
			Signing struct {
				Keys []struct {
					ID                string `yaml:"id"`
					Ed25519PrivateKey string `yaml:"ed25519PrivateKey"`
					Ed25519PublicKey  string `yaml:"ed25519PublicKey"`
				} `yaml:"keys"`
				SignWith string `yaml:"signWith"`
			} `yaml:"signing"`
		} `yaml:"nats"`
	}
	dec := yaml.NewDecoder(strings.NewReader(r.stdout))
	var docs []cfg
	for {
		var c cfg
		err := dec.Decode(&c)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("keygen output is not YAML: %v\n%s", err, r.stdout)
		}
		docs = append(docs, c)
	}
	if len(docs) != 2 || len(docs[0].NATS.Signing.Keys) != 1 || len(docs[1].NATS.Signing.Keys) != 1 {
		t.Fatalf("want two documents with one key each:\n%s", r.stdout)
	}
	signer, verifier := docs[0].NATS.Signing, docs[1].NATS.Signing.Keys[0]
	if signer.SignWith != "ops-2026-12" || signer.Keys[0].ID != "ops-2026-12" || verifier.ID != "ops-2026-12" ||
		signer.Keys[0].Ed25519PublicKey != "" || verifier.Ed25519PrivateKey != "" {
		t.Fatalf("unexpected documents:\n%s", r.stdout)
	}
	priv, err := sign.NewEd25519(signer.Keys[0].ID, signer.Keys[0].Ed25519PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.NewEd25519Public(verifier.ID, verifier.Ed25519PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	hdr := priv.Sign("tokens.revoked.x", []byte("body"))
	keys := map[string]*sign.Key{pub.ID: pub}
	if got := sign.Check(keys, "tokens.revoked.x", []byte("body"), []string{hdr}); got.Status != sign.Valid {
		t.Fatalf("keygen pair does not verify: %s", got.Status)
	}
	if got := sign.Check(keys, "tokens.revoked.y", []byte("body"), []string{hdr}); got.Status != sign.Invalid {
		t.Fatalf("another subject verifies: %s", got.Status)
	}
	// Each run makes a new key; the default id comes from the public key.
	r2 := mustRun(t, "nats://127.0.0.1:1", "", 0, "--json", "keygen")
	var j map[string]string
	if err := json.Unmarshal([]byte(r2.stdout), &j); err != nil || j["ed25519PrivateKey"] == signer.Keys[0].Ed25519PrivateKey || !strings.HasPrefix(j["id"], "ed25519-") {
		t.Fatalf("second keygen: %v %s", err, r2.stdout)
	}

	// The command signs with the printed environment; watch and check verify.
	url := startNATS(t)
	env := map[string]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#")), "="); ok && strings.HasPrefix(k, "export ") {
			env[strings.TrimPrefix(k, "export ")] = v
		}
	}
	if env[envSignKeyID] != "ops-2026-12" || env[envSignEd25519] == "" {
		t.Fatalf("no environment in the keygen output: %v", env)
	}
	mustRun(t, url, "", 0, "revoke", "before-watch")
	out, done := startWatch(t, url, "--json", "--count", "2", "--verify-ed25519-pub", "ops-2026-12="+verifier.Ed25519PublicKey)
	if r := runWith(t, url, env, time.Time{}, "", "revoke", "signed-token"); r.code != 0 {
		t.Fatalf("signed revoke: %d %s", r.code, r.stderr)
	}
	mustRun(t, url, "", 0, "revoke", "unsigned-token")
	waitExit(t, done, out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var l1, l2 watchLine
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &l1) != nil || json.Unmarshal([]byte(lines[1]), &l2) != nil {
		t.Fatalf("watch output:\n%s", out.String())
	}
	if l1.Sig.Status != sign.Valid || l1.Sig.Kid != "ops-2026-12" || l1.Sig.Alg != "ed25519" || l2.Sig.Status != sign.Unsigned {
		t.Fatalf("watch signatures: %+v %+v", l1.Sig, l2.Sig)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "signed by ops-2026-12 (ed25519), not verified"},
		{[]string{"--verify-ed25519-pub", "ops-2026-12=" + verifier.Ed25519PublicKey}, "sig valid kid ops-2026-12 (ed25519)"},
		{[]string{"--verify-ed25519-pub", "ops-2026-12=" + loadGolden(t).Ed25519PublicKey}, "sig invalid kid ops-2026-12"},
		{[]string{"--verify-ed25519-pub", "other=" + verifier.Ed25519PublicKey}, "sig unknownKid kid ops-2026-12"},
		{[]string{"--verify-hmac-secret", "ops-2026-12=" + loadGolden(t).HMACSecret}, "sig wrongAlg kid ops-2026-12"},
	} {
		r := mustRun(t, url, "", 0, append([]string{"check", "signed-token"}, c.args...)...)
		if !strings.Contains(r.stdout, "signature  "+c.want) {
			t.Errorf("check %v:\n%s\nwant %q", c.args, r.stdout, c.want)
		}
	}
	r = mustRun(t, url, "", 0, "check", "unsigned-token")
	if !strings.Contains(r.stdout, "signature  sig unsigned") {
		t.Errorf("check of an unsigned entry:\n%s", r.stdout)
	}
}
