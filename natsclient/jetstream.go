package natsclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// JetStream support: stream management, publishing with acknowledgement and the ordered
// push consumer (ordered.go). Everything goes through plain requests on the "$JS.API."
// subjects of the connected account (no JetStream domain prefix).
//
// A note on errors under yaegi v0.16.1: values of error types defined in interpreted code
// (such as *APIError) do not work with errors.Is / errors.As (errors.As panics), a type
// switch on them never matches, and comparing two of them with == panics. A type assertion
// (err.(*APIError)) works. This file therefore returns the compiled sentinel
// ErrStreamNotFound itself for "stream not found" replies (errors.Is and == work for it),
// and *APIError for every other error reply; use AsAPIError to inspect those.

const jsAPIPrefix = "$JS.API."

// Header names understood by JetStream when publishing.
const (
	// HeaderMsgID deduplicates publishes within the stream's duplicate window.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderMsgTTL sets a per-message time to live (nats-server 2.11+, stream created with
	// AllowMsgTTL). The value is a Go duration ("90s", "1h") or a number of seconds, at
	// least one second, or "never". FormatTTL renders one.
	HeaderMsgTTL = "Nats-TTL"
	// HeaderExpectedStream makes the publish fail unless it lands in this stream.
	HeaderExpectedStream = "Nats-Expected-Stream"
	// HeaderExpectedLastSeq makes the publish fail unless the stream's last sequence is this.
	HeaderExpectedLastSeq = "Nats-Expected-Last-Sequence"
	// HeaderExpectedLastSubjSeq makes the publish fail unless the last sequence stored for
	// the subject is this (0: no message on the subject yet).
	HeaderExpectedLastSubjSeq = "Nats-Expected-Last-Subject-Sequence"
)

// JetStream API error codes (APIError.ErrCode) used by this package.
const (
	JSErrCodeStreamNotFound   = 10059
	JSErrCodeConsumerNotFound = 10014
	JSErrCodeNoMessageFound   = 10037
)

// ErrStreamNotFound is returned (as is, not wrapped) when the JetStream API answers with
// error code 10059 ("stream not found"): errors.Is(err, ErrStreamNotFound) and
// err == ErrStreamNotFound both work, natively and under yaegi.
var ErrStreamNotFound = errors.New("nats: stream not found")

// ErrMsgNotFound is returned (as is) by GetMsg when the stream holds no such message
// (error code 10037).
var ErrMsgNotFound = errors.New("nats: message not found")

// ErrBadStreamName is returned for an empty stream name or one with '.', '*', '>' or
// whitespace.
var ErrBadStreamName = errors.New("nats: invalid stream name")

// APIError is an error reply of the JetStream API (the "error" object of a response).
// Under yaegi, get it with AsAPIError or a type assertion, not errors.As or a type switch.
type APIError struct {
	Code        int    `json:"code"`     // HTTP-like status: 400, 404, 500, 503...
	ErrCode     int    `json:"err_code"` // JetStream error code, e.g. 10058 (stream name in use)
	Description string `json:"description"`
}

func (e *APIError) Error() string {
	return "nats: JetStream API error " + strconv.Itoa(e.Code) + " (err_code " +
		strconv.Itoa(e.ErrCode) + "): " + e.Description
}

// AsAPIError returns the JetStream API error carried by err, following compiled wrappers
// (fmt.Errorf with %w). ErrStreamNotFound yields an APIError with ErrCode 10059.
func AsAPIError(err error) (*APIError, bool) {
	for i := 0; i < 16 && err != nil; i++ {
		if errors.Is(err, ErrStreamNotFound) {
			return &APIError{Code: 404, ErrCode: JSErrCodeStreamNotFound, Description: "stream not found"}, true
		}
		if ae, ok := err.(*APIError); ok {
			return ae, true
		}
		err = errors.Unwrap(err)
	}
	return nil, false
}

