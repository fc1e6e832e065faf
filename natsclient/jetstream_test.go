package natsclient

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// JetStream tests: they need a nats-server with JetStream (2.11+ for per-message TTL).

const jsTimeout = 5 * time.Second

// jsServerConf returns the config block enabling JetStream with storage in dir.
func jsServerConf(dir string) string {
	return "jetstream {\n  store_dir: \"" + dir + "\"\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}"
}

// startJSServer starts a JetStream-enabled server; its file store lives in a fresh
// temporary directory (removed after the server is stopped).
func startJSServer(t *testing.T) *testServer {
	t.Helper()
	store := t.TempDir()
	return startServer(t, jsServerConf(store))
}

// stopGracefully interrupts the server (it flushes its stores) and waits for it to exit.
func (s *testServer) stopGracefully() {
	s.mu.Lock()
	proc := s.proc
	s.proc = nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		proc.Wait()
		close(done)
	}()
	proc.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		proc.Kill()
		<-done
	}
}

func mustAddStream(t *testing.T, c *Conn, cfg StreamConfig) *StreamInfo {
	t.Helper()
	si, err := c.AddStream(cfg, jsTimeout)
	if err != nil {
		t.Fatalf("AddStream %s: %v", cfg.Name, err)
	}
	return si
}

func mustStreamInfo(t *testing.T, c *Conn, name string) *StreamInfo {
	t.Helper()
	si, err := c.StreamInfo(name, jsTimeout)
	if err != nil {
		t.Fatalf("StreamInfo %s: %v", name, err)
	}
	return si
}

// fillStream publishes n messages with plain (unacknowledged) publishes, which is much
// faster than PublishJS, then waits until the stream holds want messages.
func fillStream(t *testing.T, c *Conn, stream string, n int, subject func(i int) string, want uint64) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if err := c.Publish(subject(i), []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("publish #%d: %v", i, err)
		}
		if i%5000 == 0 {
			if err := c.Flush(30 * time.Second); err != nil {
				t.Fatalf("flush: %v", err)
			}
		}
	}
	if err := c.Flush(30 * time.Second); err != nil {
		t.Fatalf("flush: %v", err)
	}
	var last uint64
	ok := waitFor(60*time.Second, func() bool {
		si, err := c.StreamInfo(stream, jsTimeout)
		if err != nil {
			return false
		}
		last = si.State.Msgs
		return si.State.Msgs >= want
	})
	if !ok {
		t.Fatalf("stream %s holds %d messages, want %d", stream, last, want)
	}
}

// orderedRec records what an ordered consumer hands over and checks ordering as it goes.
type orderedRec struct {
	mu       sync.Mutex
	seqs     []uint64
	subjects []string
	data     []string
	bad      []string // ordering violations
	synced   []uint64
	stalls   []string
	onMsgFn  func(m *JSMsg) // optional extra action
	notify   chan struct{}
	lastSeen uint64
}

func newOrderedRec() *orderedRec {
	return &orderedRec{notify: make(chan struct{}, 1)}
}

func (r *orderedRec) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *orderedRec) onMsg(m *JSMsg) {
	r.mu.Lock()
	if m.StreamSeq <= r.lastSeen {
		r.bad = append(r.bad, "seq "+strconv.FormatUint(m.StreamSeq, 10)+" after "+strconv.FormatUint(r.lastSeen, 10))
	}
	r.lastSeen = m.StreamSeq
	r.seqs = append(r.seqs, m.StreamSeq)
	r.subjects = append(r.subjects, m.Subject)
	r.data = append(r.data, string(m.Data))
	fn := r.onMsgFn
	r.mu.Unlock()
	if fn != nil {
		fn(m)
	}
	r.poke()
}

func (r *orderedRec) onSynced(last uint64) {
	r.mu.Lock()
	r.synced = append(r.synced, last)
	r.mu.Unlock()
	r.poke()
}

func (r *orderedRec) onStalled(reason string) {
	r.mu.Lock()
	r.stalls = append(r.stalls, reason)
	r.mu.Unlock()
	r.poke()
}

func (r *orderedRec) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs)
}

func (r *orderedRec) syncedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.synced)
}

func (r *orderedRec) stallCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.stalls)
}

func (r *orderedRec) stallReasons() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.stalls, " | ")
}

func (r *orderedRec) lastSynced() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.synced) == 0 {
		return 0
	}
	return r.synced[len(r.synced)-1]
}

// waitCount waits until at least n messages were received.
func (r *orderedRec) waitCount(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	if !waitFor(timeout, func() bool { return r.count() >= n }) {
		t.Fatalf("received %d messages, want %d (stalls: %s)", r.count(), n, r.stallReasons())
	}
}

// checkExact verifies that exactly the stream sequences want were delivered, in order.
func (r *orderedRec) checkExact(t *testing.T, want []uint64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		t.Fatalf("ordering violations: %v", r.bad)
	}
	if len(r.seqs) != len(want) {
		t.Fatalf("received %d messages, want %d", len(r.seqs), len(want))
	}
	for i := 0; i < len(want); i++ {
		if r.seqs[i] != want[i] {
			t.Fatalf("message #%d has stream seq %d, want %d", i, r.seqs[i], want[i])
		}
	}
}

