package natsclient

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Version is sent to the server in CONNECT.
const Version = "0.1.0"

const clientLang = "go-tokenrevoke"

// Errors returned by the client.
var (
	ErrNotConnected        = errors.New("nats: not connected")
	ErrTimeout             = errors.New("nats: timeout")
	ErrMaxPayload          = errors.New("nats: maximum payload exceeded")
	ErrClosed              = errors.New("nats: connection closed")
	ErrBadSubject          = errors.New("nats: invalid subject")
	ErrBadQueue            = errors.New("nats: invalid queue name")
	ErrNilCallback         = errors.New("nats: nil message callback")
	ErrConnectionLost      = errors.New("nats: connection lost")
	ErrStaleConnection     = errors.New("nats: stale connection (server did not answer PINGs)")
	ErrAuthorization       = errors.New("nats: authorization violation")
	ErrNoResponders        = errors.New("nats: no responders available for request")
	ErrHeadersNotSupported = errors.New("nats: server does not support headers")
	ErrProtocol            = errors.New("nats: protocol error")
)

// Defaults applied by Connect to zero-valued options.
const (
	DefaultPingInterval     = 20 * time.Second
	DefaultMaxPingsOut      = 2
	DefaultConnectTimeout   = 2 * time.Second
	DefaultReconnectWait    = 100 * time.Millisecond
	DefaultMaxReconnectWait = 2 * time.Second
	DefaultURL              = "nats://127.0.0.1:4222"
)

// TLSOptions configures TLS. All paths are PEM files.
type TLSOptions struct {
	CA                 string // CA bundle used to verify the server (system roots when empty)
	Cert               string // client certificate (for servers that verify clients)
	Key                string // client private key
	InsecureSkipVerify bool   // do not verify the server certificate (tests only)
}

// Options configures a connection. Only Servers is usually needed.
type Options struct {
	// Servers is the seed list: "nats://host:port", "tls://host:port" or "host:port"
	// (port 4222 when omitted). "user:pass@" or "token@" in a URL is used for that server
	// instead of Token/User/Password. Empty means DefaultURL.
	Servers []string
	// Name is sent in CONNECT and shows up in the server's connection list.
	Name string

	Token    string
	User     string
	Password string
	// NKeySeed is a user nkey seed ("SU..."): the server nonce is signed with it.
	NKeySeed string
	// CredsFile is a NATS creds file (user JWT + nkey seed). It is read again on every
	// connection attempt, so it can be rotated on disk.
	CredsFile string
	// TLS is used for tls:// URLs and servers that require TLS. When set, TLS is required
	// for every server.
	TLS *TLSOptions

	PingInterval     time.Duration // keep-alive PING period, default 20s
	MaxPingsOut      int           // unanswered PINGs before the connection is stale, default 2
	ConnectTimeout   time.Duration // dial + INFO + CONNECT/PING/PONG, default 2s; also bounds socket writes
	ReconnectWait    time.Duration // base backoff between rounds over the pool, default 100ms
	MaxReconnectWait time.Duration // backoff cap, default 2s

	// NoEcho asks the server not to deliver this connection's own publications to its
	// own subscriptions (CONNECT echo false).
	NoEcho bool
	// Logf receives log lines; level is "debug", "info", "warn" or "error". Optional.
	Logf func(level, msg string)
	// OnConnect is called after every successful (re)connect, once subscriptions have been
	// re-sent. url carries no credentials.
	OnConnect func(url string)
	// OnDisconnect is called after an established connection is lost (not after Close).
	OnDisconnect func(err error)
}

// Msg is a received message.
type Msg struct {
	Subject string
	Reply   string
	Header  Header // nil for MSG, non-nil (possibly empty) for HMSG
	Data    []byte
	// Status and Description come from an inline status in the header block, such as
	// "NATS/1.0 503" (no responders) or "NATS/1.0 100 Idle Heartbeat". 0 when none.
	Status      int
	Description string

	sid int64 // subscription the message was delivered to
	// JetStream delivery metadata, parsed by the reader for subscriptions with jsAck set.
	jsMeta    bool
	jsSSeq    uint64
	jsDSeq    uint64
	jsTS      int64
	jsPending uint64
	// rawHdr is the header block as received (nil without one), for JSMsg.RawHeader.
	rawHdr []byte
}

