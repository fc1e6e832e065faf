package propagation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
	"github.com/tokenrevoke/tokenrevoke/e2e/idptest"
)

// Session and subject rules (OpenID back-channel logout) across gateways: a logout
// received by one gateway is enforced by every other, by a gateway that starts later
// (stream replay), and by one that starts from a snapshot.

const (
	logoutIss  = "https://idp.e2e.test"
	logoutAud  = "gateway"
	logoutPath = "/api/id/v1/auth/backchannel-logout"
)

// testIdP signs logout tokens and access tokens for logoutIss.
type testIdP struct{ s *idptest.Signer }

func newTestIdP(t testing.TB) *testIdP { return &testIdP{s: idptest.NewSigner(t, logoutIss)} }

func (p *testIdP) jwks() string { return p.s.JWKS() }

func (p *testIdP) access(t testing.TB, sub, sid string, iat int64) string {
	return p.s.AccessToken(t, sub, sid, iat)
}

func (p *testIdP) logout(t testing.TB, sub, sid string) string {
	return p.s.LogoutToken(t, logoutAud, sub, sid)
}

// logoutConfig adds the issuer and the receiver to a gateway configuration.
func (p *testIdP) logoutConfig(cfg map[string]any) map[string]any {
	cfg["issuers"] = []any{map[string]any{"issuer": logoutIss, "jwks": p.jwks(), "audience": logoutAud}}
	cfg["backchannelLogoutPath"] = logoutPath
	cfg["maxTokenLifetime"] = "1h"
	return cfg
}