func seqRange(from, to uint64) []uint64 {
	out := make([]uint64, 0, int(to-from+1))
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func orderedOpts(r *orderedRec, stream, filter string, hb time.Duration, lc *logCapture) OrderedOptions {
	var o OrderedOptions
	o.Stream = stream
	o.FilterSubject = filter
	o.IdleHeartbeat = hb
	o.OnMsg = r.onMsg
	o.OnSynced = r.onSynced
	o.OnStalled = r.onStalled
	if lc != nil {
		o.Logf = lc.logf
	}
	return o
}

func mustSubscribeOrdered(t *testing.T, c *Conn, opts OrderedOptions) *OrderedConsumer {
	t.Helper()
	oc, err := c.SubscribeOrdered(opts)
	if err != nil {
		t.Fatalf("SubscribeOrdered: %v", err)
	}
	t.Cleanup(oc.Stop)
	return oc
}

func publishJSRetry(t *testing.T, c *Conn, subject string, data []byte, timeout time.Duration) *PubAck {
	t.Helper()
	var ack *PubAck
	var last error
	ok := waitFor(timeout, func() bool {
		a, err := c.PublishJS(subject, nil, data, 2*time.Second)
		if err != nil {
			last = err
			time.Sleep(50 * time.Millisecond)
			return false
		}
		ack = a
		return true
	})
	if !ok {
		t.Fatalf("PublishJS %s kept failing: %v", subject, last)
	}
	return ack
}

func TestParseAckReply(t *testing.T) {
	m, ok := parseAckReply("$JS.ACK.ORDERS.oc_1.1.42.7.1700000000000000000.3")
	if !ok || m.stream != "ORDERS" || m.consumer != "oc_1" || m.delivered != 1 || m.sseq != 42 ||
		m.dseq != 7 || m.ts != 1700000000000000000 || m.pending != 3 {
		t.Fatalf("v1: %+v %v", m, ok)
	}
	m, ok = parseAckReply("$JS.ACK.hub.ACCHASH.ORDERS.oc_1.2.43.8.1700000000000000001.0.rnd")
	if !ok || m.stream != "ORDERS" || m.consumer != "oc_1" || m.delivered != 2 || m.sseq != 43 ||
		m.dseq != 8 || m.pending != 0 {
		t.Fatalf("v2 (12 tokens): %+v %v", m, ok)
	}
	m, ok = parseAckReply("$JS.ACK._.ACCHASH.S.C.1.5.5.1.9")
	if !ok || m.stream != "S" || m.sseq != 5 || m.pending != 9 {
		t.Fatalf("v2 (11 tokens): %+v %v", m, ok)
	}
	bad := []string{
		"", "_INBOX.x", "$JS.ACK.S.C.1.2.3.4", "$JS.ACK.S.C.x.2.3.4.5",
		"$JS.ACK.S.C.1.2.3.4.5.6", "$JS.ACK.S.C.1.-2.3.4.5", "$JS.API.S.C.1.2.3.4.5",
	}
	for i := 0; i < len(bad); i++ {
		if _, ok := parseAckReply(bad[i]); ok {
			t.Fatalf("%q parsed", bad[i])
		}
	}
}

func TestFormatTTL(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{time.Second, "1s"}, {1500 * time.Millisecond, "2s"}, {0, "1s"}, {90 * time.Second, "90s"},
		{time.Hour, "3600s"}, {-1, "never"},
	}
	for i := 0; i < len(cases); i++ {
		if got := FormatTTL(cases[i].d); got != cases[i].want {
			t.Fatalf("FormatTTL(%v) = %q, want %q", cases[i].d, got, cases[i].want)
		}
	}
}

func TestJSStreamManagement(t *testing.T) {
	srv := startJSServer(t)
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)

	_, err := c.StreamInfo("NOPE", jsTimeout)
	if !errors.Is(err, ErrStreamNotFound) || err != ErrStreamNotFound {
		t.Fatalf("StreamInfo of a missing stream = %v", err)
	}
	if ae, ok := AsAPIError(err); !ok || ae.ErrCode != JSErrCodeStreamNotFound || ae.Code != 404 {
		t.Fatalf("AsAPIError(ErrStreamNotFound) = %v %v", ae, ok)
	}
	if _, err := c.StreamInfo("a.b", jsTimeout); !errors.Is(err, ErrBadStreamName) {
		t.Fatalf("StreamInfo(a.b) = %v", err)
	}

	var cfg StreamConfig
	cfg.Name = "ADM"
	cfg.Subjects = []string{"adm.>"}
	cfg.Storage = "file"
	cfg.MaxMsgsPerSubject = 5
	cfg.MaxAge = time.Hour
	cfg.AllowMsgTTL = true
	cfg.DenyDelete = true
	si := mustAddStream(t, c, cfg)
	if si.Config.Name != "ADM" || si.Config.MaxAge != time.Hour || si.Config.MaxMsgsPerSubject != 5 ||
		si.Config.Storage != "file" || si.Config.Retention != "limits" || si.Config.Replicas != 1 ||
		!si.Config.AllowMsgTTL || !si.Config.DenyDelete || si.Config.DenyPurge ||
		len(si.Config.Subjects) != 1 || si.Config.Subjects[0] != "adm.>" {
		t.Fatalf("created config: %+v", si.Config)
	}
	if si.State.Msgs != 0 || si.Created.IsZero() {
		t.Fatalf("created state: %+v created %v", si.State, si.Created)
	}
	// Same configuration again: accepted.
	if _, err := c.AddStream(cfg, jsTimeout); err != nil {
		t.Fatalf("AddStream with identical config: %v", err)
	}
	// Same name, different configuration: API error 10058.
	other := cfg
	other.Subjects = []string{"other.>"}
	_, err = c.AddStream(other, jsTimeout)
	ae, ok := err.(*APIError)
	if !ok || ae.ErrCode != 10058 || ae.Code != 400 || ae.Description == "" {
		t.Fatalf("AddStream with a conflicting config = %v", err)
	}
	if !strings.Contains(err.Error(), "10058") {
		t.Fatalf("error text %q", err.Error())
	}
	// Overlapping subjects in another stream.
	var ov StreamConfig
	ov.Name = "OVERLAP"
	ov.Subjects = []string{"adm.x"}
	if _, err := c.AddStream(ov, jsTimeout); err == nil {
		t.Fatal("overlapping stream accepted")
	} else if ae, ok := AsAPIError(err); !ok || ae.Code != 400 {
		t.Fatalf("overlapping stream: %v", err)
	}

	upd := mustStreamInfo(t, c, "ADM").Config
	upd.MaxMsgsPerSubject = 1
	upd.MaxAge = 2 * time.Hour
	upd.Description = "revocations"
	si, err = c.UpdateStream(upd, jsTimeout)
	if err != nil {
		t.Fatalf("UpdateStream: %v", err)
	}
	if si.Config.MaxMsgsPerSubject != 1 || si.Config.MaxAge != 2*time.Hour || si.Config.Description != "revocations" {
		t.Fatalf("updated config: %+v", si.Config)
	}
	if got := mustStreamInfo(t, c, "ADM").Config; got.MaxMsgsPerSubject != 1 || got.MaxAge != 2*time.Hour {
		t.Fatalf("StreamInfo after update: %+v", got)
	}
	bad := upd
	bad.Storage = "memory"
	if _, err := c.UpdateStream(bad, jsTimeout); err == nil {
		t.Fatal("storage change accepted")
	} else if _, ok := AsAPIError(err); !ok {
		t.Fatalf("storage change: %v", err)
	}
	var missing StreamConfig
	missing.Name = "MISSING"
	missing.Subjects = []string{"missing.>"}
	if _, err := c.UpdateStream(missing, jsTimeout); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("UpdateStream of a missing stream = %v", err)
	}

	if err := c.DeleteStream("ADM", jsTimeout); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	if _, err := c.StreamInfo("ADM", jsTimeout); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("StreamInfo after delete = %v", err)
	}

	// A server without JetStream: nobody answers the API.
	plain := startServer(t, "")
	pc := connectAndWait(t, fastOpts(nil, plain.url()), nil)
	if _, err := pc.StreamInfo("ADM", jsTimeout); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("StreamInfo without JetStream = %v", err)
	}
}

