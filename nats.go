package tokenrevoke

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// publishTimeout bounds how long a revoke request waits for NATS to confirm.
const publishTimeout = 2 * time.Second

// natsLink shares a domain's revocations over NATS. It owns the connection. Without
// nats.stream it subscribes to <subject>.> and applies what arrives (core NATS); with a
// stream, a stream follower (stream.go) receives instead, and publishing goes through it.
type natsLink struct {
	received    int64 // atomic: valid revocations received over core NATS
	published   int64 // atomic
	publishFail int64 // atomic
	drops       wireDrops

	n     *natsSettings
	log   *logger
	nlog  *natsLog
	cache *tokenCache
	conn  *natsclient.Conn

	// stream follows the JetStream stream; nil without nats.stream.
	stream *streamFollower

	// sawV1 is set (on the reader goroutine) once a version-1 message was applied.
	sawV1 bool
}

// natsLog forwards the NATS client's log lines to the plugin's log and keeps the latest
// warning or error (or stream set-up problem) for the status document. A link and its
// stream follower share one.
type natsLog struct {
	log *logger

	mu      sync.Mutex
	lastErr string
}

// clientLog receives the NATS client's log lines (which never carry credentials and
// already start with "nats: ").
func (nl *natsLog) clientLog(level, msg string) {
	switch level {
	case "warn":
		nl.setErr(msg)
		nl.log.warnf("%s", msg)
	case "error":
		nl.setErr(msg)
		nl.log.errorf("%s", msg)
	case "info":
		nl.log.infof("%s", msg)
	}
}

func (nl *natsLog) setErr(msg string) {
	nl.mu.Lock()
	nl.lastErr = msg
	nl.mu.Unlock()
}

func (nl *natsLog) lastError() string {
	nl.mu.Lock()
	msg := nl.lastErr
	nl.mu.Unlock()
	return msg
}

// startNATSLink connects (in the background: the client keeps retrying) and starts
// receiving revocations into cache.
func startNATSLink(cache *tokenCache, n *natsSettings, log *logger) (link, error) {
	nlog := &natsLog{log: log}
	l := &natsLink{n: n, log: log, nlog: nlog, cache: cache}
	if n.stream != "" {
		// Created before the connection, so that onConnect can wake it from the start;
		// it gets the connection in start.
		l.stream = newStreamFollower(n, cache, log, nlog)
	}
	opts := natsclient.Options{
		Servers:   n.servers,
		Name:      n.name,
		Token:     n.token,
		User:      n.user,
		Password:  n.password,
		NKeySeed:  n.nkeySeed,
		CredsFile: n.credsFile,
		Logf:      nlog.clientLog,
		OnConnect: l.onConnect,
		// Each revocation is applied locally before it is published: its echo would
		// only be applied again, on the reader that the publish's flush waits behind.
		NoEcho: true,
	}
	if n.tls != nil {
		opts.TLS = &natsclient.TLSOptions{
			CA:                 n.tls.CA,
			Cert:               n.tls.Cert,
			Key:                n.tls.Key,
			InsecureSkipVerify: n.tls.InsecureSkipVerify,
		}
	}
	conn, err := natsclient.Connect(opts)
	if err != nil {
		return nil, errors.New("tokenrevoke: nats: " + err.Error())
	}
	l.conn = conn
	l.startService() // fleet view (service.go)
	if l.stream != nil {
		// The ordered consumer delivers stored and live revocations alike; a core
		// subscription on the same subjects would only duplicate them.
		log.infof("sharing revocations through JetStream stream %s (subjects %s.>) as %q", n.stream, n.subject, n.name)
		l.stream.start(conn)
		return l, nil
	}
	if _, err := conn.Subscribe(n.subject+".>", l.onMsg); err != nil {
		conn.Close()
		return nil, errors.New("tokenrevoke: nats.subject: " + err.Error())
	}
	log.infof("sharing revocations on NATS subject %s.> as %q", n.subject, n.name)
	return l, nil
}

// onConnect runs after every (re)connect; the client has already logged it.
func (l *natsLink) onConnect(url string) {
	l.nlog.setErr("")
	if l.stream != nil {
		l.stream.wake()
	}
}

// publish sends r and returns once the server has it: with a stream, once the stream
// acknowledged it; on core NATS, once the server answered the PING that follows it.
func (l *natsLink) publish(r revocation) error {
	start := time.Now()
	body, subject := encodeRevocation(r, l.n)
	var err error
	if l.stream != nil {
		err = l.stream.publish(subject, body, r.exp)
	} else {
		if l.n.signer != nil {
			hdr := natsclient.Header{}
			l.n.signer.addTo(hdr, subject, body)
			err = l.conn.PublishMsg(subject, "", hdr, body)
		} else {
			err = l.conn.Publish(subject, body)
		}
		if err == nil {
			err = l.conn.Flush(publishTimeout)
		}
	}
	l.n.metrics.observePublish(time.Since(start))
	if err != nil {
		atomic.AddInt64(&l.publishFail, 1)
		return err
	}
	atomic.AddInt64(&l.published, 1)
	return nil
}

// onMsg applies a revocation received on <subject>.> (core NATS). It runs on the
// client's reader goroutine: anything unexpected, unsigned or wrongly signed (with
// nats.signing) is dropped with a (rate-limited) warning.
func (l *natsLink) onMsg(m *natsclient.Msg) {
	origin, why := l.n.signer.checkHeader(m.Subject, m.Data, m.Header)
	if why != 0 {
		l.drops.dropSig(l.log, m.Subject, why)
		return
	}
	sum, exp, v1, rule, cutoff, reason := decodeRevocation(m.Subject, m.Data, l.n.subject)
	if reason != "" {
		l.drops.drop(l.log, m.Subject, reason)
		return
	}
	atomic.AddInt64(&l.received, 1)
	if rule != 0 {
		now := time.Now().Unix()
		cutoff, exp = l.n.capRule(cutoff, exp, now, now)
		l.cache.addRule(rule, sum, cutoff, exp, now)
		return
	}
	if v1 && !l.sawV1 {
		l.sawV1 = true
		l.cache.setLegacy()
	}
	now := time.Now()
	l.cache.addFrom(sum, capExpiry(exp, now.Unix(), l.n.maxTTL), now.Unix(), origin)
}

func (l *natsLink) synced() bool {
	return l.stream == nil || l.stream.synced()
}

func (l *natsLink) status() linkStatus {
	lastErr := l.nlog.lastError()
	if lastErr == "" && l.conn.LastError() != nil {
		lastErr = l.conn.LastError().Error()
	}
	st := linkStatus{
		Connected:   l.conn.Connected(),
		Server:      l.conn.ConnectedURL(),
		Stream:      l.n.stream,
		Synced:      l.synced(),
		LastError:   lastErr,
		Received:    atomic.LoadInt64(&l.received),
		Dropped:     l.drops.count(),
		Published:   atomic.LoadInt64(&l.published),
		PublishFail: atomic.LoadInt64(&l.publishFail),
		Signed:      l.n.signer != nil,
	}
	st.Unsigned, st.BadSignature = l.drops.sigCounts()
	if l.stream != nil {
		st.StreamSeq = l.stream.lastSeq()
		received, dropped := l.stream.counts()
		st.Received = received
		st.Dropped = dropped
		st.Unsigned, st.BadSignature = l.stream.drops.sigCounts()
		st.Snapshot = l.stream.snapshotStatus()
	}
	return st
}
