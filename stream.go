package tokenrevoke

import (
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

// replayBatch is how many replayed revocations are added to the store under one lock.
const replayBatch = 512

type js struct {
	// applied (atomic) is the stream sequence of the last message whose revocation is in
	// the store: a snapshot taken after reading it holds every revocation up to it.
	applied uint64

	wakeCh chan struct{}

	mu       sync.Mutex
	ready    bool   // the stream exists and is compatible
	problem  string // why the stream is unusable, "" when fine
	consumer *natsclient.OrderedConsumer
	started  time.Time
	replayed int64

	isSynced int32 // atomic: 1 once the consumer has caught up, 0 while stalled

	// Snapshots (snapshot.go), under mu.
	created      time.Time // the stream's creation time, from the last stream check
	snapTried    bool      // the first set-up looked for a snapshot
	startSeq     uint64    // sequence the loaded snapshot covers (0: none)
	knownSnapSeq uint64    // sequence of the newest snapshot known to exist
	snap         snapshotStatus

	// Replay batching; only touched by the consumer's delivery goroutine.
	keys     [][32]byte
	exps     []int64
	batchSeq uint64 // stream sequence of the last message taken into the batch
}

func (j *js) wake() {
	select {
	case j.wakeCh <- struct{}{}:
	default:
	}
}

// run sets up the stream and the consumer, retrying until both are in place; the
// consumer then recreates itself on reconnects and gaps.
func (j *js) run(l *natsLink) {
	for {
		if l.conn.Connected() && j.setUp(l) {
			return
		}
		select {
		case <-j.wakeCh:
		case <-time.After(streamCheckEvery):
		}
	}
}

func (j *js) setUp(l *natsLink) bool {
	info, err := j.ensureStream(l)
	if err != nil {
		j.fail(l, err.Error())
		return false
	}
	j.mu.Lock()
	j.started = time.Now()
	tried := j.snapTried
	j.snapTried = true
	j.mu.Unlock()
	if l.n.snapshotEvery > 0 && !tried {
		// A fresh gateway: load the newest snapshot, then replay only what follows it.
		j.ensureSnapshotStream(l)
		seq := j.loadSnapshot(l, info)
		j.mu.Lock()
		j.startSeq = seq
		j.mu.Unlock()
	}
	j.mu.Lock()
	startSeq := j.startSeq + 1
	j.mu.Unlock()
	c, err := l.conn.SubscribeOrdered(natsclient.OrderedOptions{
		Stream:        l.n.stream,
		FilterSubject: l.n.subject + ".>",
		StartSeq:      startSeq,
		// A consumer whose server node died is only noticed after two missed
		// heartbeats; keep that window short, since the gateway believes it is synced.
		IdleHeartbeat: consumerHeartbeat,
		OnMsg:         l.onStreamMsg, // a method value: no extra interpreted call per message
		Minimal:       true,          // only Subject, Data and Pending are read
		OnSynced:      func(last uint64) { j.onSynced(l, last) },
		OnStalled:     func(reason string) { j.onStalled(l, reason) },
		Logf:          l.clientLog,
	})
	if err != nil {
		j.fail(l, "nats.stream: cannot read stream "+l.n.stream+": "+err.Error())
		return false
	}
	j.mu.Lock()
	j.consumer = c
	j.mu.Unlock()
	return true
}

// fail records and logs a set-up problem (once per distinct message).
func (j *js) fail(l *natsLink, msg string) {
	j.mu.Lock()
	repeat := j.problem == msg
	j.problem = msg
	j.mu.Unlock()
	l.setErr(msg)
	if !repeat {
		l.log.errorf("%s", msg)
	}
}

// ensureStream creates the stream, or checks that an existing one cannot lose live
// revocations.
func (j *js) ensureStream(l *natsLink) (*natsclient.StreamInfo, error) {
	n := l.n
	info, err := l.conn.StreamInfo(n.stream, publishTimeout)
	if errors.Is(err, natsclient.ErrStreamNotFound) {
		info, err = l.conn.AddStream(wantedStream(n), publishTimeout)
		if err == nil {
			l.log.infof("nats: created stream %s (subjects %s.>, file storage, %d replica(s), one message per token, per-message TTL)",
				n.stream, n.subject, n.replicas)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nats.stream: stream %s: %v", n.stream, err)
	}
	if problem := streamProblem(info.Config, n); problem != "" {
		j.mu.Lock()
		j.ready = false
		j.mu.Unlock()
		return nil, fmt.Errorf("nats.stream: existing stream %s is not usable: %s; fix the stream or set another nats.stream", n.stream, problem)
	}
	j.mu.Lock()
	j.ready = true
	j.problem = ""
	j.created = info.Created
	j.mu.Unlock()
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
func (j *js) publish(l *natsLink, subject string, body []byte, exp int64) error {
	j.mu.Lock()
	problem := j.problem
	ready := j.ready
	j.mu.Unlock()
	if !ready && problem != "" {
		return errors.New(problem)
	}
	hdr := natsclient.Header{}
	hdr.Set("Nats-TTL", natsclient.FormatTTL(time.Until(time.Unix(exp, 0))))
	ack, err := l.conn.PublishJS(subject, hdr, body, publishTimeout)
	if err != nil {
		return err
	}
	if ack.Stream != l.n.stream {
		return fmt.Errorf("nats.stream: revocation stored in stream %q, not %q (overlapping streams?)", ack.Stream, l.n.stream)
	}
	return nil
}

// onStreamMsg runs on the consumer's delivery goroutine, in stream order. m is only
// valid during the call; nothing of it is kept but copies.
func (l *natsLink) onStreamMsg(m *natsclient.JSMsg) {
	j := &l.js
	sum, exp, reason := decodeRevocation(m.Subject, m.Data, l.n.subject)
	if reason != "" {
		l.drop(m.Subject, reason)
	} else {
		atomic.AddInt64(&l.received, 1)
		j.keys = append(j.keys, sum)
		j.exps = append(j.exps, exp)
		j.batchSeq = m.StreamSeq
	}
	// Batch only while a large backlog remains: near the end of a replay (and for live
	// messages) every revocation is applied at once, even if the stream's last messages
	// expire before they are delivered and Pending never reaches 0.
	if m.Pending < replayBatch || len(j.keys) >= replayBatch {
		j.flush(l)
	}
}

func (j *js) flush(l *natsLink) {
	if len(j.keys) == 0 {
		return
	}
	n := l.d.cache.addBatch(j.keys, j.exps, time.Now().Unix())
	atomic.StoreUint64(&j.applied, j.batchSeq)
	j.keys = j.keys[:0]
	j.exps = j.exps[:0]
	j.mu.Lock()
	j.replayed += int64(n)
	j.mu.Unlock()
}

func (j *js) onSynced(l *natsLink, last uint64) {
	j.flush(l)
	first := atomic.SwapInt32(&j.isSynced, 1) == 0
	j.mu.Lock()
	took := time.Since(j.started)
	replayed := j.replayed
	j.mu.Unlock()
	if first {
		l.log.infof("nats: stream %s synced at sequence %d (%d revocations applied, %s since start)",
			l.n.stream, last, replayed, took.Round(time.Millisecond))
	}
}

func (j *js) onStalled(l *natsLink, reason string) {
	j.flush(l)
	atomic.StoreInt32(&j.isSynced, 0)
	j.mu.Lock()
	j.started = time.Now()
	j.mu.Unlock()
	l.log.warnf("nats: stream %s consumer stalled (%s); replaying from the last sequence", l.n.stream, reason)
}

func (j *js) synced() bool { return atomic.LoadInt32(&j.isSynced) == 1 }

func (j *js) lastSeq() uint64 {
	j.mu.Lock()
	c := j.consumer
	j.mu.Unlock()
	if c == nil {
		return 0
	}
	return c.LastStreamSeq()
}