// StreamConfig is the configuration of a stream, with the JSON names of the JetStream API.
// Zero values mean the server default (limits retention, discard old, file storage, one
// replica, no limits). UpdateStream replaces the whole configuration: start from the
// Config of a StreamInfo and change what is needed.
type StreamConfig struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Subjects    []string `json:"subjects,omitempty"`
	// Retention is "limits" (default), "interest" or "workqueue".
	Retention string `json:"retention,omitempty"`
	// Storage is "file" (default) or "memory".
	Storage  string `json:"storage,omitempty"`
	Replicas int    `json:"num_replicas"`
	// Limits; 0 (or -1, as the server reports it) means unlimited.
	MaxConsumers      int           `json:"max_consumers,omitempty"`
	MaxMsgs           int64         `json:"max_msgs,omitempty"`
	MaxBytes          int64         `json:"max_bytes,omitempty"`
	MaxAge            time.Duration `json:"max_age"` // nanoseconds in JSON
	MaxMsgsPerSubject int64         `json:"max_msgs_per_subject,omitempty"`
	MaxMsgSize        int32         `json:"max_msg_size,omitempty"`
	// Discard is "old" (default) or "new".
	Discard              string `json:"discard,omitempty"`
	DiscardNewPerSubject bool   `json:"discard_new_per_subject,omitempty"`
	// Duplicates is the window in which HeaderMsgID deduplicates (server default 2m).
	Duplicates time.Duration `json:"duplicate_window,omitempty"`
	NoAck      bool          `json:"no_ack,omitempty"`
	DenyDelete bool          `json:"deny_delete"`
	DenyPurge  bool          `json:"deny_purge"`
	// AllowRollup allows the Nats-Rollup header.
	AllowRollup bool `json:"allow_rollup_hdrs"`
	AllowDirect bool `json:"allow_direct"`
	// AllowMsgTTL allows per-message TTLs (HeaderMsgTTL), nats-server 2.11+.
	AllowMsgTTL bool `json:"allow_msg_ttl"`
	// SubjectDeleteMarkerTTL: when set (2.11+, needs AllowMsgTTL), a marker is left for
	// this long when the last message of a subject is removed by MaxAge.
	SubjectDeleteMarkerTTL time.Duration `json:"subject_delete_marker_ttl,omitempty"`
	// Compression is "none" or "s2" (file storage only); empty leaves the server default.
	Compression string            `json:"compression,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// StreamState is the state part of StreamInfo.
type StreamState struct {
	Msgs        uint64    `json:"messages"`
	Bytes       uint64    `json:"bytes"`
	FirstSeq    uint64    `json:"first_seq"`
	FirstTime   time.Time `json:"first_ts"`
	LastSeq     uint64    `json:"last_seq"`
	LastTime    time.Time `json:"last_ts"`
	NumSubjects int       `json:"num_subjects,omitempty"`
	NumDeleted  int       `json:"num_deleted,omitempty"`
	Consumers   int       `json:"consumer_count"`
}

// PeerInfo describes one replica of a clustered stream.
type PeerInfo struct {
	Name    string        `json:"name"`
	Current bool          `json:"current"`
	Offline bool          `json:"offline,omitempty"`
	Active  time.Duration `json:"active"`
	Lag     uint64        `json:"lag,omitempty"`
}

// ClusterInfo is present in StreamInfo when the server runs JetStream clustered.
type ClusterInfo struct {
	Name     string     `json:"name,omitempty"`
	Leader   string     `json:"leader,omitempty"`
	Replicas []PeerInfo `json:"replicas,omitempty"`
}

// StreamInfo is returned by StreamInfo, AddStream and UpdateStream.
type StreamInfo struct {
	Config  StreamConfig `json:"config"`
	Created time.Time    `json:"created"`
	State   StreamState  `json:"state"`
	Cluster *ClusterInfo `json:"cluster,omitempty"`
}

// PubAck is the stream's acknowledgement of PublishJS.
type PubAck struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Domain    string `json:"domain,omitempty"`
}

// apiErrorReply is the part every JetStream API reply shares.
type apiErrorReply struct {
	Type  string    `json:"type"`
	Error *APIError `json:"error"`
}

// checkStreamName validates a name used as a subject token.
func checkStreamName(name string) error {
	if name == "" || strings.ContainsAny(name, ".*> \t\r\n") {
		return ErrBadStreamName
	}
	return nil
}

// decodeAPIReply turns a JetStream API reply into resp, or into ErrStreamNotFound /
// *APIError when it carries an error.
func decodeAPIReply(data []byte, resp interface{}) error {
	var head apiErrorReply
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("%w: bad JetStream reply: %v", ErrProtocol, err)
	}
	if head.Error != nil && (head.Error.Code != 0 || head.Error.ErrCode != 0) {
		if head.Error.ErrCode == JSErrCodeStreamNotFound {
			return ErrStreamNotFound
		}
		return head.Error
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return fmt.Errorf("%w: bad JetStream reply: %v", ErrProtocol, err)
	}
	return nil
}

// jsRequest sends a JetStream API request (req marshalled as JSON, nothing when nil) and
// decodes the reply into resp. No responders means JetStream is not enabled for the
// account or not reachable: the error then wraps ErrNoResponders.
func (c *Conn) jsRequest(subject string, req interface{}, resp interface{}, timeout time.Duration) error {
	return c.jsRequestCancel(subject, req, resp, timeout, nil)
}

// jsRequestCancel is jsRequest that gives up when cancel (which may be nil) is closed.
func (c *Conn) jsRequestCancel(subject string, req interface{}, resp interface{}, timeout time.Duration, cancel chan struct{}) error {
	var body []byte
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		body = b
	}
	m, err := c.request(subject, nil, body, timeout, cancel)
	if err != nil {
		if errors.Is(err, ErrNoResponders) {
			return fmt.Errorf("%w (JetStream not enabled or not available)", ErrNoResponders)
		}
		return err
	}
	return decodeAPIReply(m.Data, resp)
}

// StreamInfo returns the configuration and state of a stream, ErrStreamNotFound when it
// does not exist.
func (c *Conn) StreamInfo(name string, timeout time.Duration) (*StreamInfo, error) {
	if err := checkStreamName(name); err != nil {
		return nil, err
	}
	var si StreamInfo
	if err := c.jsRequest(jsAPIPrefix+"STREAM.INFO."+name, nil, &si, timeout); err != nil {
		return nil, err
	}
	return &si, nil
}

// AddStream creates a stream. Creating a stream that exists with the same configuration
// succeeds; with a different one it fails with an *APIError (err_code 10058).
func (c *Conn) AddStream(cfg StreamConfig, timeout time.Duration) (*StreamInfo, error) {
	return c.putStream("CREATE", cfg, timeout)
}

// UpdateStream replaces the configuration of an existing stream (ErrStreamNotFound when it
// does not exist). Some fields (storage, retention...) cannot change: *APIError.
func (c *Conn) UpdateStream(cfg StreamConfig, timeout time.Duration) (*StreamInfo, error) {
	return c.putStream("UPDATE", cfg, timeout)
}

func (c *Conn) putStream(op string, cfg StreamConfig, timeout time.Duration) (*StreamInfo, error) {
	if err := checkStreamName(cfg.Name); err != nil {
		return nil, err
	}
	var si StreamInfo
	if err := c.jsRequest(jsAPIPrefix+"STREAM."+op+"."+cfg.Name, cfg, &si, timeout); err != nil {
		return nil, err
	}
	return &si, nil
}

// DeleteStream deletes a stream and all its messages.
func (c *Conn) DeleteStream(name string, timeout time.Duration) error {
	if err := checkStreamName(name); err != nil {
		return err
	}
	return c.jsRequest(jsAPIPrefix+"STREAM.DELETE."+name, nil, nil, timeout)
}

// PublishJS publishes to a subject bound to a stream and waits for the stream's
// acknowledgement. Errors: ErrNoResponders when no stream listens on the subject (or
// JetStream is down), ErrTimeout when no acknowledgement came in time (the message may
// still have been stored), *APIError when the stream refused the message (for example a
// failed Nats-Expected-* check or an invalid Nats-TTL), ErrNotConnected while
// disconnected.
//
// hdr may carry HeaderMsgID, HeaderMsgTTL (see FormatTTL) and the HeaderExpected* checks.
func (c *Conn) PublishJS(subject string, hdr Header, data []byte, timeout time.Duration) (*PubAck, error) {
	m, err := c.Request(subject, hdr, data, timeout)
	if err != nil {
		return nil, err
	}
	var ack PubAck
	if err := decodeAPIReply(m.Data, &ack); err != nil {
		return nil, err
	}
	if ack.Stream == "" || ack.Seq == 0 {
		return nil, fmt.Errorf("%w: reply is not a JetStream acknowledgement: %q", ErrProtocol, clip(m.Data))
	}
	return &ack, nil
}

// StoredMsg is a message read back from a stream with GetMsg.
type StoredMsg struct {
	Subject string
	Seq     uint64
	Header  Header // nil when the message has no headers
	Data    []byte
	Time    time.Time
}

// GetMsgRequest selects the message GetMsg reads: by stream sequence (Seq), or the newest
// message on a subject (LastBySubject).
type GetMsgRequest struct {
	Seq           uint64 `json:"seq,omitempty"`
	LastBySubject string `json:"last_by_subj,omitempty"`
	// NextBySubject asks for the first message at or after Seq whose subject matches
	// it (wildcards allowed).
	NextBySubject string `json:"next_by_subj,omitempty"`
}

type storedMsgJSON struct {
	Subject string    `json:"subject"`
	Seq     uint64    `json:"seq"`
	Hdrs    []byte    `json:"hdrs,omitempty"` // base64 in JSON, decoded by encoding/json
	Data    []byte    `json:"data,omitempty"`
	Time    time.Time `json:"time"`
}

// getMsgReply is a message-get reply, decoded in one pass (the error check and the
// message at once: a chunk of a snapshot is hundreds of kilobytes of base64).
type getMsgReply struct {
	Error   *APIError      `json:"error"`
	Message *storedMsgJSON `json:"message"`
}

// GetMsg reads one stored message through the stream's API ($JS.API.STREAM.MSG.GET), which
// every stream answers (no allow_direct needed). It returns ErrMsgNotFound when there is no
// such message and ErrStreamNotFound when the stream does not exist. The payload travels
// base64-encoded in the API reply, so a message of size n needs about 4n/3 bytes on the
// wire.
func (c *Conn) GetMsg(stream string, req GetMsgRequest, timeout time.Duration) (*StoredMsg, error) {
	if err := checkStreamName(stream); err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rm, err := c.request(jsAPIPrefix+"STREAM.MSG.GET."+stream, nil, body, timeout, nil)
	if err != nil {
		if errors.Is(err, ErrNoResponders) {
			return nil, fmt.Errorf("%w (JetStream not enabled or not available)", ErrNoResponders)
		}
		return nil, err
	}
	var reply getMsgReply
	if err := json.Unmarshal(rm.Data, &reply); err != nil {
		return nil, fmt.Errorf("%w: bad JetStream reply: %v", ErrProtocol, err)
	}
	if e := reply.Error; e != nil && (e.Code != 0 || e.ErrCode != 0) {
		switch e.ErrCode {
		case JSErrCodeNoMessageFound:
			return nil, ErrMsgNotFound
		case JSErrCodeStreamNotFound:
			return nil, ErrStreamNotFound
		}
		return nil, e
	}
	if reply.Message == nil {
		return nil, fmt.Errorf("%w: stream message reply without a message", ErrProtocol)
	}
	m := &StoredMsg{Subject: reply.Message.Subject, Seq: reply.Message.Seq, Data: reply.Message.Data, Time: reply.Message.Time}
	if len(reply.Message.Hdrs) > 0 {
		h, _, _, herr := parseHeader(reply.Message.Hdrs)
		if herr != nil {
			return nil, fmt.Errorf("%w: stored message headers: %v", ErrProtocol, herr)
		}
		m.Header = h
	}
	return m, nil
}

// PurgeRequest selects what PurgeStream removes: the messages whose subject matches Filter
// (all when empty) and, when Seq is above 1, only those with a sequence below Seq (the
// server reads Seq 0 and 1 alike as "no limit"); Keep, when set, keeps that many of the
// newest matching messages.
type PurgeRequest struct {
	Filter string `json:"filter,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
	Keep   uint64 `json:"keep,omitempty"`
}

