package natsclient

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Ordered consumer
//
// An OrderedConsumer reads a stream from a start sequence to its end and then keeps
// following it, handing every message to OnMsg exactly once and in stream order. It uses a
// short-lived (ephemeral, in-memory, no acks) push consumer that it throws away and creates
// again, from the last stream sequence it delivered plus one, whenever anything looks wrong:
//
//   - a delivery whose consumer sequence is not the previous one plus one (a message was
//     lost between server and client);
//   - an idle heartbeat whose Nats-Last-Consumer header differs from the last consumer
//     sequence received (the lost message was the last one before a quiet period);
//   - no message, heartbeat or flow-control request for twice IdleHeartbeat (consumer gone,
//     connection silently broken);
//   - a "409" status on the delivery subject (consumer deleted);
//   - the connection was lost (OnStalled at once) or re-established.
//
// Each (re)creation uses a new delivery inbox and a new consumer name, so late messages of
// an abandoned consumer are recognised and dropped.
//
// Callbacks: OnMsg, OnSynced and OnStalled never run concurrently with each other. OnMsg
// (and OnSynced when it follows a message) runs on the connection's reading goroutine, so
// the rules for message callbacks apply: return quickly, and do not wait for a reply on the
// same connection (no Request, Flush, StreamInfo or PublishJS). OnStalled and the other
// OnSynced calls run on the consumer's own goroutine under the same rule (the reading
// goroutine may be waiting for them). Stop may be called from a callback.
//
// Callbacks may start before SubscribeOrdered returns (replay begins while it waits for the
// consumer-creation reply). An OnMsg that blocks until SubscribeOrdered has returned (to get
// hold of the *OrderedConsumer, say) therefore deadlocks until APITimeout: the reply it
// waits for is read by the goroutine that is blocked in OnMsg.

// Defaults of OrderedOptions.
const (
	DefaultIdleHeartbeat     = 5 * time.Second
	DefaultInactiveThreshold = 2 * time.Minute
	DefaultJSAPITimeout      = 5 * time.Second
)

// OrderedOptions configures SubscribeOrdered.
type OrderedOptions struct {
	// Stream is the stream to read (required).
	Stream string
	// FilterSubject restricts delivery to matching subjects, e.g. "tokens.revoked.>".
	FilterSubject string
	// StartSeq is the first stream sequence wanted; 0 (or 1) delivers the whole stream.
	StartSeq uint64
	// IdleHeartbeat is how often the server sends a heartbeat when it has nothing to
	// deliver, default 5s. The consumer is treated as stalled after twice that without any
	// message or heartbeat.
	IdleHeartbeat time.Duration
	// InactiveThreshold is how long the server keeps a consumer that nobody listens to
	// (one abandoned by a client that went away), default 2m.
	InactiveThreshold time.Duration
	// APITimeout bounds each consumer create/delete request, default 5s.
	APITimeout time.Duration

	// OnMsg receives the messages, sequentially, in stream order, never twice for the same
	// stream sequence (required).
	OnMsg func(m *JSMsg)
	// OnSynced is called each time a (re)created consumer has delivered everything the
	// stream held when it was created (num_pending reached 0), with the last delivered
	// stream sequence. An empty stream is synced right after creation.
	OnSynced func(lastSeq uint64)
	// OnStalled is called with the reason before the consumer is recreated.
	OnStalled func(reason string)
	// Logf receives log lines (level "debug", "info", "warn", "error"); the connection's
	// Logf when nil.
	Logf func(level, msg string)
}

// JSMsg is a message delivered by an ordered consumer.
type JSMsg struct {
	Subject     string
	Header      Header // nil when the message has no headers
	Data        []byte
	StreamSeq   uint64
	ConsumerSeq uint64 // sequence within the current consumer (restarts at 1 after a recreation)
	Pending     uint64 // messages still to deliver after this one, as the server saw it
	Time        time.Time
}