func TestPublishJS(t *testing.T) {
	srv := startJSServer(t)
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	var cfg StreamConfig
	cfg.Name = "PUB"
	cfg.Subjects = []string{"pub.>"}
	cfg.MaxMsgsPerSubject = 1
	mustAddStream(t, c, cfg)

	subjects := []string{"pub.a", "pub.b", "pub.a", "pub.c", "pub.a"}
	var prev uint64
	for i := 0; i < len(subjects); i++ {
		ack, err := c.PublishJS(subjects[i], nil, []byte("v"+strconv.Itoa(i)), jsTimeout)
		if err != nil {
			t.Fatalf("PublishJS %s: %v", subjects[i], err)
		}
		if ack.Stream != "PUB" || ack.Seq <= prev || ack.Duplicate {
			t.Fatalf("ack %+v after seq %d", ack, prev)
		}
		prev = ack.Seq
	}
	si := mustStreamInfo(t, c, "PUB")
	if si.State.Msgs != 3 || si.State.LastSeq != 5 {
		t.Fatalf("MaxMsgsPerSubject 1: state %+v, want 3 messages, last seq 5", si.State)
	}

	// Deduplication by message id.
	h := Header{}
	h.Set(HeaderMsgID, "id-1")
	a1, err := c.PublishJS("pub.d", h, []byte("x"), jsTimeout)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := c.PublishJS("pub.d", h, []byte("x"), jsTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || !a2.Duplicate || a2.Seq != a1.Seq {
		t.Fatalf("dedup: first %+v, second %+v", a1, a2)
	}

	// A failed expectation is an API error.
	h2 := Header{}
	h2.Set(HeaderExpectedLastSeq, "1")
	_, err = c.PublishJS("pub.e", h2, []byte("x"), jsTimeout)
	if ae, ok := AsAPIError(err); !ok || ae.ErrCode != 10071 {
		t.Fatalf("wrong expected last sequence: %v", err)
	}

	// No stream on the subject.
	if _, err := c.PublishJS("nostream.x", nil, []byte("x"), jsTimeout); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("PublishJS without a stream = %v", err)
	}
	// A subscriber that never answers: timeout.
	if _, err := c.Subscribe("silent.x", func(m *Msg) {}); err != nil {
		t.Fatal(err)
	}
	c.Flush(jsTimeout)
	if _, err := c.PublishJS("silent.x", nil, []byte("x"), 200*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("PublishJS to a silent subscriber = %v", err)
	}
	// A reply that is not a JetStream acknowledgement.
	c.Subscribe("echo.x", func(m *Msg) { c.Publish(m.Reply, []byte("hello")) })
	c.Flush(jsTimeout)
	if _, err := c.PublishJS("echo.x", nil, nil, jsTimeout); !errors.Is(err, ErrProtocol) {
		t.Fatalf("PublishJS answered by a plain responder = %v", err)
	}
	c.Subscribe("echo.json", func(m *Msg) { c.Publish(m.Reply, []byte(`{"x":1}`)) })
	c.Flush(jsTimeout)
	if _, err := c.PublishJS("echo.json", nil, nil, jsTimeout); !errors.Is(err, ErrProtocol) {
		t.Fatalf("PublishJS answered with unrelated JSON = %v", err)
	}
}

func TestGetMsgAndPurge(t *testing.T) {
	srv := startJSServer(t)
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	var cfg StreamConfig
	cfg.Name = "GET"
	cfg.Subjects = []string{"get.>"}
	cfg.AllowMsgTTL = true
	mustAddStream(t, c, cfg)

	big := make([]byte, 300000) // larger than a read buffer: base64 in the API reply
	for i := range big {
		big[i] = byte(i * 7)
	}
	h := Header{}
	h.Set(HeaderMsgTTL, "1h")
	h.Set("X-Part", "7")
	acks := make([]uint64, 0, 4)
	for i, subj := range []string{"get.a.1", "get.a.2", "get.b.1", "get.a.1"} {
		data := []byte("m" + strconv.Itoa(i))
		if i == 1 {
			data = big
		}
		ack, err := c.PublishJS(subj, h, data, jsTimeout)
		if err != nil {
			t.Fatalf("PublishJS %s: %v", subj, err)
		}
		acks = append(acks, ack.Seq)
	}

	m, err := c.GetMsg("GET", GetMsgRequest{Seq: acks[1]}, jsTimeout)
	if err != nil {
		t.Fatalf("GetMsg by seq: %v", err)
	}
	if m.Subject != "get.a.2" || m.Seq != acks[1] || !bytes.Equal(m.Data, big) || m.Header.Get("X-Part") != "7" || m.Time.IsZero() {
		t.Fatalf("GetMsg by seq: subject %q seq %d, %d bytes, header %v", m.Subject, m.Seq, len(m.Data), m.Header)
	}
	m, err = c.GetMsg("GET", GetMsgRequest{LastBySubject: "get.a.1"}, jsTimeout)
	if err != nil {
		t.Fatalf("GetMsg last by subject: %v", err)
	}
	if m.Seq != acks[3] || string(m.Data) != "m3" {
		t.Fatalf("GetMsg last by subject: seq %d data %q, want seq %d m3", m.Seq, m.Data, acks[3])
	}
	if _, err := c.GetMsg("GET", GetMsgRequest{LastBySubject: "get.none"}, jsTimeout); err != ErrMsgNotFound {
		t.Fatalf("GetMsg of a missing subject = %v", err)
	}
	if _, err := c.GetMsg("GET", GetMsgRequest{Seq: 999}, jsTimeout); err != ErrMsgNotFound {
		t.Fatalf("GetMsg of a missing sequence = %v", err)
	}
	if _, err := c.GetMsg("NOPE", GetMsgRequest{Seq: 1}, jsTimeout); err != ErrStreamNotFound {
		t.Fatalf("GetMsg on a missing stream = %v", err)
	}

	// Below a sequence only: the first get.a.1 goes, get.a.2 and the newer get.a.1 stay.
	n, err := c.PurgeStream("GET", PurgeRequest{Filter: "get.a.>", Seq: acks[1]}, jsTimeout)
	if err != nil || n != 1 {
		t.Fatalf("PurgeStream get.a.> below seq %d = %d, %v; want 1", acks[1], n, err)
	}
	if _, err := c.GetMsg("GET", GetMsgRequest{Seq: acks[0]}, jsTimeout); err != ErrMsgNotFound {
		t.Fatalf("message below the purge sequence still readable: %v", err)
	}
	n, err = c.PurgeStream("GET", PurgeRequest{Filter: "get.a.>"}, jsTimeout)
	if err != nil || n != 2 {
		t.Fatalf("PurgeStream get.a.> = %d, %v; want 2 (get.a.2 and the newer get.a.1)", n, err)
	}
	if _, err := c.GetMsg("GET", GetMsgRequest{Seq: acks[1]}, jsTimeout); err != ErrMsgNotFound {
		t.Fatalf("purged message still readable: %v", err)
	}
	if m, err := c.GetMsg("GET", GetMsgRequest{LastBySubject: "get.b.1"}, jsTimeout); err != nil || string(m.Data) != "m2" {
		t.Fatalf("message outside the filter after purge: %v", err)
	}
	if _, err := c.PurgeStream("GET", PurgeRequest{Filter: "bad subject"}, jsTimeout); err == nil {
		t.Fatal("PurgeStream accepted an invalid filter")
	}
}