// Subscription is returned by Subscribe.
type Subscription struct {
	Subject string
	Queue   string
	sid     int64
	conn    *Conn
}

// subEntry is what the connection keeps per subscription. It deliberately holds no pointer
// back to Conn or Subscription.
type subEntry struct {
	subject string
	queue   string
	cb      func(m *Msg)
	// Internal subscriptions (ordered consumers) only:
	onPanic func(r interface{}) // called on the reading goroutine after cb panicked
	jsAck   bool                // parse JetStream metadata from "$JS.ACK." reply subjects
	skipHdr bool                // leave Header nil for header blocks without a status
	noTime  bool                // with jsAck: leave jsTS 0 (JSMsg.Time not needed)
	js      *delivery           // ordered consumer: in-sequence deliveries handed over inline
}

// server is one entry of the reconnect pool.
type server struct {
	addr     string // host:port
	host     string
	tls      bool // tls:// scheme
	display  string
	user     string // from the URL
	pass     string
	hasPass  bool
	implicit bool // learnt from INFO connect_urls
}

type warnState struct {
	last       time.Time
	suppressed int
}

const warnRepeatEvery = 30 * time.Second

// Conn is a client connection. All methods are safe for concurrent use.
type Conn struct {
	opts      Options
	tlsConfig *tls.Config
	nkey      nkeyUser
	hasNkey   bool
	ctx       context.Context
	cancel    context.CancelFunc
	closeCh   chan struct{}
	doneCh    chan struct{}

	mu           sync.Mutex
	closed       bool
	cur          *serverConn
	dialing      net.Conn
	pool         []server
	lastLost     string
	subs         map[int64]subEntry
	nextSID      int64
	maxPayload   int64
	lastErr      error
	connectedURL string
	connCh       chan struct{} // closed when connected; replaced after each disconnect
	cbDepth      int           // user callbacks currently running
	respPrefix   string
	respMap      map[string]*pendingRequest
	respNext     int64
	epoch        int64                  // bumped for every established connection
	listeners    map[int64]connListener // internal connect/disconnect hooks (ordered consumers)
	nextListener int64
	services     []*Service // running services (service.go), for their permission errors
	svcDenied    int64      // epoch in which a refused service subscription was last logged

	warnMu sync.Mutex
	warns  map[string]warnState
}

