package natsclient

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strings"
	"time"
)

const (
	readBufSize  = 64 * 1024 // also the longest protocol line accepted (INFO can be long)
	writeBufSize = 32 * 1024
	maxFrameSize = 64 << 20 // MSG/HMSG bodies above this are treated as garbage
)

// serverInfo is the part of INFO the client uses.
type serverInfo struct {
	ServerID     string   `json:"server_id"`
	ServerName   string   `json:"server_name"`
	Version      string   `json:"version"`
	Proto        int      `json:"proto"`
	MaxPayload   int64    `json:"max_payload"`
	Headers      bool     `json:"headers"`
	Nonce        string   `json:"nonce"`
	TLSRequired  bool     `json:"tls_required"`
	TLSAvailable bool     `json:"tls_available"`
	AuthRequired bool     `json:"auth_required"`
	ConnectURLs  []string `json:"connect_urls"`
	LameDuck     bool     `json:"ldm"`
}

// connectMsg is the CONNECT payload.
type connectMsg struct {
	Verbose      bool   `json:"verbose"`
	Pedantic     bool   `json:"pedantic"`
	TLSRequired  bool   `json:"tls_required"`
	Name         string `json:"name,omitempty"`
	Lang         string `json:"lang"`
	Version      string `json:"version"`
	Protocol     int    `json:"protocol"`
	Echo         bool   `json:"echo"`
	Headers      bool   `json:"headers"`
	NoResponders bool   `json:"no_responders"`
	User         string `json:"user,omitempty"`
	Pass         string `json:"pass,omitempty"`
	Token        string `json:"auth_token,omitempty"`
	NKey         string `json:"nkey,omitempty"`
	JWT          string `json:"jwt,omitempty"`
	Sig          string `json:"sig,omitempty"`
}

// pongWaiter is one PING in flight: ch receives the outcome (nil for keep-alive PINGs).
// The channel is wrapped in a struct because yaegi v0.16.1 panics ("reflect: call of
// reflect.Value.Len on int Value") when ranging over a slice whose element type is a
// channel.
type pongWaiter struct {
	ch chan error
}

// serverConn is one established server connection; the Conn replaces it when it fails.
// Fields other than raw, nc, bw, srv and the channels are guarded by Conn.mu.
type serverConn struct {
	raw        net.Conn // TCP connection; closing it aborts everything
	nc         net.Conn // raw, or the TLS connection on top of it
	bw         *bufio.Writer
	srv        server
	info       serverInfo
	pongs      []pongWaiter // one entry per PING in flight, in order
	pingsOut   int
	cause      error         // first reason the connection failed
	readerExit chan struct{} // closed when the reading goroutine returns

	// Used by the reading goroutine only.
	readDone  bool                // the reader must return (the connection failed)
	cbActive  bool                // a message callback is running
	cbSubject string              // subject of its message
	cbPanic   func(r interface{}) // panic hook of its subscription, or nil
}

// IsClosed reports whether Close has been called.
func (c *Conn) IsClosed() bool {
	return c.isClosed()
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	return closed
}

// sleep waits d, returning false if the connection is closed meanwhile.
func (c *Conn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	select {
	case <-t.C:
		return true
	case <-c.closeCh:
		t.Stop()
		return false
	}
}

// jitter returns d scaled by a random factor in [0.75, 1.25).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	half := int64(d) / 2
	if half <= 0 {
		return d
	}
	return time.Duration(int64(d) - half/2 + rand.Int63n(half))
}

// backoff returns the wait after round failed rounds over the pool.
func (c *Conn) backoff(round int) time.Duration {
	d := c.opts.ReconnectWait
	for i := 0; i < round && d < c.opts.MaxReconnectWait; i++ {
		d = d * 2
	}
	if d > c.opts.MaxReconnectWait {
		d = c.opts.MaxReconnectWait
	}
	d = jitter(d)
	if d > c.opts.MaxReconnectWait {
		d = c.opts.MaxReconnectWait
	}
	return d
}

// roundOrder returns the pool in random order, with the server just lost moved last.
func (c *Conn) roundOrder() []server {
	c.mu.Lock()
	order := make([]server, len(c.pool))
	copy(order, c.pool)
	lost := c.lastLost
	c.mu.Unlock()
	for i := len(order) - 1; i > 0; i-- {
		j := rand.Intn(i + 1)
		tmp := order[i]
		order[i] = order[j]
		order[j] = tmp
	}
	if lost != "" && len(order) > 1 {
		for i := 0; i < len(order)-1; i++ {
			if order[i].addr == lost {
				tmp := order[i]
				copy(order[i:], order[i+1:])
				order[len(order)-1] = tmp
				break
			}
		}
	}
	return order
}