func TestMessageTTL(t *testing.T) {
	srv := startJSServer(t)
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	var cfg StreamConfig
	cfg.Name = "TTL"
	cfg.Subjects = []string{"ttl.>"}
	cfg.AllowMsgTTL = true
	mustAddStream(t, c, cfg)

	h := Header{}
	h.Set(HeaderMsgTTL, FormatTTL(time.Second))
	if _, err := c.PublishJS("ttl.short", h, []byte("short"), jsTimeout); err != nil {
		t.Fatalf("PublishJS with TTL: %v", err)
	}
	h2 := Header{}
	h2.Set(HeaderMsgTTL, "1") // plain seconds are accepted too
	if _, err := c.PublishJS("ttl.short2", h2, []byte("short2"), jsTimeout); err != nil {
		t.Fatalf("PublishJS with numeric TTL: %v", err)
	}
	keep, err := c.PublishJS("ttl.keep", nil, []byte("keep"), jsTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if n := mustStreamInfo(t, c, "TTL").State.Msgs; n != 3 {
		t.Fatalf("stream holds %d messages right after publishing, want 3", n)
	}
	start := time.Now()
	var msgs uint64
	if !waitFor(20*time.Second, func() bool {
		msgs = mustStreamInfo(t, c, "TTL").State.Msgs
		return msgs == 1
	}) {
		t.Fatalf("messages with a 1s TTL still there after 20s: %d messages", msgs)
	}
	t.Logf("TTL 1s messages removed after %v", time.Since(start).Round(time.Millisecond))

	rec := newOrderedRec()
	mustSubscribeOrdered(t, c, orderedOpts(rec, "TTL", "", time.Second, nil))
	if !waitFor(10*time.Second, func() bool { return rec.syncedCount() > 0 }) {
		t.Fatal("ordered consumer not synced")
	}
	time.Sleep(100 * time.Millisecond)
	rec.checkExact(t, []uint64{keep.Seq})
	rec.mu.Lock()
	subj := rec.subjects[0]
	rec.mu.Unlock()
	if subj != "ttl.keep" {
		t.Fatalf("delivered %s", subj)
	}

	// A stream without AllowMsgTTL refuses a TTL.
	var plain StreamConfig
	plain.Name = "NOTTL"
	plain.Subjects = []string{"nottl.>"}
	mustAddStream(t, c, plain)
	if _, err := c.PublishJS("nottl.x", h, []byte("x"), jsTimeout); err == nil {
		t.Fatal("TTL accepted by a stream without allow_msg_ttl")
	} else if _, ok := AsAPIError(err); !ok {
		t.Fatalf("TTL on a stream without allow_msg_ttl: %v", err)
	}
}

func TestOrderedReplayThenLive(t *testing.T) {
	srv := startJSServer(t)
	lc := &logCapture{}
	c := connectAndWait(t, fastOpts(lc, srv.url()), lc)
	var cfg StreamConfig
	cfg.Name = "ORD"
	cfg.Subjects = []string{"ord.>"}
	mustAddStream(t, c, cfg)

	// Every 10th message goes to a subject outside the filter.
	subject := func(i int) string {
		if i%10 == 0 {
			return "ord.noise"
		}
		return "ord.rev." + strconv.Itoa(i)
	}
	const n = 2000
	fillStream(t, c, "ORD", n, subject, n)
	var want []uint64
	for i := 1; i <= n; i++ {
		if i%10 != 0 {
			want = append(want, uint64(i))
		}
	}

	rec := newOrderedRec()
	// Inside OnMsg, Pending() is the message's own num_pending.
	var pendMu sync.Mutex
	var pendOC *OrderedConsumer
	pendChecked, pendBad := 0, ""
	rec.onMsgFn = func(m *JSMsg) {
		pendMu.Lock()
		defer pendMu.Unlock()
		if pendOC == nil {
			return
		}
		if got := pendOC.Pending(); got != m.Pending {
			pendBad = "Pending() " + strconv.FormatUint(got, 10) + " in OnMsg of a message with Pending " + strconv.FormatUint(m.Pending, 10)
		}
		pendChecked++
	}
	start := time.Now()
	oc := mustSubscribeOrdered(t, c, orderedOpts(rec, "ORD", "ord.rev.>", 0, lc))
	pendMu.Lock()
	pendOC = oc
	pendMu.Unlock()
	if !waitFor(30*time.Second, func() bool { return rec.syncedCount() > 0 }) {
		t.Fatalf("not synced after 30s: %d messages", rec.count())
	}
	t.Logf("replayed %d messages in %v", rec.count(), time.Since(start).Round(time.Millisecond))
	if got := rec.lastSynced(); got != want[len(want)-1] {
		t.Fatalf("OnSynced(%d), want %d", got, want[len(want)-1])
	}
	rec.checkExact(t, want)
	if !oc.Synced() || oc.LastStreamSeq() != want[len(want)-1] {
		t.Fatalf("Synced %v, LastStreamSeq %d", oc.Synced(), oc.LastStreamSeq())
	}
	if oc.Pending() != 0 {
		t.Fatalf("Pending %d after the replay, want 0", oc.Pending())
	}
	rec.mu.Lock()
	for i := 0; i < len(rec.seqs); i++ {
		if rec.data[i] != strconv.FormatUint(rec.seqs[i], 10) || rec.subjects[i] != subject(int(rec.seqs[i])) {
			rec.mu.Unlock()
			t.Fatalf("message #%d: seq %d subject %s data %q", i, rec.seqs[i], rec.subjects[i], rec.data[i])
		}
	}
	rec.mu.Unlock()

	// Live: acknowledged publishes from another connection, while the consumer follows.
	pub := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	for i := n + 1; i <= n+500; i++ {
		ack, err := pub.PublishJS(subject(i), nil, []byte(strconv.Itoa(i)), jsTimeout)
		if err != nil {
			t.Fatalf("live publish %d: %v", i, err)
		}
		if ack.Seq != uint64(i) {
			t.Fatalf("live publish %d got seq %d", i, ack.Seq)
		}
		if i%10 != 0 {
			want = append(want, uint64(i))
		}
	}
	rec.waitCount(t, len(want), 30*time.Second)
	time.Sleep(100 * time.Millisecond)
	rec.checkExact(t, want)
	if rec.syncedCount() != 1 || rec.stallCount() != 0 {
		t.Fatalf("OnSynced called %d times, OnStalled %d times (%s)", rec.syncedCount(), rec.stallCount(), rec.stallReasons())
	}
	if oc.LastStreamSeq() != want[len(want)-1] {
		t.Fatalf("LastStreamSeq %d", oc.LastStreamSeq())
	}
	pendMu.Lock()
	if pendChecked == 0 || pendBad != "" {
		t.Errorf("Pending checked in %d OnMsg calls: %s", pendChecked, pendBad)
	}
	pendMu.Unlock()

	// A second consumer starting in the middle.
	rec2 := newOrderedRec()
	opts2 := orderedOpts(rec2, "ORD", "", time.Second, lc)
	opts2.StartSeq = 2401
	mustSubscribeOrdered(t, c, opts2)
	if !waitFor(10*time.Second, func() bool { return rec2.syncedCount() > 0 }) {
		t.Fatal("second consumer not synced")
	}
	rec2.checkExact(t, seqRange(2401, 2500))
	if rec2.lastSynced() != 2500 {
		t.Fatalf("second consumer OnSynced(%d)", rec2.lastSynced())
	}
}

func TestOrderedEmptyStreamAndErrors(t *testing.T) {
	srv := startJSServer(t)
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	var cfg StreamConfig
	cfg.Name = "EMPTY"
	cfg.Subjects = []string{"empty.>"}
	cfg.Storage = "memory"
	mustAddStream(t, c, cfg)

	rec := newOrderedRec()
	oc := mustSubscribeOrdered(t, c, orderedOpts(rec, "EMPTY", "", time.Second, nil))
	if !waitFor(5*time.Second, func() bool { return rec.syncedCount() == 1 }) {
		t.Fatal("empty stream: OnSynced not called")
	}
	if rec.lastSynced() != 0 || !oc.Synced() {
		t.Fatalf("empty stream: OnSynced(%d), Synced %v", rec.lastSynced(), oc.Synced())
	}
	if _, err := c.PublishJS("empty.a", nil, []byte("1"), jsTimeout); err != nil {
		t.Fatal(err)
	}
	rec.waitCount(t, 1, 5*time.Second)
	rec.checkExact(t, []uint64{1})
	if rec.syncedCount() != 1 {
		t.Fatalf("OnSynced called %d times", rec.syncedCount())
	}

	// Definitive errors are returned by SubscribeOrdered.
	var o OrderedOptions
	o.Stream = "NOPE"
	o.OnMsg = rec.onMsg
	if _, err := c.SubscribeOrdered(o); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("SubscribeOrdered on a missing stream = %v", err)
	}
	o.Stream = "EMPTY"
	o.FilterSubject = "bad..filter"
	if _, err := c.SubscribeOrdered(o); !errors.Is(err, ErrBadSubject) {
		t.Fatalf("bad filter = %v", err)
	}
	o.FilterSubject = ""
	o.OnMsg = nil
	if _, err := c.SubscribeOrdered(o); !errors.Is(err, ErrNilCallback) {
		t.Fatalf("nil OnMsg = %v", err)
	}
	o.OnMsg = rec.onMsg
	o.Stream = "A.B"
	if _, err := c.SubscribeOrdered(o); !errors.Is(err, ErrBadStreamName) {
		t.Fatalf("bad stream name = %v", err)
	}
	if n := mustStreamInfo(t, c, "EMPTY").State.Consumers; n != 1 {
		t.Fatalf("%d consumers on the stream, want 1 (failed attempts must not leave any)", n)
	}
}