type purgeReply struct {
	Success bool   `json:"success"`
	Purged  uint64 `json:"purged"`
}

// PurgeStream deletes the messages of a stream that req selects and returns how many
// were removed.
func (c *Conn) PurgeStream(stream string, req PurgeRequest, timeout time.Duration) (uint64, error) {
	if err := checkStreamName(stream); err != nil {
		return 0, err
	}
	if req.Filter != "" {
		if err := checkSubject(req.Filter); err != nil {
			return 0, err
		}
	}
	var reply purgeReply
	if err := c.jsRequest(jsAPIPrefix+"STREAM.PURGE."+stream, req, &reply, timeout); err != nil {
		return 0, err
	}
	if !reply.Success {
		return 0, fmt.Errorf("%w: purge of stream %s not confirmed", ErrProtocol, stream)
	}
	return reply.Purged, nil
}

// FormatTTL renders d as a Nats-TTL header value: whole seconds, rounded up, at least one
// second ("90s"). A negative d gives "never" (the message does not expire even when the
// stream has a MaxAge).
func FormatTTL(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	secs := int64(d / time.Second)
	if d%time.Second != 0 {
		secs++
	}
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10) + "s"
}

// jsAckMeta is what the reply subject of a JetStream delivery tells about the message.
type jsAckMeta struct {
	stream    string
	consumer  string
	delivered uint64 // delivery count
	sseq      uint64 // stream sequence
	dseq      uint64 // consumer (delivery) sequence
	ts        int64  // unix nanoseconds when stored
	pending   uint64 // messages still pending for the consumer after this one
}