// run is the connection-management goroutine: connect, serve, reconnect, until Close.
func (c *Conn) run() {
	defer close(c.doneCh)
	for {
		c.manage()
		if c.isClosed() {
			return
		}
		// manage only returns early after recovering from an internal panic: start over.
		if !c.sleep(c.opts.MaxReconnectWait) {
			return
		}
	}
}

// manage runs the connect/serve/reconnect loop until Close. A panic (a bug in this package
// or in the interpreter running it) is recovered and logged, the current server
// connection is dropped, and run starts over: a panic that escaped a goroutine would take
// the whole host process (Traefik) down.
func (c *Conn) manage() {
	defer func() {
		if r := recover(); r != nil {
			c.logf("error", fmt.Sprintf("nats: internal error in connection manager: %v", r))
			c.mu.Lock()
			l := c.cur
			c.mu.Unlock()
			if l != nil {
				c.failServerConn(l, fmt.Errorf("%w: internal error: %v", ErrProtocol, r))
				c.teardown(l)
			}
		}
	}()
	round := 0
	for !c.isClosed() {
		order := c.roundOrder()
		served := false
		for i := 0; i < len(order); i++ {
			if c.isClosed() {
				return
			}
			srv := order[i]
			l, br, err := c.dial(srv)
			if err != nil {
				c.attemptFailed(srv, err)
				continue
			}
			served = true
			round = 0
			c.serve(l, br)
			break
		}
		var wait time.Duration
		if served {
			wait = jitter(c.opts.ReconnectWait)
		} else {
			wait = c.backoff(round)
			if round < 30 {
				round++
			}
		}
		if !c.sleep(wait) {
			return
		}
	}
}

func (c *Conn) attemptFailed(srv server, err error) {
	if errors.Is(err, ErrClosed) {
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.lastErr = err
	}
	closed := c.closed
	c.mu.Unlock()
	if !closed {
		c.warnLimited("nats: connect to " + srv.display + " failed: " + err.Error())
	}
}

func (c *Conn) setDialing(nc net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.dialing = nc
	return true
}

func (c *Conn) clearDialing() {
	c.mu.Lock()
	c.dialing = nil
	c.mu.Unlock()
}

// dial opens a connection to srv and performs the whole handshake.
func (c *Conn) dial(srv server) (*serverConn, *bufio.Reader, error) {
	deadline := time.Now().Add(c.opts.ConnectTimeout)
	d := net.Dialer{Deadline: deadline}
	raw, err := d.DialContext(c.ctx, "tcp", srv.addr)
	if err != nil {
		if c.isClosed() {
			return nil, nil, ErrClosed
		}
		return nil, nil, err
	}
	if !c.setDialing(raw) {
		raw.Close()
		return nil, nil, ErrClosed
	}
	defer c.clearDialing()
	l, br, err := c.handshake(srv, raw, deadline)
	if err != nil {
		raw.Close()
		if c.isClosed() {
			return nil, nil, ErrClosed
		}
		return nil, nil, err
	}
	return l, br, nil
}

func (c *Conn) handshake(srv server, raw net.Conn, deadline time.Time) (*serverConn, *bufio.Reader, error) {
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(raw, readBufSize)
	line, err := readLine(br)
	if err != nil {
		return nil, nil, fmt.Errorf("reading INFO: %w", err)
	}
	op, args := splitOp(line)
	if op != "INFO" {
		return nil, nil, fmt.Errorf("%w: expected INFO, got %q", ErrProtocol, clip(line))
	}
	var info serverInfo
	if err := json.Unmarshal(args, &info); err != nil {
		return nil, nil, fmt.Errorf("%w: bad INFO: %v", ErrProtocol, err)
	}

	nc := raw
	useTLS := srv.tls || c.opts.TLS != nil || info.TLSRequired
	if useTLS {
		if !info.TLSRequired && !info.TLSAvailable {
			return nil, nil, errors.New("nats: TLS is configured but the server does not offer it")
		}
		cfg := c.tlsConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = srv.host
		}
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			return nil, nil, fmt.Errorf("nats: TLS handshake: %w", err)
		}
		nc = tc
		br = bufio.NewReaderSize(tc, readBufSize)
	}

	cm, err := c.connectMsg(srv, info, useTLS)
	if err != nil {
		return nil, nil, err
	}
	js, err := json.Marshal(cm)
	if err != nil {
		return nil, nil, err
	}
	bw := bufio.NewWriterSize(nc, writeBufSize)
	bw.WriteString("CONNECT ")
	bw.Write(js)
	bw.WriteString("\r\nPING\r\n")
	if err := bw.Flush(); err != nil {
		return nil, nil, fmt.Errorf("sending CONNECT: %w", err)
	}
	for {
		line, err := readLine(br)
		if err != nil {
			if err == io.EOF {
				return nil, nil, errors.New("nats: server closed the connection during the handshake")
			}
			return nil, nil, fmt.Errorf("waiting for PONG: %w", err)
		}
		op, args := splitOp(line)
		switch op {
		case "PONG":
			if err := raw.SetDeadline(time.Time{}); err != nil {
				return nil, nil, err
			}
			l := &serverConn{raw: raw, nc: nc, bw: bw, srv: srv, info: info, readerExit: make(chan struct{})}
			return l, br, nil
		case "PING":
			bw.WriteString("PONG\r\n")
			if err := bw.Flush(); err != nil {
				return nil, nil, err
			}
		case "+OK":
		case "INFO":
			var again serverInfo
			if json.Unmarshal(args, &again) == nil {
				info = again
			}
		case "-ERR":
			return nil, nil, serverError(args)
		default:
			return nil, nil, fmt.Errorf("%w: unexpected %q during handshake", ErrProtocol, clip(line))
		}
	}
}