func TestOrderedServerRestart(t *testing.T) {
	store := t.TempDir()
	srv := startServer(t, jsServerConf(store))
	lc := &logCapture{}
	c := connectAndWait(t, fastOpts(lc, srv.url()), lc)
	var cfg StreamConfig
	cfg.Name = "RST"
	cfg.Subjects = []string{"rst.>"}
	cfg.Storage = "file"
	mustAddStream(t, c, cfg)
	total := 0
	publish := func(k int) {
		for i := 0; i < k; i++ {
			total++
			ack, err := c.PublishJS("rst."+strconv.Itoa(total%7), nil, []byte(strconv.Itoa(total)), jsTimeout)
			if err != nil {
				t.Fatalf("publish %d: %v", total, err)
			}
			if ack.Seq != uint64(total) {
				t.Fatalf("publish %d: seq %d", total, ack.Seq)
			}
		}
	}
	publish(300)

	rec := newOrderedRec()
	oc := mustSubscribeOrdered(t, c, orderedOpts(rec, "RST", "rst.>", 2*time.Second, lc))
	rec.waitCount(t, 300, 20*time.Second)
	publish(100)
	rec.waitCount(t, 400, 20*time.Second)
	if rec.syncedCount() != 1 {
		t.Fatalf("OnSynced called %d times before the restart", rec.syncedCount())
	}

	srv.stopGracefully()
	if !waitFor(10*time.Second, func() bool { return !c.Connected() }) {
		t.Fatal("still connected after server stop")
	}
	if _, err := c.PublishJS("rst.x", nil, []byte("lost"), time.Second); err == nil {
		t.Fatal("PublishJS succeeded while the server is down")
	}
	if !waitFor(5*time.Second, func() bool { return rec.stallCount() > 0 }) {
		t.Fatal("OnStalled not called after the disconnect")
	}
	if oc.Synced() {
		t.Fatal("Synced() true while disconnected")
	}
	time.Sleep(300 * time.Millisecond)
	srv.start()
	if !c.WaitConnected(15 * time.Second) {
		t.Fatal("not reconnected")
	}
	// The first publish may race JetStream's start-up.
	total++
	if ack := publishJSRetry(t, c, "rst.after", []byte(strconv.Itoa(total)), 20*time.Second); ack.Seq != uint64(total) {
		t.Fatalf("first publish after restart: seq %d, want %d", ack.Seq, total)
	}
	publish(299)
	rec.waitCount(t, 700, 30*time.Second)
	if !waitFor(10*time.Second, func() bool { return oc.Synced() }) {
		t.Fatal("not synced again after the restart")
	}
	time.Sleep(200 * time.Millisecond)
	rec.checkExact(t, seqRange(1, 700))
	if rec.syncedCount() < 2 {
		t.Fatalf("OnSynced called %d times, want at least 2", rec.syncedCount())
	}
	t.Logf("stall reasons: %s", rec.stallReasons())
	if !strings.Contains(rec.stallReasons(), "disconnected") {
		t.Fatalf("stall reasons %q do not mention the disconnect", rec.stallReasons())
	}
}