// OrderedConsumer is returned by SubscribeOrdered.
type OrderedConsumer struct {
	c           *Conn
	opts        OrderedOptions
	hb          time.Duration
	apiTimeout  time.Duration
	inactive    time.Duration
	listenerID  int64
	wake        chan struct{} // buffered 1: something for the worker to look at
	stopCh      chan struct{}
	doneCh      chan struct{}
	workStarted bool

	cbMu sync.Mutex // held while a user callback runs: they never overlap

	mu           sync.Mutex
	stopped      bool
	gen          int64         // generation: one per consumer (re)creation
	active       bool          // deliveries of gen are accepted
	needReset    bool          // a (re)creation is due; false only after a successful create
	sub          *Subscription // delivery inbox of gen
	name         string        // consumer name of gen (it may exist on the server)
	genEpoch     int64         // connection epoch gen was created on
	lastSSeq     uint64        // last stream sequence handed to OnMsg
	expDSeq      uint64        // last consumer sequence received in gen
	synced       bool          // gen reached num_pending 0
	activity     uint64        // bumped by every message/heartbeat/flow control of gen
	seenActivity uint64        // activity when the worker last looked
	lastActivity time.Time     // when the worker last saw activity change (or gen started)
	stallReason  string        // set by the delivery path or hooks, taken by the worker
	inCb         int           // user callbacks running
	lastWarn     string
	lastWarnAt   time.Time
}

// consumerConfig is the part of the JetStream consumer configuration used here.
type consumerConfig struct {
	Name              string        `json:"name,omitempty"`
	DeliverSubject    string        `json:"deliver_subject"`
	DeliverPolicy     string        `json:"deliver_policy"`
	OptStartSeq       uint64        `json:"opt_start_seq,omitempty"`
	AckPolicy         string        `json:"ack_policy"`
	MaxDeliver        int           `json:"max_deliver"`
	FilterSubject     string        `json:"filter_subject,omitempty"`
	ReplayPolicy      string        `json:"replay_policy"`
	FlowControl       bool          `json:"flow_control"`
	Heartbeat         time.Duration `json:"idle_heartbeat"`
	MemoryStorage     bool          `json:"mem_storage"`
	Replicas          int           `json:"num_replicas"`
	InactiveThreshold time.Duration `json:"inactive_threshold"`
}

type createConsumerRequest struct {
	Stream string         `json:"stream_name"`
	Config consumerConfig `json:"config"`
}

type sequencePair struct {
	Consumer uint64 `json:"consumer_seq"`
	Stream   uint64 `json:"stream_seq"`
}

type consumerInfoReply struct {
	Name       string       `json:"name"`
	Delivered  sequencePair `json:"delivered"`
	NumPending uint64       `json:"num_pending"`
}

// SubscribeOrdered starts an ordered consumer on opts.Stream. When the connection is up,
// the first consumer is created before SubscribeOrdered returns (OnMsg may already run
// meanwhile), and a definitive refusal (ErrStreamNotFound, or an *APIError with a 4xx
// code) is returned. Transient failures (not connected, timeout, JetStream unavailable)
// are retried in the background, with backoff up to 5s, until Stop or Close. The consumer
// also ends, without Stop, when the connection is closed.
//
// If the stream is deleted and recreated while the consumer runs, its sequences restart
// at 1: the consumer resumes after the last sequence it delivered and so skips the new
// stream's first messages. Stop and subscribe again (StartSeq 0) after recreating a stream.
func (c *Conn) SubscribeOrdered(opts OrderedOptions) (*OrderedConsumer, error) {
	if err := checkStreamName(opts.Stream); err != nil {
		return nil, err
	}
	if opts.FilterSubject != "" {
		if err := checkSubject(opts.FilterSubject); err != nil {
			return nil, err
		}
	}
	if opts.OnMsg == nil {
		return nil, ErrNilCallback
	}
	o := &OrderedConsumer{
		c:          c,
		opts:       opts,
		hb:         opts.IdleHeartbeat,
		apiTimeout: opts.APITimeout,
		inactive:   opts.InactiveThreshold,
		wake:       make(chan struct{}, 1),
		stopCh:     make(chan struct{}),
		doneCh:     make(chan struct{}),
		needReset:  true,
	}
	if o.hb <= 0 {
		o.hb = DefaultIdleHeartbeat
	}
	if o.hb < 100*time.Millisecond {
		o.hb = 100 * time.Millisecond
	}
	if o.apiTimeout <= 0 {
		o.apiTimeout = DefaultJSAPITimeout
	}
	if o.inactive <= 0 {
		o.inactive = DefaultInactiveThreshold
	}
	if o.inactive < 4*o.hb {
		o.inactive = 4 * o.hb
	}
	if opts.StartSeq > 1 {
		o.lastSSeq = opts.StartSeq - 1
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	var hook connListener
	hook.onConnect = o.hookConnected
	hook.onDisconnect = o.hookDisconnected
	o.listenerID = c.addListener(hook)

	if _, up := c.connEpoch(); up {
		if err := o.recreate(); err != nil {
			if definitiveJSError(err) {
				o.cleanup()
				return nil, err
			}
			o.warn("nats: creating ordered consumer on stream " + opts.Stream + " failed (will retry): " + err.Error())
		}
	}
	o.mu.Lock()
	o.workStarted = true
	o.mu.Unlock()
	go o.run()
	return o, nil
}

// definitiveJSError reports whether retrying cannot help.
func definitiveJSError(err error) bool {
	if errors.Is(err, ErrStreamNotFound) {
		return true
	}
	if ae, ok := AsAPIError(err); ok {
		return ae.Code >= 400 && ae.Code < 500
	}
	return false
}

// Synced reports whether the current consumer has delivered everything the stream held
// when it was created (and has not stalled since).
func (o *OrderedConsumer) Synced() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.synced && !o.stopped
}

