package natsclient

// The protocol reader: one goroutine per server connection reads what the server sends
// (MSG and HMSG frames, PING, PONG, +OK, -ERR, INFO) and hands each message to its
// subscription's callback. readBatch is the hot path of every subscription and is
// written flat for the interpreter (see its comment); everything rare goes through the
// small functions after it. The connection manager (conn.go) starts readLoop for each
// server connection it establishes and replaces it when the reader returns.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// readLoop is the reading goroutine of one server connection. It returns when the socket
// fails or the server sends something it cannot parse.
func (c *Conn) readLoop(l *serverConn, br *bufio.Reader) {
	defer close(l.readerExit)
	defer func() {
		if r := recover(); r != nil {
			c.logf("error", fmt.Sprintf("nats: internal error in reader: %v", r))
			c.failServerConn(l, fmt.Errorf("%w: internal error: %v", ErrProtocol, r))
		}
	}()
	// readBatch returns after a panic in a message callback (recovered and logged once per
	// panic, not guarded per message) and when the connection is done.
	for !l.readDone {
		c.readBatch(l, br)
	}
}

// readBatch reads and dispatches protocol lines until the connection fails or a message
// callback panics. This is the hot path of every subscription: under yaegi each call of
// an interpreted function allocates its whole frame (every local and every intermediate
// value of the function, including those of branches not taken), and a deferred recover
// costs several microseconds. So MSG and HMSG are parsed inline in this one loop (one
// frame per connection, not per message), with one deferred recover for the whole loop;
// everything rare (other operations, malformed lines, errors) goes through separate
// functions.
func (c *Conn) readBatch(l *serverConn, br *bufio.Reader) {
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
				st.pending = pending
				fire := pending == 0 && !st.synced
				if fire {
					st.synced = true
				}
				st.inCb++
				st.mu.Unlock()
				jm := st.jm
				jm.Subject = subject
				jm.Header = hdr
				jm.RawHeader = buf[:hdrSize]
				jm.reply = reply
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
				jsMeta: jsMeta, jsSSeq: sseq, jsDSeq: dseq, jsTS: ts, jsPending: pending, rawHdr: buf[:hdrSize]}
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
// is an internal error that fails the connection.
func (c *Conn) recoverReader(l *serverConn, r interface{}) {
	if r == nil {
		return
	}
	if !l.cbActive {
		l.readDone = true
		c.logf("error", fmt.Sprintf("nats: internal error in reader: %v", r))
		c.failServerConn(l, fmt.Errorf("%w: internal error: %v", ErrProtocol, r))
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

// readFailed ends the connection after a failed read.
func (c *Conn) readFailed(l *serverConn, err error) {
	if err == bufio.ErrBufferFull {
		err = fmt.Errorf("%w: protocol line longer than %d bytes", ErrProtocol, readBufSize)
	}
	c.lineFailed(l, err)
}

// lineFailed ends the connection after err (a protocol error, or a failed read).
func (c *Conn) lineFailed(l *serverConn, err error) {
	l.readDone = true
	if errors.Is(err, ErrProtocol) {
		c.protocolError(l, err)
	} else {
		c.failServerConn(l, fmt.Errorf("%w: %v", ErrConnectionLost, err))
	}
}

func (c *Conn) badHeader(subject string, err error) {
	c.logf("warn", "nats: dropping message on "+subject+": "+err.Error())
}

func (c *Conn) protocolError(l *serverConn, err error) {
	if !c.isClosed() {
		c.logf("error", "nats: "+l.srv.display+": "+err.Error())
	}
	c.failServerConn(l, err)
}

func (c *Conn) processLine(l *serverConn, br *bufio.Reader, line []byte) error {
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
		if c.serviceDenied(args) {
			return nil // service.go: logged once, not the connection's error
		}
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

func (c *Conn) processPong(l *serverConn) {
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
func (c *Conn) processMsg(l *serverConn, br *bufio.Reader, args []byte, withHeader bool) error {
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
	m.rawHdr = buf[:hdrSize]
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
