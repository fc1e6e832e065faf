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
	// stream sequence (required). The *JSMsg is reused: it is overwritten for the next
	// message, so it is only valid during the call. Copy the fields to keep; m.Data and
	// m.Header themselves are not reused and may be kept.
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
	// Minimal makes OnMsg get only Subject, RawHeader, Data, StreamSeq, ConsumerSeq and
	// Pending: Header stays nil and Time zero (StoredTime decodes it on demand). Headers
	// and timestamps are then not decoded, which makes each delivery noticeably cheaper
	// under yaegi. Status messages (heartbeats, flow control) are handled either way.
	Minimal bool
}

// JSMsg is a message delivered by an ordered consumer. OnMsg gets the same *JSMsg for
// every message (see OrderedOptions.OnMsg).
type JSMsg struct {
	Subject string
	Header  Header // nil when the message has no headers (always with Minimal)
	// RawHeader is the header block exactly as received ("NATS/1.0\r\n...\r\n\r\n"),
	// empty when the message has none; set with or without Minimal, never reused.
	RawHeader   []byte
	Data        []byte
	StreamSeq   uint64
	ConsumerSeq uint64    // sequence within the current consumer (restarts at 1 after a recreation)
	Pending     uint64    // messages still to deliver after this one, as the server saw it
	Time        time.Time // when the message was stored (zero with Minimal)

	reply string // the delivery's $JS.ACK subject, for StoredTime
}

// StoredTime is when the message was stored: Time, or, with Minimal, decoded from the
// delivery's metadata now (zero if it has none).
func (m *JSMsg) StoredTime() time.Time {
	if !m.Time.IsZero() {
		return m.Time
	}
	meta, ok := parseAckReply(m.reply)
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, meta.ts)
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

	// The delivery state (and st.mu, which guards the fields below too) lives in a
	// separate struct that the connection's reading goroutine uses directly. (A named
	// field: yaegi v0.16.1 panics on o.mu.Lock() through an embedded *delivery.)
	st *delivery

	stopped      bool
	gen          int64         // generation: one per consumer (re)creation
	needReset    bool          // a (re)creation is due; false only after a successful create
	sub          *Subscription // delivery inbox of gen
	name         string        // consumer name of gen (it may exist on the server)
	genEpoch     int64         // connection epoch gen was created on
	seenActivity uint64        // activity when the worker last looked
	lastActivity time.Time     // when the worker last saw activity change (or gen started)
	stallReason  string        // set by the delivery path or hooks, taken by the worker
	lastWarn     string
	lastWarnAt   time.Time
}

// delivery is the part of an OrderedConsumer that hands deliveries over. The connection's
// reading goroutine delivers in-sequence messages inline (Conn.readBatch, through
// subEntry.js) rather than through a callback: under yaegi that saves a call and the frame
// of onDelivery, a large part of the cost of each message. Everything else (gaps,
// duplicates, status messages, stale generations) goes through onDelivery. The struct holds
// no reference to the connection.
type delivery struct {
	cbMu sync.Mutex // held while a user callback runs: they never overlap

	onMsg    func(m *JSMsg)    // OrderedOptions.OnMsg
	onSynced func(last uint64) // OrderedConsumer.callSynced

	// Used under cbMu by the delivery path (and by onPanic, on the same goroutine).
	jm       *JSMsg // handed to OnMsg, reused for every message
	holdCb   bool   // the delivery path holds cbMu
	inMsg    bool   // OnMsg is running (inCb counts it)
	pendFire bool   // OnSynced is due after the running OnMsg

	mu       sync.Mutex // guards the fields below and those of OrderedConsumer
	active   bool       // deliveries of gen are accepted
	sid      int64      // sid of the delivery inbox of gen: deliveries of gen carry it
	lastSSeq uint64     // last stream sequence handed to OnMsg
	pending  uint64     // num_pending of the last message handed to OnMsg
	expDSeq  uint64     // last consumer sequence received in gen
	synced   bool       // gen reached num_pending 0
	activity uint64     // bumped by every message/heartbeat/flow control of gen
	inCb     int        // user callbacks running
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
		st:         &delivery{jm: &JSMsg{}, onMsg: opts.OnMsg},
	}
	o.st.onSynced = o.callSynced
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
		o.st.lastSSeq = opts.StartSeq - 1
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
	o.st.mu.Lock()
	o.workStarted = true
	o.st.mu.Unlock()
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
	o.st.mu.Lock()
	defer o.st.mu.Unlock()
	return o.st.synced && !o.stopped
}

