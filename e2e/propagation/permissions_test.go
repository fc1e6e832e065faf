package propagation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
	"github.com/tokenrevoke/tokenrevoke/e2e/yaegiload"
)

// The users of testdata/nats/permissions.conf and their (example) passwords.
var permUsers = map[string]string{
	"gateway": "gateway-example-password",
	"command": "command-example-password",
	"idp":     "idp-example-password",
	"app":     "app-example-password",
}

// natsServerBin is the nats-server binary: $NATS_SERVER_BIN, else PATH, else
// $(go env GOPATH)/bin (scripts/test.sh installs it there).
func natsServerBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NATS_SERVER_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "nats-server")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	t.Fatal("nats-server binary not found: set NATS_SERVER_BIN (go install github.com/nats-io/nats-server/v2@v2.12.1)")
	return ""
}

// confServer is a nats-server process run with a configuration file.
type confServer struct {
	URL string
	log string
}

// startConfServer runs the nats-server binary with the configuration file conf,
// rewritten to listen on a free loopback port and to store JetStream data in a
// temporary directory; the process is killed when the test ends.
func startConfServer(t *testing.T, conf string) *confServer {
	t.Helper()
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := string(b)
	for _, r := range []struct{ re, repl string }{
		{`(?m)^listen: .*$`, "listen: 127.0.0.1:" + strconv.Itoa(port)},
		{`(?m)^(\s*)store_dir: .*$`, "${1}store_dir: " + strconv.Quote(filepath.Join(dir, "js"))},
	} {
		re := regexp.MustCompile(r.re)
		if n := len(re.FindAllString(text, -1)); n != 1 {
			t.Fatalf("%s: %d lines match %s, want 1", conf, n, r.re)
		}
		text = re.ReplaceAllString(text, r.repl)
	}
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &confServer{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), log: filepath.Join(dir, "nats.log")}
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(natsServerBin(t), "-c", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not start: %v\n%s", err, s.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

func (s *confServer) logText() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// violations are the server's permission-violation log lines of user.
func (s *confServer) violations(user string) []string {
	var out []string
	for _, l := range strings.Split(s.logText(), "\n") {
		if strings.Contains(l, "Violation") && strings.Contains(l, "/user:"+user+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// permClient is a nats.go connection as one user, with the asynchronous errors (the
// server's permission violations) collected.
type permClient struct {
	nc   *nats.Conn
	mu   sync.Mutex
	errs []string
}

func connectAs(t *testing.T, url, user string) *permClient {
	t.Helper()
	c := &permClient{}
	nc, err := nats.Connect(url, nats.UserInfo(user, permUsers[user]), nats.Name("perm-"+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err.Error())
			c.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	return c
}

// waitRefused waits until the server reported a permission violation naming subject.
func (c *permClient) waitRefused(t *testing.T, what, subject string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		for _, e := range c.errs {
			if strings.Contains(strings.ToLower(e), "permissions violation") && strings.Contains(e, subject) {
				c.mu.Unlock()
				return
			}
		}
		errs := append([]string(nil), c.errs...)
		c.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s: no permission violation for %s reported; errors: %q", what, subject, errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// testdata/nats/permissions.conf, run by the nats-server binary: two gateways logged
// in as "gateway" share revocations over JetStream, write and load a snapshot and
// answer the fleet view; the command as "command" revokes (the gateways apply it),
// imports, watches, checks, lists the gateways, writes a snapshot and purges; "idp" publishes a session rule but
// is refused a token message and a snapshot manifest; "app" is refused everything. No
// permission violation is logged for the gateway and command users.
func TestNATSPermissionsConfig(t *testing.T) {
	srv := startConfServer(t, filepath.Join(yaegiload.RepoRoot(), "testdata", "nats", "permissions.conf"))
	bin := buildCLI(t)
	cli := func(want int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-s", srv.URL, "--user", "command", "--password", permUsers["command"]}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "NATS_CONTEXT=")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != want {
			t.Fatalf("tokenrevoke %v: exit %d, want %d\n%s%s\nserver log:\n%s", args, code, want, out, stderr.String(), srv.logText())
		}
		return string(out)
	}
	gwCfg := func(name string) map[string]interface{} {
		return natsConfig([]string{srv.URL}, name, map[string]interface{}{
			"stream": "REVOCATIONS", "snapshotEvery": 5,
			"user": "gateway", "password": permUsers["gateway"],
		})
	}
	a := newGateway(t, gwCfg("gw-a"))
	b := newGateway(t, gwCfg("gw-b"))
	for _, g := range []*gateway{a, b} {
		if _, err := g.WaitSynced(15 * time.Second); err != nil {
			t.Fatalf("%s: %v\nlog:\n%s\nserver log:\n%s", g.Name, err, g.logged(), srv.logText())
		}
	}

	// Gateways share a revocation over JetStream.
	if code := a.revoke("perm-gw-token"); code != 200 {
		t.Fatalf("revoke on A: %d\n%s", code, a.logged())
	}
	if !b.waitRejected("perm-gw-token", 5*time.Second) {
		t.Fatalf("B does not reject what A revoked\nlog:\n%s", b.logged())
	}

	// The command revokes; both gateways apply it. import, revoke-session, check.
	cli(0, "revoke", "perm-cli-token")
	for _, g := range []*gateway{a, b} {
		if !g.waitRejected("perm-cli-token", 5*time.Second) {
			t.Fatalf("%s does not reject what the command revoked\nlog:\n%s", g.Name, g.logged())
		}
	}
	var lines []string
	for i := 0; i < 6; i++ {
		lines = append(lines, "perm-import-"+strconv.Itoa(i))
	}
	in := filepath.Join(t.TempDir(), "tokens.txt")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(0, "import", in)
	cli(0, "revoke-session", "--issuer", "https://idp.example", "--sid", "perm-cli-sid")
	cli(0, "check", "perm-import-5")
	if !b.waitRejected("perm-import-5", 5*time.Second) {
		t.Fatal("B does not reject an imported token")
	}
	if out := cli(0, "watch", "--all", "--count", "1", "--json"); !strings.Contains(out, `"kind":"token"`) {
		t.Fatalf("watch --all printed %s", out)
	}

	// The gateways (snapshotEvery 5) wrote a snapshot; a third gateway loads it.
	wrote := uint64(0)
	deadline := time.Now().Add(30 * time.Second)
	for wrote == 0 {
		for _, g := range []*gateway{a, b} {
			if s := snapshotStatus(t, g); s.NATS.Snapshot.WrittenSequence > 0 {
				wrote = s.NATS.Snapshot.WrittenSequence
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no gateway wrote a snapshot: %s\n%s\nserver log:\n%s", a.status(), b.status(), srv.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := newGateway(t, gwCfg("gw-c"))
	st := waitSnapshotStatus(t, c, 30*time.Second, "C loads the gateways' snapshot", func(s snapshotPart) bool {
		return s.Synced && s.NATS.Snapshot.LoadedSequence > 0
	})
	if st.NATS.Snapshot.LoadedSequence < wrote {
		t.Fatalf("C loaded sequence %d, the gateways wrote %d", st.NATS.Snapshot.LoadedSequence, wrote)
	}
	for _, tok := range []string{"perm-gw-token", "perm-cli-token", "perm-import-0"} {
		if code := c.call(tok); code != 401 {
			t.Fatalf("C answers %d for %s", code, tok)
		}
	}

	// The fleet view: the command lists the three gateways.
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(cli(0, "gateways", "--expect", "3", "--timeout", "5s", "--json")), "\n") {
		var g struct {
			Status *struct {
				Gateway string `json:"gateway"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(l), &g); err != nil || g.Status == nil {
			t.Fatalf("gateways line %q: %v", l, err)
		}
		names = append(names, g.Status.Gateway)
	}
	if strings.Join(names, ",") != "gw-a,gw-b,gw-c" {
		t.Fatalf("gateways lists %v", names)
	}

	// The command writes a snapshot too.
	var snap struct {
		Written bool `json:"written"`
	}
	if out := cli(0, "snapshot", "--json"); json.Unmarshal([]byte(out), &snap) != nil || !snap.Written {
		t.Fatalf("tokenrevoke snapshot printed %s", out)
	}
	if v := append(srv.violations("gateway"), srv.violations("command")...); len(v) > 0 {
		t.Fatalf("permission violations of the gateway or command user:\n%s", strings.Join(v, "\n"))
	}

	// The identity provider publishes a session rule through JetStream.
	idp := connectAs(t, srv.URL, "idp")
	js, err := idp.nc.JetStream(nats.MaxWait(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ruleKey := hexSum("https://idp.example\x00perm-idp-sid")
	now := time.Now().Unix()
	m := nats.NewMsg("tokens.revoked.sid." + ruleKey)
	m.Header.Set("Nats-TTL", "3600s")
	m.Data = []byte(fmt.Sprintf(`{"v":2,"kind":"sid","key":"%s","cutoff":%d,"exp":%d,"origin":"idp"}`, ruleKey, now, now+3600))
	if ack, err := js.PublishMsg(m); err != nil || ack.Stream != "REVOCATIONS" {
		t.Fatalf("idp session rule: %v %+v\nserver log:\n%s", err, ack, srv.logText())
	}
	cli(0, "check", "--issuer", "https://idp.example", "--sid", "perm-idp-sid")

	// ...but no token message and no snapshot manifest.
	tokKey := hexSum("perm-idp-forged")
	forged := nats.NewMsg("tokens.revoked." + tokKey)
	forged.Data = []byte(fmt.Sprintf(`{"v":2,"kind":"token","key":"%s","exp":%d,"origin":"idp"}`, tokKey, now+3600))
	if _, err := js.PublishMsg(forged); err == nil {
		t.Fatal("idp: a token message was acknowledged")
	}
	idp.waitRefused(t, "idp token message", forged.Subject)
	man := nats.NewMsg("tokens.revoked-snapshots.manifest")
	man.Data = []byte(`{"v":1,"id":"forged","stream":"REVOCATIONS","seq":1,"slots":0,"chunks":[]}`)
	if _, err := js.PublishMsg(man); err == nil {
		t.Fatal("idp: a snapshot manifest was acknowledged")
	}
	idp.waitRefused(t, "idp manifest", man.Subject)
	if _, err := idp.nc.Request("$JS.API.STREAM.PURGE.REVOCATIONS", nil, time.Second); err == nil {
		t.Fatal("idp: a stream purge was answered")
	}
	idp.waitRefused(t, "idp purge", "$JS.API.STREAM.PURGE.REVOCATIONS")
	cli(3, "check", "perm-idp-forged")
	if code := a.call("perm-idp-forged"); code != 200 {
		t.Fatalf("A answers %d for the token the idp tried to revoke", code)
	}

	// An application publishes nothing, neither core nor JetStream, and reads nothing.
	app := connectAs(t, srv.URL, "app")
	appKey := hexSum("perm-app-forged")
	if err := app.nc.Publish("tokens.revoked."+appKey, []byte(`{"v":2,"kind":"token","key":"`+appKey+`","exp":4102444800,"origin":"app"}`)); err != nil {
		t.Fatal(err)
	}
	app.waitRefused(t, "app core publish", "tokens.revoked."+appKey)
	appJS, err := app.nc.JetStream(nats.MaxWait(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appJS.Publish("tokens.revoked.sid."+appKey, []byte(`{}`)); err == nil {
		t.Fatal("app: a JetStream publish was acknowledged")
	}
	app.waitRefused(t, "app JetStream publish", "tokens.revoked.sid."+appKey)
	if _, err := app.nc.Subscribe("tokens.revoked.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	app.waitRefused(t, "app subscribe", "tokens.revoked.>")
	cli(3, "check", "perm-app-forged")
	if code := b.call("perm-app-forged"); code != 200 {
		t.Fatalf("B answers %d for the token the app tried to revoke", code)
	}
	// The command may purge the streams (the last step: the gateways keep what they hold).
	cli(0, "purge", "--force")
	cli(3, "check", "perm-cli-token")
	if v := append(srv.violations("gateway"), srv.violations("command")...); len(v) > 0 {
		t.Fatalf("permission violations of the gateway or command user:\n%s", strings.Join(v, "\n"))
	}
	if len(srv.violations("idp")) == 0 || len(srv.violations("app")) == 0 {
		t.Fatalf("the server logged no violation for idp or app:\n%s", srv.logText())
	}
	t.Logf("refusals logged by the server:\n%s", strings.Join(append(srv.violations("idp"), srv.violations("app")...), "\n"))
}
