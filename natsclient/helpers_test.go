package natsclient

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests run against a real nats-server binary started as a subprocess.

const natsServerInstall = "go install github.com/nats-io/nats-server/v2@v2.12.1"

var (
	serverBinOnce sync.Once
	serverBinPath string
)

func natsServerBin(t *testing.T) string {
	t.Helper()
	serverBinOnce.Do(func() {
		if p := os.Getenv("NATS_SERVER_BIN"); p != "" {
			serverBinPath = p
			return
		}
		if p := findInPath("nats-server"); p != "" {
			serverBinPath = p
			return
		}
		gopath := goEnvGOPATH()
		if gopath == "" {
			if home, err := os.UserHomeDir(); err == nil {
				gopath = filepath.Join(home, "go")
			}
		}
		if gopath != "" {
			p := filepath.Join(gopath, "bin", "nats-server")
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				serverBinPath = p
			}
		}
	})
	if serverBinPath == "" {
		t.Fatalf("nats-server binary not found (set NATS_SERVER_BIN, or put it in PATH or $(go env GOPATH)/bin); install it with: %s", natsServerInstall)
	}
	return serverBinPath
}

// The helpers below use os.StartProcess rather than os/exec: yaegi's default (restricted)
// symbol set has no os/exec, and the suite must run under "yaegi test" unchanged.

// findInPath looks up an executable in $PATH.
func findInPath(name string) string {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// goEnvGOPATH returns the output of "go env GOPATH", or "" when go is not available.
func goEnvGOPATH() string {
	goBin := findInPath("go")
	if goBin == "" {
		return ""
	}
	r, w, err := os.Pipe()
	if err != nil {
		return ""
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		r.Close()
		w.Close()
		return ""
	}
	attr := &os.ProcAttr{Env: os.Environ(), Files: []*os.File{devnull, w, os.Stderr}}
	p, err := os.StartProcess(goBin, []string{"go", "env", "GOPATH"}, attr)
	w.Close()
	devnull.Close()
	if err != nil {
		r.Close()
		return ""
	}
	out, _ := io.ReadAll(r)
	r.Close()
	p.Wait()
	return strings.TrimSpace(string(out))
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

type testServer struct {
	t       *testing.T
	port    int
	conf    string
	logPath string
	mu      sync.Mutex
	proc    *os.Process
}

// startServer starts nats-server on a free loopback port with extra config appended.
func startServer(t *testing.T, extra string) *testServer {
	t.Helper()
	return startServerOnPort(t, freePort(t), extra)
}

func startServerOnPort(t *testing.T, port int, extra string) *testServer {
	t.Helper()
	s := newServer(t, port, extra)
	s.start()
	return s
}

// newServer prepares a server (config written) without starting it.
func newServer(t *testing.T, port int, extra string) *testServer {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "server.conf")
	body := "listen: 127.0.0.1:" + strconv.Itoa(port) + "\n" + extra + "\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, port: port, conf: conf, logPath: filepath.Join(dir, "server.log")}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			if b, err := os.ReadFile(s.logPath); err == nil {
				t.Logf("nats-server log (port %d):\n%s", s.port, tail(string(b), 3000))
			}
		}
	})
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (s *testServer) url() string {
	return "nats://127.0.0.1:" + strconv.Itoa(s.port)
}

func (s *testServer) addr() string {
	return "127.0.0.1:" + strconv.Itoa(s.port)
}

func (s *testServer) start() {
	s.t.Helper()
	bin := natsServerBin(s.t)
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		logf.Close()
		s.t.Fatal(err)
	}
	attr := &os.ProcAttr{Env: os.Environ(), Files: []*os.File{devnull, logf, logf}}
	proc, err := os.StartProcess(bin, []string{bin, "-c", s.conf}, attr)
	logf.Close()
	devnull.Close()
	if err != nil {
		s.t.Fatalf("starting nats-server: %v", err)
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.logPath)
			s.t.Fatalf("nats-server on port %d did not start: %v\n%s", s.port, err, tail(string(b), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *testServer) stop() {
	s.mu.Lock()
	proc := s.proc
	s.proc = nil
	s.mu.Unlock()
	if proc != nil {
		proc.Kill()
		proc.Wait()
	}
}

// logCapture collects client log lines.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (lc *logCapture) logf(level, msg string) {
	lc.mu.Lock()
	lc.lines = append(lc.lines, level+": "+msg)
	lc.mu.Unlock()
}

func (lc *logCapture) all() string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return strings.Join(lc.lines, "\n")
}

func (lc *logCapture) count(sub string) int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	n := 0
	for _, l := range lc.lines {
		if strings.Contains(strings.ToLower(l), strings.ToLower(sub)) {
			n++
		}
	}
	return n
}

// waitFor polls cond every 10ms until it is true or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fastOpts returns options with short timers suitable for tests.
func fastOpts(lc *logCapture, servers ...string) Options {
	var o Options
	o.Servers = servers
	o.Name = "natsclient-test"
	o.ConnectTimeout = 2 * time.Second
	o.ReconnectWait = 20 * time.Millisecond
	o.MaxReconnectWait = 200 * time.Millisecond
	o.PingInterval = 5 * time.Second
	if lc != nil {
		o.Logf = lc.logf
	}
	return o
}

