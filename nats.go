package tokenrevoke

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// Wire format, version 1 (documented in the README; an identity provider may publish it
// with nats.go or `nats pub`):
//
//	subject: <subject>.<sha256 hex of the token>
//	body:    {"v":1,"sha256":"<hex>","hint":"access_token","exp":<unix seconds>,
//	          "revokedAt":"<RFC 3339>","origin":"<gateway name>"}
//
// The raw token never leaves the gateway: only its SHA-256 is sent.
type wireRevocation struct {
	V         int    `json:"v"`
	Sha256    string `json:"sha256"`
	Hint      string `json:"hint,omitempty"`
	Exp       int64  `json:"exp"`
	RevokedAt string `json:"revokedAt"`
	Origin    string `json:"origin"`
}

// publishTimeout bounds how long a revoke request waits for NATS to confirm.
const publishTimeout = 2 * time.Second

// dropWarnEvery rate-limits warnings about dropped (malformed) messages.
const dropWarnEvery = 10 * time.Second

// natsLink shares a domain's revocations over core NATS.
type natsLink struct {
	d    *domain
	n    *natsSettings
	log  *logger
	conn *natsclient.Conn

	received    int64 // atomic: valid revocations received
	dropped     int64 // atomic: malformed messages dropped
	published   int64 // atomic
	publishFail int64 // atomic

	mu         sync.Mutex
	lastErr    string
	lastDropAt time.Time
	unreported int64

	// JetStream mode (nats.stream set); see stream.go.
	js js
}