// LastStreamSeq returns the stream sequence of the last message handed to OnMsg (StartSeq-1
// or 0 before the first one).
func (o *OrderedConsumer) LastStreamSeq() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastSSeq
}

// consumerName returns the name of the current server-side consumer ("" when none).
func (o *OrderedConsumer) consumerName() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.name
}

// Stop stops delivery, deletes the server-side consumer (best effort) and ends the
// consumer's goroutine. It is idempotent. Called from a callback it does not wait for the
// goroutine, which ends right after.
func (o *OrderedConsumer) Stop() {
	o.mu.Lock()
	if o.stopped {
		o.mu.Unlock()
		return
	}
	o.stopped = true
	o.active = false
	o.synced = false
	inCb := o.inCb > 0
	started := o.workStarted
	close(o.stopCh)
	o.mu.Unlock()
	if started && !inCb {
		<-o.doneCh
	}
}

func (o *OrderedConsumer) logf(level, msg string) {
	if o.opts.Logf != nil {
		o.opts.Logf(level, msg)
		return
	}
	o.c.logf(level, msg)
}

// warn logs msg, dropping identical repeats for warnRepeatEvery.
func (o *OrderedConsumer) warn(msg string) {
	now := time.Now()
	o.mu.Lock()
	repeat := msg == o.lastWarn && now.Sub(o.lastWarnAt) < warnRepeatEvery
	if !repeat {
		o.lastWarn = msg
		o.lastWarnAt = now
	}
	o.mu.Unlock()
	if repeat {
		o.logf("debug", msg)
		return
	}
	o.logf("warn", msg)
}

func (o *OrderedConsumer) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// stallLocked marks the current generation as broken. Caller holds o.mu.
func (o *OrderedConsumer) stallLocked(reason string) {
	o.active = false
	o.synced = false
	if o.stallReason == "" {
		o.stallReason = reason
	}
}

func (o *OrderedConsumer) hookConnected() {
	o.signal()
}

func (o *OrderedConsumer) hookDisconnected(err error) {
	reason := "disconnected"
	if err != nil {
		reason = "disconnected: " + err.Error()
	}
	o.mu.Lock()
	if !o.stopped && !o.needReset {
		o.stallLocked(reason)
	}
	o.mu.Unlock()
	o.signal()
}

// enter/leave count running user callbacks (Stop must not wait for itself).
func (o *OrderedConsumer) enter() {
	o.mu.Lock()
	o.inCb++
	o.mu.Unlock()
}

func (o *OrderedConsumer) leave() {
	o.mu.Lock()
	o.inCb--
	o.mu.Unlock()
}

func (o *OrderedConsumer) callSynced(last uint64) {
	if o.opts.OnSynced == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			o.logf("error", fmt.Sprintf("nats: panic in ordered consumer OnSynced: %v", r))
		}
	}()
	o.opts.OnSynced(last)
}