// rawPublish sends one message with a hand-written header block (which may carry a status
// line, as the server's own control messages do) through a separate raw connection.
func rawPublish(t *testing.T, addr, subject, reply, hdr string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatalf("raw INFO: %v", err)
	}
	cmd := "CONNECT {\"verbose\":false,\"headers\":true,\"protocol\":1}\r\nHPUB " + subject + " "
	if reply != "" {
		cmd += reply + " "
	}
	cmd += strconv.Itoa(len(hdr)) + " " + strconv.Itoa(len(hdr)) + "\r\n" + hdr + "\r\nPING\r\n"
	if _, err := nc.Write([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("raw publish: %v", err)
		}
		if strings.HasPrefix(line, "PONG") {
			return
		}
		if strings.HasPrefix(line, "-ERR") {
			t.Fatalf("raw publish: %s", line)
		}
	}
}

func TestOrderedRecreatesAfterProblems(t *testing.T) {
	srv := startJSServer(t)
	lc := &logCapture{}
	c := connectAndWait(t, fastOpts(lc, srv.url()), lc)
	var cfg StreamConfig
	cfg.Name = "GAP"
	cfg.Subjects = []string{"gap.>"}
	mustAddStream(t, c, cfg)
	total := 0
	publish := func(k int) {
		for i := 0; i < k; i++ {
			total++
			if _, err := c.PublishJS("gap.x", nil, []byte(strconv.Itoa(total)), jsTimeout); err != nil {
				t.Fatalf("publish %d: %v", total, err)
			}
		}
	}
	publish(50)
	rec := newOrderedRec()
	oc := mustSubscribeOrdered(t, c, orderedOpts(rec, "GAP", "", 500*time.Millisecond, lc))
	rec.waitCount(t, 50, 10*time.Second)

	// waitRecreated waits for the k-th stall and for a new, synced consumer.
	waitRecreated := func(k int, oldName, what string) {
		t.Helper()
		if !waitFor(10*time.Second, func() bool { return rec.stallCount() >= k }) {
			t.Fatalf("%s: OnStalled not called", what)
		}
		if !waitFor(10*time.Second, func() bool {
			return oc.Synced() && oc.consumerName() != "" && oc.consumerName() != oldName
		}) {
			t.Fatalf("%s: consumer not recreated", what)
		}
	}

	// 1. The consumer is deleted on the server: missed heartbeats.
	name := oc.consumerName()
	if _, err := c.Request("$JS.API.CONSUMER.DELETE.GAP."+name, nil, nil, jsTimeout); err != nil {
		t.Fatalf("deleting the consumer: %v", err)
	}
	publish(10)
	waitRecreated(1, name, "consumer deleted")
	rec.waitCount(t, 60, 10*time.Second)

	// 2. A delivery whose consumer sequence skips one: gap.
	// The server refuses "$JS.ACK." reply subjects from clients, so the delivery is handed
	// to the consumer's callback directly, as the reading goroutine would.
	oc.st.mu.Lock()
	sid := oc.st.sid
	exp := oc.st.expDSeq
	oc.st.mu.Unlock()
	name = oc.consumerName()
	fake := &Msg{Subject: "gap.x", Data: []byte("fake"), sid: sid,
		Reply: "$JS.ACK.GAP." + name + ".1.99999." + strconv.FormatUint(exp+2, 10) + ".1700000000000000000.0"}
	oc.onDelivery(fake)
	waitRecreated(2, name, "sequence gap")
	publish(10)
	rec.waitCount(t, 70, 10*time.Second)

	// 3. A heartbeat announcing messages that never arrived.
	oc.st.mu.Lock()
	inbox := oc.sub.Subject
	exp = oc.st.expDSeq
	oc.st.mu.Unlock()
	name = oc.consumerName()
	rawPublish(t, srv.addr(), inbox, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: "+
		strconv.FormatUint(exp+5, 10)+"\r\nNats-Last-Stream: 99999\r\n\r\n")
	waitRecreated(3, name, "heartbeat gap")
	publish(10)
	rec.waitCount(t, 80, 10*time.Second)

	// 4. A "409 Consumer Deleted" notice.
	oc.st.mu.Lock()
	inbox = oc.sub.Subject
	oc.st.mu.Unlock()
	name = oc.consumerName()
	rawPublish(t, srv.addr(), inbox, "", "NATS/1.0 409 Consumer Deleted\r\n\r\n")
	waitRecreated(4, name, "409")
	publish(10)
	rec.waitCount(t, 90, 10*time.Second)

	time.Sleep(200 * time.Millisecond)
	rec.checkExact(t, seqRange(1, 90))
	reasons := rec.stallReasons()
	t.Logf("stall reasons: %s", reasons)
	for _, w := range []string{"no message or heartbeat", "consumer sequence gap", "heartbeat reports", "409"} {
		if !strings.Contains(reasons, w) {
			t.Fatalf("stall reasons %q lack %q", reasons, w)
		}
	}
	if rec.stallCount() < 4 {
		t.Fatalf("%d stalls, want 4: %s", rec.stallCount(), reasons)
	}
	// Abandoned consumers are deleted: only the current one remains.
	if !waitFor(5*time.Second, func() bool { return mustStreamInfo(t, c, "GAP").State.Consumers == 1 }) {
		t.Fatalf("%d consumers on the stream, want 1", mustStreamInfo(t, c, "GAP").State.Consumers)
	}
}