func postLogout(g *gateway, tok string) (int, string) {
	req := httptest.NewRequest(http.MethodPost, logoutPath, strings.NewReader("logout_token="+url.QueryEscape(tok)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := g.Do(req)
	return rec.Code, rec.Body.String()
}

// rulesOf reads the rules count of a gateway's status document.
func rulesOf(t testing.TB, g *gateway) int {
	var st struct {
		Rules int `json:"rules"`
	}
	if err := json.Unmarshal([]byte(g.status()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Rules
}

func TestLogoutRulesAcrossJetStream(t *testing.T) {
	idp := newTestIdP(t)
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	extra := map[string]any{"stream": "REVOCATIONS", "snapshotEvery": 20}
	a := newGateway(t, idp.logoutConfig(natsConfig([]string{srv.URL}, "gw-a", extra)))
	b := newGateway(t, idp.logoutConfig(natsConfig([]string{srv.URL}, "gw-b", extra)))
	for _, g := range []*gateway{a, b} {
		if _, err := g.WaitSynced(30 * time.Second); err != nil {
			t.Fatalf("%s: %v", g.Name, err)
		}
	}
	issued := time.Now().Unix() - 5
	s1 := idp.access(t, "alice", "sess-1", issued)
	s2 := idp.access(t, "alice", "sess-2", issued)
	bob := idp.access(t, "bob", "sess-3", issued)
	bobOther := idp.access(t, "bob", "sess-4", issued)
	for _, tok := range []string{s1, s2, bob, bobOther} {
		if b.call(tok) != 200 {
			t.Fatal("a token is rejected before any logout")
		}
	}
	// Alice ends session 1 at A: B rejects its tokens, not session 2's.
	if code, body := postLogout(a, idp.logout(t, "alice", "sess-1")); code != 200 {
		t.Fatalf("logout at A: %d %s", code, body)
	}
	if !b.waitRejected(s1, 5*time.Second) {
		t.Fatalf("B still accepts session 1's token; B log:\n%s", b.LogTail(20))
	}
	if b.call(s2) != 200 {
		t.Fatal("B rejects the other session's token")
	}
	// Bob is logged out everywhere (sub only) at B: A rejects both sessions.
	if code, body := postLogout(b, idp.logout(t, "bob", "")); code != 200 {
		t.Fatalf("logout at B: %d %s", code, body)
	}
	for _, tok := range []string{bob, bobOther} {
		if !a.waitRejected(tok, 5*time.Second) {
			t.Fatal("A still accepts a token of the subject logged out at B")
		}
	}
	// Enough revocations to make A write a snapshot (rules included).
	for i := 0; i < 30; i++ {
		if a.revoke("logout-fill-"+strconv.Itoa(i)) != 200 {
			t.Fatal("revoke failed")
		}
	}
	// Token revocations that follow rules on the stream are applied as tokens.
	for i := 0; i < 30; i++ {
		if !b.waitRejected("logout-fill-"+strconv.Itoa(i), 5*time.Second) {
			t.Fatalf("B accepts a token revoked after the rules (logout-fill-%d)", i)
		}
	}
	// A or B writes it, whichever finds it due first.
	var man map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		man = readRawManifest(t, srv.URL)
		if man != nil && man["seq"].(float64) >= 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot written; A: %s\nB: %s", a.status(), b.status())
		}
	}
	if man["withRules"] != true || man["ruleSlots"] != float64(2) || len(man["ruleChunks"].([]any)) != 1 {
		t.Fatalf("manifest: %v", man)
	}
	// A gateway that starts now loads the snapshot and enforces both rules.
	c := newGateway(t, natsConfig([]string{srv.URL}, "gw-c", extra))
	sc := waitSnapshotStatus(t, c, 30*time.Second, "C synced", func(s snapshotPart) bool { return s.Synced })
	if sc.NATS.Snapshot.LoadedSequence == 0 {
		t.Fatalf("C did not load the snapshot; log:\n%s", c.logged())
	}
	if rulesOf(t, c) != 2 {
		t.Fatalf("C holds %d rules, want 2; status %s", rulesOf(t, c), c.status())
	}
	for _, tok := range []string{s1, bob, bobOther} {
		if c.call(tok) != 401 {
			t.Fatal("C accepts a logged-out token")
		}
	}
	if c.call(s2) != 200 {
		t.Fatal("C rejects session 2")
	}
	for i := 0; i < 30; i++ {
		if c.call("logout-fill-"+strconv.Itoa(i)) != 401 {
			t.Fatalf("C accepts logout-fill-%d", i)
		}
	}
	// A later login (issued after the logout) passes everywhere.
	time.Sleep(1100 * time.Millisecond)
	again := idp.access(t, "alice", "sess-1", time.Now().Unix())
	for _, g := range []*gateway{a, b, c} {
		if g.call(again) != 200 {
			t.Fatalf("%s rejects a token issued after the logout", g.Name)
		}
	}
	// Neither sid nor sub values appear in any log or message.
	for _, g := range []*gateway{a, b, c} {
		for _, v := range []string{"sess-1", "alice", "bob"} {
			if strings.Contains(g.logged(), v) {
				t.Fatalf("%s logged %q", g.Name, v)
			}
		}
	}
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	for _, kind := range []string{"sid", "sub"} {
		m, err := js.GetLastMsg("REVOCATIONS", "tokens.revoked."+kind+"."+ruleKeyHex(kind, "alice", "sess-1", "bob"))
		if err != nil {
			t.Fatalf("%s rule not in the stream: %v", kind, err)
		}
		if strings.Contains(string(m.Data), "alice") || strings.Contains(string(m.Data), "sess-") || strings.Contains(string(m.Data), "bob") {
			t.Fatalf("a claim value travels: %s", m.Data)
		}
	}
}

func ruleKeyHex(kind, alice, sid, bob string) string {
	v := sid
	if kind == "sub" {
		v = bob
	}
	s := sha256.Sum256([]byte(logoutIss + "\x00" + v))
	return hex.EncodeToString(s[:])
}

func readRawManifest(t testing.TB, u string) map[string]any {
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	m, err := js.GetLastMsg("REVOCATIONS_SNAPSHOTS", "tokens.revoked-snapshots.manifest")
	if err == nats.ErrMsgNotFound || err == nats.ErrStreamNotFound {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var man map[string]any
	if err := json.Unmarshal(m.Data, &man); err != nil {
		t.Fatal(err)
	}
	return man
}

// A rule published by anyone with nats.go in the documented format is enforced; the
// tokenrevoke command's snapshot carries it to a gateway that starts from it; and a
// snapshot manifest written without rules (earlier versions) is not used while the
// stream holds rules: the gateway replays the whole stream instead.
func TestRulesFromNatsGoAndSnapshots(t *testing.T) {
	idp := newTestIdP(t)
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	fillStream(t, srv.URL, 50)
	js := jetStreamOf(t, srv.URL)
	now := time.Now().Unix()
	publishSessionRule(t, js, ruleKeyHex("sid", "", "sess-9", ""), now)
	fillStreamFrom(t, srv.URL, 50, 10)
	bin := buildCLI(t)
	if out, err := exec.Command(bin, "-s", srv.URL, "snapshot").CombinedOutput(); err != nil || !strings.Contains(string(out), "60 entries and 1 rules") {
		t.Fatalf("tokenrevoke snapshot: %v\n%s", err, out)
	}
	check := func(g *gateway) {
		t.Helper()
		if g.call(idp.access(t, "carol", "sess-9", now-1)) != 401 {
			t.Fatalf("%s: the rule published with nats.go is not enforced", g.Name)
		}
		if g.call(idp.access(t, "carol", "sess-8", now-1)) != 200 {
			t.Fatalf("%s: another session is rejected", g.Name)
		}
		if g.call("sync-token-55") != 401 {
			t.Fatalf("%s: a revoked token passes", g.Name)
		}
	}
	extra := map[string]any{"stream": "REVOCATIONS"}
	g1 := newGateway(t, natsConfig([]string{srv.URL}, "gw-1", extra))
	st := waitSnapshotStatus(t, g1, 30*time.Second, "synced", func(s snapshotPart) bool { return s.Synced })
	if st.NATS.Snapshot.LoadedSequence == 0 || st.NATS.Received != 0 || rulesOf(t, g1) != 1 {
		t.Fatalf("gw-1 did not start from the command's snapshot: %s\nlog:\n%s", g1.status(), g1.logged())
	}
	check(g1)
	// Rules published with the command are enforced by the running gateway.
	for _, args := range [][]string{
		{"revoke-session", "--issuer", logoutIss, "--sid", "sess-7"},
		{"revoke-subject", "--issuer", logoutIss, "--sub", "dave"},
	} {
		if out, err := exec.Command(bin, append([]string{"-s", srv.URL}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("tokenrevoke %v: %v\n%s", args, err, out)
		}
	}
	if !g1.waitRejected(idp.access(t, "erin", "sess-7", now-1), 5*time.Second) ||
		!g1.waitRejected(idp.access(t, "dave", "sess-6", now-1), 5*time.Second) {
		t.Fatal("a rule published with the tokenrevoke command is not enforced")
	}
	if g1.call(idp.access(t, "erin", "sess-5", now-1)) != 200 {
		t.Fatal("the command's rules deny another session")
	}

	// The same snapshot, its manifest as a writer without rules would have written it.
	man := readRawManifest(t, srv.URL)
	for _, k := range []string{"withRules", "ruleSlots", "ruleChunks", "ruleChunkSha256"} {
		delete(man, k)
	}
	b, _ := json.Marshal(man)
	mm := nats.NewMsg("tokens.revoked-snapshots.manifest")
	mm.Header.Set("Nats-TTL", "3600s")
	mm.Data = b
	if _, err := js.PublishMsg(mm); err != nil {
		t.Fatal(err)
	}
	g2 := newGateway(t, natsConfig([]string{srv.URL}, "gw-2", extra))
	st = waitSnapshotStatus(t, g2, 30*time.Second, "synced", func(s snapshotPart) bool { return s.Synced })
	if st.NATS.Snapshot.LoadedSequence != 0 {
		t.Fatalf("gw-2 used a snapshot without the stream's rule; log:\n%s", g2.logged())
	}
	if !strings.Contains(g2.logged(), "written without session and subject rules") {
		t.Fatalf("no reason logged; log:\n%s", g2.logged())
	}
	check(g2)
}

// The stream keeps one message per rule key. When an earlier cutoff for a key is stored
// after a later one (a publisher that had not seen the later rule yet, or a provider's
// late retry), a running gateway that holds the later cutoff publishes it again, so that
// a gateway that joins from the stream alone (no snapshot) holds the later cutoff too.
func TestLaterCutoffRestoredInTheStream(t *testing.T) {
	idp := newTestIdP(t)
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	extra := map[string]any{"stream": "REVOCATIONS", "snapshotEvery": -1}
	g1 := newGateway(t, natsConfig([]string{srv.URL}, "gw-1", extra))
	if _, err := g1.WaitSynced(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	js := jetStreamOf(t, srv.URL)
	now := time.Now().Unix()
	key := ruleKeyHex("sid", "", "sess-late", "")
	publish := func(cutoff int64) { publishSessionRule(t, js, key, cutoff) }
	// Issued between the two cutoffs: only the later one revokes it.
	between := idp.access(t, "frank", "sess-late", now-50)
	publish(now - 10)
	if !g1.waitRejected(between, 5*time.Second) {
		t.Fatal("gw-1 does not enforce the rule")
	}
	publish(now - 100) // the earlier cutoff, stored last
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := js.GetLastMsg("REVOCATIONS", "tokens.revoked.sid."+key)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m.Data), fmt.Sprintf(`"cutoff":%d,`, now-10)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream still holds %s\ngw-1 log:\n%s", m.Data, g1.logged())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g1.call(between) != 401 {
		t.Fatal("gw-1 went back to the earlier cutoff")
	}
	g2 := newGateway(t, natsConfig([]string{srv.URL}, "gw-2", extra))
	if _, err := g2.WaitSynced(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if g2.call(between) != 401 {
		t.Fatalf("gw-2, joining from the stream, holds the earlier cutoff; log:\n%s", g2.logged())
	}
	if g2.call(idp.access(t, "frank", "sess-late", now+5)) != 200 {
		t.Fatal("gw-2 rejects a token issued after the later cutoff")
	}
	if !strings.Contains(g1.logged(), "the later one is published again") {
		t.Fatalf("gw-1 did not say it republished; log:\n%s", g1.logged())
	}
}

// jetStreamOf is a nats.go JetStream context on url, closed with the test.
func jetStreamOf(t *testing.T, url string) nats.JetStreamContext {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publishSessionRule publishes a session rule for key (hex) with nats.go, in the
// README's wire format, kept an hour after cutoff.
func publishSessionRule(t *testing.T, js nats.JetStreamContext, key string, cutoff int64) {
	t.Helper()
	m := nats.NewMsg("tokens.revoked.sid." + key)
	m.Header.Set("Nats-TTL", "3600s")
	m.Data = []byte(fmt.Sprintf(`{"v":2,"kind":"sid","key":"%s","cutoff":%d,"exp":%d,"origin":"idp"}`, key, cutoff, cutoff+3600))
	if _, err := js.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
}
