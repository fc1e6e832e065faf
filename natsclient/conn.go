package natsclient

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strconv"
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

// link is one established server connection. Fields other than raw, nc, bw, srv and the
// channels are guarded by Conn.mu.
type link struct {
	raw        net.Conn // TCP connection; closing it aborts everything
	nc         net.Conn // raw, or the TLS connection on top of it
	bw         *bufio.Writer
	srv        server
	info       serverInfo
	pongs      []pongWaiter // one entry per PING in flight, in order
	pingsOut   int
	cause      error         // first reason the link failed
	readerExit chan struct{} // closed when the reading goroutine returns

	// Used by the reading goroutine only.
	readDone  bool                // the reader must return (the link failed)
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
// or in the interpreter running it) is recovered and logged, the current link is dropped,
// and run starts over: a panic that escaped a goroutine would take the whole host process
// (Traefik) down.
func (c *Conn) manage() {
	defer func() {
		if r := recover(); r != nil {
			c.logf("error", fmt.Sprintf("nats: internal error in connection manager: %v", r))
			c.mu.Lock()
			l := c.cur
			c.mu.Unlock()
			if l != nil {
				c.failLink(l, fmt.Errorf("%w: internal error: %v", ErrProtocol, r))
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
func (c *Conn) dial(srv server) (*link, *bufio.Reader, error) {
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

func (c *Conn) handshake(srv server, raw net.Conn, deadline time.Time) (*link, *bufio.Reader, error) {
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
			l := &link{raw: raw, nc: nc, bw: bw, srv: srv, info: info, readerExit: make(chan struct{})}
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
	m.Echo = true
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

// readLine reads one protocol line and returns it without the line end. The slice is only
// valid until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("%w: protocol line longer than %d bytes", ErrProtocol, readBufSize)
		}
		return nil, err
	}
	n := len(line) - 1
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	return line[:n], nil
}

// splitOp splits a protocol line into its upper-cased operation and the rest.
func splitOp(line []byte) (string, []byte) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		if tab := bytes.IndexByte(line, '\t'); tab >= 0 {
			sp = tab
		}
	}
	if sp < 0 {
		return strings.ToUpper(string(line)), nil
	}
	return strings.ToUpper(string(line[:sp])), bytes.TrimSpace(line[sp+1:])
}

// clip shortens protocol text for error messages.
func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// flushLocked writes out the buffered protocol data of l. Caller holds c.mu. A write that
// fails or blocks longer than ConnectTimeout fails the link (it is then replaced).
func (c *Conn) flushLocked(l *link) error {
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
func (c *Conn) failLocked(l *link, err error) {
	if l.cause == nil {
		l.cause = err
	}
	l.raw.Close()
}

func (c *Conn) failLink(l *link, err error) {
	c.mu.Lock()
	c.failLocked(l, err)
	c.mu.Unlock()
}

// serve makes l the current connection, re-sends subscriptions, runs the keep-alive loop
// until the link fails, then tears it down.
func (c *Conn) serve(l *link, br *bufio.Reader) {
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
func (c *Conn) teardown(l *link) error {
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

// keepalive sends a PING, or declares the link stale when too many are unanswered.
func (c *Conn) keepalive(l *link) {
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

// callMsg runs the callback of e for a message parsed by processMsg (the slow path, for
// frames in unusual form), with its own panic guard.
func (c *Conn) callMsg(e subEntry, m *Msg) {
	defer func() {
		if r := recover(); r != nil {
			if e.onPanic != nil {
				c.runPanicHook(e.onPanic, r)
				return
			}
			c.logf("error", fmt.Sprintf("nats: panic in message callback for %q: %v", m.Subject, r))
		}
	}()
	e.cb(m)
}

// readLoop is the reading goroutine of one link. It returns when the socket fails or the
// server sends something it cannot parse.
func (c *Conn) readLoop(l *link, br *bufio.Reader) {
	defer close(l.readerExit)
	defer func() {
		if r := recover(); r != nil {
			c.logf("error", fmt.Sprintf("nats: internal error in reader: %v", r))
			c.failLink(l, fmt.Errorf("%w: internal error: %v", ErrProtocol, r))
		}
	}()
	// readBatch returns after a panic in a message callback (recovered and logged once per
	// panic, not guarded per message) and when the link is done.
	for !l.readDone {
		c.readBatch(l, br)
	}
}

// readBatch reads and dispatches protocol lines until the link fails or a message callback
// panics. This is the hot path of every subscription: under yaegi each call of an
// interpreted function allocates its whole frame (every local and every intermediate value
// of the function, including those of branches not taken), and a deferred recover costs
// several microseconds. So MSG and HMSG are parsed inline in this one loop (one frame per
// link, not per message), with one deferred recover for the whole loop; everything rare
// (other operations, malformed lines, errors) goes through separate functions.
func (c *Conn) readBatch(l *link, br *bufio.Reader) {
	defer func() {
		c.recoverReader(l, recover())
	}()
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			c.readFailed(l, err)
			return
		}
		n := len(line) - 1
		if n > 0 && line[n-1] == '\r' {
			n--
		}
		hmsg := false
		var args []byte
		if n > 4 && line[0] == 'M' && line[1] == 'S' && line[2] == 'G' && line[3] == ' ' {
			args = line[4:n]
		} else if n > 5 && line[0] == 'H' && line[1] == 'M' && line[2] == 'S' && line[3] == 'G' && line[4] == ' ' {
			args = line[5:n]
			hmsg = true
		} else {
			if err := c.processLine(l, br, line[:n]); err != nil {
				c.lineFailed(l, err)
				return
			}
			continue
		}

		// "<subject> <sid> [reply] [<header size>] <size>", single spaces as servers send
		// them; anything else goes to processMsg, which also reports the errors.
		sp1 := bytes.IndexByte(args, ' ')
		last := bytes.LastIndexByte(args, ' ')
		mid := last // end of "<sid> [reply]"
		if hmsg && last > 0 {
			mid = bytes.LastIndexByte(args[:last], ' ')
		}
		ok := sp1 > 0 && mid > sp1+1 && last < len(args)-1
		sidB := args[:0]
		var replyB []byte
		if ok {
			sidB = args[sp1+1 : mid]
			if sp2 := bytes.IndexByte(sidB, ' '); sp2 >= 0 {
				replyB = sidB[sp2+1:]
				sidB = sidB[:sp2]
			}
			ok = len(sidB) > 0 && len(sidB) <= 18
		}
		var sid int64
		for i := 0; ok && i < len(sidB); i++ {
			d := sidB[i]
			if d < '0' || d > '9' {
				ok = false
			}
			sid = sid*10 + int64(d-'0')
		}
		sizeB := args[last+1:]
		ok = ok && len(sizeB) <= 9
		size := 0
		for i := 0; ok && i < len(sizeB); i++ {
			d := sizeB[i]
			if d < '0' || d > '9' {
				ok = false
			}
			size = size*10 + int(d-'0')
		}
		hdrSize := 0
		if hmsg && ok {
			hdrB := args[mid+1 : last]
			ok = len(hdrB) > 0 && len(hdrB) <= 9
			for i := 0; ok && i < len(hdrB); i++ {
				d := hdrB[i]
				if d < '0' || d > '9' {
					ok = false
				}
				hdrSize = hdrSize*10 + int(d-'0')
			}
		}
		if !ok || size > maxFrameSize || hdrSize > size || len(replyB) > 0 && replyB[0] == ' ' {
			if err := c.processMsg(l, br, args, hmsg); err != nil {
				c.lineFailed(l, err)
				return
			}
			continue
		}
		// Strings first: line points into br's buffer, which the body read overwrites.
		subject := string(args[:sp1])
		reply := ""
		if len(replyB) > 0 {
			reply = string(replyB)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			c.lineFailed(l, err)
			return
		}
		if buf[size] != '\r' || buf[size+1] != '\n' {
			c.lineFailed(l, errNoCRLF)
			return
		}

		c.mu.Lock()
		e, found := c.subs[sid]
		if found {
			c.cbDepth++
		}
		c.mu.Unlock()
		if !found {
			continue // unsubscribed meanwhile
		}
		// A header block is parsed unless the subscription skips headers and the block has
		// no inline status ("NATS/1.0\r\n..." rather than "NATS/1.0 100 ...").
		var hdr Header
		status := 0
		desc := ""
		if hmsg && !(e.skipHdr && hdrSize > 9 && buf[8] == '\r' && buf[0] == 'N') {
			h, hs, hd, herr := parseHeader(buf[:hdrSize])
			if herr != nil {
				c.leaveCallback()
				c.badHeader(subject, herr)
				continue
			}
			hdr = h
			status = hs
			desc = hd
		}
		// JetStream deliveries: the metadata of "$JS.ACK.<stream>.<consumer>.<delivered>.
		// <sseq>.<dseq>.<ts>.<pending>" (9 tokens, or 11+ with domain and account hash).
		jsMeta := false
		var sseq, dseq, pending uint64
		var ts int64
		if e.jsAck && len(reply) > 8 && reply[:8] == "$JS.ACK." {
			toks := strings.Split(reply, ".")
			first := 0
			if len(toks) == 9 {
				first = 2
			} else if len(toks) >= 11 {
				first = 4
			}
			if first > 0 {
				v1, err1 := strconv.ParseUint(toks[first+3], 10, 64)
				v2, err2 := strconv.ParseUint(toks[first+4], 10, 64)
				v3, err3 := strconv.ParseUint(toks[first+6], 10, 64)
				jsMeta = err1 == nil && err2 == nil && err3 == nil
				sseq = v1
				dseq = v2
				pending = v3
				if !e.noTime {
					v4, err4 := strconv.ParseInt(toks[first+5], 10, 64)
					jsMeta = jsMeta && err4 == nil
					ts = v4
				}
			}
		}
		l.cbActive = true
		l.cbSubject = subject
		l.cbPanic = e.onPanic
		// Ordered consumer: the next message in sequence of the current generation is
		// handed to OnMsg right here, without a Msg (the same steps as
		// OrderedConsumer.onDelivery, which handles everything else). A panic in OnMsg
		// reaches recoverReader, whose call of e.onPanic releases cbMu and the callback
		// count.
		st := e.js
		inline := false
		if st != nil && jsMeta && status == 0 {
			st.cbMu.Lock()
			st.mu.Lock()
			if sid == st.sid && st.active && dseq == st.expDSeq+1 && sseq > st.lastSSeq {
				inline = true
				st.activity++
				st.expDSeq = dseq
				st.lastSSeq = sseq
				fire := pending == 0 && !st.synced
				if fire {
					st.synced = true
				}
				st.inCb++
				st.mu.Unlock()
				jm := st.jm
				jm.Subject = subject
				jm.Header = hdr
				jm.Data = buf[hdrSize:size]
				jm.StreamSeq = sseq
				jm.ConsumerSeq = dseq
				jm.Pending = pending
				if !e.noTime {
					jm.Time = time.Unix(0, ts)
				}
				st.holdCb = true
				st.pendFire = fire
				st.inMsg = true
				st.onMsg(jm)
				st.inMsg = false
				if fire {
					st.onSynced(sseq)
				}
				st.mu.Lock()
				st.inCb--
				st.mu.Unlock()
				st.holdCb = false
				st.cbMu.Unlock()
			} else {
				st.mu.Unlock()
				st.cbMu.Unlock()
			}
		}
		if !inline {
			m := &Msg{Subject: subject, Reply: reply, Header: hdr, Data: buf[hdrSize:size],
				Status: status, Description: desc, sid: sid,
				jsMeta: jsMeta, jsSSeq: sseq, jsDSeq: dseq, jsTS: ts, jsPending: pending}
			e.cb(m)
		}
		l.cbActive = false
		l.cbPanic = nil
		c.mu.Lock()
		c.cbDepth--
		c.mu.Unlock()
	}
}

var errNoCRLF = fmt.Errorf("%w: message body not followed by CRLF", ErrProtocol)

// recoverReader handles a panic recovered in readBatch: a panic in a message callback is
// logged (or handed to the subscription's panic hook) and reading goes on; any other panic
// is an internal error that fails the link.
func (c *Conn) recoverReader(l *link, r interface{}) {
	if r == nil {
		return
	}
	if !l.cbActive {
		l.readDone = true
		c.logf("error", fmt.Sprintf("nats: internal error in reader: %v", r))
		c.failLink(l, fmt.Errorf("%w: internal error: %v", ErrProtocol, r))
		return
	}
	hook := l.cbPanic
	l.cbActive = false
	l.cbPanic = nil
	c.leaveCallback()
	if hook != nil {
		c.runPanicHook(hook, r)
		return
	}
	c.logf("error", fmt.Sprintf("nats: panic in message callback for %q: %v", l.cbSubject, r))
}

func (c *Conn) runPanicHook(hook func(r interface{}), r interface{}) {
	defer func() {
		if r2 := recover(); r2 != nil {
			c.logf("error", fmt.Sprintf("nats: panic in message callback: %v (then in its handler: %v)", r, r2))
		}
	}()
	hook(r)
}

// readFailed ends the link after a failed read.
func (c *Conn) readFailed(l *link, err error) {
	if err == bufio.ErrBufferFull {
		err = fmt.Errorf("%w: protocol line longer than %d bytes", ErrProtocol, readBufSize)
	}
	c.lineFailed(l, err)
}

// lineFailed ends the link after err (a protocol error, or a failed read).
func (c *Conn) lineFailed(l *link, err error) {
	l.readDone = true
	if errors.Is(err, ErrProtocol) {
		c.protocolError(l, err)
	} else {
		c.failLink(l, fmt.Errorf("%w: %v", ErrConnectionLost, err))
	}
}

func (c *Conn) badHeader(subject string, err error) {
	c.logf("warn", "nats: dropping message on "+subject+": "+err.Error())
}

func (c *Conn) protocolError(l *link, err error) {
	if !c.isClosed() {
		c.logf("error", "nats: "+l.srv.display+": "+err.Error())
	}
	c.failLink(l, err)
}

func (c *Conn) processLine(l *link, br *bufio.Reader, line []byte) error {
	if len(line) == 0 {
		return nil
	}
	op, args := splitOp(line)
	switch op {
	case "MSG":
		return c.processMsg(l, br, args, false)
	case "HMSG":
		return c.processMsg(l, br, args, true)
	case "PING":
		c.mu.Lock()
		l.bw.WriteString("PONG\r\n")
		c.flushLocked(l)
		c.mu.Unlock()
	case "PONG":
		c.processPong(l)
	case "+OK":
	case "-ERR":
		err := serverError(args)
		c.mu.Lock()
		closed := c.closed
		if !closed {
			c.lastErr = err
		}
		c.mu.Unlock()
		if !closed {
			c.logf("error", "nats: "+l.srv.display+": "+err.Error())
		}
	case "INFO":
		var info serverInfo
		if err := json.Unmarshal(args, &info); err != nil {
			return fmt.Errorf("%w: bad INFO: %v", ErrProtocol, err)
		}
		c.mu.Lock()
		if info.MaxPayload > 0 {
			c.maxPayload = info.MaxPayload
			l.info.MaxPayload = info.MaxPayload
		}
		c.mu.Unlock()
		c.addDiscovered(info.ConnectURLs, l.srv.tls)
		if info.LameDuck {
			c.logf("info", "nats: server "+l.srv.display+" entered lame duck mode")
		}
	default:
		return fmt.Errorf("%w: unexpected %q", ErrProtocol, clip(line))
	}
	return nil
}

func (c *Conn) processPong(l *link) {
	var ch chan error
	c.mu.Lock()
	l.pingsOut = 0
	if len(l.pongs) > 0 {
		ch = l.pongs[0].ch
		l.pongs = l.pongs[1:]
	}
	c.mu.Unlock()
	if ch != nil {
		// The waiter was removed from l.pongs above, so this is its only PONG; the
		// channel has room for it (see Flush). A typed nil: yaegi v0.16.1 mishandles an
		// untyped nil sent on a chan error.
		var ok error
		ch <- ok
	}
}

// processMsg handles "MSG <subject> <sid> [reply] <size>" and
// "HMSG <subject> <sid> [reply] <header size> <total size>", followed by the body and CRLF.
func (c *Conn) processMsg(l *link, br *bufio.Reader, args []byte, withHeader bool) error {
	f := bytes.Fields(args)
	n := len(f)
	minArgs := 3
	if withHeader {
		minArgs = 4
	}
	if n != minArgs && n != minArgs+1 {
		return fmt.Errorf("%w: bad MSG arguments %q", ErrProtocol, clip(args))
	}
	m := &Msg{Subject: string(f[0])}
	sid, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad sid in %q", ErrProtocol, clip(args))
	}
	m.sid = sid
	if n == minArgs+1 {
		m.Reply = string(f[2])
	}
	size, err := strconv.Atoi(string(f[n-1]))
	if err != nil || size < 0 || size > maxFrameSize {
		return fmt.Errorf("%w: bad size in %q", ErrProtocol, clip(args))
	}
	hdrSize := 0
	if withHeader {
		hdrSize, err = strconv.Atoi(string(f[n-2]))
		if err != nil || hdrSize < 0 || hdrSize > size {
			return fmt.Errorf("%w: bad header size in %q", ErrProtocol, clip(args))
		}
	}
	buf := make([]byte, size+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		return err
	}
	if buf[size] != '\r' || buf[size+1] != '\n' {
		return fmt.Errorf("%w: message body not followed by CRLF", ErrProtocol)
	}
	m.Data = buf[hdrSize:size]
	if withHeader {
		h, status, desc, err := parseHeader(buf[:hdrSize])
		if err != nil {
			c.logf("warn", "nats: dropping message on "+m.Subject+": "+err.Error())
			return nil
		}
		m.Header = h
		m.Status = status
		m.Description = desc
	}

	c.mu.Lock()
	e, ok := c.subs[sid]
	if ok {
		c.cbDepth++
	}
	c.mu.Unlock()
	if !ok {
		return nil // unsubscribed meanwhile
	}
	c.callMsg(e, m)
	c.leaveCallback()
	return nil
}