func (o *OrderedConsumer) callStalled(reason string) {
	if o.opts.OnStalled == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			o.logf("error", fmt.Sprintf("nats: panic in ordered consumer OnStalled: %v", r))
		}
	}()
	o.opts.OnStalled(reason)
}

// onDelivery is the callback of the delivery inbox of generation gen. It runs on the
// connection's reading goroutine.
func (o *OrderedConsumer) onDelivery(gen int64, m *Msg) {
	if m.Status != 0 {
		o.onStatus(gen, m)
		return
	}
	meta, ok := parseAckReply(m.Reply)
	// This is the hot path of a replay: under yaegi every statement counts, so locks are
	// released by hand (no defer) and the panic guard is a single deferred call in deliver.
	o.cbMu.Lock()
	o.mu.Lock()
	if gen != o.gen || !o.active {
		o.mu.Unlock()
		o.cbMu.Unlock()
		return
	}
	o.activity++
	if !ok {
		o.stallLocked("delivery without JetStream metadata (reply subject " + strconv.Quote(m.Reply) + ")")
		o.mu.Unlock()
		o.cbMu.Unlock()
		o.signal()
		return
	}
	if meta.dseq != o.expDSeq+1 {
		o.stallLocked("consumer sequence gap: expected " + strconv.FormatUint(o.expDSeq+1, 10) +
			", got " + strconv.FormatUint(meta.dseq, 10))
		o.mu.Unlock()
		o.cbMu.Unlock()
		o.signal()
		return
	}
	o.expDSeq = meta.dseq
	if meta.sseq <= o.lastSSeq {
		// Already handed over; a consumer started after lastSSeq cannot send it, but never
		// deliver twice.
		o.mu.Unlock()
		o.cbMu.Unlock()
		return
	}
	o.lastSSeq = meta.sseq
	fire := false
	if meta.pending == 0 && !o.synced {
		o.synced = true
		fire = true
	}
	o.inCb++
	o.mu.Unlock()

	jm := &JSMsg{
		Subject:     m.Subject,
		Header:      m.Header,
		Data:        m.Data,
		StreamSeq:   meta.sseq,
		ConsumerSeq: meta.dseq,
		Pending:     meta.pending,
		Time:        time.Unix(0, meta.ts),
	}
	o.deliver(jm, fire)
}

// deliver runs OnMsg with cbMu held (taken by onDelivery); finishDelivery releases it,
// also after a panic in OnMsg.
func (o *OrderedConsumer) deliver(jm *JSMsg, fire bool) {
	defer o.finishDelivery(jm, fire)
	o.opts.OnMsg(jm)
}

func (o *OrderedConsumer) finishDelivery(jm *JSMsg, fire bool) {
	if r := recover(); r != nil {
		o.logf("error", fmt.Sprintf("nats: panic in ordered consumer OnMsg (stream seq %d): %v", jm.StreamSeq, r))
	}
	if fire {
		o.callSynced(jm.StreamSeq)
	}
	o.mu.Lock()
	o.inCb--
	o.mu.Unlock()
	o.cbMu.Unlock()
}

// onStatus handles status messages on the delivery inbox: flow-control requests, idle
// heartbeats and "409" notices.
func (o *OrderedConsumer) onStatus(gen int64, m *Msg) {
	o.mu.Lock()
	current := gen == o.gen && o.active
	if current {
		o.activity++
	}
	o.mu.Unlock()
	if !current {
		return
	}
	switch m.Status {
	case 100:
		if m.Reply != "" {
			// Flow-control request: it comes after the messages it covers, and callbacks
			// run in order, so everything before it has been handled.
			o.c.Publish(m.Reply, nil)
			return
		}
		stalled := false
		if v := m.Header.Get("Nats-Last-Consumer"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err == nil {
				o.mu.Lock()
				if gen == o.gen && o.active && n != o.expDSeq {
					o.stallLocked("heartbeat reports consumer sequence " + strconv.FormatUint(n, 10) +
						", last received " + strconv.FormatUint(o.expDSeq, 10))
					stalled = true
				}
				o.mu.Unlock()
			}
		}
		if stalled {
			o.signal()
			return
		}
		// The server is waiting for an answer to a flow-control request it sent before.
		if fc := m.Header.Get("Nats-Consumer-Stalled"); fc != "" {
			o.c.Publish(fc, nil)
		}
	case 409:
		o.mu.Lock()
		if gen == o.gen && o.active {
			o.stallLocked("server: " + strconv.Itoa(m.Status) + " " + m.Description)
		}
		o.mu.Unlock()
		o.signal()
	default:
		o.logf("debug", "nats: ordered consumer on "+o.opts.Stream+": ignoring status "+
			strconv.Itoa(m.Status)+" "+m.Description)
	}
}

