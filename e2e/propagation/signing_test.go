package propagation

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// Bus message signatures (docs/bus-signing.md): gateways with nats.signing keys sign
// what they publish and apply only what a configured key signed. The signer below is
// written from the contract (header Tokenrevoke-Sig: v1;<alg>;<kid>;<base64url sig>
// over "tokenrevoke-sig-v1\n" + subject + "\n" + body), not from the plugin's code.

// busKey is a signing key of the tests: Ed25519 (seed) or HMAC-SHA256 (secret).
type busKey struct {
	id     string
	seed   []byte // ed25519
	secret string // hs256
}

func newEd25519Key(t testing.TB, id string) busKey {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	return busKey{id: id, seed: seed}
}

func newHMACKey(id string) busKey {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return busKey{id: id, secret: "hs-" + hex.EncodeToString(b[:])}
}

// private is the key as a gateway that signs with it configures it.
func (k busKey) private() map[string]any {
	if k.seed != nil {
		return map[string]any{"id": k.id, "ed25519PrivateKey": base64.StdEncoding.EncodeToString(k.seed)}
	}
	return map[string]any{"id": k.id, "hmacSecret": k.secret}
}

// public is the key as a gateway that only verifies it configures it (an HMAC secret
// both signs and verifies).
func (k busKey) public() map[string]any {
	if k.seed != nil {
		pub := ed25519.NewKeyFromSeed(k.seed).Public().(ed25519.PublicKey)
		return map[string]any{"id": k.id, "ed25519PublicKey": base64.RawURLEncoding.EncodeToString(pub)}
	}
	return k.private()
}

