package tokenrevoke

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// JetStream mode (nats.stream set): every revocation is stored in a stream, one message
// per token subject, each message living exactly as long as its token (per-message TTL,
// the Nats-TTL header of nats-server 2.11+). A gateway replays the stream at start and
// after every reconnect with an ordered consumer, then follows live messages, so a
// gateway that was down or cut off forgets nothing that was acknowledged.

// streamCheckEvery is how often a failed stream set-up is retried.
const streamCheckEvery = 5 * time.Second

// consumerHeartbeat is the ordered consumer's idle heartbeat.
const consumerHeartbeat = time.Second

// replayBatch is how many replayed revocations are added to the cache under one lock.
const replayBatch = 512

// snapshotPoll is how often the follower asks its snapshotter whether a snapshot is due.
const snapshotPoll = 2 * time.Second

// streamFollower keeps the cache in step with the revocation stream: it sets the stream
// up (creating or checking it), replays it into the cache, follows it, and publishes
// into it. With snapshots on, it holds a snapshotter, which it asks to load a snapshot
// before the first replay and, while synced, whether one is due.
type streamFollower struct {
	// applied (atomic) is the stream sequence of the last message whose revocation is in
	// the cache: a snapshot taken after reading it holds every revocation up to it.
	applied  uint64
	received int64 // atomic: valid revocations received
	drops    wireDrops
	isSynced int32 // atomic: 1 once the consumer has caught up, 0 while stalled

	conn  *natsclient.Conn // set by start
	n     *natsSettings
	cache *tokenCache
	log   *logger
	nlog  *natsLog     // shared with the link: the status document's lastError
	snap  *snapshotter // nil with snapshots off

	wakeCh chan struct{}

	mu        sync.Mutex
	ready     bool   // the stream exists and is compatible
	problem   string // why the stream is unusable, "" when fine
	consumer  *natsclient.OrderedConsumer
	started   time.Time
	replayed  int64
	created   time.Time // the stream's creation time, from the last stream check
	snapTried bool      // the first set-up looked for a snapshot
	startSeq  uint64    // sequence the loaded snapshot covers (0: none)

	// Replay batching; only touched by the consumer's delivery goroutine.
	keys     [][32]byte
	exps     []int64
	origins  []string
	batchSeq uint64 // stream sequence of the last message taken into the batch
	sawV1    bool   // a version-1 message was applied
}

func newStreamFollower(n *natsSettings, cache *tokenCache, log *logger, nlog *natsLog) *streamFollower {
	return &streamFollower{n: n, cache: cache, log: log, nlog: nlog, wakeCh: make(chan struct{}, 1)}
}

// start begins following the stream over conn, in the background.
func (f *streamFollower) start(conn *natsclient.Conn) {
	f.conn = conn
	if f.n.snapshotEvery > 0 {
		f.snap = newSnapshotter(conn, f.n, f.cache, f.log)
	}
	go f.run()
	if f.snap != nil {
		go f.snapshotLoop()
	}
}

// wake makes a waiting set-up retry at once (after a reconnect).
func (f *streamFollower) wake() {
	select {
	case f.wakeCh <- struct{}{}:
	default:
	}
}

// run sets up the stream and the consumer, retrying until both are in place; the
// consumer then recreates itself on reconnects and gaps.
func (f *streamFollower) run() {
	for {
		if f.conn.Connected() && f.setUp() {
			return
		}
		select {
		case <-f.wakeCh:
		case <-time.After(streamCheckEvery):
		}
	}
}

