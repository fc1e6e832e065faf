package tokenrevoke

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// The fleet-view tests run natively and under yaegi (scripts/test.sh runs `yaegi test .`)
// against a real nats-server binary (NATS_SERVER_BIN, PATH or $GOPATH/bin), started with
// os.StartProcess (yaegi's stdlib has no os/exec).

// svcNATS is a nats-server subprocess with user/password authentication.
type svcNATS struct {
	t    *testing.T
	port int
	conf string
	log  string
	proc *os.Process
}

func findNATSServer(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NATS_SERVER_BIN"); p != "" {
		return p
	}
	dirs := filepath.SplitList(os.Getenv("PATH"))
	if gp := os.Getenv("GOPATH"); gp != "" {
		dirs = append(dirs, filepath.Join(gp, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "nats-server")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	t.Fatal("nats-server not found: set NATS_SERVER_BIN (go install github.com/nats-io/nats-server/v2@v2.12.1)")
	return ""
}

func startSvcNATS(t *testing.T, user, password string) *svcNATS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	s := &svcNATS{t: t, port: port, conf: filepath.Join(dir, "nats.conf"), log: filepath.Join(dir, "nats.log")}
	conf := "listen: 127.0.0.1:" + strconv.Itoa(port) + "\nauthorization { user: " + user + ", password: " + password + " }\n"
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	s.start()
	return s
}

func (s *svcNATS) start() {
	s.t.Helper()
	bin := findNATSServer(s.t)
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	p, err := os.StartProcess(bin, []string{bin, "-c", s.conf}, &os.ProcAttr{Files: []*os.File{nil, logf, logf}})
	logf.Close()
	if err != nil {
		s.t.Fatal(err)
	}
	s.proc = p
	addr := "127.0.0.1:" + strconv.Itoa(s.port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *svcNATS) stop() {
	if s.proc != nil {
		s.proc.Kill()
		s.proc.Wait()
		s.proc = nil
	}
}

func (s *svcNATS) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// svcReply is a reply of the service protocol, decoded loosely.
type svcReply struct {
	Name      string            `json:"name"`
	ID        string            `json:"id"`
	Version   string            `json:"version"`
	Type      string            `json:"type"`
	Metadata  map[string]string `json:"metadata"`
	Endpoints []struct {
		Name        string          `json:"name"`
		Subject     string          `json:"subject"`
		NumRequests int             `json:"num_requests"`
		Data        json.RawMessage `json:"data"`
	} `json:"endpoints"`
	raw string
}

// svcCollect publishes a request to subject and collects the replies for wait, or until
// it has max of them.
func svcCollect(t *testing.T, c *natsclient.Conn, subject string, wait time.Duration, max int) []svcReply {
	t.Helper()
	inbox := c.NewInbox()
	ch := make(chan *natsclient.Msg, 64)
	sub, err := c.Subscribe(inbox, func(m *natsclient.Msg) { ch <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := c.PublishMsg(subject, inbox, nil, nil); err != nil {
		t.Fatal(err)
	}
	var out []svcReply
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return out
		}
		timer := time.NewTimer(left)
		select {
		case m := <-ch:
			timer.Stop()
			if m.Status != 0 {
				continue // 503: no responders
			}
			var r svcReply
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("reply to %s: %v: %s", subject, err, m.Data)
			}
			r.raw = string(m.Data)
			out = append(out, r)
			if len(out) == max {
				return out
			}
		case <-timer.C:
			return out
		}
	}
}

