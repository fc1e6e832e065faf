package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// benchTokenBase is shaped like an RS256 JWT access token (about 300 bytes); every
// token the benchmark uses is this plus a short distinct suffix, so hashing costs the
// same as for real tokens.
var benchTokenBase = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." +
	strings.Repeat("eyJzdWIiOiJiZW5jaCIsInNjb3BlIjoib3JkZXJzIn0", 3) + "." +
	strings.Repeat("Qm9ndXNTaWduYXR1cmVGb3JCZW5jaG1hcmtzT25seQ", 2) + "-"

// goodToken is never revoked anywhere.
var goodToken = benchTokenBase + "valid"

// revokedToken is the i-th synthetic revoked token of the set labelled label.
func revokedToken(label string, i int) string {
	return benchTokenBase + label + "-" + strconv.Itoa(i)
}

func tokenSum(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// revocationTTL is how long every synthetic revocation lives (Nats-TTL and exp).
const revocationTTL = time.Hour

// streamSpec names one JetStream stream and the subject prefix the gateways reading
// it are configured with. Streams may not overlap, so each preloaded size has its own.
type streamSpec struct {
	Name    string `json:"stream"`
	Subject string `json:"subject"`
}

func streamFor(label string) streamSpec {
	return streamSpec{
		Name:    "REVOCATIONS_" + strings.ToUpper(label),
		Subject: "bench." + strings.ToLower(label) + ".tokens.revoked",
	}
}

// createStream creates the stream with the configuration the plugin itself would
// create (and accepts): file storage, one message per subject, per-message TTLs.
func createStream(js nats.JetStreamContext, s streamSpec) error {
	_, err := js.AddStream(&nats.StreamConfig{
		Name:              s.Name,
		Subjects:          []string{s.Subject + ".>"},
		Storage:           nats.FileStorage,
		Replicas:          1,
		MaxMsgsPerSubject: 1,
		AllowMsgTTL:       true,
		Retention:         nats.LimitsPolicy,
		Discard:           nats.DiscardOld,
	})
	return err
}

// publishResult is what filling one stream took.
type publishResult struct {
	Stream    string  `json:"stream"`
	Messages  int     `json:"messages"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"msgsPerSecond"`
}

// fillStream publishes n revocations of the set labelled label into s, the way an
// identity provider or another gateway would (subject <prefix>.<sha256 hex>, the wire
// JSON, a Nats-TTL header), with asynchronous acknowledged publishes. keep, when not
// nil, receives every hash with its expiry (for the ForwardAuth service).
func fillStream(ctx context.Context, nc *nats.Conn, s streamSpec, label string, n int, keep map[[32]byte]int64) (publishResult, error) {
	res := publishResult{Stream: s.Name, Messages: n}
	var failed atomic.Int64
	var firstErr atomic.Value
	js, err := nc.JetStream(
		nats.PublishAsyncMaxPending(4096),
		nats.PublishAsyncErrHandler(func(_ nats.JetStream, _ *nats.Msg, err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}),
	)
	if err != nil {
		return res, err
	}
	exp := time.Now().Add(revocationTTL).Unix()
	revokedAt := time.Now().UTC().Format(time.RFC3339)
	ttl := strconv.Itoa(int(revocationTTL/time.Second)) + "s"
	begin := time.Now()
	for i := 0; i < n; i++ {
		if i%10000 == 0 && ctx.Err() != nil {
			return res, ctx.Err()
		}
		sum := tokenSum(revokedToken(label, i))
		if keep != nil {
			keep[sum] = exp
		}
		h := hex.EncodeToString(sum[:])
		m := nats.NewMsg(s.Subject + "." + h)
		m.Header.Set("Nats-TTL", ttl)
		m.Data = fmt.Appendf(nil, `{"v":1,"sha256":"%s","exp":%d,"revokedAt":"%s","origin":"bench"}`, h, exp, revokedAt)
		if _, err := js.PublishMsgAsync(m, nats.StallWait(30*time.Second)); err != nil {
			return res, fmt.Errorf("publish %d/%d: %w", i, n, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(2 * time.Minute):
		return res, fmt.Errorf("stream %s: %d publishes still unacknowledged after 2 minutes", s.Name, js.PublishAsyncPending())
	}
	res.Seconds = time.Since(begin).Seconds()
	res.PerSecond = float64(n) / res.Seconds
	if f := failed.Load(); f > 0 {
		return res, fmt.Errorf("stream %s: %d of %d publishes failed, first: %v", s.Name, f, n, firstErr.Load())
	}
	info, err := js.StreamInfo(s.Name)
	if err != nil {
		return res, err
	}
	if info.State.Msgs != uint64(n) {
		return res, fmt.Errorf("stream %s holds %d messages, want %d", s.Name, info.State.Msgs, n)
	}
	return res, nil
}
