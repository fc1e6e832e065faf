package natsclient

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPubSubRoundTrip(t *testing.T) {
	srv := startServer(t, "")
	lc := &logCapture{}
	c := connectAndWait(t, fastOpts(lc, srv.url()), lc)
	if got := c.ConnectedURL(); got != srv.url() {
		t.Fatalf("ConnectedURL = %q, want %q", got, srv.url())
	}
	if c.LastError() != nil {
		t.Fatalf("LastError = %v, want nil", c.LastError())
	}
	sink := newSink()
	sub, err := c.Subscribe("rt.>", sink.cb)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(5 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := c.Publish("rt.a", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.PublishMsg("rt.b", "rt.reply", nil, []byte("")); err != nil {
		t.Fatal(err)
	}
	m := sink.next(t, 5*time.Second)
	if m.Subject != "rt.a" || string(m.Data) != "hello" || m.Reply != "" || m.Header != nil || m.Status != 0 {
		t.Fatalf("unexpected message %+v", m)
	}
	m = sink.next(t, 5*time.Second)
	if m.Subject != "rt.b" || len(m.Data) != 0 || m.Reply != "rt.reply" {
		t.Fatalf("unexpected message %+v", m)
	}
	// Binary payload containing protocol-looking bytes.
	payload := []byte("MSG x 1 3\r\nPING\r\n\x00\xff")
	if err := c.Publish("rt.bin", payload); err != nil {
		t.Fatal(err)
	}
	if m = sink.next(t, 5*time.Second); !bytes.Equal(m.Data, payload) {
		t.Fatalf("binary payload mismatch: %q", m.Data)
	}

	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatalf("second Unsubscribe: %v", err)
	}
	c.Publish("rt.a", []byte("after unsubscribe"))
	c.Flush(5 * time.Second)
	sink.none(t, 100*time.Millisecond)

	for _, bad := range []string{"", "a b", "a\r\nPUB", ".a", "a.", "a..b"} {
		if err := c.Publish(bad, nil); !errors.Is(err, ErrBadSubject) {
			t.Errorf("Publish(%q) = %v, want ErrBadSubject", bad, err)
		}
		if _, err := c.Subscribe(bad, sink.cb); !errors.Is(err, ErrBadSubject) {
			t.Errorf("Subscribe(%q) = %v, want ErrBadSubject", bad, err)
		}
	}
	if _, err := c.Subscribe("x", nil); err == nil {
		t.Error("Subscribe with nil callback succeeded")
	}
	if !strings.HasPrefix(c.NewInbox(), "_INBOX.") || c.NewInbox() == c.NewInbox() {
		t.Error("NewInbox is not a unique _INBOX subject")
	}
}

func TestQueueSubscribe(t *testing.T) {
	srv := startServer(t, "")
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	var mu sync.Mutex
	got := map[string]int{}
	mk := func(name string) func(m *Msg) {
		return func(m *Msg) {
			mu.Lock()
			got[name]++
			mu.Unlock()
		}
	}
	if _, err := c.QueueSubscribe("q.work", "workers", mk("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.QueueSubscribe("q.work", "workers", mk("b")); err != nil {
		t.Fatal(err)
	}
	c.Flush(5 * time.Second)
	for i := 0; i < 20; i++ {
		c.Publish("q.work", []byte("x"))
	}
	c.Flush(5 * time.Second)
	ok := waitFor(5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got["a"]+got["b"] == 20
	})
	if !ok {
		t.Fatalf("queue group delivered %v, want 20 in total", got)
	}
}

func TestHeadersRoundTrip(t *testing.T) {
	srv := startServer(t, "")
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	sink := newSink()
	c.Subscribe("hdr.test", sink.cb)
	c.Flush(5 * time.Second)
	h := Header{}
	h.Set("X-Token-Id", "abc123")
	h.Add("Multi", "one")
	h.Add("Multi", "two")
	h.Set("lower-case", "Value: with colon")
	if err := c.PublishMsg("hdr.test", "", h, []byte("body")); err != nil {
		t.Fatal(err)
	}
	m := sink.next(t, 5*time.Second)
	if string(m.Data) != "body" {
		t.Fatalf("data = %q", m.Data)
	}
	if m.Header == nil || m.Status != 0 {
		t.Fatalf("header = %v status = %d", m.Header, m.Status)
	}
	if m.Header.Get("X-Token-Id") != "abc123" || m.Header.Get("x-token-id") != "abc123" {
		t.Fatalf("Get failed: %v", m.Header)
	}
	if v := m.Header.Values("Multi"); len(v) != 2 || v[0] != "one" || v[1] != "two" {
		t.Fatalf("Multi = %v", v)
	}
	if m.Header.Get("lower-case") != "Value: with colon" {
		t.Fatalf("lower-case = %q", m.Header.Get("lower-case"))
	}
	// Header with an empty body.
	if err := c.PublishMsg("hdr.test", "", Header{"K": {"v"}}, nil); err != nil {
		t.Fatal(err)
	}
	m = sink.next(t, 5*time.Second)
	if len(m.Data) != 0 || m.Header.Get("K") != "v" {
		t.Fatalf("unexpected %+v", m)
	}
	if err := c.PublishMsg("hdr.test", "", Header{"Bad": {"a\r\nb"}}, nil); err == nil {
		t.Fatal("header value with CRLF accepted")
	}
	if err := c.PublishMsg("hdr.test", "", Header{"Bad Key": {"a"}}, nil); err == nil {
		t.Fatal("header key with space accepted")
	}
}

func TestRequestReply(t *testing.T) {
	srv := startServer(t, "")
	lc := &logCapture{}
	c := connectAndWait(t, fastOpts(lc, srv.url()), lc)
	// The responder replies from inside the callback: Publish must not deadlock there.
	_, err := c.Subscribe("svc.echo", func(m *Msg) {
		h := Header{}
		h.Set("Echo", "yes")
		if err := c.PublishMsg(m.Reply, "", h, append([]byte("echo:"), m.Data...)); err != nil {
			t.Errorf("reply: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe("svc.silent", func(m *Msg) {})
	c.Flush(5 * time.Second)

	for i := 0; i < 5; i++ {
		m, err := c.Request("svc.echo", nil, []byte(strconv.Itoa(i)), 5*time.Second)
		if err != nil {
			t.Fatalf("Request %d: %v", i, err)
		}
		if string(m.Data) != "echo:"+strconv.Itoa(i) || m.Header.Get("Echo") != "yes" {
			t.Fatalf("reply %d = %+v", i, m)
		}
	}
	// Concurrent requests share the inbox subscription.
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			want := "echo:c" + strconv.Itoa(n)
			m, err := c.Request("svc.echo", Header{"N": {strconv.Itoa(n)}}, []byte("c"+strconv.Itoa(n)), 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			if string(m.Data) != want {
				errs <- errors.New("got " + string(m.Data) + " want " + want)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	m, err := c.Request("svc.nobody", nil, []byte("x"), 5*time.Second)
	if !errors.Is(err, ErrNoResponders) || m == nil || m.Status != 503 {
		t.Fatalf("no responders: m=%+v err=%v", m, err)
	}
	start := time.Now()
	if _, err := c.Request("svc.silent", nil, nil, 200*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("silent: err = %v, want ErrTimeout", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("timeout took %v", time.Since(start))
	}
}

func TestMaxPayload(t *testing.T) {
	srv := startServer(t, "max_payload: 1024")
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	if c.MaxPayload() != 1024 {
		t.Fatalf("MaxPayload = %d, want 1024", c.MaxPayload())
	}
	sink := newSink()
	c.Subscribe("mp", sink.cb)
	c.Flush(5 * time.Second)
	if err := c.Publish("mp", make([]byte, 1025)); !errors.Is(err, ErrMaxPayload) {
		t.Fatalf("1025 bytes: %v, want ErrMaxPayload", err)
	}
	if err := c.PublishMsg("mp", "", Header{"K": {"v"}}, make([]byte, 1020)); !errors.Is(err, ErrMaxPayload) {
		t.Fatalf("headers+1020 bytes: %v, want ErrMaxPayload", err)
	}
	if err := c.Publish("mp", make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	if m := sink.next(t, 5*time.Second); len(m.Data) != 1024 {
		t.Fatalf("len = %d", len(m.Data))
	}
	if !c.Connected() {
		t.Fatal("connection dropped")
	}
}

func TestFlush(t *testing.T) {
	srv := startServer(t, "")
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	for i := 0; i < 20; i++ {
		c.Publish("f", []byte("x"))
		if err := c.Flush(5 * time.Second); err != nil {
			t.Fatalf("Flush %d: %v", i, err)
		}
	}
	// Concurrent flushes each get their own PONG.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Flush(5 * time.Second); err != nil {
				t.Errorf("concurrent Flush: %v", err)
			}
		}()
	}
	wg.Wait()
	c.Close()
	if err := c.Flush(time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v", err)
	}

	// Not connected.
	port := freePort(t)
	c2 := mustConnect(t, fastOpts(nil, "127.0.0.1:"+strconv.Itoa(port)), nil)
	if err := c2.Flush(100 * time.Millisecond); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Flush while disconnected = %v", err)
	}
	if _, err := c2.Request("x", nil, nil, 100*time.Millisecond); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Request while disconnected = %v", err)
	}
}

// expectAuthFailure checks that o cannot connect and that the failure is reported as an
// authorization violation, without leaking secrets into the logs.
func expectAuthFailure(t *testing.T, o Options, lc *logCapture, secrets ...string) {
	t.Helper()
	c := mustConnect(t, o, lc)
	ok := waitFor(10*time.Second, func() bool {
		return errors.Is(c.LastError(), ErrAuthorization) && lc.count("authorization violation") > 0
	})
	if !ok {
		t.Fatalf("no authorization violation reported; last error %v; log:\n%s", c.LastError(), lc.all())
	}
	if c.Connected() || c.WaitConnected(200*time.Millisecond) {
		t.Fatal("connected with bad credentials")
	}
	if !strings.Contains(c.LastError().Error(), "-ERR 'Authorization Violation'") {
		t.Fatalf("LastError = %q", c.LastError())
	}
	if err := c.Publish("x", nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish = %v, want ErrNotConnected", err)
	}
	checkNoSecrets(t, lc, secrets...)
}

func checkNoSecrets(t *testing.T, lc *logCapture, secrets ...string) {
	t.Helper()
	all := lc.all()
	for _, s := range secrets {
		if s != "" && strings.Contains(all, s) {
			t.Fatalf("log contains a secret (%d chars)", len(s))
		}
	}
}

// roundTrip checks that c can publish to itself.
func roundTrip(t *testing.T, c *Conn, subject string) {
	t.Helper()
	sink := newSink()
	sub, err := c.Subscribe(subject, sink.cb)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := c.Flush(5 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := c.Publish(subject, []byte("ping")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if m := sink.next(t, 5*time.Second); string(m.Data) != "ping" {
		t.Fatalf("data = %q", m.Data)
	}
}

func TestAuthToken(t *testing.T) {
	const token = "s3cr3t-t0ken"
	srv := startServer(t, `authorization { token: "`+token+`" }`)

	lc := &logCapture{}
	o := fastOpts(lc, srv.url())
	o.Token = token
	roundTrip(t, connectAndWait(t, o, lc), "auth.token")
	checkNoSecrets(t, lc, token)

	lc2 := &logCapture{}
	roundTrip(t, connectAndWait(t, fastOpts(lc2, "nats://"+token+"@"+srv.addr()), lc2), "auth.token.url")
	checkNoSecrets(t, lc2, token)

	lc3 := &logCapture{}
	o3 := fastOpts(lc3, srv.url())
	o3.Token = "wrong-token-value"
	expectAuthFailure(t, o3, lc3, "wrong-token-value")
}

func TestAuthUserPassword(t *testing.T) {
	srv := startServer(t, `authorization { users = [ {user: alice, password: "pa55-word"} ] }`)

	lc := &logCapture{}
	o := fastOpts(lc, srv.url())
	o.User = "alice"
	o.Password = "pa55-word"
	roundTrip(t, connectAndWait(t, o, lc), "auth.user")

	lc2 := &logCapture{}
	roundTrip(t, connectAndWait(t, fastOpts(lc2, "nats://alice:pa55-word@"+srv.addr()), lc2), "auth.user.url")
	checkNoSecrets(t, lc2, "pa55-word")

	lc3 := &logCapture{}
	o3 := fastOpts(lc3, "nats://alice:bad-pass-123@"+srv.addr())
	expectAuthFailure(t, o3, lc3, "bad-pass-123")

	lc4 := &logCapture{}
	expectAuthFailure(t, fastOpts(lc4, srv.url()), lc4) // no credentials at all
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("fixture %s: %v (regenerate with: cd e2e && go run ./cmd/gen-nats-fixtures)", name, err)
	}
	return strings.TrimSpace(string(b))
}

func TestAuthNKey(t *testing.T) {
	seed := readFixture(t, "nkey-user.seed")
	pub := readFixture(t, "nkey-user.pub")
	srv := startServer(t, `authorization { users = [ {nkey: "`+pub+`"} ] }`)

	lc := &logCapture{}
	o := fastOpts(lc, srv.url())
	o.NKeySeed = seed
	roundTrip(t, connectAndWait(t, o, lc), "auth.nkey")
	checkNoSecrets(t, lc, seed)

	// A valid seed of another user is rejected.
	other, err := loadCreds(filepath.Join("testdata", "user.creds"))
	if err != nil {
		t.Fatal(err)
	}
	if other.user.public == pub {
		t.Fatal("fixtures share a key")
	}
	lc2 := &logCapture{}
	o2 := fastOpts(lc2, srv.url())
	o2.NKeySeed = credsSeed(t, filepath.Join("testdata", "user.creds"))
	expectAuthFailure(t, o2, lc2, o2.NKeySeed)
}

func credsSeed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks := credsBlocks(string(b))
	if len(blocks) != 2 {
		t.Fatalf("creds blocks = %d", len(blocks))
	}
	return blocks[1]
}

func TestAuthCredsFile(t *testing.T) {
	conf := readFixture(t, "operator-server.conf")
	srv := startServer(t, conf)
	credsPath := filepath.Join("testdata", "user.creds")
	jwt := strings.TrimSpace(credsBlocks(string(mustRead(t, credsPath)))[0])

	lc := &logCapture{}
	o := fastOpts(lc, srv.url())
	o.CredsFile = credsPath
	roundTrip(t, connectAndWait(t, o, lc), "auth.creds")
	checkNoSecrets(t, lc, jwt, credsSeed(t, credsPath))

	lc2 := &logCapture{}
	o2 := fastOpts(lc2, srv.url())
	o2.CredsFile = filepath.Join("testdata", "bad-user.creds")
	expectAuthFailure(t, o2, lc2, credsSeed(t, o2.CredsFile))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTLS(t *testing.T) {
	pki := makePKI(t)
	srv := startServer(t, `tls {
  cert_file: "`+pki.ServerCert+`"
  key_file: "`+pki.ServerKey+`"
  ca_file: "`+pki.CA+`"
  verify: true
  timeout: 2
}`)
	tlsURL := "tls://" + srv.addr()

	// CA + client certificate: works, with tls:// and with nats:// (server requires TLS).
	for _, u := range []string{tlsURL, srv.url()} {
		lc := &logCapture{}
		o := fastOpts(lc, u)
		o.TLS = &TLSOptions{CA: pki.CA, Cert: pki.ClientCert, Key: pki.ClientKey}
		c := connectAndWait(t, o, lc)
		roundTrip(t, c, "tls.rt")
		c.Close()
	}

	// No client certificate: the server rejects the handshake.
	lc := &logCapture{}
	o := fastOpts(lc, tlsURL)
	o.TLS = &TLSOptions{CA: pki.CA}
	c := mustConnect(t, o, lc)
	if c.WaitConnected(700 * time.Millisecond) {
		t.Fatal("connected without client certificate")
	}
	if c.LastError() == nil {
		t.Fatal("no error reported")
	}

	// Unknown CA (system roots): certificate verification fails.
	lc2 := &logCapture{}
	o2 := fastOpts(lc2, tlsURL)
	c2 := mustConnect(t, o2, lc2)
	if c2.WaitConnected(700 * time.Millisecond) {
		t.Fatal("connected although the server certificate is not trusted")
	}
	ok := waitFor(5*time.Second, func() bool {
		err := c2.LastError()
		return err != nil && strings.Contains(err.Error(), "certificate")
	})
	if !ok {
		t.Fatalf("LastError = %v, want a certificate error", c2.LastError())
	}

	// InsecureSkipVerify with client certificate: works without the CA.
	lc3 := &logCapture{}
	o3 := fastOpts(lc3, tlsURL)
	o3.TLS = &TLSOptions{Cert: pki.ClientCert, Key: pki.ClientKey, InsecureSkipVerify: true}
	roundTrip(t, connectAndWait(t, o3, lc3), "tls.insecure")

	// TLS configured but the server does not offer it.
	plain := startServer(t, "")
	lc4 := &logCapture{}
	o4 := fastOpts(lc4, plain.url())
	o4.TLS = &TLSOptions{CA: pki.CA}
	c4 := mustConnect(t, o4, lc4)
	ok = waitFor(5*time.Second, func() bool {
		err := c4.LastError()
		return err != nil && strings.Contains(err.Error(), "does not offer")
	})
	if !ok || c4.Connected() {
		t.Fatalf("plain server with TLS options: connected=%v err=%v", c4.Connected(), c4.LastError())
	}
}

func TestServerDownAtConnect(t *testing.T) {
	port := freePort(t)
	srv := newServer(t, port, "")
	lc := &logCapture{}
	connected := make(chan string, 10)
	o := fastOpts(lc, srv.url())
	o.OnConnect = func(u string) { connected <- u }
	start := time.Now()
	c := mustConnect(t, o, lc)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Connect blocked for %v", d)
	}
	if c.Connected() {
		t.Fatal("connected to a server that is down")
	}
	if err := c.Publish("down.x", nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish = %v, want ErrNotConnected", err)
	}
	sink := newSink()
	if _, err := c.Subscribe("down.x", sink.cb); err != nil {
		t.Fatalf("Subscribe while disconnected: %v", err)
	}
	if !waitFor(5*time.Second, func() bool { return c.LastError() != nil }) {
		t.Fatal("no connect error recorded")
	}
	time.Sleep(300 * time.Millisecond) // a few failed rounds
	srv.start()
	if !c.WaitConnected(10 * time.Second) {
		t.Fatalf("did not connect after server start; last error %v", c.LastError())
	}
	select {
	case u := <-connected:
		if u != srv.url() {
			t.Fatalf("OnConnect url = %q", u)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnConnect not called")
	}
	if c.LastError() != nil {
		t.Fatalf("LastError after connect = %v", c.LastError())
	}
	if err := c.Publish("down.x", []byte("late")); err != nil {
		t.Fatal(err)
	}
	if m := sink.next(t, 5*time.Second); string(m.Data) != "late" {
		t.Fatalf("data = %q", m.Data)
	}
	// Identical connect warnings are rate-limited.
	if n := lc.count("failed: "); n < 1 || n > 2 {
		t.Fatalf("%d connect-failure warnings logged, want 1 (rate-limited):\n%s", n, lc.all())
	}
}

// connEvents records OnConnect/OnDisconnect calls.
type connEvents struct {
	connects    chan string
	disconnects chan error
}

func newConnEvents(o *Options) *connEvents {
	ev := &connEvents{connects: make(chan string, 100), disconnects: make(chan error, 100)}
	o.OnConnect = func(u string) { ev.connects <- u }
	o.OnDisconnect = func(err error) { ev.disconnects <- err }
	return ev
}

func (ev *connEvents) connect(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case u := <-ev.connects:
		return u
	case <-time.After(timeout):
		t.Fatalf("no OnConnect within %v", timeout)
	}
	return ""
}

func (ev *connEvents) disconnect(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-ev.disconnects:
		return err
	case <-time.After(timeout):
		t.Fatalf("no OnDisconnect within %v", timeout)
	}
	return nil
}

func TestReconnectAfterServerRestart(t *testing.T) {
	srv := startServer(t, "")
	lc := &logCapture{}
	o := fastOpts(lc, srv.url())
	ev := newConnEvents(&o)
	c := mustConnect(t, o, lc)
	ev.connect(t, 10*time.Second)
	sink := newSink()
	c.Subscribe("restart.>", sink.cb)
	c.Subscribe("restart.other", func(m *Msg) {})
	roundTrip(t, c, "restart.a")

	for i := 0; i < 2; i++ {
		srv.stop()
		err := ev.disconnect(t, 10*time.Second)
		if err == nil {
			t.Fatal("OnDisconnect with nil error")
		}
		if c.Connected() {
			t.Fatal("still connected after server stop")
		}
		if err := c.Publish("restart.x", nil); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("Publish while down = %v", err)
		}
		if err := c.Flush(50 * time.Millisecond); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("Flush while down = %v", err)
		}
		time.Sleep(200 * time.Millisecond)
		srv.start()
		ev.connect(t, 10*time.Second)
		// OnConnect runs after resubscription: a fresh publisher reaches the old subscription.
		pub := connectAndWait(t, fastOpts(nil, srv.url()), nil)
		if err := pub.Publish("restart.after", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		pub.Flush(5 * time.Second)
		for {
			m := sink.next(t, 5*time.Second)
			if m.Subject == "restart.after" {
				if string(m.Data) != strconv.Itoa(i) {
					t.Fatalf("data = %q", m.Data)
				}
				break
			}
		}
		pub.Close()
	}
	if c.LastError() != nil {
		t.Fatalf("LastError after reconnect = %v", c.LastError())
	}
}

func TestFailover(t *testing.T) {
	a := startServer(t, "")
	b := startServer(t, "")

	// First server of the list down: the second one is used.
	dead := "nats://127.0.0.1:" + strconv.Itoa(freePort(t))
	c0 := connectAndWait(t, fastOpts(nil, dead, b.url()), nil)
	if c0.ConnectedURL() != b.url() {
		t.Fatalf("connected to %q, want %q", c0.ConnectedURL(), b.url())
	}
	c0.Close()

	lc := &logCapture{}
	o := fastOpts(lc, a.url(), b.url())
	ev := newConnEvents(&o)
	c := mustConnect(t, o, lc)
	first := ev.connect(t, 10*time.Second)
	sink := newSink()
	c.Subscribe("fo.x", sink.cb)
	c.Flush(5 * time.Second)

	victim, survivor := a, b
	if first == b.url() {
		victim, survivor = b, a
	}
	victim.stop()
	ev.disconnect(t, 10*time.Second)
	second := ev.connect(t, 10*time.Second)
	if second != survivor.url() || c.ConnectedURL() != survivor.url() {
		t.Fatalf("reconnected to %q, want %q", second, survivor.url())
	}
	pub := connectAndWait(t, fastOpts(nil, survivor.url()), nil)
	pub.Publish("fo.x", []byte("moved"))
	pub.Flush(5 * time.Second)
	if m := sink.next(t, 5*time.Second); string(m.Data) != "moved" {
		t.Fatalf("data = %q", m.Data)
	}
}

func TestStaleConnection(t *testing.T) {
	srv := startServer(t, "")
	proxy := startProxy(t, srv.addr())
	lc := &logCapture{}
	o := fastOpts(lc, proxy.url())
	o.PingInterval = 150 * time.Millisecond
	o.MaxPingsOut = 2
	ev := newConnEvents(&o)
	c := mustConnect(t, o, lc)
	ev.connect(t, 10*time.Second)
	sink := newSink()
	c.Subscribe("stale.x", sink.cb)
	roundTrip(t, c, "stale.rt")
	// Keep-alive PINGs are answered while traffic flows.
	time.Sleep(600 * time.Millisecond)
	if !c.Connected() {
		t.Fatal("healthy connection dropped")
	}
	select {
	case err := <-ev.disconnects:
		t.Fatalf("unexpected disconnect: %v", err)
	default:
	}

	proxy.blackhole()
	start := time.Now()
	flushErr := make(chan error, 1)
	go func() { flushErr <- c.Flush(20 * time.Second) }()
	err := ev.disconnect(t, 10*time.Second)
	took := time.Since(start)
	if !errors.Is(err, ErrStaleConnection) {
		t.Fatalf("disconnect error = %v, want ErrStaleConnection", err)
	}
	// Detection is bounded by PingInterval*(MaxPingsOut+1) = 450ms; allow scheduling slack.
	if took > 5*time.Second {
		t.Fatalf("stale connection detected after %v", took)
	}
	select {
	case err := <-flushErr:
		if !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("Flush during stale connection = %v, want ErrConnectionLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Flush did not return after the connection was dropped")
	}
	ev.connect(t, 10*time.Second)
	if err := c.Publish("stale.x", []byte("again")); err != nil {
		t.Fatal(err)
	}
	if m := sink.next(t, 5*time.Second); string(m.Data) != "again" {
		t.Fatalf("data = %q", m.Data)
	}
	if lc.count("stale") == 0 {
		t.Fatalf("stale connection not logged:\n%s", lc.all())
	}
}

func TestFlushTimeout(t *testing.T) {
	srv := startServer(t, "")
	proxy := startProxy(t, srv.addr())
	o := fastOpts(nil, proxy.url())
	o.PingInterval = 10 * time.Second
	c := connectAndWait(t, o, nil)
	proxy.blackhole()
	if err := c.Flush(150 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Flush through a black hole = %v, want ErrTimeout", err)
	}
}

func numGoroutinesBackTo(baseline int, timeout time.Duration) (int, bool) {
	n := runtime.NumGoroutine()
	ok := waitFor(timeout, func() bool {
		n = runtime.NumGoroutine()
		return n <= baseline
	})
	return n, ok
}

func TestCloseStopsGoroutines(t *testing.T) {
	srv := startServer(t, "")
	time.Sleep(50 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	lc := &logCapture{}
	o := fastOpts(lc, srv.url())
	o.PingInterval = 50 * time.Millisecond
	c, err := Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	if !c.WaitConnected(10 * time.Second) {
		t.Fatal("not connected")
	}
	c.Subscribe("svc", func(m *Msg) { c.Publish(m.Reply, []byte("ok")) })
	if _, err := c.Request("svc", nil, nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond) // let keep-alives run
	c.Close()
	c.Close()
	if n, ok := numGoroutinesBackTo(baseline, 5*time.Second); !ok {
		t.Fatalf("goroutines after Close: %d, baseline %d", n, baseline)
	}
	if c.Connected() || c.WaitConnected(10*time.Millisecond) {
		t.Fatal("connected after Close")
	}
	if err := c.Publish("x", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close = %v", err)
	}
	if _, err := c.Subscribe("x", func(m *Msg) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close = %v", err)
	}
	if _, err := c.Request("x", nil, nil, time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Request after Close = %v", err)
	}

	// Close while the client is retrying a server that is down.
	o2 := fastOpts(nil, "127.0.0.1:"+strconv.Itoa(freePort(t)))
	c2, _ := Connect(o2)
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	c2.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close during reconnect took %v", d)
	}
	if n, ok := numGoroutinesBackTo(baseline, 5*time.Second); !ok {
		t.Fatalf("goroutines after Close during reconnect: %d, baseline %d", n, baseline)
	}

	// Close from inside a message callback and from OnConnect must not deadlock.
	o3 := fastOpts(nil, srv.url())
	c3, _ := Connect(o3)
	done := make(chan struct{})
	c3.Subscribe("closeme", func(m *Msg) {
		c3.Close()
		close(done)
	})
	if !c3.WaitConnected(10 * time.Second) {
		t.Fatal("c3 not connected")
	}
	c3.Flush(5 * time.Second)
	c3.Publish("closeme", nil)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close from callback deadlocked")
	}
	o4 := fastOpts(nil, srv.url())
	var c4 *Conn
	var c4mu sync.Mutex
	closed4 := make(chan struct{})
	o4.OnConnect = func(url string) {
		c4mu.Lock()
		cc := c4
		c4mu.Unlock()
		for cc == nil {
			time.Sleep(5 * time.Millisecond)
			c4mu.Lock()
			cc = c4
			c4mu.Unlock()
		}
		cc.Close()
		close(closed4)
	}
	cc, _ := Connect(o4)
	c4mu.Lock()
	c4 = cc
	c4mu.Unlock()
	select {
	case <-closed4:
	case <-time.After(10 * time.Second):
		t.Fatal("Close from OnConnect deadlocked")
	}
	if n, ok := numGoroutinesBackTo(baseline, 5*time.Second); !ok {
		t.Fatalf("goroutines after Close from callbacks: %d, baseline %d", n, baseline)
	}
}

func TestCallbackPanicRecovered(t *testing.T) {
	srv := startServer(t, "")
	lc := &logCapture{}
	o := fastOpts(lc, srv.url())
	o.OnConnect = func(url string) { panic("boom in OnConnect") }
	c := connectAndWait(t, o, lc)
	sink := newSink()
	c.Subscribe("panic.x", func(m *Msg) {
		if string(m.Data) == "bad" {
			panic("boom")
		}
		sink.cb(m)
	})
	c.Flush(5 * time.Second)
	c.Publish("panic.x", []byte("bad"))
	c.Publish("panic.x", []byte("good"))
	if m := sink.next(t, 5*time.Second); string(m.Data) != "good" {
		t.Fatalf("data = %q", m.Data)
	}
	if !c.Connected() {
		t.Fatal("connection lost after callback panic")
	}
	logged := waitFor(5*time.Second, func() bool {
		return lc.count("panic in message callback") == 1 && lc.count("panic in OnConnect") == 1
	})
	if !logged {
		t.Fatalf("panics not logged:\n%s", lc.all())
	}
}

func TestConnectValidation(t *testing.T) {
	bad := []Options{
		{Servers: []string{"http://127.0.0.1:4222"}},
		{Servers: []string{"nats://127.0.0.1:99999"}},
		{Servers: []string{"nats://:4222"}},
		{Servers: []string{"nats://user:hunter2-secret@127.0.0.1:4222/path"}},
		{Servers: []string{"nats://user:hunter2-secret@[::1"}},
		{NKeySeed: "SUAnotaseed"},
		{NKeySeed: readFixture(t, "nkey-user.pub")},
		{CredsFile: filepath.Join(t.TempDir(), "missing.creds")},
		{NKeySeed: readFixture(t, "nkey-user.seed"), CredsFile: filepath.Join("testdata", "user.creds")},
		{TLS: &TLSOptions{CA: filepath.Join(t.TempDir(), "missing.pem")}},
		{TLS: &TLSOptions{Cert: filepath.Join("testdata", "user.creds")}},
	}
	for i, o := range bad {
		c, err := Connect(o)
		if err == nil {
			c.Close()
			t.Errorf("case %d: Connect succeeded", i)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("case %d: error leaks the password: %v", i, err)
		}
	}
	badCreds := filepath.Join(t.TempDir(), "bad.creds")
	os.WriteFile(badCreds, []byte("-----BEGIN NATS USER JWT-----\nnot-a-jwt\n------END NATS USER JWT------\n"), 0o600)
	if _, err := Connect(Options{CredsFile: badCreds}); err == nil {
		t.Error("malformed creds accepted")
	}
}

// NoEcho: the server does not deliver a connection's own publications to it; other
// connections get them.
func TestNoEcho(t *testing.T) {
	srv := startServer(t, "")
	lc := &logCapture{}
	opts := fastOpts(lc, srv.url())
	opts.NoEcho = true
	quiet := connectAndWait(t, opts, lc)
	other := connectAndWait(t, fastOpts(&logCapture{}, srv.url()), &logCapture{})
	var mu sync.Mutex
	got := map[string]int{}
	for name, c := range map[string]*Conn{"quiet": quiet, "other": other} {
		name := name
		if _, err := c.Subscribe("echo.test", func(m *Msg) {
			mu.Lock()
			got[name]++
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := quiet.Publish("echo.test", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := quiet.Flush(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := other.Publish("echo.test", []byte("y")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		q, o := got["quiet"], got["other"]
		mu.Unlock()
		if o == 2 && q == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received: quiet %d (want 1: the other's only), other %d (want 2)", q, o)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if got["quiet"] != 1 {
		t.Fatalf("the NoEcho connection got its own message: %d", got["quiet"])
	}
}
