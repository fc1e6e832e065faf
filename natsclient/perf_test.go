package natsclient

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestCoreReceiveLarge measures the receive path of a plain subscription: the first message
// blocks the callback until NATSCLIENT_CORE_N messages (default 20000) are queued at the
// server, then the time to drain them is measured ("0" skips).
func TestCoreReceiveLarge(t *testing.T) {
	n := 20000
	if v := os.Getenv("NATSCLIENT_CORE_N"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("NATSCLIENT_CORE_N: %v", err)
		}
		n = k
	}
	if n <= 1 {
		t.Skip("NATSCLIENT_CORE_N<=1")
	}
	srv := startServer(t, "")
	sub := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	pub := connectAndWait(t, fastOpts(nil, srv.url()), nil)

	release := make(chan struct{})
	done := make(chan struct{})
	var mu sync.Mutex
	count := 0
	bad := 0
	if _, err := sub.Subscribe("core.perf", func(m *Msg) {
		mu.Lock()
		count++
		k := count
		if string(m.Data) != strconv.Itoa(k) {
			bad++
		}
		mu.Unlock()
		if k == 1 {
			<-release
		}
		if k == n {
			close(done)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := pub.Publish("core.perf", []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("publish #%d: %v", i, err)
		}
		if i%5000 == 0 {
			if err := pub.Flush(30 * time.Second); err != nil {
				t.Fatalf("flush: %v", err)
			}
		}
	}
	if err := pub.Flush(30 * time.Second); err != nil {
		t.Fatalf("flush: %v", err)
	}
	start := time.Now()
	close(release)
	select {
	case <-done:
		took := time.Since(start)
		mu.Lock()
		b := bad
		mu.Unlock()
		if b != 0 {
			t.Fatalf("%d messages out of order", b)
		}
		t.Logf("core receive of %d messages: %v (%.2f µs/msg)", n-1, took.Round(time.Millisecond),
			float64(took.Nanoseconds())/1000/float64(n-1))
	case <-time.After(2 * time.Minute):
		mu.Lock()
		k := count
		mu.Unlock()
		t.Fatalf("received %d of %d messages after 2 minutes", k, n)
	}
}

// TestReaderLoopCost measures the reading goroutine's per-message cost without a server:
// NATSCLIENT_LOOP_N messages (default 0: skipped) are fed from memory to readBatch, for a
// plain subscription and for an ordered consumer's delivery inbox.
func TestReaderLoopCost(t *testing.T) {
	n := 0
	if v := os.Getenv("NATSCLIENT_LOOP_N"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	if n <= 0 {
		t.Skip("NATSCLIENT_LOOP_N not set")
	}
	run := func(what string, js bool, hdr string) {
		var b bytes.Buffer
		cache := os.Getenv("NATSCLIENT_LOOP_CACHE") // directory for the generated input
		file := ""
		if cache != "" {
			file = cache + "/feed-" + strconv.FormatBool(js) + "-" + strconv.Itoa(len(hdr)) + "-" + strconv.Itoa(n)
			if raw, err := os.ReadFile(file); err == nil {
				b = *bytes.NewBuffer(raw)
			}
		}
		cached := b.Len() > 0
		for i := 1; !cached && i <= n; i++ {
			data := strconv.Itoa(i)
			reply := ""
			if js {
				reply = " $JS.ACK.BIG.oc_0123456789abcdef01234567.1." + strconv.Itoa(i) + "." + strconv.Itoa(i) +
					".1732430000123456789." + strconv.Itoa(n-i)
			}
			if hdr != "" {
				b.WriteString("HMSG big.revoked 1" + reply + " " + strconv.Itoa(len(hdr)) + " " +
					strconv.Itoa(len(hdr)+len(data)) + "\r\n" + hdr + data + "\r\n")
			} else {
				b.WriteString("MSG big.revoked 1" + reply + " " + strconv.Itoa(len(data)) + "\r\n" + data + "\r\n")
			}
		}
		if file != "" {
			os.WriteFile(file, b.Bytes(), 0o644)
		}
		c := &Conn{subs: make(map[int64]subEntry)}
		a, z := net.Pipe()
		defer a.Close()
		defer z.Close()
		l := &serverConn{raw: a}
		count := 0
		var e subEntry
		if js {
			o := &OrderedConsumer{c: c, st: &delivery{jm: &JSMsg{}, active: true, sid: 1},
				wake: make(chan struct{}, 1)}
			o.opts.Minimal = true
			o.opts.OnMsg = func(m *JSMsg) { count++ }
			o.st.onMsg = o.opts.OnMsg
			o.st.onSynced = o.callSynced
			e.js = o.st
			e.cb = o.onDelivery
			e.onPanic = o.onPanic
			e.jsAck = true
			e.skipHdr = true
			e.noTime = true
		} else {
			e.cb = func(m *Msg) { count++ }
		}
		c.subs[1] = e
		br := bufio.NewReaderSize(&b, readBufSize)
		start := time.Now()
		c.readBatch(l, br)
		took := time.Since(start)
		if count != n {
			t.Fatalf("%s: %d of %d delivered", what, count, n)
		}
		t.Logf("%s: %.2f µs/msg", what, float64(took.Nanoseconds())/1000/float64(n))
	}
	kind := os.Getenv("NATSCLIENT_LOOP_KIND") // core, js or jshdr; all when empty
	if kind == "" || kind == "core" {
		run("core MSG", false, "")
	}
	if kind == "" || kind == "js" {
		run("JetStream MSG", true, "")
	}
	if kind == "" || kind == "jshdr" {
		run("JetStream HMSG", true, "NATS/1.0\r\nNats-Msg-Id: abc\r\nNats-TTL: 3600s\r\n\r\n")
	}
}