// A gateway with NATS answers $SRV.PING/INFO/STATS as an instance of "tokenrevoke":
// identity and metadata, live state in the status endpoint's STATS data (entries after a
// revocation through its endpoint, connected, published), the status endpoint itself;
// still after a NATS server restart; and nothing secret in any reply.
func TestGatewayService(t *testing.T) {
	srv := startSvcNATS(t, "gwuser", "nats-pw-s3cr3t")
	m, b := newTestMiddleware(t, func(c *Config) {
		c.NATS = &NATSConfig{Servers: []string{srv.url()}, Subject: "tokens.svctest", Name: "edge-fra-1",
			User: "gwuser", Password: "nats-pw-s3cr3t"}
	})
	l, err := startNATSLink(m.domain.cache, m.settings.nats, m.log)
	if err != nil {
		t.Fatal(err)
	}
	nl := l.(*natsLink)
	t.Cleanup(nl.conn.Close)
	m.domain.link = l
	if !nl.conn.WaitConnected(10 * time.Second) {
		t.Fatal("gateway not connected")
	}
	var o natsclient.Options
	o.Servers = []string{srv.url()}
	o.User = "gwuser"
	o.Password = "nats-pw-s3cr3t"
	o.ReconnectWait = 20 * time.Millisecond
	o.MaxReconnectWait = 200 * time.Millisecond
	cli, err := natsclient.Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cli.Close)
	if !cli.WaitConnected(10 * time.Second) {
		t.Fatal("client not connected")
	}

	const token = "tok-fleet-view-0123456789"
	if rec := serve(m, revokeReq("token="+token, basic("portal", "s3cret"))); rec.Code != 200 {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body.String())
	}
	secrets := []string{token, sha256Hex(token), "s3cret", "nats-pw-s3cr3t", "portal"}

	var all []string
	check := func(r svcReply, typ string) {
		t.Helper()
		all = append(all, r.raw)
		if r.Name != "tokenrevoke" || r.Version != pluginVersion || r.Type != typ || len(r.ID) < 16 ||
			r.Metadata["gateway"] != "edge-fra-1" || r.Metadata["mode"] != "nats" || r.Metadata["subject"] != "tokens.svctest" {
			t.Fatalf("%s reply: %s", typ, r.raw)
		}
	}
	pings := svcCollect(t, cli, "$SRV.PING", 500*time.Millisecond, 0)
	if len(pings) != 1 {
		t.Fatalf("%d replies to $SRV.PING, want 1", len(pings))
	}
	check(pings[0], natsclient.ServicePingType)
	id := pings[0].ID
	for _, verb := range []string{"PING", "INFO", "STATS"} {
		for _, subj := range []string{"$SRV." + verb + ".tokenrevoke", "$SRV." + verb + ".tokenrevoke." + id} {
			rs := svcCollect(t, cli, subj, 300*time.Millisecond, 0)
			if len(rs) != 1 {
				t.Fatalf("%d replies to %s", len(rs), subj)
			}
			check(rs[0], "io.nats.micro.v1."+strings.ToLower(verb)+"_response")
		}
	}
	if rs := svcCollect(t, cli, "$SRV.PING.tokenrevoke.someone-else", 300*time.Millisecond, 0); len(rs) != 0 {
		t.Fatalf("another id got %d replies", len(rs))
	}

	status := func() gatewayStatus {
		t.Helper()
		rs := svcCollect(t, cli, "$SRV.STATS.tokenrevoke."+id, 2*time.Second, 1)
		if len(rs) != 1 || len(rs[0].Endpoints) != 1 || rs[0].Endpoints[0].Name != "status" {
			t.Fatalf("stats: %+v", rs)
		}
		all = append(all, rs[0].raw)
		var st gatewayStatus
		if err := json.Unmarshal(rs[0].Endpoints[0].Data, &st); err != nil {
			t.Fatalf("stats data: %v: %s", err, rs[0].raw)
		}
		return st
	}
	st := status()
	if st.Gateway != "edge-fra-1" || st.Version != pluginVersion || st.Mode != "nats" || st.Entries != 1 ||
		st.Capacity != m.settings.cacheSize || !st.Connected || !st.Synced || st.Published != 1 ||
		st.Server != srv.url() {
		t.Fatalf("status: %+v", st)
	}
	// The status endpoint answers the same document.
	reply, err := cli.Request(serviceStatusSubject+"."+id, nil, nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, string(reply.Data))
	var direct gatewayStatus
	if err := json.Unmarshal(reply.Data, &direct); err != nil || direct.Gateway != "edge-fra-1" || direct.Entries != 1 {
		t.Fatalf("status endpoint: %v %s", err, reply.Data)
	}

	// NATS restarts: the instance answers again, same id, and says it was disconnected
	// in between.
	srv.stop()
	if !waitForCond(5*time.Second, func() bool { return !nl.conn.Connected() }) {
		t.Fatal("gateway did not notice the restart")
	}
	if st := nl.serviceStatus(); st.Connected {
		t.Fatal("status says connected while the server is down")
	}
	srv.start()
	if !nl.conn.WaitConnected(10*time.Second) || !cli.WaitConnected(10*time.Second) {
		t.Fatal("no reconnect")
	}
	if err := nl.conn.Flush(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if st := status(); !st.Connected || st.Entries != 1 {
		t.Fatalf("after restart: %+v", st)
	}
	if b.count() != 0 {
		t.Fatal("a request reached the backend")
	}
	for _, r := range all {
		for _, s := range secrets {
			if strings.Contains(r, s) {
				t.Fatalf("a reply contains %q: %s", s, r)
			}
		}
	}
}

func waitForCond(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