// parseAckReply parses the reply subject of a message delivered by a consumer:
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
//	$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>[.<token>...]
func parseAckReply(reply string) (jsAckMeta, bool) {
	var meta jsAckMeta
	if !strings.HasPrefix(reply, "$JS.ACK.") {
		return meta, false
	}
	toks := strings.Split(reply, ".")
	n := len(toks)
	first := 0
	if n == 9 {
		first = 2
	} else if n >= 11 {
		first = 4
	} else {
		return meta, false
	}
	// Plain assignments to locals: the numbers are parsed one by one on purpose (tuple
	// assignments into struct fields are a known weak spot of yaegi).
	delivered, err1 := strconv.ParseUint(toks[first+2], 10, 64)
	sseq, err2 := strconv.ParseUint(toks[first+3], 10, 64)
	dseq, err3 := strconv.ParseUint(toks[first+4], 10, 64)
	ts, err4 := strconv.ParseInt(toks[first+5], 10, 64)
	pending, err5 := strconv.ParseUint(toks[first+6], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
		return meta, false
	}
	meta.stream = toks[first]
	meta.consumer = toks[first+1]
	meta.delivered = delivered
	meta.sseq = sseq
	meta.dseq = dseq
	meta.ts = ts
	meta.pending = pending
	return meta, true
}