func TestOrderedStartWhileServerDown(t *testing.T) {
	store := t.TempDir()
	port := freePort(t)
	srv := startServerOnPort(t, port, jsServerConf(store))
	c0 := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	var cfg StreamConfig
	cfg.Name = "LATE"
	cfg.Subjects = []string{"late.>"}
	mustAddStream(t, c0, cfg)
	for i := 1; i <= 20; i++ {
		if _, err := c0.PublishJS("late.x", nil, []byte(strconv.Itoa(i)), jsTimeout); err != nil {
			t.Fatal(err)
		}
	}
	c0.Close()
	srv.stopGracefully()

	lc := &logCapture{}
	c := mustConnect(t, fastOpts(lc, srv.url()), lc)
	rec := newOrderedRec()
	oc := mustSubscribeOrdered(t, c, orderedOpts(rec, "LATE", "", 2*time.Second, lc))
	time.Sleep(300 * time.Millisecond)
	if oc.Synced() || rec.count() != 0 {
		t.Fatal("consumer active without a server")
	}
	srv.start()
	if !waitFor(20*time.Second, func() bool { return rec.syncedCount() > 0 }) {
		t.Fatalf("not synced after the server came up (%d messages)", rec.count())
	}
	rec.checkExact(t, seqRange(1, 20))
	if rec.stallCount() != 0 {
		t.Fatalf("OnStalled called: %s", rec.stallReasons())
	}
}