// LastStreamSeq returns the stream sequence of the last message handed to OnMsg (StartSeq-1
// or 0 before the first one).
func (o *OrderedConsumer) LastStreamSeq() uint64 {
	o.st.mu.Lock()
	defer o.st.mu.Unlock()
	return o.st.lastSSeq
}

// Pending returns the number of messages the server still had to deliver after the last
// one handed to OnMsg (its num_pending), as that message said: how far the consumer lagged
// behind the stream then. It is 0 before the first message and is not refreshed while the
// stream is idle or the consumer is being recreated.
func (o *OrderedConsumer) Pending() uint64 {
	o.st.mu.Lock()
	defer o.st.mu.Unlock()
	return o.st.pending
}

// consumerName returns the name of the current server-side consumer ("" when none).
func (o *OrderedConsumer) consumerName() string {
	o.st.mu.Lock()
	defer o.st.mu.Unlock()
	return o.name
}

// Stop stops delivery, deletes the server-side consumer (best effort) and ends the
// consumer's goroutine. It is idempotent. Called from a callback it does not wait for the
// goroutine, which ends right after.
func (o *OrderedConsumer) Stop() {
	o.st.mu.Lock()
	if o.stopped {
		o.st.mu.Unlock()
		return
	}
	o.stopped = true
	o.st.active = false
	o.st.synced = false
	inCb := o.st.inCb > 0
	started := o.workStarted
	close(o.stopCh)
	o.st.mu.Unlock()
	o.c.abortRequests(o.stopCh)
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
	o.st.mu.Lock()
	repeat := msg == o.lastWarn && now.Sub(o.lastWarnAt) < warnRepeatEvery
	if !repeat {
		o.lastWarn = msg
		o.lastWarnAt = now
	}
	o.st.mu.Unlock()
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

// stallLocked marks the current generation as broken. Caller holds o.st.mu.
func (o *OrderedConsumer) stallLocked(reason string) {
	o.st.active = false
	o.st.synced = false
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
	o.st.mu.Lock()
	if !o.stopped && !o.needReset {
		o.stallLocked(reason)
	}
	o.st.mu.Unlock()
	o.signal()
}

// enter/leave count running user callbacks (Stop must not wait for itself).
func (o *OrderedConsumer) enter() {
	o.st.mu.Lock()
	o.st.inCb++
	o.st.mu.Unlock()
}

func (o *OrderedConsumer) leave() {
	o.st.mu.Lock()
	o.st.inCb--
	o.st.mu.Unlock()
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

// onDelivery is the callback of the delivery inboxes. It runs on the connection's reading
// goroutine. This is the hot path of a replay: under yaegi every call allocates a frame
// slot for each local and intermediate value of the function, so everything rare lives in
// other functions, the JetStream metadata comes parsed by the reader (Msg.js*), and there
// is no deferred recover: a panic in OnMsg unwinds to the reader's recover, which calls
// onPanic to log it and release what this function holds.
func (o *OrderedConsumer) onDelivery(m *Msg) {
	if m.Status != 0 || !m.jsMeta {
		o.onOther(m)
		return
	}
	o.st.cbMu.Lock()
	o.st.holdCb = true
	o.st.mu.Lock()
	if m.sid != o.st.sid || !o.st.active || m.jsDSeq != o.st.expDSeq+1 || m.jsSSeq <= o.st.lastSSeq {
		o.rejectLocked(m)
		return
	}
	o.st.activity++
	o.st.expDSeq = m.jsDSeq
	o.st.lastSSeq = m.jsSSeq
	o.st.pending = m.jsPending
	fire := m.jsPending == 0 && !o.st.synced
	if fire {
		o.st.synced = true
	}
	o.st.inCb++
	o.st.mu.Unlock()

	jm := o.st.jm
	jm.Subject = m.Subject
	jm.Header = m.Header
	jm.RawHeader = m.rawHdr
	jm.reply = m.Reply
	jm.Data = m.Data
	jm.StreamSeq = m.jsSSeq
	jm.ConsumerSeq = m.jsDSeq
	jm.Pending = m.jsPending
	if m.jsTS != 0 {
		jm.Time = time.Unix(0, m.jsTS)
	}
	o.st.pendFire = fire
	o.st.inMsg = true
	o.st.onMsg(jm)
	o.st.inMsg = false
	if fire {
		o.callSynced(jm.StreamSeq)
	}
	o.st.mu.Lock()
	o.st.inCb--
	o.st.mu.Unlock()
	o.st.holdCb = false
	o.st.cbMu.Unlock()
}

// rejectLocked handles a delivery that is not simply the next one: another generation's,
// a consumer sequence gap, or a stream sequence already handed over. Called by onDelivery
// with cbMu and mu held; it releases both.
func (o *OrderedConsumer) rejectLocked(m *Msg) {
	if m.sid != o.st.sid || !o.st.active {
		o.st.mu.Unlock()
		o.st.holdCb = false
		o.st.cbMu.Unlock()
		return
	}
	o.st.activity++
	if m.jsDSeq != o.st.expDSeq+1 {
		o.stallLocked("consumer sequence gap: expected " + strconv.FormatUint(o.st.expDSeq+1, 10) +
			", got " + strconv.FormatUint(m.jsDSeq, 10))
		o.st.mu.Unlock()
		o.st.holdCb = false
		o.st.cbMu.Unlock()
		o.signal()
		return
	}
	// Already handed over; a consumer started after lastSSeq cannot send it, but never
	// deliver twice.
	o.st.expDSeq = m.jsDSeq
	o.st.mu.Unlock()
	o.st.holdCb = false
	o.st.cbMu.Unlock()
}

// onOther handles what onDelivery does not: status messages, and deliveries whose metadata
// the reader did not parse.
func (o *OrderedConsumer) onOther(m *Msg) {
	if m.Status != 0 {
		o.onStatus(m)
		return
	}
	if meta, ok := parseAckReply(m.Reply); ok {
		m.jsMeta = true
		m.jsSSeq = meta.sseq
		m.jsDSeq = meta.dseq
		m.jsTS = meta.ts
		m.jsPending = meta.pending
		o.onDelivery(m)
		return
	}
	o.st.mu.Lock()
	if m.sid == o.st.sid && o.st.active {
		o.st.activity++
		o.stallLocked("delivery without JetStream metadata (reply subject " + strconv.Quote(m.Reply) + ")")
	}
	o.st.mu.Unlock()
	o.signal()
}

// onPanic runs on the reading goroutine after a delivery callback of this consumer
// panicked (in OnMsg, or an internal error): it logs the panic and releases what
// onDelivery held. OnSynced still runs when it was due after that message.
func (o *OrderedConsumer) onPanic(r interface{}) {
	if o.st.inMsg {
		o.st.inMsg = false
		o.logf("error", fmt.Sprintf("nats: panic in ordered consumer OnMsg (stream seq %d): %v", o.st.jm.StreamSeq, r))
		if o.st.pendFire {
			o.callSynced(o.st.jm.StreamSeq)
		}
		o.st.mu.Lock()
		o.st.inCb--
		o.st.mu.Unlock()
	} else {
		o.logf("error", fmt.Sprintf("nats: internal error in ordered consumer on %s delivery: %v", o.opts.Stream, r))
	}
	o.st.pendFire = false
	if o.st.holdCb {
		o.st.holdCb = false
		o.st.cbMu.Unlock()
	}
}

// onStatus handles status messages on the delivery inbox: flow-control requests, idle
// heartbeats and "409" notices.
func (o *OrderedConsumer) onStatus(m *Msg) {
	o.st.mu.Lock()
	gen := o.gen
	current := m.sid == o.st.sid && o.st.active
	if current {
		o.st.activity++
	}
	o.st.mu.Unlock()
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
				o.st.mu.Lock()
				if gen == o.gen && o.st.active && n != o.st.expDSeq {
					o.stallLocked("heartbeat reports consumer sequence " + strconv.FormatUint(n, 10) +
						", last received " + strconv.FormatUint(o.st.expDSeq, 10))
					stalled = true
				}
				o.st.mu.Unlock()
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
		o.st.mu.Lock()
		if gen == o.gen && o.st.active {
			o.stallLocked("server: " + strconv.Itoa(m.Status) + " " + m.Description)
		}
		o.st.mu.Unlock()
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
	o.st.mu.Lock()
	if o.stopped {
		o.st.mu.Unlock()
		return nil
	}
	oldSub := o.sub
	oldName := o.name
	o.sub = nil
	o.st.sid = 0
	o.name = ""
	o.gen++
	gen := o.gen
	o.st.active = false
	o.st.synced = false
	o.st.expDSeq = 0
	o.stallReason = ""
	o.needReset = true
	o.genEpoch = epoch
	start := o.st.lastSSeq + 1
	o.st.mu.Unlock()

	if oldSub != nil {
		oldSub.Unsubscribe()
	}
	if oldName != "" {
		o.deleteConsumer(oldName)
	}

	name := "oc_" + randomID()
	inbox := c.NewInbox()
	var e subEntry
	e.subject = inbox
	e.cb = o.onDelivery
	e.onPanic = o.onPanic
	e.jsAck = true
	e.skipHdr = o.opts.Minimal
	e.noTime = o.opts.Minimal
	e.js = o.st
	sub, err := c.subscribeEntry(e)
	if err != nil {
		return err
	}
	o.st.mu.Lock()
	if o.stopped || o.gen != gen {
		o.st.mu.Unlock()
		sub.Unsubscribe()
		return nil
	}
	o.sub = sub
	o.st.sid = sub.sid
	o.name = name
	o.st.active = true
	o.lastActivity = time.Now()
	o.st.mu.Unlock()

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

	o.st.cbMu.Lock()
	o.st.mu.Lock()
	fire := false
	var last uint64
	if gen == o.gen && !o.stopped {
		o.needReset = false
		o.lastActivity = time.Now()
		if o.st.active && !o.st.synced && info.NumPending == 0 && info.Delivered.Consumer <= o.st.expDSeq {
			o.st.synced = true
			fire = true
			last = o.st.lastSSeq
		}
	}
	if fire {
		o.st.inCb++
	}
	o.st.mu.Unlock()
	o.logf("debug", "nats: ordered consumer "+name+" on stream "+o.opts.Stream+" created from sequence "+
		strconv.FormatUint(start, 10)+" ("+strconv.FormatUint(info.NumPending, 10)+" pending)")
	if fire {
		o.callSynced(last)
		o.leave()
	}
	o.st.cbMu.Unlock()
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
	o.st.mu.Lock()
	defer o.st.mu.Unlock()
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
	o.st.mu.Lock()
	o.stopped = true
	o.st.active = false
	o.gen++
	sub := o.sub
	name := o.name
	o.sub = nil
	o.st.sid = 0
	o.name = ""
	o.st.mu.Unlock()
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
			o.st.mu.Lock()
			if !o.needReset {
				o.stallLocked(fmt.Sprintf("internal error: %v", r))
			}
			o.st.mu.Unlock()
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
			o.st.cbMu.Lock()
			o.enter()
			o.callStalled(reason)
			o.leave()
			o.st.cbMu.Unlock()
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
	o.st.mu.Lock()
	defer o.st.mu.Unlock()
	return o.needReset && !o.stopped
}

// check looks for a reason to recreate the consumer. report is true when the consumer was
// healthy until now (OnStalled is then due).
func (o *OrderedConsumer) check() (string, bool) {
	epoch, up := o.c.connEpoch()
	now := time.Now()
	o.st.mu.Lock()
	defer o.st.mu.Unlock()
	if o.stopped {
		return "", false
	}
	if o.st.activity != o.seenActivity {
		o.seenActivity = o.st.activity
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
	o.st.active = false
	o.st.synced = false
	if o.needReset {
		return reason, false
	}
	o.needReset = true
	return reason, true
}