func (f *streamFollower) setUp() bool {
	info, err := f.ensureStream()
	if err != nil {
		f.fail(err.Error())
		return false
	}
	f.mu.Lock()
	f.started = time.Now()
	tried := f.snapTried
	f.snapTried = true
	f.mu.Unlock()
	if f.snap != nil && !tried {
		// A fresh gateway: load the newest snapshot, then replay only what follows it.
		f.snap.ensureStream()
		seq := f.snap.load(info)
		f.mu.Lock()
		f.startSeq = seq
		f.mu.Unlock()
	}
	f.mu.Lock()
	startSeq := f.startSeq + 1
	f.mu.Unlock()
	c, err := f.conn.SubscribeOrdered(natsclient.OrderedOptions{
		Stream:        f.n.stream,
		FilterSubject: f.n.subject + ".>",
		StartSeq:      startSeq,
		// A consumer whose server node died is only noticed after two missed
		// heartbeats; keep that window short, since the gateway believes it is synced.
		IdleHeartbeat: consumerHeartbeat,
		OnMsg:         f.onStreamMsg, // a method value: no extra interpreted call per message
		// Only Subject, RawHeader (the signature), Data, Pending and, for a rule, its
		// StoredTime (capRule) are read: headers and times stay undecoded.
		Minimal:   true,
		OnSynced:  f.onSynced,
		OnStalled: f.onStalled,
		Logf:      f.nlog.clientLog,
	})
	if err != nil {
		f.fail("nats.stream: cannot read stream " + f.n.stream + ": " + err.Error())
		return false
	}
	f.mu.Lock()
	f.consumer = c
	f.mu.Unlock()
	return true
}

// fail records and logs a set-up problem (once per distinct message).
func (f *streamFollower) fail(msg string) {
	f.mu.Lock()
	repeat := f.problem == msg
	f.problem = msg
	f.mu.Unlock()
	f.nlog.setErr(msg)
	if !repeat {
		f.log.errorf("%s", msg)
	}
}