func TestOrderedStop(t *testing.T) {
	srv := startJSServer(t)
	setup := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	var cfg StreamConfig
	cfg.Name = "STOP"
	cfg.Subjects = []string{"stop.>"}
	mustAddStream(t, setup, cfg)
	fillStream(t, setup, "STOP", 200, func(i int) string { return "stop.x" }, 200)
	time.Sleep(50 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	c, err := Connect(fastOpts(nil, srv.url()))
	if err != nil {
		t.Fatal(err)
	}
	if !c.WaitConnected(10 * time.Second) {
		t.Fatal("not connected")
	}
	rec := newOrderedRec()
	oc, err := c.SubscribeOrdered(orderedOpts(rec, "STOP", "", 200*time.Millisecond, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return oc.Synced() }) {
		t.Fatal("not synced")
	}
	time.Sleep(500 * time.Millisecond) // a few heartbeats
	oc.Stop()
	oc.Stop()
	if oc.Synced() {
		t.Fatal("Synced() after Stop")
	}
	if n := mustStreamInfo(t, setup, "STOP").State.Consumers; n != 0 {
		t.Fatalf("%d consumers left after Stop", n)
	}
	n := rec.count()
	setup.PublishJS("stop.x", nil, []byte("after"), jsTimeout)
	time.Sleep(200 * time.Millisecond)
	if rec.count() != n {
		t.Fatal("message delivered after Stop")
	}

	// Stop from inside OnMsg. The consumer starts at the end of the stream, so that OnMsg
	// only runs for messages published after SubscribeOrdered returned.
	rec2 := newOrderedRec()
	var oc2 *OrderedConsumer
	var ocMu sync.Mutex
	stopped := make(chan struct{})
	rec2.onMsgFn = func(m *JSMsg) {
		if m.StreamSeq == 205 {
			ocMu.Lock()
			o := oc2
			ocMu.Unlock()
			o.Stop()
			close(stopped)
		}
	}
	opts2 := orderedOpts(rec2, "STOP", "", 200*time.Millisecond, nil)
	opts2.StartSeq = 202
	got, err := c.SubscribeOrdered(opts2)
	if err != nil {
		t.Fatal(err)
	}
	ocMu.Lock()
	oc2 = got
	ocMu.Unlock()
	for i := 202; i <= 210; i++ {
		if _, err := setup.PublishJS("stop.x", nil, []byte(strconv.Itoa(i)), jsTimeout); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop from OnMsg deadlocked")
	}
	time.Sleep(100 * time.Millisecond)
	rec2.checkExact(t, seqRange(202, 205))

	// Stop from OnStalled, and Stop after Close.
	rec3 := newOrderedRec()
	stalledStop := make(chan struct{})
	var oc3 *OrderedConsumer
	opts3 := orderedOpts(rec3, "STOP", "", 500*time.Millisecond, nil)
	opts3.OnStalled = func(reason string) {
		ocMu.Lock()
		o := oc3
		ocMu.Unlock()
		o.Stop()
		close(stalledStop)
	}
	got3, err := c.SubscribeOrdered(opts3)
	if err != nil {
		t.Fatal(err)
	}
	ocMu.Lock()
	oc3 = got3
	ocMu.Unlock()
	oc4, err := c.SubscribeOrdered(orderedOpts(newOrderedRec(), "STOP", "", 200*time.Millisecond, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return oc3.Synced() }) {
		t.Fatal("oc3 not synced")
	}
	if name := oc3.consumerName(); name != "" { // "" if it already stalled by itself
		if _, err := setup.Request("$JS.API.CONSUMER.DELETE.STOP."+name, nil, nil, jsTimeout); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-stalledStop:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop from OnStalled deadlocked")
	}
	c.Close()
	done := make(chan struct{})
	go func() {
		oc4.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop after Close hangs")
	}
	if n, ok := numGoroutinesBackTo(baseline, 5*time.Second); !ok {
		t.Fatalf("goroutines after Stop and Close: %d, baseline %d", n, baseline)
	}
}

// TestOrderedReplayLarge measures how long replaying a large stream takes
// (NATSCLIENT_REPLAY_N messages, default 100000; "0" skips).
func TestOrderedReplayLarge(t *testing.T) {
	n := 100000
	if v := os.Getenv("NATSCLIENT_REPLAY_N"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("NATSCLIENT_REPLAY_N: %v", err)
		}
		n = k
	}
	if n <= 0 {
		t.Skip("NATSCLIENT_REPLAY_N=0")
	}
	srv := startJSServer(t)
	c := connectAndWait(t, fastOpts(nil, srv.url()), nil)
	var cfg StreamConfig
	cfg.Name = "BIG"
	cfg.Subjects = []string{"big.>"}
	mustAddStream(t, c, cfg)
	start := time.Now()
	fillStream(t, c, "BIG", n, func(i int) string { return "big.revoked" }, uint64(n))
	fill := time.Since(start)

	var mu sync.Mutex
	count := 0
	var last uint64
	bad := 0
	var opts OrderedOptions
	opts.Stream = "BIG"
	opts.FilterSubject = "big.>"
	opts.Minimal = os.Getenv("NATSCLIENT_REPLAY_MINIMAL") != "" // what the plugin uses
	opts.OnMsg = func(m *JSMsg) {
		mu.Lock()
		if m.StreamSeq != last+1 {
			bad++
		}
		last = m.StreamSeq
		count++
		mu.Unlock()
	}
	syncedCh := make(chan uint64, 4)
	opts.OnSynced = func(seq uint64) { syncedCh <- seq }
	start = time.Now()
	oc, err := c.SubscribeOrdered(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Stop()
	select {
	case seq := <-syncedCh:
		took := time.Since(start)
		mu.Lock()
		k, b := count, bad
		mu.Unlock()
		if seq != uint64(n) || k != n || b != 0 {
			t.Fatalf("synced at %d with %d messages, %d out of sequence", seq, k, b)
		}
		t.Logf("replay of %d messages: %v (%.1f µs/msg, %.0f msg/s); filling the stream took %v",
			n, took.Round(time.Millisecond), float64(took.Microseconds())/float64(n),
			float64(n)/took.Seconds(), fill.Round(time.Millisecond))
	case <-time.After(5 * time.Minute):
		mu.Lock()
		k := count
		mu.Unlock()
		t.Fatalf("replay of %d messages not done after 5 minutes (%d delivered)", n, k)
	}
}

// TestOrderedPanicAndHeaders: a panic in OnMsg is logged and does not stop delivery (also
// when it hits the message that completes the replay: OnSynced still runs); Minimal
// leaves Header nil, headers are delivered otherwise.
func TestOrderedPanicAndHeaders(t *testing.T) {
	srv := startJSServer(t)
	lc := &logCapture{}
	c := connectAndWait(t, fastOpts(lc, srv.url()), lc)
	var cfg StreamConfig
	cfg.Name = "PAN"
	cfg.Subjects = []string{"pan.>"}
	mustAddStream(t, c, cfg)
	for i := 1; i <= 50; i++ {
		hdr := Header{}
		hdr.Set(HeaderMsgID, "id-"+strconv.Itoa(i))
		if _, err := c.PublishJS("pan.x", hdr, []byte(strconv.Itoa(i)), jsTimeout); err != nil {
			t.Fatal(err)
		}
	}

	var hmu sync.Mutex
	var ids []string
	withHdr := 0
	rec := newOrderedRec()
	rec.onMsgFn = func(m *JSMsg) {
		hmu.Lock()
		if m.Header != nil {
			withHdr++
		}
		hmu.Unlock()
		if m.StreamSeq == 10 || m.StreamSeq == 50 || m.StreamSeq == 55 {
			panic("boom at " + strconv.FormatUint(m.StreamSeq, 10))
		}
	}
	opts := orderedOpts(rec, "PAN", "", 0, lc)
	opts.Minimal = true
	oc := mustSubscribeOrdered(t, c, opts)

	rec2 := newOrderedRec()
	rec2.onMsgFn = func(m *JSMsg) {
		hmu.Lock()
		ids = append(ids, m.Header.Get(HeaderMsgID))
		hmu.Unlock()
	}
	mustSubscribeOrdered(t, c, orderedOpts(rec2, "PAN", "", 0, lc))

	if !waitFor(10*time.Second, func() bool { return rec.syncedCount() > 0 && rec2.syncedCount() > 0 }) {
		t.Fatalf("not synced: %d and %d messages", rec.count(), rec2.count())
	}
	if rec.lastSynced() != 50 {
		t.Fatalf("OnSynced(%d)", rec.lastSynced())
	}
	for i := 51; i <= 60; i++ {
		if _, err := c.PublishJS("pan.x", nil, []byte(strconv.Itoa(i)), jsTimeout); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitCount(t, 60, 10*time.Second)
	rec2.waitCount(t, 60, 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	rec.checkExact(t, seqRange(1, 60))
	rec2.checkExact(t, seqRange(1, 60))
	if !waitFor(5*time.Second, func() bool { return lc.count("panic in ordered consumer OnMsg") == 3 }) {
		t.Fatalf("panics not logged:\n%s", lc.all())
	}
	if rec.stallCount() != 0 || !oc.Synced() || !c.Connected() {
		t.Fatalf("stalls %d (%s), synced %v, connected %v", rec.stallCount(), rec.stallReasons(), oc.Synced(), c.Connected())
	}
	// Nothing is left held after the panics.
	oc.st.mu.Lock()
	inCb := oc.st.inCb
	oc.st.mu.Unlock()
	if inCb != 0 {
		t.Fatalf("inCb = %d", inCb)
	}
	freed := make(chan struct{})
	go func() {
		oc.st.cbMu.Lock()
		oc.st.cbMu.Unlock()
		close(freed)
	}()
	select {
	case <-freed:
	case <-time.After(5 * time.Second):
		t.Fatal("callback lock still held after a panic in OnMsg")
	}
	hmu.Lock()
	defer hmu.Unlock()
	if withHdr != 0 {
		t.Fatalf("%d messages with headers despite Minimal", withHdr)
	}
	if len(ids) != 60 || ids[0] != "id-1" || ids[49] != "id-50" || ids[50] != "" {
		t.Fatalf("Nats-Msg-Id values: %d, %q", len(ids), ids)
	}
}

// TestOrderedMinimalRawHeaderAndTime: with Minimal, Header stays nil and Time zero, but
// RawHeader holds the header block as stored (empty for a message without headers), and
// StoredTime decodes the stored time.
func TestOrderedMinimalRawHeaderAndTime(t *testing.T) {
	srv := startJSServer(t)
	lc := &logCapture{}
	c := connectAndWait(t, fastOpts(lc, srv.url()), lc)
	var cfg StreamConfig
	cfg.Name = "RAW"
	cfg.Subjects = []string{"raw.>"}
	mustAddStream(t, c, cfg)
	before := time.Now().Add(-time.Minute)
	for i := 1; i <= 20; i++ {
		var hdr Header
		if i%2 == 1 {
			hdr = Header{}
			hdr.Set("Tokenrevoke-Sig", "v1;hs256;k;sig-"+strconv.Itoa(i))
		}
		if _, err := c.PublishJS("raw.x", hdr, []byte(strconv.Itoa(i)), jsTimeout); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var raws []string
	var times []time.Time
	rec := newOrderedRec()
	rec.onMsgFn = func(m *JSMsg) {
		mu.Lock()
		if m.Header != nil {
			raws = append(raws, "parsed header despite Minimal")
		} else {
			raws = append(raws, string(m.RawHeader))
		}
		if !m.Time.IsZero() {
			raws = append(raws, "Time set despite Minimal")
		}
		times = append(times, m.StoredTime())
		mu.Unlock()
	}
	opts := orderedOpts(rec, "RAW", "", 0, lc)
	opts.Minimal = true
	mustSubscribeOrdered(t, c, opts)
	rec.waitCount(t, 20, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	for i, raw := range raws {
		want := ""
		if i%2 == 0 {
			want = "NATS/1.0\r\nTokenrevoke-Sig: v1;hs256;k;sig-" + strconv.Itoa(i+1) + "\r\n\r\n"
		}
		if raw != want {
			t.Fatalf("message %d: RawHeader %q, want %q", i+1, raw, want)
		}
		if times[i].Before(before) || times[i].After(time.Now().Add(time.Minute)) {
			t.Fatalf("message %d: StoredTime %v", i+1, times[i])
		}
	}
}