// serverError turns the arguments of -ERR into an error; authorization failures wrap
// ErrAuthorization.
func serverError(args []byte) error {
	text := "-ERR " + string(args)
	lower := strings.ToLower(text)
	if strings.Contains(lower, "authoriz") || strings.Contains(lower, "authentication") {
		return fmt.Errorf("%w (server said: %s)", ErrAuthorization, text)
	}
	return errors.New("nats: server error: " + text)
}

func (c *Conn) connectMsg(srv server, info serverInfo, useTLS bool) (connectMsg, error) {
	var m connectMsg
	m.TLSRequired = useTLS
	m.Name = c.opts.Name
	m.Lang = clientLang
	m.Version = Version
	m.Protocol = 1
	m.Echo = !c.opts.NoEcho
	m.Headers = true
	m.NoResponders = true
	if srv.user != "" {
		if srv.hasPass {
			m.User = srv.user
			m.Pass = srv.pass
		} else {
			m.Token = srv.user
		}
	} else {
		m.Token = c.opts.Token
		m.User = c.opts.User
		m.Pass = c.opts.Password
	}
	if c.hasNkey {
		m.NKey = c.nkey.public
		m.Sig = c.nkey.sign(info.Nonce)
	}
	if c.opts.CredsFile != "" {
		cr, err := loadCreds(c.opts.CredsFile)
		if err != nil {
			return m, err
		}
		m.JWT = cr.jwt
		m.Sig = cr.user.sign(info.Nonce)
	}
	return m, nil
}

// flushLocked writes out the buffered protocol data of l. Caller holds c.mu. A write that
// fails or blocks longer than ConnectTimeout fails the server connection (it is then
// replaced).
func (c *Conn) flushLocked(l *serverConn) error {
	l.raw.SetWriteDeadline(time.Now().Add(c.opts.ConnectTimeout))
	if err := l.bw.Flush(); err != nil {
		werr := fmt.Errorf("%w: write: %v", ErrConnectionLost, err)
		c.failLocked(l, werr)
		return werr
	}
	return nil
}

// failLocked records why l failed (first reason wins) and closes its socket, which makes
// the reading goroutine return. Caller holds c.mu.
func (c *Conn) failLocked(l *serverConn, err error) {
	if l.cause == nil {
		l.cause = err
	}
	l.raw.Close()
}

func (c *Conn) failServerConn(l *serverConn, err error) {
	c.mu.Lock()
	c.failLocked(l, err)
	c.mu.Unlock()
}

// serve makes l the current connection, re-sends subscriptions, runs the keep-alive loop
// until the server connection fails, then tears it down.
func (c *Conn) serve(l *serverConn, br *bufio.Reader) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		l.raw.Close()
		return
	}
	c.cur = l
	c.epoch++
	if l.info.MaxPayload > 0 {
		c.maxPayload = l.info.MaxPayload
	}
	c.lastErr = nil
	c.connectedURL = l.srv.display
	for sid, e := range c.subs {
		writeSub(l, sid, e)
	}
	flushErr := c.flushLocked(l)
	close(c.connCh)
	c.mu.Unlock()

	c.addDiscovered(l.info.ConnectURLs, l.srv.tls)
	go c.readLoop(l, br)
	name := l.info.ServerName
	if name == "" {
		name = l.info.ServerID
	}
	c.logf("info", "nats: connected to "+l.srv.display+" (server "+name+", version "+l.info.Version+")")
	if flushErr == nil && c.opts.OnConnect != nil {
		c.callOnConnect(l.srv.display)
	}
	if flushErr == nil {
		c.notifyListeners(true, nil)
	}

	t := time.NewTicker(c.opts.PingInterval)
	running := true
	for running {
		select {
		case <-l.readerExit:
			running = false
		case <-t.C:
			c.keepalive(l)
		}
	}
	t.Stop()

	cause := c.teardown(l)
	if c.isClosed() {
		return
	}
	c.mu.Lock()
	c.lastLost = l.srv.addr
	c.mu.Unlock()
	c.logf("warn", "nats: disconnected from "+l.srv.display+": "+cause.Error())
	if c.opts.OnDisconnect != nil {
		c.callOnDisconnect(cause)
	}
	c.notifyListeners(false, cause)
}