// recreate abandons the current consumer (if any) and creates a new one starting after the
// last delivered stream sequence. On error the generation stays pending (needReset).
func (o *OrderedConsumer) recreate() error {
	c := o.c
	epoch, _ := c.connEpoch()
	o.mu.Lock()
	if o.stopped {
		o.mu.Unlock()
		return nil
	}
	oldSub := o.sub
	oldName := o.name
	o.sub = nil
	o.name = ""
	o.gen++
	gen := o.gen
	o.active = false
	o.synced = false
	o.expDSeq = 0
	o.stallReason = ""
	o.needReset = true
	o.genEpoch = epoch
	start := o.lastSSeq + 1
	o.mu.Unlock()

	if oldSub != nil {
		oldSub.Unsubscribe()
	}
	if oldName != "" {
		o.deleteConsumer(oldName)
	}

	name := "oc_" + randomID()
	inbox := c.NewInbox()
	sub, err := c.Subscribe(inbox, func(m *Msg) { o.onDelivery(gen, m) })
	if err != nil {
		return err
	}
	o.mu.Lock()
	if o.stopped || o.gen != gen {
		o.mu.Unlock()
		sub.Unsubscribe()
		return nil
	}
	o.sub = sub
	o.name = name
	o.active = true
	o.lastActivity = time.Now()
	o.mu.Unlock()

	var cfg consumerConfig
	cfg.Name = name
	cfg.DeliverSubject = inbox
	cfg.DeliverPolicy = "all"
	if start > 1 {
		cfg.DeliverPolicy = "by_start_sequence"
		cfg.OptStartSeq = start
	}
	cfg.AckPolicy = "none"
	cfg.MaxDeliver = 1
	cfg.FilterSubject = o.opts.FilterSubject
	cfg.ReplayPolicy = "instant"
	cfg.FlowControl = true
	cfg.Heartbeat = o.hb
	cfg.MemoryStorage = true
	cfg.Replicas = 1
	cfg.InactiveThreshold = o.inactive
	var req createConsumerRequest
	req.Stream = o.opts.Stream
	req.Config = cfg

	var info consumerInfoReply
	subject := jsAPIPrefix + "CONSUMER.CREATE." + o.opts.Stream + "." + name
	if err := c.jsRequestCancel(subject, req, &info, o.apiTimeout, o.stopCh); err != nil {
		return err
	}

	o.cbMu.Lock()
	o.mu.Lock()
	fire := false
	var last uint64
	if gen == o.gen && !o.stopped {
		o.needReset = false
		o.lastActivity = time.Now()
		if o.active && !o.synced && info.NumPending == 0 && info.Delivered.Consumer <= o.expDSeq {
			o.synced = true
			fire = true
			last = o.lastSSeq
		}
	}
	if fire {
		o.inCb++
	}
	o.mu.Unlock()
	o.logf("debug", "nats: ordered consumer "+name+" on stream "+o.opts.Stream+" created from sequence "+
		strconv.FormatUint(start, 10)+" ("+strconv.FormatUint(info.NumPending, 10)+" pending)")
	if fire {
		o.callSynced(last)
		o.leave()
	}
	o.cbMu.Unlock()
	return nil
}

// deleteConsumer deletes a server-side consumer, best effort.
func (o *OrderedConsumer) deleteConsumer(name string) {
	timeout := o.apiTimeout
	if timeout > 2*time.Second {
		timeout = 2 * time.Second
	}
	err := o.c.jsRequest(jsAPIPrefix+"CONSUMER.DELETE."+o.opts.Stream+"."+name, nil, nil, timeout)
	if err != nil {
		o.logf("debug", "nats: deleting consumer "+name+" on stream "+o.opts.Stream+": "+err.Error())
	}
}