// Connect validates opts and returns a connection that connects in the background. It fails
// only for invalid options (bad URL, unreadable or malformed seed/creds/TLS files), never
// because no server is reachable: it keeps retrying until Close.
func Connect(opts Options) (*Conn, error) {
	o := opts
	if len(o.Servers) == 0 {
		o.Servers = []string{DefaultURL}
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.MaxPingsOut <= 0 {
		o.MaxPingsOut = DefaultMaxPingsOut
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = DefaultReconnectWait
	}
	if o.MaxReconnectWait <= 0 {
		o.MaxReconnectWait = DefaultMaxReconnectWait
	}
	if o.MaxReconnectWait < o.ReconnectWait {
		o.MaxReconnectWait = o.ReconnectWait
	}

	c := &Conn{
		opts:      o,
		closeCh:   make(chan struct{}),
		doneCh:    make(chan struct{}),
		connCh:    make(chan struct{}),
		subs:      make(map[int64]subEntry),
		respMap:   make(map[string]*pendingRequest),
		warns:     make(map[string]warnState),
		listeners: make(map[int64]connListener),
	}
	for i, s := range o.Servers {
		srv, err := parseServerURL(s, false)
		if err != nil {
			return nil, fmt.Errorf("nats: invalid server URL #%d: %v", i+1, err)
		}
		if !c.hasServer(srv.addr) {
			c.pool = append(c.pool, srv)
		}
	}
	if o.NKeySeed != "" && o.CredsFile != "" {
		return nil, errors.New("nats: NKeySeed and CredsFile are mutually exclusive")
	}
	if o.NKeySeed != "" {
		k, err := decodeUserSeed(o.NKeySeed)
		if err != nil {
			return nil, err
		}
		c.nkey = k
		c.hasNkey = true
	}
	if o.CredsFile != "" {
		if _, err := loadCreds(o.CredsFile); err != nil {
			return nil, err
		}
	}
	cfg, err := buildTLSConfig(o.TLS)
	if err != nil {
		return nil, err
	}
	c.tlsConfig = cfg

	ctx, cancel := context.WithCancel(context.Background())
	c.ctx = ctx
	c.cancel = cancel
	go c.run()
	return c, nil
}

// parseServerURL parses one pool entry. Errors never include the URL (it may hold secrets).
func parseServerURL(s string, implicit bool) (server, error) {
	var srv server
	s = strings.TrimSpace(s)
	if s == "" {
		return srv, errors.New("empty")
	}
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return srv, errors.New("cannot parse")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "nats" && scheme != "tls" {
		return srv, errors.New("scheme must be nats:// or tls://")
	}
	host := u.Hostname()
	if host == "" {
		return srv, errors.New("missing host")
	}
	port := u.Port()
	if port == "" {
		port = "4222"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return srv, errors.New("bad port")
	}
	if u.Path != "" && u.Path != "/" {
		return srv, errors.New("unexpected path")
	}
	srv.host = host
	srv.addr = net.JoinHostPort(host, port)
	srv.tls = scheme == "tls"
	srv.display = scheme + "://" + srv.addr
	srv.implicit = implicit
	if u.User != nil {
		srv.user = u.User.Username()
		p, ok := u.User.Password()
		srv.pass = p
		srv.hasPass = ok
	}
	return srv, nil
}

func buildTLSConfig(t *TLSOptions) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return cfg, nil
	}
	cfg.InsecureSkipVerify = t.InsecureSkipVerify
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("nats: cannot read TLS CA file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("nats: no certificate found in TLS CA file " + t.CA)
		}
		cfg.RootCAs = pool
	}
	if t.Cert != "" || t.Key != "" {
		if t.Cert == "" || t.Key == "" {
			return nil, errors.New("nats: TLS Cert and Key must be given together")
		}
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("nats: cannot load TLS client certificate: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// hasServer reports whether addr is already in the pool. Callers hold c.mu (or own c).
func (c *Conn) hasServer(addr string) bool {
	for i := 0; i < len(c.pool); i++ {
		if c.pool[i].addr == addr {
			return true
		}
	}
	return false
}

// WaitConnected waits until the connection is established, at most timeout. It returns
// false on timeout or after Close.
func (c *Conn) WaitConnected(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return false
		}
		if c.cur != nil {
			c.mu.Unlock()
			return true
		}
		ch := c.connCh
		c.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		t := time.NewTimer(left)
		select {
		case <-ch:
			t.Stop()
		case <-t.C:
			return false
		case <-c.closeCh:
			t.Stop()
			return false
		}
	}
}

// Connected reports whether a server connection is currently established.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	ok := c.cur != nil && !c.closed
	c.mu.Unlock()
	return ok
}

// ConnectedURL returns the URL (without credentials) of the current server, or "" when not
// connected.
func (c *Conn) ConnectedURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || c.closed {
		return ""
	}
	return c.connectedURL
}

// LastError returns the last connection or protocol error, or nil when the last connection
// attempt succeeded and no error has been seen since.
func (c *Conn) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// MaxPayload returns the max_payload announced by the current (or last) server, 0 before
// the first connection.
func (c *Conn) MaxPayload() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxPayload
}

// Servers returns the current pool (display URLs, no credentials), including servers
// learnt from INFO connect_urls.
func (c *Conn) Servers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.pool))
	for i := 0; i < len(c.pool); i++ {
		out = append(out, c.pool[i].display)
	}
	return out
}