// mustConnect connects, registers Close in cleanup, dumps logs on failure.
func mustConnect(t *testing.T, o Options, lc *logCapture) *Conn {
	t.Helper()
	c, err := Connect(o)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() && lc != nil {
			t.Logf("client log:\n%s", tail(lc.all(), 4000))
		}
	})
	return c
}

func connectAndWait(t *testing.T, o Options, lc *logCapture) *Conn {
	t.Helper()
	c := mustConnect(t, o, lc)
	if !c.WaitConnected(10 * time.Second) {
		t.Fatalf("not connected after 10s; last error: %v", c.LastError())
	}
	return c
}

// msgSink collects messages delivered to a callback.
type msgSink struct {
	ch chan *Msg
}

func newSink() *msgSink {
	return &msgSink{ch: make(chan *Msg, 1000)}
}

func (s *msgSink) cb(m *Msg) {
	s.ch <- m
}

func (s *msgSink) next(t *testing.T, timeout time.Duration) *Msg {
	t.Helper()
	select {
	case m := <-s.ch:
		return m
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
	}
	return nil
}

func (s *msgSink) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case m := <-s.ch:
		t.Fatalf("unexpected message on %s: %q", m.Subject, m.Data)
	case <-time.After(wait):
	}
}

// tcpProxy forwards connections to target; blackhole makes the current connections drop
// all traffic without closing them (new connections are forwarded normally).
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	pairs  []*proxyPair
	wg     sync.WaitGroup
}

type proxyPair struct {
	a, b  net.Conn
	mu    sync.Mutex
	black bool
}

func (p *proxyPair) dropping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.black
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) url() string {
	return "nats://" + p.ln.Addr().String()
}

func (p *tcpProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			a.Close()
			continue
		}
		pair := &proxyPair{a: a, b: b}
		p.mu.Lock()
		p.pairs = append(p.pairs, pair)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pump(pair, a, b)
		go p.pump(pair, b, a)
	}
}

func (p *tcpProxy) pump(pair *proxyPair, src, dst net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pair.dropping() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			src.Close()
			dst.Close()
			return
		}
	}
}

func (p *tcpProxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pair := range p.pairs {
		pair.mu.Lock()
		pair.black = true
		pair.mu.Unlock()
	}
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, pair := range p.pairs {
		pair.a.Close()
		pair.b.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client certificate.
type testPKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

func makePKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "natsclient test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	var pki testPKI
	pki.CA = filepath.Join(dir, "ca.pem")
	writePEM(t, pki.CA, "CERTIFICATE", caDER)

	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, certPath, keyPath string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, certPath, "CERTIFICATE", der)
		writePEM(t, keyPath, "EC PRIVATE KEY", kb)
	}
	pki.ServerCert = filepath.Join(dir, "server.pem")
	pki.ServerKey = filepath.Join(dir, "server-key.pem")
	pki.ClientCert = filepath.Join(dir, "client.pem")
	pki.ClientKey = filepath.Join(dir, "client-key.pem")
	leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, pki.ServerCert, pki.ServerKey)
	leaf(3, "natsclient-test-client", x509.ExtKeyUsageClientAuth, pki.ClientCert, pki.ClientKey)
	return pki
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeServer is a scripted NATS server for protocol edge cases.
type fakeServer struct {
	ln net.Listener
}

func startFake(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeServer) url() string {
	return "nats://" + f.ln.Addr().String()
}

// fakeConn is one accepted client connection.
type fakeConn struct {
	nc net.Conn
	br *bufio.Reader
}

func (f *fakeServer) accept(t *testing.T, timeout time.Duration) *fakeConn {
	t.Helper()
	type result struct {
		nc  net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := f.ln.Accept()
		ch <- result{nc: nc, err: err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		t.Cleanup(func() { r.nc.Close() })
		return &fakeConn{nc: r.nc, br: bufio.NewReader(r.nc)}
	case <-time.After(timeout):
		f.ln.Close() // unblocks the Accept goroutine
		t.Fatalf("client did not connect to the fake server within %v", timeout)
	}
	return nil
}

func (fc *fakeConn) send(t *testing.T, s string) {
	t.Helper()
	fc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := fc.nc.Write([]byte(s)); err != nil {
		t.Fatalf("fake server write: %v", err)
	}
}

func (fc *fakeConn) readLine(t *testing.T) string {
	t.Helper()
	fc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := fc.br.ReadString('\n')
	if err != nil {
		t.Fatalf("fake server read: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

const fakeInfo = `INFO {"server_id":"FAKE","version":"2.12.1","proto":1,"max_payload":1048576,"headers":true}` + "\r\n"

// handshake plays the server side of a successful handshake and returns the CONNECT line.
func (fc *fakeConn) handshake(t *testing.T, info string) string {
	t.Helper()
	fc.send(t, info)
	connect := fc.readLine(t)
	if !strings.HasPrefix(connect, "CONNECT {") {
		t.Fatalf("expected CONNECT, got %q", connect)
	}
	if l := fc.readLine(t); l != "PING" {
		t.Fatalf("expected PING, got %q", l)
	}
	fc.send(t, "PONG\r\n")
	return connect
}

// waitClosed reads (discarding) until the client closes the connection.
func (fc *fakeConn) waitClosed(timeout time.Duration) bool {
	fc.nc.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	for {
		_, err := fc.br.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return false
			}
			return true
		}
	}
}