// run is the consumer's goroutine: it watches heartbeats and connection changes and
// recreates the consumer when needed, until Stop or the connection's Close.
func (o *OrderedConsumer) run() {
	defer close(o.doneCh)
	for {
		o.work()
		if o.finished() {
			break
		}
		// work only returns early after recovering from a panic: start over.
		t := time.NewTimer(time.Second)
		select {
		case <-t.C:
		case <-o.stopCh:
			t.Stop()
		case <-o.c.closeCh:
			t.Stop()
		}
	}
	o.cleanup()
}

func (o *OrderedConsumer) finished() bool {
	if o.c.isClosed() {
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stopped
}

// cleanup removes the connection hook, the delivery subscription and the consumer.
func (o *OrderedConsumer) cleanup() {
	defer func() {
		if r := recover(); r != nil {
			o.logf("error", fmt.Sprintf("nats: internal error stopping ordered consumer on %s: %v", o.opts.Stream, r))
		}
	}()
	o.c.removeListener(o.listenerID)
	o.mu.Lock()
	o.stopped = true
	o.active = false
	o.gen++
	sub := o.sub
	name := o.name
	o.sub = nil
	o.name = ""
	o.mu.Unlock()
	if sub != nil {
		sub.Unsubscribe()
	}
	if name != "" && !o.c.isClosed() {
		o.deleteConsumer(name)
	}
}

func (o *OrderedConsumer) work() {
	defer func() {
		if r := recover(); r != nil {
			o.logf("error", fmt.Sprintf("nats: internal error in ordered consumer on %s: %v", o.opts.Stream, r))
			o.mu.Lock()
			if !o.needReset {
				o.stallLocked(fmt.Sprintf("internal error: %v", r))
			}
			o.mu.Unlock()
		}
	}()
	tick := o.hb / 4
	if tick < 25*time.Millisecond {
		tick = 25 * time.Millisecond
	}
	if tick > time.Second {
		tick = time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var backoff time.Duration
	var nextTry time.Time
	for {
		if o.finished() {
			return
		}
		reason, report := o.check()
		if report {
			o.logf("info", "nats: ordered consumer on stream "+o.opts.Stream+" stalled ("+reason+"), recreating it")
			o.cbMu.Lock()
			o.enter()
			o.callStalled(reason)
			o.leave()
			o.cbMu.Unlock()
			nextTry = time.Time{}
			backoff = 0
		}
		_, up := o.c.connEpoch()
		if o.pendingReset() && up && !time.Now().Before(nextTry) {
			if err := o.recreate(); err != nil {
				if o.finished() {
					return
				}
				if backoff == 0 {
					backoff = 100 * time.Millisecond
				} else {
					backoff = backoff * 2
				}
				if backoff > 5*time.Second {
					backoff = 5 * time.Second
				}
				nextTry = time.Now().Add(jitter(backoff))
				o.warn("nats: creating ordered consumer on stream " + o.opts.Stream + " failed (will retry): " + err.Error())
			} else {
				backoff = 0
				nextTry = time.Time{}
			}
			continue
		}
		select {
		case <-o.stopCh:
			return
		case <-o.c.closeCh:
			return
		case <-o.wake:
		case <-t.C:
		}
	}
}

func (o *OrderedConsumer) pendingReset() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.needReset && !o.stopped
}

// check looks for a reason to recreate the consumer. report is true when the consumer was
// healthy until now (OnStalled is then due).
func (o *OrderedConsumer) check() (string, bool) {
	epoch, up := o.c.connEpoch()
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return "", false
	}
	if o.activity != o.seenActivity {
		o.seenActivity = o.activity
		o.lastActivity = now
	}
	reason := o.stallReason
	o.stallReason = ""
	if reason == "" && !o.needReset {
		if up && epoch != o.genEpoch {
			reason = "reconnected"
		} else if up && now.Sub(o.lastActivity) > 2*o.hb {
			reason = "no message or heartbeat for " + now.Sub(o.lastActivity).Round(time.Millisecond).String()
		}
	}
	if reason == "" {
		return "", false
	}
	o.active = false
	o.synced = false
	if o.needReset {
		return reason, false
	}
	o.needReset = true
	return reason, true
}