func checkSubject(s string) error {
	if s == "" || strings.ContainsAny(s, " \t\r\n") || s[0] == '.' || s[len(s)-1] == '.' ||
		strings.Contains(s, "..") {
		return ErrBadSubject
	}
	return nil
}

// Publish sends data to subject. It returns ErrNotConnected while disconnected (nothing is
// buffered), ErrMaxPayload when data exceeds the server's max_payload.
func (c *Conn) Publish(subject string, data []byte) error {
	return c.PublishMsg(subject, "", nil, data)
}

// PublishMsg sends a message with an optional reply subject and headers (HPUB when hdr is
// not empty). The data is written to the socket before PublishMsg returns.
func (c *Conn) PublishMsg(subject, reply string, hdr Header, data []byte) error {
	if err := checkSubject(subject); err != nil {
		return err
	}
	if reply != "" {
		if err := checkSubject(reply); err != nil {
			return err
		}
	}
	var hb []byte
	if len(hdr) > 0 {
		b, err := encodeHeader(hdr)
		if err != nil {
			return err
		}
		hb = b
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	l := c.cur
	if l == nil {
		return ErrNotConnected
	}
	total := len(hb) + len(data)
	if c.maxPayload > 0 && int64(total) > c.maxPayload {
		return ErrMaxPayload
	}
	bw := l.bw
	if len(hb) > 0 {
		if !l.info.Headers {
			return ErrHeadersNotSupported
		}
		bw.WriteString("HPUB ")
		bw.WriteString(subject)
		bw.WriteByte(' ')
		if reply != "" {
			bw.WriteString(reply)
			bw.WriteByte(' ')
		}
		bw.WriteString(strconv.Itoa(len(hb)))
		bw.WriteByte(' ')
		bw.WriteString(strconv.Itoa(total))
		bw.WriteString("\r\n")
		bw.Write(hb)
	} else {
		bw.WriteString("PUB ")
		bw.WriteString(subject)
		bw.WriteByte(' ')
		if reply != "" {
			bw.WriteString(reply)
			bw.WriteByte(' ')
		}
		bw.WriteString(strconv.Itoa(len(data)))
		bw.WriteString("\r\n")
	}
	bw.Write(data)
	bw.WriteString("\r\n")
	return c.flushLocked(l)
}

// Flush sends a PING and waits for the matching PONG: when it returns nil, everything
// published before has been processed by the server.
func (c *Conn) Flush(timeout time.Duration) error {
	// Two senders at most (the PONG or the loss of the server connection, and the
	// timer): plain sends never block, and the caller waits with a plain receive. No
	// select: see pendingRequest.
	ch := make(chan error, 2)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	l := c.cur
	if l == nil {
		c.mu.Unlock()
		return ErrNotConnected
	}
	l.pongs = append(l.pongs, pongWaiter{ch: ch})
	l.bw.WriteString("PING\r\n")
	err := c.flushLocked(l)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	t := time.AfterFunc(timeout, func() { ch <- ErrTimeout })
	err = <-ch
	t.Stop()
	if err != nil && err != ErrTimeout && c.isClosed() {
		return ErrClosed
	}
	return err
}

// Subscribe registers cb for subject (wildcards allowed). It works while disconnected:
// every live subscription is sent again after each (re)connect.
func (c *Conn) Subscribe(subject string, cb func(m *Msg)) (*Subscription, error) {
	return c.QueueSubscribe(subject, "", cb)
}

// QueueSubscribe is Subscribe with a queue group ("" for none).
func (c *Conn) QueueSubscribe(subject, queue string, cb func(m *Msg)) (*Subscription, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	if strings.ContainsAny(queue, " \t\r\n") {
		return nil, ErrBadQueue
	}
	if cb == nil {
		return nil, ErrNilCallback
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	sid := c.subscribeLocked(subentryOf(subject, queue, cb))
	return &Subscription{Subject: subject, Queue: queue, sid: sid, conn: c}, nil
}

// subscribeEntry subscribes with an internal entry (e.subject is checked, e.queue must be
// empty).
func (c *Conn) subscribeEntry(e subEntry) (*Subscription, error) {
	if err := checkSubject(e.subject); err != nil {
		return nil, err
	}
	if e.cb == nil {
		return nil, ErrNilCallback
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	sid := c.subscribeLocked(e)
	return &Subscription{Subject: e.subject, sid: sid, conn: c}, nil
}

func subentryOf(subject, queue string, cb func(m *Msg)) subEntry {
	var e subEntry
	e.subject = subject
	e.queue = queue
	e.cb = cb
	return e
}

// subscribeLocked records e under a new sid and sends SUB when connected.
func (c *Conn) subscribeLocked(e subEntry) int64 {
	c.nextSID++
	sid := c.nextSID
	c.subs[sid] = e
	if l := c.cur; l != nil {
		writeSub(l, sid, e)
		c.flushLocked(l) // on failure the server connection is replaced and the SUB re-sent
	}
	return sid
}

func writeSub(l *serverConn, sid int64, e subEntry) {
	bw := l.bw
	bw.WriteString("SUB ")
	bw.WriteString(e.subject)
	bw.WriteByte(' ')
	if e.queue != "" {
		bw.WriteString(e.queue)
		bw.WriteByte(' ')
	}
	bw.WriteString(strconv.FormatInt(sid, 10))
	bw.WriteString("\r\n")
}

// Unsubscribe removes the subscription. It is idempotent.
func (s *Subscription) Unsubscribe() error {
	c := s.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.subs[s.sid]; !ok {
		return nil
	}
	delete(c.subs, s.sid)
	if c.closed {
		return nil
	}
	if l := c.cur; l != nil {
		l.bw.WriteString("UNSUB ")
		l.bw.WriteString(strconv.FormatInt(s.sid, 10))
		l.bw.WriteString("\r\n")
		return c.flushLocked(l)
	}
	return nil
}

func randomID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; fall back to the clock.
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
}

// NewInbox returns a new unique reply subject.
func (c *Conn) NewInbox() string {
	return "_INBOX." + randomID()
}

// Request publishes data with a reply subject and waits for the first reply. All requests
// of a connection share one wildcard subscription "_INBOX.<random>.*", created on first use.
// A "503" status reply (no subscriber for subject) returns the message and ErrNoResponders.
func (c *Conn) Request(subject string, hdr Header, data []byte, timeout time.Duration) (*Msg, error) {
	return c.request(subject, hdr, data, timeout, nil)
}

// pendingRequest is one request waiting for its outcome.
//
// yaegi v0.16.1 (Traefik's interpreter) allocates the reflect.SelectCase slice of a
// select statement once per statement and fills it in place on every execution, so
// goroutines running the same select at the same time overwrite each other's channels:
// a caller can wake up on another caller's reply, or wait on another caller's timer and
// reply channel and hang for ever once that caller has returned. Concurrent revocations
// run this code at the same time, so it waits with a plain receive on its own channel
// instead, and every outcome (reply, timeout, close, cancel) is delivered by
// finishRequest, which removes the request under c.mu and therefore sends at most once:
// the buffered channel never blocks a sender.
type pendingRequest struct {
	ch     chan requestOutcome // capacity 1, exactly one send
	cancel chan struct{}       // the caller's cancel channel (nil: none), see abortRequests
}

type requestOutcome struct {
	m   *Msg
	err error
}

// request is Request that also gives up (with ErrClosed) when abortRequests(cancel) is
// called; cancel may be nil.
func (c *Conn) request(subject string, hdr Header, data []byte, timeout time.Duration, cancel chan struct{}) (*Msg, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.cur == nil {
		c.mu.Unlock()
		return nil, ErrNotConnected
	}
	if c.respPrefix == "" {
		c.respPrefix = "_INBOX." + randomID() + "."
		c.subscribeLocked(subentryOf(c.respPrefix+"*", "", c.handleResponse))
	}
	c.respNext++
	token := strconv.FormatInt(c.respNext, 36)
	reply := c.respPrefix + token
	p := &pendingRequest{ch: make(chan requestOutcome, 1), cancel: cancel}
	c.respMap[token] = p
	c.mu.Unlock()

	if err := c.PublishMsg(subject, reply, hdr, data); err != nil {
		c.dropRequest(token)
		return nil, err
	}
	t := time.AfterFunc(timeout, func() {
		var out requestOutcome
		out.err = ErrTimeout
		c.finishRequest(token, out)
	})
	out := <-p.ch
	t.Stop()
	if out.err != nil {
		return nil, out.err
	}
	if out.m.Status == 503 {
		return out.m, ErrNoResponders
	}
	return out.m, nil
}

func (c *Conn) dropRequest(token string) {
	c.mu.Lock()
	delete(c.respMap, token)
	c.mu.Unlock()
}

// finishRequest hands out to the request token, if it is still waiting.
func (c *Conn) finishRequest(token string, out requestOutcome) {
	c.mu.Lock()
	p := c.respMap[token]
	delete(c.respMap, token)
	c.mu.Unlock()
	if p != nil {
		p.ch <- out
	}
}

// abortRequests ends every request started with this cancel channel with ErrClosed.
func (c *Conn) abortRequests(cancel chan struct{}) {
	if cancel == nil {
		return
	}
	c.mu.Lock()
	aborted := c.takeRequestsLocked(cancel)
	c.mu.Unlock()
	endRequests(aborted)
}

// takeRequestsLocked removes the pending requests started with cancel (all of them when
// cancel is nil) and returns them. Caller holds c.mu.
func (c *Conn) takeRequestsLocked(cancel chan struct{}) []*pendingRequest {
	var taken []*pendingRequest
	for token, p := range c.respMap {
		if cancel == nil || p.cancel == cancel {
			delete(c.respMap, token)
			taken = append(taken, p)
		}
	}
	return taken
}

// endRequests ends requests taken from respMap with ErrClosed.
func endRequests(ps []*pendingRequest) {
	for i := 0; i < len(ps); i++ {
		var out requestOutcome
		out.err = ErrClosed
		ps[i].ch <- out
	}
}

// handleResponse is the callback of the shared request inbox.
func (c *Conn) handleResponse(m *Msg) {
	c.mu.Lock()
	prefix := c.respPrefix
	c.mu.Unlock()
	if strings.HasPrefix(m.Subject, prefix) {
		var out requestOutcome
		out.m = m
		c.finishRequest(m.Subject[len(prefix):], out)
	}
}

// Close closes the connection and stops every goroutine of the client. It is idempotent.
// It waits for the goroutines to finish unless it is called from a callback of this
// connection (they then finish right after the callback returns).
func (c *Conn) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.closeCh)
	l := c.cur
	d := c.dialing
	inCallback := c.cbDepth > 0
	waiting := c.takeRequestsLocked(nil)
	c.mu.Unlock()
	endRequests(waiting)
	c.cancel()
	if l != nil {
		l.raw.Close()
	}
	if d != nil {
		d.Close()
	}
	if !inCallback {
		<-c.doneCh
	}
}

func (c *Conn) logf(level, msg string) {
	if c.opts.Logf != nil {
		c.opts.Logf(level, msg)
	}
}

// warnLimited logs a warning, dropping repeats of the same message for warnRepeatEvery.
func (c *Conn) warnLimited(msg string) {
	if c.opts.Logf == nil {
		return
	}
	now := time.Now()
	c.warnMu.Lock()
	st, seen := c.warns[msg]
	if seen && now.Sub(st.last) < warnRepeatEvery {
		st.suppressed++
		c.warns[msg] = st
		c.warnMu.Unlock()
		return
	}
	if len(c.warns) > 256 {
		c.warns = make(map[string]warnState)
	}
	var fresh warnState
	fresh.last = now
	c.warns[msg] = fresh
	c.warnMu.Unlock()
	if st.suppressed > 0 {
		msg = msg + " (repeated " + strconv.Itoa(st.suppressed) + " more times)"
	}
	c.logf("warn", msg)
}
