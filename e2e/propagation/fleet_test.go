package propagation

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// fleetStatus is the part of a gateway's status data (STATS data of its "status"
// endpoint, the plugin's service.go) these tests check.
type fleetStatus struct {
	Gateway   string `json:"gateway"`
	Version   string `json:"version"`
	Mode      string `json:"mode"`
	Entries   int    `json:"entries"`
	Capacity  int    `json:"capacity"`
	Synced    bool   `json:"synced"`
	Connected bool   `json:"connected"`
	Stream    string `json:"stream"`
	StreamSeq uint64 `json:"streamSequence"`
	LastError string `json:"lastError"`
}

// microCollect sends one request to subject and collects the raw replies for wait.
func microCollect(t *testing.T, nc *nats.Conn, subject string, wait time.Duration) [][]byte {
	t.Helper()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	deadline := time.Now().Add(wait)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return out
		}
		if len(m.Data) > 0 {
			out = append(out, m.Data)
		}
	}
}

// strictDecode decodes into v and fails on any field v does not have: every field a
// gateway sends must exist in nats.go's micro types.
func strictDecode(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, data)
	}
}

// Two gateways (the plugin under yaegi, one on a JetStream stream, one on core NATS)
// are instances of the service "tokenrevoke": nats.go's micro types decode their PING,
// INFO and STATS replies field for field, the version passes micro's own semver check,
// the by-name and by-id subjects answer, the STATS data carries each gateway's state,
// and no reply holds the revoked token, its hash or the client secret. `tokenrevoke
// gateways` lists both, also after a NATS server restart.
func TestFleetView(t *testing.T) {
	srv := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	one := newGateway(t, natsConfig([]string{srv.URL}, "gw-one", map[string]interface{}{"stream": "REVOCATIONS"}))
	two := newGateway(t, natsConfig([]string{srv.URL}, "gw-two", nil))
	one.waitConnected(10 * time.Second)
	two.waitConnected(10 * time.Second)
	if _, err := one.WaitSynced(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	const token = "tok-fleet-e2e-4242424242"
	if code := one.revoke(token); code != http.StatusOK {
		t.Fatalf("revoke through gw-one: %d", code)
	}
	if !two.waitRejected(token, 5*time.Second) {
		t.Fatal("gw-two did not learn the revocation")
	}
	sum := sha256.Sum256([]byte(token))
	secrets := []string{token, hex.EncodeToString(sum[:]), "s3cret"}

	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	var all [][]byte
	subject := func(verb micro.Verb, id string) string {
		s, err := micro.ControlSubject(verb, "tokenrevoke", id)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	wantGateways := map[string]string{"gw-one": "jetstream", "gw-two": "nats"}
	ids := map[string]string{} // gateway -> id

	t.Run("micro", func(t *testing.T) {
		for _, subj := range []string{"$SRV.PING", subject(micro.PingVerb, "")} {
			replies := microCollect(t, nc, subj, time.Second)
			all = append(all, replies...)
			if len(replies) != 2 {
				t.Fatalf("%d replies to %s, want 2", len(replies), subj)
			}
			for _, r := range replies {
				var p micro.Ping
				strictDecode(t, r, &p)
				mode, ok := wantGateways[p.Metadata["gateway"]]
				if p.Type != micro.PingResponseType || p.Name != "tokenrevoke" || p.ID == "" || !ok || p.Metadata["mode"] != mode {
					t.Fatalf("ping: %s", r)
				}
				ids[p.Metadata["gateway"]] = p.ID
			}
		}
		if ids["gw-one"] == ids["gw-two"] {
			t.Fatal("two gateways share an id")
		}
		for gw, id := range ids {
			// Exactly one instance answers its id, for every verb.
			var p micro.Ping
			replies := microCollect(t, nc, subject(micro.PingVerb, id), 500*time.Millisecond)
			if len(replies) != 1 {
				t.Fatalf("%d replies to the ping of %s", len(replies), gw)
			}
			strictDecode(t, replies[0], &p)
			// micro's own validation of the version (semver) and name.
			probe, err := micro.AddService(nc, micro.Config{Name: p.Name, Version: p.Version})
			if err != nil {
				t.Fatalf("micro refuses the identity of %s (%q %q): %v", gw, p.Name, p.Version, err)
			}
			_ = probe.Stop()

			replies = microCollect(t, nc, subject(micro.InfoVerb, id), 500*time.Millisecond)
			if len(replies) != 1 {
				t.Fatalf("%d replies to the info of %s", len(replies), gw)
			}
			all = append(all, replies[0])
			var info micro.Info
			strictDecode(t, replies[0], &info)
			if info.Type != micro.InfoResponseType || info.ID != id || info.Version != p.Version ||
				!strings.Contains(info.Description, gw) || len(info.Endpoints) != 1 || info.Endpoints[0].Name != "status" {
				t.Fatalf("info of %s: %s", gw, replies[0])
			}
			direct, err := nc.Request(info.Endpoints[0].Subject, nil, 2*time.Second)
			if err != nil {
				t.Fatalf("status endpoint of %s: %v", gw, err)
			}
			all = append(all, direct.Data)

			replies = microCollect(t, nc, subject(micro.StatsVerb, id), 500*time.Millisecond)
			if len(replies) != 1 {
				t.Fatalf("%d replies to the stats of %s", len(replies), gw)
			}
			all = append(all, replies[0])
			var st micro.Stats
			strictDecode(t, replies[0], &st)
			if st.Type != micro.StatsResponseType || st.ID != id || time.Since(st.Started) > 5*time.Minute ||
				len(st.Endpoints) != 1 || st.Endpoints[0].NumRequests < 1 {
				t.Fatalf("stats of %s: %s", gw, replies[0])
			}
			var fs fleetStatus
			strictDecodeLoose(t, st.Endpoints[0].Data, &fs)
			if fs.Gateway != gw || fs.Version != p.Version || fs.Mode != wantGateways[gw] || fs.Entries != 1 ||
				!fs.Synced || !fs.Connected || fs.Capacity == 0 {
				t.Fatalf("status data of %s: %s", gw, st.Endpoints[0].Data)
			}
			if gw == "gw-one" && (fs.Stream != "REVOCATIONS" || fs.StreamSeq < 1) {
				t.Fatalf("stream state of gw-one: %s", st.Endpoints[0].Data)
			}
		}
		for _, r := range all {
			for _, s := range secrets {
				if bytes.Contains(r, []byte(s)) {
					t.Fatalf("a reply holds %q: %s", s, r)
				}
			}
		}
	})
	if t.Failed() {
		return
	}

	bin := buildCLI(t)
	gateways := func(t *testing.T, args ...string) []byte {
		t.Helper()
		return runOutput(t, bin, append([]string{"-s", srv.URL, "gateways"}, args...)...)
	}
	// jsonProblem says what is wrong with the --json output, "" when both gateways are
	// listed with their state.
	jsonProblem := func(out []byte) string {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 {
			return "not two gateways listed"
		}
		for i, gw := range []string{"gw-one", "gw-two"} { // sorted by name
			var g struct {
				ID      string       `json:"id"`
				Version string       `json:"version"`
				Status  *fleetStatus `json:"status"`
				Missing []string     `json:"missing"`
			}
			if err := json.Unmarshal([]byte(lines[i]), &g); err != nil {
				return err.Error()
			}
			if g.ID != ids[gw] || g.Status == nil || g.Status.Gateway != gw || g.Status.Entries != 1 ||
				!g.Status.Synced || !g.Status.Connected || len(g.Missing) != 0 {
				return "unexpected line " + lines[i]
			}
		}
		return ""
	}
	t.Run("gateways command", func(t *testing.T) {
		if out := gateways(t, "--json", "--timeout", "2s"); jsonProblem(out) != "" {
			t.Fatalf("%s:\n%s", jsonProblem(out), out)
		}
		table := strings.Split(strings.TrimSpace(string(gateways(t, "--expect", "2", "--timeout", "10s"))), "\n")
		if len(table) != 3 || !strings.HasPrefix(table[0], "GATEWAY") {
			t.Fatalf("table:\n%s", strings.Join(table, "\n"))
		}
		one, two := strings.Fields(table[1]), strings.Fields(table[2])
		if one[0] != "gw-one" || one[2] != "jetstream" || one[3] != "1" || one[6] != "yes" || one[7] != "yes" || one[8] == "-" ||
			two[0] != "gw-two" || two[2] != "nats" || two[3] != "1" || two[8] != "-" {
			t.Fatalf("table:\n%s", strings.Join(table, "\n"))
		}
		t.Logf("tokenrevoke gateways:\n%s", strings.Join(table, "\n"))
	})

	// The nats command (natscli) itself lists, describes and pings the gateways.
	t.Run("nats CLI", func(t *testing.T) {
		natsBin := natsCLI(t)
		run := func(args ...string) []byte {
			t.Helper()
			return runOutput(t, natsBin, append([]string{"-s", srv.URL}, args...)...)
		}
		ls := string(run("micro", "ls", "tokenrevoke"))
		for gw, id := range ids {
			if !strings.Contains(ls, id) || !strings.Contains(ls, "tokenrevoke gateway "+gw) {
				t.Fatalf("nats micro ls does not list %s (%s):\n%s", gw, id, ls)
			}
			var out struct {
				Info  micro.Info  `json:"info"`
				Stats micro.Stats `json:"stats"`
			}
			if err := json.Unmarshal(run("micro", "info", "tokenrevoke", id, "--json"), &out); err != nil {
				t.Fatal(err)
			}
			info := out.Info
			if out.Stats.ID != id {
				t.Fatalf("nats micro info %s: stats of %q", gw, out.Stats.ID)
			}
			if info.ID != id || info.Metadata["gateway"] != gw || len(info.Endpoints) != 1 || info.Endpoints[0].Name != "status" {
				t.Fatalf("nats micro info %s: %+v", gw, info)
			}
		}
		stats := string(run("micro", "stats", "tokenrevoke"))
		if !strings.Contains(stats, ids["gw-one"]) || !strings.Contains(stats, ids["gw-two"]) {
			t.Fatalf("nats micro stats:\n%s", stats)
		}
		if ping := strings.Count(string(run("micro", "ping", "tokenrevoke")), "rtt="); ping != 2 {
			t.Fatalf("nats micro ping: %d answers, want 2", ping)
		}
	})

	// The gateways' subscriptions come back with the connection.
	t.Run("after a NATS restart", func(t *testing.T) {
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		one.waitConnected(15 * time.Second)
		two.waitConnected(15 * time.Second)
		deadline := time.Now().Add(15 * time.Second)
		for {
			cmd := exec.Command(bin, "-s", srv.URL, "gateways", "--json", "--expect", "2", "--timeout", "2s")
			out, err := cmd.Output()
			problem := jsonProblem(out)
			if err == nil && problem == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the restart: %v %s\n%s", err, problem, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// strictDecodeLoose decodes status data, which may grow fields these tests do not read.
func strictDecodeLoose(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, data)
	}
}

// natsCLI is the nats command (github.com/nats-io/natscli): $NATS_CLI_BIN, else nats in
// PATH. Without it the test is skipped, unless TOKENREVOKE_REQUIRE_NATSCLI=1 (set by
// scripts/test.sh, which installs it).
func natsCLI(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("NATS_CLI_BIN"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("nats"); err == nil {
		return bin
	}
	if os.Getenv("TOKENREVOKE_REQUIRE_NATSCLI") == "1" {
		t.Fatal("the nats command is not installed and TOKENREVOKE_REQUIRE_NATSCLI=1: go install github.com/nats-io/natscli/nats@v0.5.0")
	}
	t.Skip("the nats command is not installed (go install github.com/nats-io/natscli/nats@v0.5.0)")
	return ""
}

// runOutput runs bin with args and returns its standard output; the test fails, with
// both outputs, when the command does.
func runOutput(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s%s", bin, args, err, out, stderr.Bytes())
	}
	return out
}