// ensureStream creates the stream, or checks that an existing one cannot lose live
// revocations.
func (f *streamFollower) ensureStream() (*natsclient.StreamInfo, error) {
	n := f.n
	info, err := f.conn.StreamInfo(n.stream, publishTimeout)
	if errors.Is(err, natsclient.ErrStreamNotFound) {
		info, err = f.conn.AddStream(wantedStream(n), publishTimeout)
		if err == nil {
			f.log.infof("nats: created stream %s (subjects %s.>, file storage, %d replica(s), one message per token, per-message TTL)",
				n.stream, n.subject, n.replicas)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nats.stream: stream %s: %v", n.stream, err)
	}
	if problem := streamProblem(info.Config, n); problem != "" {
		f.mu.Lock()
		f.ready = false
		f.mu.Unlock()
		return nil, fmt.Errorf("nats.stream: existing stream %s is not usable: %s; fix the stream or set another nats.stream", n.stream, problem)
	}
	f.mu.Lock()
	f.ready = true
	f.problem = ""
	f.created = info.Created
	f.mu.Unlock()
	return info, nil
}

func wantedStream(n *natsSettings) natsclient.StreamConfig {
	return natsclient.StreamConfig{
		Name:              n.stream,
		Description:       "tokenrevoke: revoked OAuth tokens by SHA-256, each kept until the token expires",
		Subjects:          []string{n.subject + ".>"},
		Retention:         "limits",
		Storage:           "file",
		Replicas:          n.replicas,
		MaxMsgsPerSubject: 1,
		Discard:           "old",
		AllowMsgTTL:       true,
	}
}

// streamProblem says why an existing stream could drop a live revocation or otherwise
// does not fit, or "" when it is compatible.
func streamProblem(c natsclient.StreamConfig, n *natsSettings) string {
	var problems []string
	covers := false
	for _, s := range c.Subjects {
		if s == n.subject+".>" {
			covers = true
		}
	}
	if !covers {
		problems = append(problems, fmt.Sprintf("its subjects %v do not include %s.>", c.Subjects, n.subject))
	}
	if !c.AllowMsgTTL {
		problems = append(problems, "it does not allow per-message TTLs (allow_msg_ttl)")
	}
	if c.Storage != "" && c.Storage != "file" {
		problems = append(problems, fmt.Sprintf("its storage is %q, not file", c.Storage))
	}
	if c.Replicas != n.replicas && !(c.Replicas == 0 && n.replicas == 1) {
		problems = append(problems, fmt.Sprintf("it has %d replica(s), nats.replicas is %d", c.Replicas, n.replicas))
	}
	if c.MaxMsgsPerSubject != 1 {
		problems = append(problems, fmt.Sprintf("max_msgs_per_subject is %d, not 1", c.MaxMsgsPerSubject))
	}
	if c.MaxAge > 0 && c.MaxAge < n.defaultTTL {
		problems = append(problems, fmt.Sprintf("its max_age %s is shorter than defaultTTL %s, so live revocations would be dropped", c.MaxAge, n.defaultTTL))
	}
	if (c.MaxMsgs > 0 || c.MaxBytes > 0) && c.Discard != "new" {
		problems = append(problems, "it has a max_msgs/max_bytes limit with discard old, so live revocations could be dropped")
	}
	if c.Retention != "" && c.Retention != "limits" {
		problems = append(problems, fmt.Sprintf("its retention is %q, not limits", c.Retention))
	}
	return strings.Join(problems, "; ")
}

// publish stores one revocation in the stream and waits for the stream's ack.
func (f *streamFollower) publish(subject string, body []byte, exp int64) error {
	// Right after start the stream may still be being set up (created or checked): a
	// publish then would find no stream ("no responders"). Wait for the set-up, within
	// the publish timeout, instead of failing the revocation.
	deadline := time.Now().Add(publishTimeout)
	f.mu.Lock()
	problem := f.problem
	ready := f.ready
	f.mu.Unlock()
	for !ready && problem == "" && time.Now().Before(deadline) {
		f.wake()
		time.Sleep(20 * time.Millisecond)
		f.mu.Lock()
		problem = f.problem
		ready = f.ready
		f.mu.Unlock()
	}
	if !ready && problem != "" {
		return errors.New(problem)
	}
	hdr := natsclient.Header{}
	hdr.Set("Nats-TTL", natsclient.FormatTTL(time.Until(time.Unix(exp, 0))))
	f.n.signer.addTo(hdr, subject, body)
	ack, err := f.conn.PublishJS(subject, hdr, body, publishTimeout)
	if err != nil {
		return err
	}
	if ack.Stream != f.n.stream {
		return fmt.Errorf("nats.stream: revocation stored in stream %q, not %q (overlapping streams?)", ack.Stream, f.n.stream)
	}
	return nil
}

// onStreamMsg runs on the consumer's delivery goroutine, in stream order. m is only
// valid during the call; nothing of it is kept but copies.
func (f *streamFollower) onStreamMsg(m *natsclient.JSMsg) {
	origin, why := f.n.signer.checkRaw(m.Subject, m.Data, m.RawHeader)
	if why != 0 {
		f.drops.dropSig(f.log, m.Subject, why)
		if m.Pending < replayBatch || len(f.keys) >= replayBatch {
			f.flush()
		}
		return
	}
	sum, exp, v1, rule, cutoff, reason := decodeRevocation(m.Subject, m.Data, f.n.subject)
	if reason != "" {
		f.drops.drop(f.log, m.Subject, reason)
	} else if rule != 0 {
		// Rules are few: applied at once (order does not matter: the later cutoff wins).
		atomic.AddInt64(&f.received, 1)
		now := time.Now().Unix()
		cutoff, exp = f.n.capRule(cutoff, exp, m.StoredTime().Unix(), now)
		if held, latest := f.cache.addRule(rule, sum, cutoff, exp, now); held && latest > cutoff {
			// The stream keeps one message per rule key, and this one, arriving after a
			// later cutoff, replaced it there: a gateway that joins from the stream
			// alone would hold the earlier cutoff. Publish the later one again (the
			// held cutoff, itself capped when it arrived: a forged far-future cutoff is
			// never published again as it came).
			go f.republishRule(rule, sum)
		}
		f.batchSeq = m.StreamSeq
		if len(f.keys) == 0 {
			atomic.StoreUint64(&f.applied, m.StreamSeq)
		}
	} else {
		atomic.AddInt64(&f.received, 1)
		f.keys = append(f.keys, sum)
		f.exps = append(f.exps, exp)
		f.origins = append(f.origins, origin)
		f.batchSeq = m.StreamSeq
		if v1 && !f.sawV1 {
			f.sawV1 = true
			f.cache.setLegacy()
		}
	}
	// Batch only while a large backlog remains: near the end of a replay (and for live
	// messages) every revocation is applied at once, even if the stream's last messages
	// expire before they are delivered and Pending never reaches 0.
	if m.Pending < replayBatch || len(f.keys) >= replayBatch {
		f.flush()
	}
}

// republishRule publishes the rule held for key again (its later cutoff and its
// expiry), so that the stream's one message for the key is not an earlier cutoff. It
// runs on its own goroutine: a publish waits for the stream's ack.
func (f *streamFollower) republishRule(rule uint8, key [32]byte) {
	cutoff, exp, ok := f.cache.ruleOf(rule, key, time.Now().Unix())
	if !ok {
		return
	}
	kind := kindSID
	if rule == ruleSub {
		kind = kindSub
	}
	body, subject := encodeRevocation(revocation{sum: key, kind: kind, cutoff: cutoff, exp: exp, revokedAt: time.Now()}, f.n)
	if err := f.publish(subject, body, exp); err != nil {
		f.log.warnf("nats: stream %s: an earlier cutoff of %s rule %s arrived last; publishing the later one again failed: %v", f.n.stream, kind, shortHash(key), err)
		return
	}
	f.log.infof("nats: stream %s: an earlier cutoff of %s rule %s arrived last; the later one is published again", f.n.stream, kind, shortHash(key))
}

func (f *streamFollower) flush() {
	if len(f.keys) == 0 {
		return
	}
	now := time.Now().Unix()
	n := f.cache.addBatch(f.keys, f.exps, f.origins, now, now+int64(f.n.maxTTL/time.Second))
	atomic.StoreUint64(&f.applied, f.batchSeq)
	f.keys = f.keys[:0]
	f.exps = f.exps[:0]
	f.origins = f.origins[:0]
	f.mu.Lock()
	f.replayed += int64(n)
	f.mu.Unlock()
}

func (f *streamFollower) onSynced(last uint64) {
	f.flush()
	first := atomic.SwapInt32(&f.isSynced, 1) == 0
	f.mu.Lock()
	took := time.Since(f.started)
	replayed := f.replayed
	f.mu.Unlock()
	f.n.metrics.setSyncDuration(took)
	if first {
		f.log.infof("nats: stream %s synced at sequence %d (%d revocations applied, %s since start)",
			f.n.stream, last, replayed, took.Round(time.Millisecond))
	}
}

func (f *streamFollower) onStalled(reason string) {
	f.flush()
	atomic.StoreInt32(&f.isSynced, 0)
	f.mu.Lock()
	f.started = time.Now()
	f.mu.Unlock()
	f.log.warnf("nats: stream %s consumer stalled (%s); replaying from the last sequence", f.n.stream, reason)
}

func (f *streamFollower) synced() bool { return atomic.LoadInt32(&f.isSynced) == 1 }

// lastSeq is the stream sequence of the last message delivered.
func (f *streamFollower) lastSeq() uint64 {
	f.mu.Lock()
	c := f.consumer
	f.mu.Unlock()
	if c == nil {
		return 0
	}
	return c.LastStreamSeq()
}

// counts returns the revocations received and the messages dropped as malformed.
func (f *streamFollower) counts() (received, dropped int64) {
	return atomic.LoadInt64(&f.received), f.drops.count()
}

// snapshotStatus is the snapshot part of the status document; nil with snapshots off.
func (f *streamFollower) snapshotStatus() *snapshotStatus {
	if f.snap == nil {
		return nil
	}
	st := f.snap.status()
	return &st
}

// snapshotLoop runs for the life of the connection and has a snapshot written whenever
// the snapshotter finds one due. It polls (no select: yaegi v0.16.1 shares a select's
// cases between goroutines that run the same statement, and a process may hold several
// followers).
func (f *streamFollower) snapshotLoop() {
	for {
		time.Sleep(snapshotPoll + jitterUpTo(snapshotPoll))
		if f.conn.IsClosed() {
			return
		}
		if !f.synced() {
			continue
		}
		f.mu.Lock()
		created := f.created
		f.mu.Unlock()
		if f.snap.due(atomic.LoadUint64(&f.applied), created) {
			// Read again: the snapshot covers every revocation applied up to now.
			f.snap.write(atomic.LoadUint64(&f.applied), created)
		}
	}
}

func jitterUpTo(d time.Duration) time.Duration {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return d * time.Duration(binary.LittleEndian.Uint16(b[:])) / 65536
}