// header is the Tokenrevoke-Sig value for a message on subject with body.
func (k busKey) header(subject string, body []byte) string {
	msg := []byte("tokenrevoke-sig-v1\n" + subject + "\n" + string(body))
	if k.seed != nil {
		sig := ed25519.Sign(ed25519.NewKeyFromSeed(k.seed), msg)
		return "v1;ed25519;" + k.id + ";" + base64.RawURLEncoding.EncodeToString(sig)
	}
	mac := hmac.New(sha256.New, []byte(k.secret))
	mac.Write(msg)
	return "v1;hs256;" + k.id + ";" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// signingExtra is a gateway's nats settings with a signing block: it signs with
// signWith (whose private form is given) and verifies with every key.
func signingExtra(base map[string]any, signWith busKey, verify ...busKey) map[string]any {
	keys := []any{signWith.private()}
	for _, k := range verify {
		keys = append(keys, k.public())
	}
	extra := map[string]any{}
	for k, v := range base {
		extra[k] = v
	}
	extra["signing"] = map[string]any{"keys": keys, "signWith": signWith.id}
	return extra
}

// tokenBody is a version-2 token message body for tok.
func tokenBody(tok, client string) []byte {
	return []byte(fmt.Sprintf(`{"v":2,"kind":"token","key":"%s","exp":%d,"revokedAt":"%s","origin":"idp","client":"%s"}`,
		sum(tok), time.Now().Add(time.Hour).Unix(), time.Now().UTC().Format(time.RFC3339), client))
}

// busMsg is one message a nats.go publisher sends: sig "" for none.
func busMsg(subject string, body []byte, sig string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = body
	if sig != "" {
		m.Header.Set("Tokenrevoke-Sig", sig)
	}
	return m
}

// signingStatus is the part of the status document these tests read.
type signingStatus struct {
	Entries int            `json:"entries"`
	Origins map[string]int `json:"origins"`
	Rules   int            `json:"rules"`
	Synced  bool           `json:"synced"`
	NATS    struct {
		Received     int64 `json:"received"`
		Dropped      int64 `json:"dropped"`
		Unsigned     int64 `json:"unsigned"`
		BadSignature int64 `json:"badSignature"`
		Signed       bool  `json:"signed"`
		Snapshot     *struct {
			LoadedSequence  uint64 `json:"loadedSequence"`
			WrittenSequence uint64 `json:"writtenSequence"`
			LastError       string `json:"lastError"`
		} `json:"snapshot"`
	} `json:"nats"`
}

func signingStatusOf(t testing.TB, g *gateway) signingStatus {
	t.Helper()
	var s signingStatus
	if err := json.Unmarshal([]byte(g.status()), &s); err != nil {
		t.Fatalf("status: %v", err)
	}
	return s
}

// waitSigning polls g's status until ok accepts it.
func waitSigning(t testing.TB, g *gateway, timeout time.Duration, what string, ok func(signingStatus) bool) signingStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := signingStatusOf(t, g)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %v; status %s\nlog:\n%s", what, timeout, g.status(), g.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forgeries publishes, with nats.go, an unsigned, a wrong-key and a tampered message for
// tokens forged-<tag>-{unsigned,wrong-key,tampered}, then one correctly signed message
// (idp) for good-<tag>. js nil: core NATS.
func forgeries(t *testing.T, nc *nats.Conn, js nats.JetStreamContext, idp, intruder busKey, tag string) {
	t.Helper()
	pub := func(m *nats.Msg) {
		t.Helper()
		var err error
		if js != nil {
			m.Header.Set("Nats-TTL", "3600s")
			_, err = js.PublishMsg(m)
		} else {
			err = nc.PublishMsg(m)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range []string{"unsigned", "wrong-key", "tampered"} {
		tok := "forged-" + tag + "-" + kind
		subject := "tokens.revoked." + sum(tok)
		body := tokenBody(tok, "portal")
		switch kind {
		case "unsigned":
			pub(busMsg(subject, body, ""))
		case "wrong-key":
			// The intruder claims the identity provider's key id.
			pub(busMsg(subject, body, intruder.header(subject, body)))
		case "tampered":
			sig := idp.header(subject, body)
			pub(busMsg(subject, []byte(strings.Replace(string(body), `"client":"portal"`, `"client":"other"`, 1)), sig))
		}
	}
	tok := "good-" + tag
	subject := "tokens.revoked." + sum(tok)
	body := tokenBody(tok, "portal")
	pub(busMsg(subject, body, idp.header(subject, body)))
	if js == nil {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkForgeries waits until g applied good-<tag> and checks that no forgery of tag was
// applied; it returns g's status.
func checkForgeries(t *testing.T, g *gateway, tag string) signingStatus {
	t.Helper()
	if !g.waitRejected("good-"+tag, 5*time.Second) {
		t.Fatalf("%s: a correctly signed nats.go message is not applied; log:\n%s", g.Name, g.LogTail(20))
	}
	for _, kind := range []string{"unsigned", "wrong-key", "tampered"} {
		if g.call("forged-"+tag+"-"+kind) != 200 {
			t.Fatalf("%s: the %s message was applied", g.Name, kind)
		}
	}
	return signingStatusOf(t, g)
}

// signedPair starts gateways A (Ed25519, signs with ka) and B (HMAC, signs with kb) that
// verify each other and the identity provider's Ed25519 key idp; extra is the nats
// block without signing; idpCfg adds the back-channel logout receiver.
func signedPair(t *testing.T, srv *harness.NATS, extra map[string]any, lidp *testIdP) (a, b *gateway, ka, kb, idp busKey) {
	t.Helper()
	ka = newEd25519Key(t, "gw-a-2026")
	kb = newHMACKey("fleet-hs")
	idp = newEd25519Key(t, "idp-1")
	a = newGateway(t, lidp.logoutConfig(natsConfig([]string{srv.URL}, "gw-a", signingExtra(extra, ka, kb, idp))))
	b = newGateway(t, lidp.logoutConfig(natsConfig([]string{srv.URL}, "gw-b", signingExtra(extra, kb, ka, idp))))
	return a, b, ka, kb, idp
}

// checkSignedPropagation: revocations and logout rules made at one gateway of the pair
// reach the other, signed (origin @<kid> of the signer).
func checkSignedPropagation(t *testing.T, a, b *gateway, ka, kb busKey, lidp *testIdP) {
	t.Helper()
	if a.revoke("signed-at-a") != 200 || b.revoke("signed-at-b") != 200 {
		t.Fatal("revoke failed")
	}
	if !b.waitRejected("signed-at-a", 5*time.Second) || !a.waitRejected("signed-at-b", 5*time.Second) {
		t.Fatalf("signed revocations do not propagate; A log:\n%s\nB log:\n%s", a.LogTail(20), b.LogTail(20))
	}
	issued := time.Now().Unix() - 5
	s1 := lidp.access(t, "alice", "sess-1", issued)
	if code, body := postLogout(a, lidp.logout(t, "alice", "sess-1")); code != 200 {
		t.Fatalf("logout at A: %d %s", code, body)
	}
	if !b.waitRejected(s1, 5*time.Second) {
		t.Fatalf("a signed session rule does not reach B; B log:\n%s", b.LogTail(20))
	}
	if sb := signingStatusOf(t, b); sb.Origins["@"+ka.id] < 1 || sb.Origins["portal"] != 1 || !sb.NATS.Signed {
		t.Fatalf("B's origins %v: want A's revocation under @%s and B's own under portal", sb.Origins, ka.id)
	}
	if sa := signingStatusOf(t, a); sa.Origins["@"+kb.id] < 1 {
		t.Fatalf("A's origins %v: want B's revocation under @%s", sa.Origins, kb.id)
	}
}

// Core NATS: signed gateways share revocations and rules; a nats.go publisher signing
// by the contract is applied; unsigned, wrong-key and tampered messages are dropped,
// counted and never applied.
func TestSignedCoreNATS(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{})
	lidp := newTestIdP(t)
	a, b, ka, kb, idp := signedPair(t, srv, nil, lidp)
	a.waitConnected(5 * time.Second)
	b.waitConnected(5 * time.Second)
	checkSignedPropagation(t, a, b, ka, kb, lidp)

	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	forgeries(t, nc, nil, idp, newEd25519Key(t, idp.id), "core")
	for _, g := range []*gateway{a, b} {
		st := checkForgeries(t, g, "core")
		if st.NATS.Unsigned != 1 || st.NATS.BadSignature != 2 || st.NATS.Dropped != 3 || st.Origins["@"+idp.id] != 1 {
			t.Fatalf("%s: status %s", g.Name, g.status())
		}
		if !strings.Contains(g.logged(), "unsigned or wrongly signed") {
			t.Fatalf("%s: the drops were not logged:\n%s", g.Name, g.LogTail(20))
		}
	}
}

// JetStream: the same, live and on replay (a gateway that starts later replays the
// stream and applies only what is signed); a gateway without keys still reads the
// signed messages (nothing is checked without keys).
func TestSignedJetStream(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	lidp := newTestIdP(t)
	extra := map[string]any{"stream": "REVOCATIONS", "snapshotEvery": -1}
	a, b, ka, kb, idp := signedPair(t, srv, extra, lidp)
	for _, g := range []*gateway{a, b} {
		if _, err := g.WaitSynced(30 * time.Second); err != nil {
			t.Fatalf("%s: %v", g.Name, err)
		}
	}
	checkSignedPropagation(t, a, b, ka, kb, lidp)
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	forgeries(t, nc, js, idp, newHMACKey(idp.id), "js")
	for _, g := range []*gateway{a, b} {
		st := checkForgeries(t, g, "js")
		if st.NATS.Unsigned != 1 || st.NATS.BadSignature != 2 || st.NATS.Dropped != 3 {
			t.Fatalf("%s: status %s", g.Name, g.status())
		}
	}
	// A gateway that starts now replays the stream: signed messages (the gateways', the
	// rule, the identity provider's) applied, the forgeries dropped and counted.
	kc := newEd25519Key(t, "gw-c")
	c := newGateway(t, lidp.logoutConfig(natsConfig([]string{srv.URL}, "gw-c", signingExtra(extra, kc, ka, kb, idp))))
	sc := waitSigning(t, c, 30*time.Second, "C synced", func(s signingStatus) bool { return s.Synced })
	for _, tok := range []string{"signed-at-a", "signed-at-b", "good-js"} {
		if c.call(tok) != 401 {
			t.Fatalf("C, replaying, does not apply the signed revocation of %s; log:\n%s", tok, c.LogTail(20))
		}
	}
	for _, kind := range []string{"unsigned", "wrong-key", "tampered"} {
		if c.call("forged-js-"+kind) != 200 {
			t.Fatalf("C, replaying, applied the %s message", kind)
		}
	}
	if sc.NATS.Unsigned != 1 || sc.NATS.BadSignature != 2 || sc.Rules != 1 || sc.Origins["@"+ka.id] < 1 || sc.Origins["@"+kb.id] != 1 || sc.Origins["@"+idp.id] != 1 {
		t.Fatalf("C after the replay: %s", c.status())
	}
	// Without keys nothing is checked: every message is applied, as origin @unsigned.
	d := newGateway(t, natsConfig([]string{srv.URL}, "gw-d", extra))
	sd := waitSigning(t, d, 30*time.Second, "D synced", func(s signingStatus) bool { return s.Synced })
	if d.call("forged-js-unsigned") != 401 || d.call("good-js") != 401 || sd.NATS.Dropped != 0 || sd.NATS.Signed || len(sd.Origins) != 1 || sd.Origins["@unsigned"] == 0 {
		t.Fatalf("D without keys: %s", d.status())
	}
}

// Rotation: A signs with its new key only; B holds the old and the new key and accepts
// both (A's messages and a publisher still on the old key); A, which no longer holds the
// old key, drops the old key's messages.
func TestSigningKeyRotation(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{})
	oldKey := newEd25519Key(t, "gw-2026-11")
	newKey := newEd25519Key(t, "gw-2026-12")
	bKey := newHMACKey("gw-b-hs")
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", signingExtra(nil, newKey, bKey)))
	b := newGateway(t, natsConfig([]string{srv.URL}, "gw-b", signingExtra(nil, bKey, oldKey, newKey)))
	a.waitConnected(5 * time.Second)
	b.waitConnected(5 * time.Second)
	if a.revoke("rotated-at-a") != 200 {
		t.Fatal("revoke failed")
	}
	if !b.waitRejected("rotated-at-a", 5*time.Second) {
		t.Fatalf("B does not accept A's new key; B log:\n%s", b.LogTail(20))
	}
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, k := range []busKey{oldKey, newKey} {
		tok := "published-with-" + k.id
		subject := "tokens.revoked." + sum(tok)
		body := tokenBody(tok, "")
		if err := nc.PublishMsg(busMsg(subject, body, k.header(subject, body))); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []busKey{oldKey, newKey} {
		if !b.waitRejected("published-with-"+k.id, 5*time.Second) {
			t.Fatalf("B does not accept key %s", k.id)
		}
	}
	if !a.waitRejected("published-with-"+newKey.id, 5*time.Second) {
		t.Fatal("A does not accept its own new key from another publisher")
	}
	sa := waitSigning(t, a, 5*time.Second, "A drops the old key", func(s signingStatus) bool { return s.NATS.BadSignature == 1 })
	if a.call("published-with-"+oldKey.id) != 200 || sa.NATS.Received != 1 {
		t.Fatalf("A (without the old key): %s", a.status())
	}
	sb := signingStatusOf(t, b)
	if sb.Origins["@"+oldKey.id] != 1 || sb.Origins["@"+newKey.id] != 2 || sb.NATS.Dropped != 0 {
		t.Fatalf("B's origins per key: %s", b.status())
	}
}

// A snapshot written by a signing gateway is loaded by a fresh gateway with the keys;
// an unsigned manifest, one whose digest does not match its chunk, and a signed one
// without digests are refused (the fresh gateway replays the stream instead).
func TestSignedSnapshot(t *testing.T) {
	const filled = 300
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	ka := newEd25519Key(t, "gw-a-snap")
	extra := signingExtra(map[string]any{"stream": "REVOCATIONS", "snapshotEvery": 100}, ka)
	a := newGateway(t, natsConfig([]string{srv.URL}, "gw-a", extra))
	if _, err := a.WaitSynced(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < filled; i++ {
		if a.revoke("snap-token-"+strconv.Itoa(i)) != 200 {
			t.Fatal("revoke failed")
		}
	}
	sa := waitSigning(t, a, 60*time.Second, "A writes a snapshot", func(s signingStatus) bool {
		return s.NATS.Snapshot != nil && s.NATS.Snapshot.WrittenSequence >= filled
	})
	js := jetStreamOf(t, srv.URL)
	m, err := js.GetLastMsg("REVOCATIONS_SNAPSHOTS", "tokens.revoked-snapshots.manifest")
	if err != nil {
		t.Fatal(err)
	}
	if want := ka.header(m.Subject, m.Data); m.Header.Get("Tokenrevoke-Sig") != want {
		t.Fatalf("manifest signature %q, want %q (by the contract)", m.Header.Get("Tokenrevoke-Sig"), want)
	}
	var man map[string]any
	if err := json.Unmarshal(m.Data, &man); err != nil {
		t.Fatal(err)
	}
	chunks, _ := man["chunks"].([]any)
	digests, _ := man["chunkSha256"].([]any)
	if len(chunks) == 0 || len(digests) != len(chunks) {
		t.Fatalf("manifest without chunk digests: %s", m.Data)
	}
	first, err := js.GetMsg("REVOCATIONS_SNAPSHOTS", uint64(chunks[0].(float64)))
	if err != nil {
		t.Fatal(err)
	}
	if d := sha256.Sum256(first.Data); hex.EncodeToString(d[:]) != digests[0] {
		t.Fatal("chunkSha256[0] is not the SHA-256 of chunk 0")
	}

	// A fresh gateway with the key loads it.
	kb := newHMACKey("gw-b-hs")
	bExtra := signingExtra(map[string]any{"stream": "REVOCATIONS", "snapshotEvery": 100000}, kb, ka)
	loader := func(name string) (*gateway, signingStatus) {
		g := newGateway(t, natsConfig([]string{srv.URL}, name, bExtra))
		st := waitSigning(t, g, 60*time.Second, name+" synced", func(s signingStatus) bool { return s.Synced && s.Entries == filled })
		for i := 0; i < filled; i += 7 {
			if g.call("snap-token-"+strconv.Itoa(i)) != 401 {
				t.Fatalf("%s accepts revoked snap-token-%d", name, i)
			}
		}
		return g, st
	}
	_, sl := loader("gw-load")
	if sl.NATS.Snapshot == nil || sl.NATS.Snapshot.LoadedSequence != sa.NATS.Snapshot.WrittenSequence || sl.NATS.Received >= filled {
		t.Fatalf("the fresh gateway did not start from the signed snapshot: %+v", sl)
	}
	if sl.Origins["@"+ka.id] != filled {
		t.Fatalf("loaded origins %v: A's own revocations should count as @%s", sl.Origins, ka.id)
	}

	republish := func(data []byte, sig string) {
		t.Helper()
		mm := busMsg("tokens.revoked-snapshots.manifest", data, sig)
		mm.Header.Set("Nats-TTL", "3600s")
		if _, err := js.PublishMsg(mm); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(name, why string) {
		t.Helper()
		g, st := loader(name)
		if st.NATS.Snapshot == nil || st.NATS.Snapshot.LoadedSequence != 0 || st.NATS.Received < filled || !strings.Contains(st.NATS.Snapshot.LastError, why) {
			t.Fatalf("%s: a forged manifest was used or refused for another reason (want %q): %s\nlog:\n%s", name, why, g.status(), g.LogTail(20))
		}
	}
	// Unsigned.
	republish(m.Data, "")
	refused("gw-unsigned", "no Tokenrevoke-Sig")
	// Signed by a key the loader does not hold (an intruder with the same key id).
	republish(m.Data, newEd25519Key(t, ka.id).header(m.Subject, m.Data))
	refused("gw-wrong-key", "wrong Tokenrevoke-Sig")
	// Correctly signed, but a digest that does not match its chunk (a swapped chunk).
	forged := map[string]any{}
	for k, v := range man {
		forged[k] = v
	}
	bad := append([]any(nil), digests...)
	bad[0] = strings.Repeat("0", 64)
	forged["chunkSha256"] = bad
	data, _ := json.Marshal(forged)
	republish(data, ka.header(m.Subject, data))
	refused("gw-digest", "does not match its digest")
	// Correctly signed, no digests.
	delete(forged, "chunkSha256")
	delete(forged, "ruleChunkSha256")
	data, _ = json.Marshal(forged)
	republish(data, ka.header(m.Subject, data))
	refused("gw-no-digests", "no chunk digests")
	if strings.Contains(a.logged(), "snap-token-") {
		t.Fatal("a raw token in the log")
	}
}

// BenchmarkYaegiSyncSigned is BenchmarkYaegiSync with signed messages and a gateway that
// verifies them: SYNC_N revocations (default 100000) signed with Ed25519, or with
// HMAC-SHA256 when SYNC_SIGN_ALG=hs256.
func BenchmarkYaegiSyncSigned(b *testing.B) {
	n := syncN()
	key := newEd25519Key(b, "bench-ed")
	if os.Getenv("SYNC_SIGN_ALG") == "hs256" {
		key = newHMACKey("bench-hs")
	}
	srv := harness.StartNATS(b, harness.NATSOptions{JetStream: true})
	fillSignedStream(b, srv.URL, n, key)
	for i := 0; i < b.N; i++ {
		start := time.Now()
		own := newHMACKey("gw-own")
		cfg := natsConfig([]string{srv.URL}, fmt.Sprintf("gw-signed-sync-%d", i), signingExtra(map[string]any{"stream": "REVOCATIONS", "snapshotEvery": -1}, own, key))
		cfg["cacheSize"] = n + 10
		g := newGateway(b, cfg)
		st := waitSigning(b, g, 10*time.Minute, "synced", func(s signingStatus) bool { return s.Synced && s.Entries == n })
		took := time.Since(start)
		if st.NATS.Dropped != 0 {
			b.Fatalf("dropped %d signed messages", st.NATS.Dropped)
		}
		b.ReportMetric(took.Seconds(), "s/sync")
		b.ReportMetric(float64(took.Nanoseconds())/float64(n), "ns/revocation")
	}
}

// fillSignedStream is fillStream with every message signed by key.
func fillSignedStream(tb testing.TB, url string, n int, key busKey) {
	tb.Helper()
	publishToStream(tb, url, n, func(i int) *nats.Msg {
		tok := "sync-token-" + strconv.Itoa(i)
		subject := "tokens.revoked." + sum(tok)
		body := tokenBody(tok, "")
		return busMsg(subject, body, key.header(subject, body))
	})
}

// Without keys, a forged session rule with a cutoff 90 days ahead is capped at its
// arrival + clockSkew (here 1s): later tokens pass; when an earlier cutoff is stored
// after it, the gateway republishes the capped cutoff, never the forged one, so a
// gateway joining from the stream holds the same; and a later genuine logout applies.
func TestForgedFutureRuleCapped(t *testing.T) {
	idp := newTestIdP(t)
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	extra := map[string]any{"stream": "REVOCATIONS", "snapshotEvery": -1}
	cfg := func(name string) map[string]any {
		c := idp.logoutConfig(natsConfig([]string{srv.URL}, name, extra))
		c["clockSkew"] = "1s"
		return c
	}
	g1 := newGateway(t, cfg("gw-1"))
	if _, err := g1.WaitSynced(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	js := jetStreamOf(t, srv.URL)
	key := ruleKeyHex("sid", "", "sess-forged", "")
	t1 := time.Now().Unix()
	before := idp.access(t, "gina", "sess-forged", t1-30)
	publishSessionRule(t, js, key, t1+90*86400)
	if !g1.waitRejected(before, 5*time.Second) {
		t.Fatal("the forged rule is not applied at all (it should end the tokens issued before it)")
	}
	// The earlier cutoff, stored last: gw-1 publishes the cutoff it holds again.
	publishSessionRule(t, js, key, t1-100)
	var republished map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m, err := js.GetLastMsg("REVOCATIONS", "tokens.revoked.sid."+key)
		if err != nil {
			t.Fatal(err)
		}
		republished = nil
		_ = json.Unmarshal(m.Data, &republished)
		if c, _ := republished["cutoff"].(float64); int64(c) != t1-100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gw-1 did not republish; log:\n%s", g1.LogTail(20))
		}
	}
	if c := int64(republished["cutoff"].(float64)); c < t1 || c > time.Now().Unix()+1 {
		t.Fatalf("republished cutoff is now%+d: the forged cutoff travels again", c-time.Now().Unix())
	}
	if e := int64(republished["exp"].(float64)); e > time.Now().Unix()+3600+10 {
		t.Fatalf("republished exp %d is beyond cutoff + maxTokenLifetime + skew", e)
	}
	time.Sleep(3 * time.Second) // past t1 + skew, in whole seconds
	after := idp.access(t, "gina", "sess-forged", time.Now().Unix())
	g2 := newGateway(t, cfg("gw-2"))
	if _, err := g2.WaitSynced(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*gateway{g1, g2} {
		if g.call(before) != 401 || g.call(after) != 200 {
			t.Fatalf("%s: before %d, after %d (want 401, 200)", g.Name, g.call(before), g.call(after))
		}
	}
	// A genuine logout now: its later cutoff applies everywhere.
	time.Sleep(1100 * time.Millisecond)
	if code, body := postLogout(g1, idp.logout(t, "gina", "sess-forged")); code != 200 {
		t.Fatalf("logout: %d %s", code, body)
	}
	for _, g := range []*gateway{g1, g2} {
		if !g.waitRejected(after, 5*time.Second) {
			t.Fatalf("%s: a genuine logout after the forged rule does not apply", g.Name)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	fresh := idp.access(t, "gina", "sess-forged", time.Now().Unix())
	for _, g := range []*gateway{g1, g2} {
		if g.call(fresh) != 200 {
			t.Fatalf("%s rejects a token issued after the genuine logout", g.Name)
		}
	}
}