func startNATSLink(d *domain, n *natsSettings, log *logger) (link, error) {
	l := &natsLink{d: d, n: n, log: log}
	l.js.wakeCh = make(chan struct{}, 1)
	opts := natsclient.Options{
		Servers:   n.servers,
		Name:      n.name,
		Token:     n.token,
		User:      n.user,
		Password:  n.password,
		NKeySeed:  n.nkeySeed,
		CredsFile: n.credsFile,
		Logf:      l.clientLog,
		OnConnect: l.onConnect,
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
	if n.stream != "" {
		// The ordered consumer delivers stored and live revocations alike; a core
		// subscription on the same subjects would only duplicate them.
		log.infof("sharing revocations through JetStream stream %s (subjects %s.>) as %q", n.stream, n.subject, n.name)
		go l.js.run(l)
		if n.snapshotEvery > 0 {
			go l.snapshotLoop()
		}
		return l, nil
	}
	if _, err := conn.Subscribe(n.subject+".>", l.onMsg); err != nil {
		conn.Close()
		return nil, errors.New("tokenrevoke: nats.subject: " + err.Error())
	}
	log.infof("sharing revocations on NATS subject %s.> as %q", n.subject, n.name)
	return l, nil
}

// clientLog forwards the NATS client's log lines (which never carry credentials and
// already start with "nats: ").
func (l *natsLink) clientLog(level, msg string) {
	switch level {
	case "warn":
		l.setErr(msg)
		l.log.warnf("%s", msg)
	case "error":
		l.setErr(msg)
		l.log.errorf("%s", msg)
	case "info":
		l.log.infof("%s", msg)
	}
}

// onConnect runs after every (re)connect; the client has already logged it.
func (l *natsLink) onConnect(url string) {
	l.setErr("")
	if l.n.stream != "" {
		l.js.wake()
	}
}

func (l *natsLink) setErr(msg string) {
	l.mu.Lock()
	l.lastErr = msg
	l.mu.Unlock()
}

// publish sends r and waits for the server's PONG, so a nil error means the server
// has the message.
func (l *natsLink) publish(r revocation) error {
	body, subject := encodeRevocation(r, l.n)
	var err error
	if l.n.stream != "" {
		err = l.js.publish(l, subject, body, r.exp)
	} else {
		err = l.conn.Publish(subject, body)
		if err == nil {
			err = l.conn.Flush(publishTimeout)
		}
	}
	if err != nil {
		atomic.AddInt64(&l.publishFail, 1)
		return err
	}
	atomic.AddInt64(&l.published, 1)
	return nil
}

func encodeRevocation(r revocation, n *natsSettings) ([]byte, string) {
	sum := hex.EncodeToString(r.sum[:])
	body, _ := json.Marshal(wireRevocation{
		V:         1,
		Sha256:    sum,
		Hint:      r.hint,
		Exp:       r.exp,
		RevokedAt: r.revokedAt.UTC().Format(time.RFC3339),
		Origin:    n.name,
	})
	return body, n.subject + "." + sum
}

// onMsg applies a revocation received on <subject>.>. It runs on the client's reader
// goroutine: anything unexpected is dropped with a (rate-limited) warning.
func (l *natsLink) onMsg(m *natsclient.Msg) {
	sum, exp, reason := decodeRevocation(m.Subject, m.Data, l.n.subject)
	if reason != "" {
		l.drop(m.Subject, reason)
		return
	}
	atomic.AddInt64(&l.received, 1)
	l.d.cache.add(sum, exp, time.Now().Unix())
}

// wireIn is the part of a wire message a gateway needs; decoding only these fields
// keeps the replay of a large stream fast under the interpreter.
type wireIn struct {
	V      int    `json:"v"`
	Sha256 string `json:"sha256"`
	Exp    int64  `json:"exp"`
}

// decodeRevocation validates a wire message; reason is non-empty when it is unusable.
// It runs once per message of a replay (a million times for a large stream), so it
// sticks to a few compiled calls.
func decodeRevocation(subject string, data []byte, prefix string) (sum [32]byte, exp int64, reason string) {
	var w wireIn
	if json.Unmarshal(data, &w) != nil {
		return sum, 0, "body is not a JSON object of the expected shape"
	}
	if w.V != 1 {
		return sum, 0, "unsupported version"
	}
	if len(w.Sha256) != 64 {
		return sum, 0, "sha256 is not 64 hex characters"
	}
	if _, err := hex.Decode(sum[:], []byte(w.Sha256)); err != nil {
		return sum, 0, "sha256 is not 64 hex characters"
	}
	if len(subject) != len(prefix)+65 || subject[len(prefix)+1:] != w.Sha256 && !strings.EqualFold(subject[len(prefix)+1:], w.Sha256) {
		return sum, 0, "subject does not end with the message's sha256"
	}
	if w.Exp <= 0 || w.Exp > maxExpiry {
		return sum, 0, "exp is missing or out of range"
	}
	return sum, w.Exp, ""
}

func (l *natsLink) drop(subject, reason string) {
	atomic.AddInt64(&l.dropped, 1)
	l.mu.Lock()
	l.unreported++
	now := time.Now()
	if now.Sub(l.lastDropAt) < dropWarnEvery {
		l.mu.Unlock()
		return
	}
	n := l.unreported
	l.unreported = 0
	l.lastDropAt = now
	l.mu.Unlock()
	if len(subject) > 100 {
		subject = subject[:100] + "..."
	}
	l.log.warnf("nats: dropped %d malformed revocation message(s); latest on %q: %s", n, subject, reason)
}

func (l *natsLink) synced() bool {
	if l.n.stream == "" {
		return true
	}
	return l.js.synced()
}

func (l *natsLink) status() linkStatus {
	l.mu.Lock()
	lastErr := l.lastErr
	l.mu.Unlock()
	if lastErr == "" && l.conn.LastError() != nil {
		lastErr = l.conn.LastError().Error()
	}
	var seq uint64
	var snap *snapshotStatus
	if l.n.stream != "" {
		seq = l.js.lastSeq()
		if l.n.snapshotEvery > 0 {
			l.js.mu.Lock()
			st := l.js.snap
			l.js.mu.Unlock()
			snap = &st
		}
	}
	return linkStatus{
		Connected:   l.conn.Connected(),
		Server:      l.conn.ConnectedURL(),
		Stream:      l.n.stream,
		StreamSeq:   seq,
		Synced:      l.synced(),
		LastError:   lastErr,
		Received:    atomic.LoadInt64(&l.received),
		Dropped:     atomic.LoadInt64(&l.dropped),
		Published:   atomic.LoadInt64(&l.published),
		PublishFail: atomic.LoadInt64(&l.publishFail),
		Snapshot:    snap,
	}
}
