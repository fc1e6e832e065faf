package propagation

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// cliSnapshotN is the stream size of TestCLISnapshotLoadedByGateway: CLI_SNAPSHOT_N,
// default 20000 (1000000 checks the 10 s target for the first gateway).
func cliSnapshotN() int {
	if v := os.Getenv("CLI_SNAPSHOT_N"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return 20000
}

// buildCLI builds the operator command (its own module, cmd/tokenrevoke) into a
// temporary directory.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tokenrevoke")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "..", "cmd", "tokenrevoke")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/tokenrevoke: %v\n%s", err, out)
	}
	return bin
}

// A snapshot written by `tokenrevoke snapshot` on a stream no gateway has snapshotted is
// loaded by the first gateway that starts: it syncs from the snapshot, replays nothing,
// and rejects every revoked token.
func TestCLISnapshotLoadedByGateway(t *testing.T) {
	n := cliSnapshotN()
	bin := buildCLI(t)
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	fillStream(t, srv.URL, n) // version-1 messages, as gateways publish them today
	cli := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"-s", srv.URL}, args...)...).Output()
		if err != nil {
			t.Fatalf("tokenrevoke %v: %v\n%s", args, err, out)
		}
		return out
	}
	// Revocations published by the command itself (wire format version 2, kind token).
	const own = 3
	for i := 0; i < own; i++ {
		cli("revoke", "cli-token-"+strconv.Itoa(i), "--ttl", "1h")
	}

	start := time.Now()
	var snap struct {
		Written bool   `json:"written"`
		Seq     uint64 `json:"seq"`
		Slots   int    `json:"slots"`
	}
	out := cli("snapshot", "--json", "--ttl", "1h")
	if err := json.Unmarshal(out, &snap); err != nil || !snap.Written || snap.Slots != n+own || snap.Seq != uint64(n+own) {
		t.Fatalf("tokenrevoke snapshot printed %s (%v)", out, err)
	}
	t.Logf("tokenrevoke snapshot of %d revocations took %v", n, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	cfg := natsConfig([]string{srv.URL}, "gw-first", map[string]interface{}{"stream": "REVOCATIONS"})
	cfg["cacheSize"] = n + 10
	g := newGateway(t, cfg)
	st := waitSnapshotStatus(t, g, 5*time.Minute, "the first gateway synced", func(s snapshotPart) bool {
		return s.Synced && s.Entries == n+own
	})
	took := time.Since(start)
	t.Logf("first gateway synced with %d revocations from the command's snapshot in %v", n+own, took.Round(time.Millisecond))
	if st.NATS.Snapshot.LoadedSequence != snap.Seq || st.NATS.Snapshot.LoadedEntries != n+own || st.NATS.Received != 0 {
		t.Fatalf("the gateway did not start from the snapshot: %+v, received %d; log:\n%s", *st.NATS.Snapshot, st.NATS.Received, g.logged())
	}
	if n >= 1000000 && took > 10*time.Second {
		t.Errorf("synced in %v, the target is 10 s for 1M revocations", took)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		if code := g.call("sync-token-" + strconv.Itoa(i)); code != 401 {
			t.Fatalf("sync-token-%d answered %d, want 401", i, code)
		}
	}
	for i := 0; i < own; i++ {
		if code := g.call("cli-token-" + strconv.Itoa(i)); code != 401 {
			t.Fatalf("cli-token-%d answered %d, want 401", i, code)
		}
	}
	if code := g.call("never-revoked"); code != 200 {
		t.Fatalf("a token nobody revoked answered %d", code)
	}
}

// Tokens revoked with `tokenrevoke revoke` are rejected by a gateway in every spelling
// the gateway treats as the same token: the command and the gateways key tokens alike
// (two separate implementations, in two modules). The tokens are shaped as an identity
// provider issues them: a JWS with the usual header, a JWS whose header JSON starts with
// a newline ("ew…"), a JWE, and an opaque token.
func TestCLIRevocationsMatchGatewayKeys(t *testing.T) {
	bin := buildCLI(t)
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	g := newGateway(t, natsConfig([]string{srv.URL}, "gw-keys", map[string]interface{}{"stream": "REVOCATIONS"}))
	if _, err := g.WaitSynced(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	claims := `{"sub":"u1","exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`
	jws := "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".c2lnbmF0dXJlMDE"
	ewJWS := "ewogImFsZyI6ICJFUzI1NiIgfQ.eyJzdWIiOiJ1MiJ9.c2lnbmF0dXJlMDE"
	jwe := "eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4R0NNIn0..AAAAAAAAAAAAAAAA.Y2lwaGVydGV4dA.dGFnIA"
	cases := []struct {
		name, revoked string
		spellings     []string
	}{
		{"JWS", jws, []string{jws, jws + "==", jws[:len(jws)-1] + "F", jws + ".x"}},
		{"JWS with an ew header", ewJWS, []string{ewJWS, ewJWS[:len(ewJWS)-1] + "F"}},
		{"JWE", jwe, []string{jwe, jwe[:len(jwe)-1] + "B", jwe + "=="}},
		{"opaque", "2YotnFZFEjr1zCsicMWpAA", []string{"2YotnFZFEjr1zCsicMWpAA"}},
	}
	for _, c := range cases {
		out, err := exec.Command(bin, "-s", srv.URL, "revoke", c.revoked, "--ttl", "1h").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: tokenrevoke revoke: %v\n%s", c.name, err, out)
		}
		for _, s := range c.spellings {
			if !g.WaitRejected(s, 3*time.Second) {
				t.Errorf("%s: the gateway accepts %q after `tokenrevoke revoke`\n%s", c.name, s, g.Status())
			}
		}
	}
	// An unrelated token still passes.
	if code := g.Call("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvdGhlciJ9.c2ln"); code != 200 {
		t.Fatalf("an unrelated JWT: %d", code)
	}
}
