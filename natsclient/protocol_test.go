package natsclient

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHeaderEncodeParse(t *testing.T) {
	h := Header{"B": {"2"}, "A": {"1", "one"}, "mixed-Case": {"x: y"}}
	b, err := encodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	want := "NATS/1.0\r\nA: 1\r\nA: one\r\nB: 2\r\nmixed-Case: x: y\r\n\r\n"
	if string(b) != want {
		t.Fatalf("encoded %q, want %q", b, want)
	}
	got, status, desc, err := parseHeader(b)
	if err != nil || status != 0 || desc != "" {
		t.Fatalf("parse: %v %d %q", err, status, desc)
	}
	if len(got) != 3 || got.Get("mixed-case") != "x: y" || len(got.Values("A")) != 2 || got.Get("missing") != "" {
		t.Fatalf("parsed %v", got)
	}

	cases := []struct {
		in     string
		status int
		desc   string
		key    string
		val    string
	}{
		{"NATS/1.0 503\r\n\r\n", 503, "", "", ""},
		{"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\n\r\n", 100, "Idle Heartbeat", "Nats-Last-Consumer", "0"},
		{"NATS/1.0 408 Request Timeout\r\n\r\n", 408, "Request Timeout", "", ""},
		{"NATS/1.0\r\nK:v\r\n\r\n", 0, "", "K", "v"},
	}
	for _, tc := range cases {
		h, st, d, err := parseHeader([]byte(tc.in))
		if err != nil || st != tc.status || d != tc.desc {
			t.Errorf("%q: status %d desc %q err %v", tc.in, st, d, err)
		}
		if h == nil || (tc.key != "" && h.Get(tc.key) != tc.val) {
			t.Errorf("%q: header %v", tc.in, h)
		}
	}
	for _, bad := range []string{"", "HTTP/1.1 200\r\n\r\n", "NATS/1.0", "NATS/1.0 abc\r\n\r\n", "NATS/1.0\r\nnocolon\r\n\r\n", "NATS/1.0\r\n: v\r\n\r\n"} {
		if _, _, _, err := parseHeader([]byte(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
	var nilHeader Header
	if nilHeader.Get("x") != "" || nilHeader.Values("x") != nil {
		t.Error("nil Header not empty")
	}
}

func TestNKeyDecoding(t *testing.T) {
	seed := readFixture(t, "nkey-user.seed")
	pub := readFixture(t, "nkey-user.pub")
	k, err := decodeUserSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	if k.public != pub {
		t.Fatalf("public key %q, want %q (from the nkeys library)", k.public, pub)
	}
	// The signature verifies with the public key decoded from its "U..." form.
	raw, err := nkeyEncoding.DecodeString(pub)
	if err != nil || len(raw) != 35 || raw[0] != nkeyPrefixUser {
		t.Fatalf("decode public: %v %d", err, len(raw))
	}
	sig, err := base64.RawURLEncoding.DecodeString(k.sign("nonce-123"))
	if err != nil || !ed25519.Verify(ed25519.PublicKey(raw[1:33]), []byte("nonce-123"), sig) {
		t.Fatal("signature does not verify")
	}
	// A changed character breaks the checksum; errors never echo the seed.
	flipped := []byte(seed)
	if flipped[10] == 'A' {
		flipped[10] = 'B'
	} else {
		flipped[10] = 'A'
	}
	for _, bad := range []string{string(flipped), seed[:len(seed)-2], "", pub, "SAAAAAAAAAAAAAAAAAAAAA"} {
		_, err := decodeUserSeed(bad)
		if err == nil {
			t.Errorf("seed %q accepted", bad)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("error leaks the seed: %v", err)
		}
	}

	// Creds file: the public key of its seed is the subject of its JWT.
	cr, err := loadCreds(filepath.Join("testdata", "user.creds"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(cr.jwt, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Sub != cr.user.public {
		t.Fatalf("JWT sub %q, seed public %q", claims.Sub, cr.user.public)
	}
}

func TestServerURLParsing(t *testing.T) {
	cases := []struct {
		in, display, user, pass string
		hasPass, tls            bool
	}{
		{"127.0.0.1:4222", "nats://127.0.0.1:4222", "", "", false, false},
		{"nats://localhost", "nats://localhost:4222", "", "", false, false},
		{"tls://h.example:7422", "tls://h.example:7422", "", "", false, true},
		{"nats://tok@h:1", "nats://h:1", "tok", "", false, false},
		{"nats://u:p%40ss@h:1", "nats://h:1", "u", "p@ss", true, false},
		{"NATS://[::1]:4222", "nats://[::1]:4222", "", "", false, false},
	}
	for _, tc := range cases {
		s, err := parseServerURL(tc.in, false)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if s.display != tc.display || s.user != tc.user || s.pass != tc.pass || s.hasPass != tc.hasPass || s.tls != tc.tls {
			t.Errorf("%q: got %+v", tc.in, s)
		}
	}
}

// connectFields parses the JSON of a CONNECT line.
func connectFields(t *testing.T, line string) map[string]interface{} {
	t.Helper()
	var m map[string]interface{}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "CONNECT ")), &m); err != nil {
		t.Fatalf("CONNECT json: %v", err)
	}
	return m
}

func TestConnectMessage(t *testing.T) {
	f := startFake(t)
	o := fastOpts(nil, f.url())
	o.NKeySeed = readFixture(t, "nkey-user.seed")
	c := mustConnect(t, o, nil)
	fc := f.accept(t, 10*time.Second)
	info := `INFO {"server_id":"FAKE","max_payload":4096,"headers":true,"nonce":"n0nce-xyz","auth_required":true}` + "\r\n"
	m := connectFields(t, fc.handshake(t, info))
	if !c.WaitConnected(5 * time.Second) {
		t.Fatal("not connected to fake server")
	}
	if m["lang"] != "go-tokenrevoke" || m["name"] != "natsclient-test" || m["headers"] != true ||
		m["no_responders"] != true || m["verbose"] != false || m["pedantic"] != false || m["protocol"] != float64(1) {
		t.Fatalf("CONNECT = %v", m)
	}
	pub := readFixture(t, "nkey-user.pub")
	if m["nkey"] != pub {
		t.Fatalf("nkey = %v", m["nkey"])
	}
	raw, _ := nkeyEncoding.DecodeString(pub)
	sig, err := base64.RawURLEncoding.DecodeString(m["sig"].(string))
	if err != nil || !ed25519.Verify(ed25519.PublicKey(raw[1:33]), []byte("n0nce-xyz"), sig) {
		t.Fatal("CONNECT sig does not verify against the nonce")
	}
	if _, ok := m["jwt"]; ok {
		t.Fatal("jwt sent without creds")
	}
	if c.MaxPayload() != 4096 {
		t.Fatalf("MaxPayload = %d", c.MaxPayload())
	}
	c.Close()

	// Creds: the JWT is sent with a signature of the nonce.
	f2 := startFake(t)
	o2 := fastOpts(nil, f2.url())
	o2.CredsFile = filepath.Join("testdata", "user.creds")
	c2 := mustConnect(t, o2, nil)
	fc2 := f2.accept(t, 10*time.Second)
	m2 := connectFields(t, fc2.handshake(t, info))
	cr, _ := loadCreds(o2.CredsFile)
	if m2["jwt"] != cr.jwt || m2["sig"] != cr.user.sign("n0nce-xyz") {
		t.Fatalf("creds CONNECT = %v", m2)
	}
	if _, ok := m2["nkey"]; ok {
		t.Fatal("nkey sent with creds")
	}
	c2.Close()
}

func TestGarbageFrames(t *testing.T) {
	f := startFake(t)
	lc := &logCapture{}
	o := fastOpts(lc, f.url())
	o.ReconnectWait = 5 * time.Millisecond
	o.MaxReconnectWait = 30 * time.Millisecond
	c := mustConnect(t, o, lc)
	sink := newSink()
	if _, err := c.Subscribe("good", sink.cb); err != nil { // sid 1
		t.Fatal(err)
	}
	expectGood := func(name string, fc *fakeConn) {
		t.Helper()
		fc.send(t, "MSG good 1 2\r\nok\r\n")
		select {
		case m := <-sink.ch:
			if string(m.Data) != "ok" {
				t.Fatalf("%s: data %q", name, m.Data)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: message after the frame was not delivered", name)
		}
	}

	statusHdr := "NATS/1.0 100 Idle Heartbeat\r\n\r\n"
	kept := []struct{ name, data string }{
		{"ok", "+OK\r\n"},
		{"unknown sid", "MSG good 99 2\r\nno\r\n"},
		{"bad header block", "HMSG good 1 5 7\r\nXXXXXhi\r\n"},
		{"lowercase op", "msg good 1 2\r\nok\r\n"},
		{"empty line", "\r\n"},
		{"async info", `INFO {"server_id":"FAKE","max_payload":2048,"headers":true}` + "\r\n"},
		{"status", "HMSG good 1 _INBOX.r " + strconv.Itoa(len(statusHdr)) + " " + strconv.Itoa(len(statusHdr)) + "\r\n" + statusHdr + "\r\n"},
		{"server error", "-ERR 'Permissions Violation for Publish to \"x\"'\r\n"},
	}
	fc := f.accept(t, 10*time.Second)
	fc.handshake(t, fakeInfo)
	if !c.WaitConnected(5 * time.Second) {
		t.Fatal("not connected")
	}
	for _, tc := range kept {
		fc.send(t, tc.data)
		if tc.name == "lowercase op" {
			<-sink.ch // the frame itself is a valid message
		}
		if tc.name == "status" {
			select {
			case m := <-sink.ch:
				if m.Status != 100 || m.Description != "Idle Heartbeat" || m.Reply != "_INBOX.r" || len(m.Data) != 0 {
					t.Fatalf("status message %+v", m)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("status message not delivered")
			}
		}
		expectGood(tc.name, fc)
	}
	// Valid frames in less usual forms (the reader's fast path hands them to processMsg).
	variants := []struct{ name, data, want, reply, hdr string }{
		{"extra blanks", "MSG  good\t1   2 \r\nok\r\n", "ok", "", ""},
		{"reply", "MSG good 1 _INBOX.x 2\r\nok\r\n", "ok", "_INBOX.x", ""},
		{"headers and reply", "HMSG good 1 _INBOX.y 22 24\r\nNATS/1.0\r\nA-B: c d\r\n\r\nhi\r\n", "hi", "_INBOX.y", "c d"},
		{"headers", "HMSG good 1 22 22\r\nNATS/1.0\r\nA-B: c d\r\n\r\n\r\n", "", "", "c d"},
	}
	for _, tc := range variants {
		fc.send(t, tc.data)
		select {
		case m := <-sink.ch:
			if string(m.Data) != tc.want || m.Reply != tc.reply || m.Subject != "good" || m.Header.Get("A-B") != tc.hdr {
				t.Fatalf("%s: message %+v", tc.name, m)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not delivered", tc.name)
		}
	}
	if c.MaxPayload() != 2048 {
		t.Fatalf("MaxPayload after async INFO = %d", c.MaxPayload())
	}
	if !c.Connected() {
		t.Fatal("dropped the connection on a harmless frame")
	}
	// The server's PING is answered.
	fc.send(t, "PING\r\n")
	for {
		if l := fc.readLine(t); l == "PONG" {
			break
		}
	}
	fc.nc.Close()

	dropped := []struct{ name, data string }{
		{"huge size", "MSG good 1 99999999999\r\n"},
		{"negative size", "MSG good 1 -5\r\n"},
		{"too few args", "MSG good\r\n"},
		{"too many args", "MSG a b c d e f\r\n"},
		{"bad sid", "MSG good x 2\r\nok\r\n"},
		{"header larger than total", "HMSG good 1 10 5\r\nhello\r\n"},
		{"no CRLF after body", "MSG good 1 2\r\nokXXXXXXXXXXXXXXX\r\n"},
		{"unknown op", "BOGUS stuff\r\n"},
		{"binary", "\x00\x01\x02\xff\xfe\r\n"},
		{"bad async INFO", "INFO {not json\r\n"},
		{"overlong line", strings.Repeat("A", 100000)},
		{"truncated body", "MSG good 1 100\r\nshort"},
	}
	for _, tc := range dropped {
		fc := f.accept(t, 10*time.Second)
		fc.handshake(t, fakeInfo)
		fc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fc.nc.Write([]byte(tc.data))
		if tc.name == "truncated body" {
			fc.nc.Close() // EOF in the middle of a body
			continue
		}
		if !fc.waitClosed(5 * time.Second) {
			t.Fatalf("%s: client kept the connection", tc.name)
		}
	}

	handshakeGarbage := []struct{ name, data string }{
		{"not INFO", "HELLO\r\n"},
		{"bad INFO json", "INFO {bad\r\n"},
		{"overlong INFO", "INFO " + strings.Repeat("x", 100000)},
		{"ERR before INFO", "-ERR 'Unknown'\r\n"},
	}
	for _, tc := range handshakeGarbage {
		fc := f.accept(t, 10*time.Second)
		fc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fc.nc.Write([]byte(tc.data))
		if !fc.waitClosed(5 * time.Second) {
			t.Fatalf("%s: client kept the connection", tc.name)
		}
		// The error is recorded right after the socket is closed.
		if !waitFor(5*time.Second, func() bool { return errors.Is(c.LastError(), ErrProtocol) }) {
			t.Fatalf("%s: LastError = %v, want a protocol error", tc.name, c.LastError())
		}
	}
	// -ERR instead of PONG, and an unexpected line instead of PONG.
	for _, reply := range []string{"-ERR 'Authorization Violation'\r\n", "WHAT\r\n"} {
		fc := f.accept(t, 10*time.Second)
		fc.send(t, fakeInfo)
		fc.readLine(t)
		fc.readLine(t)
		fc.send(t, reply)
		if !fc.waitClosed(5 * time.Second) {
			t.Fatalf("%q: client kept the connection", reply)
		}
	}
	if !waitFor(5*time.Second, func() bool { return errors.Is(c.LastError(), ErrProtocol) }) {
		t.Fatalf("LastError = %v", c.LastError())
	}

	// Still alive: a well-behaved server works, and connect_urls extend the pool.
	fc = f.accept(t, 10*time.Second)
	fc.handshake(t, fakeInfo)
	if !c.WaitConnected(5 * time.Second) {
		t.Fatal("not connected after garbage")
	}
	expectGood("final", fc)
	fc.send(t, `INFO {"server_id":"FAKE","connect_urls":["127.0.0.1:1","127.0.0.1:2"]}`+"\r\n")
	ok := waitFor(5*time.Second, func() bool {
		s := strings.Join(c.Servers(), ",")
		return strings.Contains(s, "nats://127.0.0.1:1") && strings.Contains(s, "nats://127.0.0.1:2")
	})
	if !ok {
		t.Fatalf("connect_urls not added: %v", c.Servers())
	}
	if c.LastError() != nil && !errors.Is(c.LastError(), ErrProtocol) {
		t.Fatalf("LastError = %v", c.LastError())
	}
	if n := lc.count("internal error"); n != 0 {
		t.Fatalf("reader hit %d internal errors:\n%s", n, lc.all())
	}
}

func TestHandshakeTimeoutAndCloseDuringHandshake(t *testing.T) {
	// A server that accepts but never speaks: the attempt fails after ConnectTimeout.
	f := startFake(t)
	lc := &logCapture{}
	o := fastOpts(lc, f.url())
	o.ConnectTimeout = 300 * time.Millisecond
	c := mustConnect(t, o, lc)
	fc := f.accept(t, 10*time.Second)
	if !fc.waitClosed(5 * time.Second) {
		t.Fatal("client did not give up on a silent server")
	}
	ok := waitFor(5*time.Second, func() bool {
		err := c.LastError()
		return err != nil && strings.Contains(err.Error(), "timeout")
	})
	if !ok {
		t.Fatalf("LastError = %v, want a timeout", c.LastError())
	}
	c.Close()

	// Close while a handshake is in progress returns at once.
	f2 := startFake(t)
	time.Sleep(20 * time.Millisecond)
	baseline := runtime.NumGoroutine()
	o2 := fastOpts(nil, f2.url())
	o2.ConnectTimeout = 20 * time.Second
	c2 := mustConnect(t, o2, nil)
	fc2 := f2.accept(t, 10*time.Second)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	c2.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close during handshake took %v", d)
	}
	if !fc2.waitClosed(5 * time.Second) {
		t.Fatal("socket not closed by Close")
	}
	if n, ok := numGoroutinesBackTo(baseline, 5*time.Second); !ok {
		t.Fatalf("goroutines after Close during handshake: %d, baseline %d", n, baseline)
	}
}