// teardown detaches l after its reader has exited and fails pending flushes.
func (c *Conn) teardown(l *serverConn) error {
	c.mu.Lock()
	cause := l.cause
	if cause == nil {
		cause = ErrConnectionLost
	}
	if c.cur == l {
		c.cur = nil
		c.connCh = make(chan struct{})
	}
	pongs := l.pongs
	l.pongs = nil
	if !c.closed {
		c.lastErr = cause
	}
	c.mu.Unlock()
	l.raw.Close()
	for i := 0; i < len(pongs); i++ {
		if ch := pongs[i].ch; ch != nil {
			ch <- ErrConnectionLost // room guaranteed, see Flush
		}
	}
	return cause
}

// keepalive sends a PING, or declares the server connection stale when too many are
// unanswered.
func (c *Conn) keepalive(l *serverConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != l || c.closed {
		return
	}
	if l.pingsOut >= c.opts.MaxPingsOut {
		c.failLocked(l, ErrStaleConnection)
		return
	}
	l.pingsOut++
	l.pongs = append(l.pongs, pongWaiter{})
	l.bw.WriteString("PING\r\n")
	c.flushLocked(l)
}

// addDiscovered adds servers advertised in INFO connect_urls to the pool.
func (c *Conn) addDiscovered(urls []string, useTLS bool) {
	if len(urls) == 0 {
		return
	}
	var added []string
	c.mu.Lock()
	for _, u := range urls {
		if !strings.Contains(u, "://") && useTLS {
			u = "tls://" + u
		}
		srv, err := parseServerURL(u, true)
		if err != nil || c.hasServer(srv.addr) || len(c.pool) >= 128 {
			continue
		}
		c.pool = append(c.pool, srv)
		added = append(added, srv.display)
	}
	c.mu.Unlock()
	for _, d := range added {
		c.logf("debug", "nats: discovered server "+d) // outside c.mu: Logf may call back into c
	}
}

func (c *Conn) enterCallback() {
	c.mu.Lock()
	c.cbDepth++
	c.mu.Unlock()
}

func (c *Conn) leaveCallback() {
	c.mu.Lock()
	c.cbDepth--
	c.mu.Unlock()
}

func (c *Conn) callOnConnect(url string) {
	c.enterCallback()
	defer c.leaveCallback()
	defer func() {
		if r := recover(); r != nil {
			c.logf("error", fmt.Sprintf("nats: panic in OnConnect callback: %v", r))
		}
	}()
	c.opts.OnConnect(url)
}

func (c *Conn) callOnDisconnect(err error) {
	c.enterCallback()
	defer c.leaveCallback()
	defer func() {
		if r := recover(); r != nil {
			c.logf("error", fmt.Sprintf("nats: panic in OnDisconnect callback: %v", r))
		}
	}()
	c.opts.OnDisconnect(err)
}

// connListener is an internal hook run after every (re)connect and after every lost
// connection, next to Options.OnConnect and OnDisconnect (which belong to the user). Hooks
// run on the connection-management goroutine and must only record the event and return.
type connListener struct {
	onConnect    func()
	onDisconnect func(err error)
}

// connEpoch returns a counter bumped for every established connection, and whether a
// connection is currently up.
func (c *Conn) connEpoch() (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch, c.cur != nil && !c.closed
}

// addListener registers l and returns the id to pass to removeListener.
func (c *Conn) addListener(l connListener) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextListener++
	id := c.nextListener
	c.listeners[id] = l
	return id
}

func (c *Conn) removeListener(id int64) {
	c.mu.Lock()
	delete(c.listeners, id)
	c.mu.Unlock()
}

// notifyListeners runs the internal hooks, outside c.mu.
func (c *Conn) notifyListeners(connected bool, cause error) {
	c.mu.Lock()
	if c.closed || len(c.listeners) == 0 {
		c.mu.Unlock()
		return
	}
	list := make([]connListener, 0, len(c.listeners))
	for _, l := range c.listeners {
		list = append(list, l)
	}
	c.mu.Unlock()
	for i := 0; i < len(list); i++ {
		c.callListener(list[i], connected, cause)
	}
}

func (c *Conn) callListener(l connListener, connected bool, cause error) {
	defer func() {
		if r := recover(); r != nil {
			c.logf("error", fmt.Sprintf("nats: panic in internal connection hook: %v", r))
		}
	}()
	if connected {
		if l.onConnect != nil {
			l.onConnect()
		}
		return
	}
	if l.onDisconnect != nil {
		l.onDisconnect(cause)
	}
}
