// Package natsclient is a small client for the NATS core protocol, written so that it runs
// unchanged inside the yaegi interpreter (v0.16.1) that Traefik uses to load plugins.
//
// # Why not nats.go
//
// The official client, github.com/nats-io/nats.go, cannot be imported by yaegi: its
// encoders import "unsafe"; even with unsafe and syscall allowed, its dependency chain
// (nkeys -> x/crypto/nacl -> blake2b -> golang.org/x/sys/cpu) fails to load, and
// klauspost/compress uses unsafe.SliceData, which yaegi does not provide. A Traefik plugin
// that imports it makes Traefik disable every plugin. This package therefore uses the
// standard library only (no unsafe, no syscall, no generics, nothing newer than Go 1.22) and
// avoids constructs that break yaegi v0.16.1. Each of these panics inside the interpreter,
// and a panic in an interpreted goroutine can take Traefik down:
//
//   - a tuple assignment storing nil into an interface field and a pointer field at once
//     (`c.conn, c.w = nil, nil`): one statement per field is used instead;
//   - ranging over a slice whose element type is a channel (`for _, ch := range chans`):
//     "reflect: call of reflect.Value.Len on int Value"; channels are wrapped in a struct;
//   - an untyped nil sent in a select case (`case ch <- nil:` on a chan error):
//     "reflect.Select: value of type interface {} is not assignable"; a typed nil variable
//     is sent instead;
//   - function literals with unnamed parameters (`func(string) { ... }`) corrupt the
//     literal's frame ("reflect.Set: value of type string is not assignable to type int");
//     parameters are always named, in the tests too;
//   - error types defined in interpreted code: comparing two such error values with ==
//     panics ("comparing uncomparable type interp._error"), errors.As panics, a type switch
//     never matches them and errors.Is ignores their Is/Unwrap methods. Only a type
//     assertion (err.(*APIError)) works. Sentinel errors are therefore plain errors.New
//     values, returned unwrapped or wrapped with fmt.Errorf's %w (both work with errors.Is).
//   - a select statement run by several goroutines at once: yaegi keeps one
//     reflect.SelectCase slice per statement and fills it in place, so concurrent callers
//     wait on each other's channels (a caller can hang for ever once the other returned).
//     Code that concurrent callers run (Request, Flush) waits with a plain receive on its
//     own channel, fed by plain sends into a buffer with room for every possible outcome.
//
// Found in the plugin's request path, same interpreter (they do not fail loudly):
//
//   - `switch a := x; len(a) { case 0: ... case 1: ... }` can take the wrong branch; plain
//     if statements are used;
//   - a method value of a compiled type stored in a func field (`f = m.mu.RLock`) does not
//     compile, and a method expression (`(*sync.RWMutex).RLock(mu)`) panics with "Method
//     index out of range"; an interface value (`mu.RLocker()`) works.
//
// Its types do not refer to each other in cycles through the connection, and both client
// goroutines (reader and connection manager) recover from panics, log them and replace the
// connection, as a last line of defence.
//
// # What it supports
//
//   - Servers given as "nats://host:port", "tls://host:port" or "host:port", with optional
//     user:password@ or token@ credentials in the URL. Servers advertised by the cluster in
//     INFO connect_urls are added to the pool.
//   - Authentication by token, user/password, nkey seed (the server nonce is signed with
//     crypto/ed25519) and NATS creds files (user JWT + nkey seed).
//   - TLS: tls:// URLs, servers that require TLS, custom CA, client certificates.
//   - PUB/HPUB, SUB/UNSUB (including queue groups), MSG/HMSG with NATS/1.0 header blocks and
//     inline status lines (e.g. "503" no responders, "100 Idle Heartbeat"), request/reply
//     through one shared wildcard inbox subscription, PING/PONG flush.
//   - Keep-alive PINGs; a connection with too many unanswered PINGs is treated as stale and
//     replaced.
//   - Background connection management: Connect never fails because a server is down. It
//     keeps trying every server of the pool in shuffled round robin with exponential backoff
//     and jitter, re-sends every live subscription (same sid) after each reconnect and then
//     calls OnConnect. Nothing is buffered while disconnected: Publish returns
//     ErrNotConnected.
//
// # JetStream
//
// JetStream support (jetstream.go, ordered.go) covers what a revocation list needs:
// StreamInfo, AddStream, UpdateStream and DeleteStream; PublishJS, which waits for the
// stream's acknowledgement (PubAck) and accepts the Nats-Msg-Id, Nats-TTL (per-message time
// to live, nats-server 2.11+, see FormatTTL) and Nats-Expected-* headers; and an ordered
// consumer (SubscribeOrdered) that replays a stream from a start sequence and then follows
// it, delivering every message exactly once and in order across gaps, lost heartbeats,
// consumer deletion, reconnects and server restarts, by recreating its ephemeral push
// consumer from the last delivered sequence. API error replies are returned as *APIError
// (ErrStreamNotFound itself for "stream not found"); inspect them with AsAPIError. There are
// no pull consumers, durable consumers, key-value or object stores, and no JetStream domains.
//
// It does not implement the "handshake first" TLS mode, websocket transport, or message
// buffering across reconnects.
//
// # Callbacks
//
// Message callbacks run one at a time on the goroutine that reads the socket, in the order
// the messages arrived. They must return quickly: while one runs, no other message, PONG or
// server PING of that connection is processed. They may call Publish, PublishMsg,
// Subscribe and Unsubscribe; they must not wait for a reply on the same connection
// (Request or Flush would only time out, because the reply is read by the goroutine that is
// busy running the callback). A panic in a callback is recovered and logged.
//
// OnConnect and OnDisconnect run on the connection-management goroutine, not on the reading
// goroutine, so they may use Request and Flush; while they run, keep-alive PINGs are not
// sent, so they should not block for long either. Close may be called from any callback;
// it then does not wait for the client's goroutines, which end right after the callback
// returns.
//
// # Logging
//
// Options.Logf receives level ("debug", "info", "warn", "error") and a message. Messages
// never contain passwords, tokens, nkey seeds or JWTs: server URLs are logged without their
// user information.
package natsclient
