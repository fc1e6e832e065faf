package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/snapshot"
	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/wire"
)

// snapshotResult is what snapshot prints.
type snapshotResult struct {
	Written      bool    `json:"written"`
	ID           string  `json:"id,omitempty"`
	Stream       string  `json:"stream"`
	Seq          uint64  `json:"seq"`
	Slots        int     `json:"slots"`
	Chunks       int     `json:"chunks"`
	Read         int64   `json:"read"`
	Expired      int64   `json:"expired"`
	Duplicates   int64   `json:"duplicates"`
	Malformed    int64   `json:"malformed"`
	Rules        int     `json:"rules"`
	ReadSeconds  float64 `json:"readSeconds"`
	WriteSeconds float64 `json:"writeSeconds"`
	PurgedOlder  bool    `json:"purgedOlder"`
	Note         string  `json:"note,omitempty"`
}

func (a *app) snapshotCmd() *cobra.Command {
	var (
		ttl    time.Duration
		writer string
		batch  int
	)
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Write a gateway snapshot of the stream, so new gateways start fast",
		Long: `Read the whole revocation stream (an ordered consumer), keep the latest message per
subject, drop expired and malformed entries, and write a snapshot in exactly the format
gateways load: TRS1 chunk messages on <subject>-snapshots.<id>.<n> with a Nats-TTL of
--ttl plus a minute, then the manifest on <subject>-snapshots.manifest (Nats-TTL --ttl),
in stream <stream>_SNAPSHOTS (created with the gateways' configuration if missing).
Then the chunks of older snapshots are purged, as a gateway does after writing one.

A gateway that starts after this loads the snapshot and replays only what was stored
after it. Revocations of every kind (token, jws, jwe, version 1) and session and subject
rules (sid, sub; in rule chunks after the token chunks, the latest cutoff per key) go
into it.`,
		Args: exactArgs(0, "no arguments"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := a.loadSigner(); err != nil {
				return err
			}
			if err := a.needStream("snapshot"); err != nil {
				return err
			}
			if ttl < time.Second {
				return usageErr("--ttl must be at least 1s")
			}
			if batch < 1 {
				return usageErr("--batch must be at least 1")
			}
			ctx := cmd.Context()
			s, err := a.open(ctx, jetstream.WithPublishAsyncMaxPending(256), jetstream.WithPublishAsyncTimeout(30*time.Second))
			if err != nil {
				return err
			}
			defer s.close()
			r, err := a.writeSnapshot(ctx, s, ttl, writer, batch)
			if err != nil {
				return err
			}
			a.printSnapshot(r)
			return nil
		}),
	}
	a.registerSign(cmd)
	f := cmd.Flags()
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "snapshot lifetime (the gateways' defaultTTL): an unreplaced snapshot expires then")
	f.StringVar(&writer, "writer", "tokenrevoke-cli", "writer name in the manifest")
	f.IntVar(&batch, "batch", 10000, "messages requested from the stream at once")
	return cmd
}

// collected is the stream's content as read for a snapshot. Only the decoder
// goroutine touches it until reading is over.
type collected struct {
	index   map[wire.Key]int32
	keys    [][32]byte
	exps    []int64
	seqs    []uint64
	rules   map[ruleID]ruleVal
	lastSeq uint64
	res     snapshotResult
}

// ruleID and ruleVal collect session and subject rules: the latest cutoff and expiry
// per kind and key, as gateways keep them.
type ruleID struct {
	kind uint8
	key  wire.Key
}

type ruleVal struct{ cutoff, exp int64 }

// rawMsg is one delivered message on its way to the decoder.
type rawMsg struct {
	subject string
	data    []byte
	seq     uint64
}

// decodeBatch is how many messages the delivery callback hands to the decoder at once.
const decodeBatch = 1024

func (c *collected) add(prefix string, r rawMsg) {
	if r.seq > c.lastSeq {
		c.lastSeq = r.seq
	}
	c.res.Read++
	e, k, err := wire.Decode(prefix, r.subject, r.data)
	switch {
	case err != nil:
		c.res.Malformed++
	case e.Kind == wire.KindSID || e.Kind == wire.KindSub:
		id := ruleID{kind: snapshot.RuleSID, key: k}
		if e.Kind == wire.KindSub {
			id.kind = snapshot.RuleSub
		}
		if c.rules == nil {
			c.rules = make(map[ruleID]ruleVal)
		}
		v := c.rules[id]
		v.cutoff, v.exp = max(v.cutoff, e.Cutoff), max(v.exp, e.Exp)
		c.rules[id] = v
	default:
		if i, ok := c.index[k]; ok {
			// Keep the latest message of a subject.
			c.res.Duplicates++
			if r.seq > c.seqs[i] {
				c.exps[i], c.seqs[i] = e.Exp, r.seq
			}
			return
		}
		c.index[k] = int32(len(c.keys))
		c.keys = append(c.keys, k)
		c.exps = append(c.exps, e.Exp)
		c.seqs = append(c.seqs, r.seq)
	}
}

// readStream reads every message up to the stream's last sequence at the start (or
// until nothing is pending) with an ordered consumer. The delivery callback only
// batches messages; a second goroutine decodes them, so the two overlap.
func (a *app) readStream(ctx context.Context, st jetstream.Stream, info *jetstream.StreamInfo, batch int) (*collected, error) {
	c := &collected{index: make(map[wire.Key]int32, info.State.Msgs)}
	c.keys = make([][32]byte, 0, info.State.Msgs)
	c.exps = make([]int64, 0, info.State.Msgs)
	c.seqs = make([]uint64, 0, info.State.Msgs)
	if info.State.Msgs == 0 {
		return c, nil
	}
	endSeq := info.State.LastSeq
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{a.conn.subject + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	prefix := a.conn.subject
	batches := make(chan []rawMsg, 64)
	decoded := make(chan struct{})
	go func() {
		for b := range batches {
			for _, r := range b {
				c.add(prefix, r)
			}
		}
		close(decoded)
	}()

	// Under mu: the batch being filled, whether batches is closed, the last delivery.
	var (
		mu         sync.Mutex
		pending    = make([]rawMsg, 0, decodeBatch)
		closed     bool
		progress   = time.Now()
		badMetaCnt int64
	)
	finish := func() { // with mu held
		if closed {
			return
		}
		closed = true
		if len(pending) > 0 {
			batches <- pending
			pending = nil
		}
		close(batches)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, merr := m.Metadata()
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		progress = time.Now()
		if merr != nil {
			badMetaCnt++
			return
		}
		pending = append(pending, rawMsg{subject: m.Subject(), data: m.Data(), seq: md.Sequence.Stream})
		switch {
		case md.NumPending == 0 || md.Sequence.Stream >= endSeq:
			finish()
		case len(pending) >= decodeBatch:
			batches <- pending
			pending = make([]rawMsg, 0, decodeBatch)
		}
	}, jetstream.PullMaxMessages(batch), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {}))
	if err != nil {
		mu.Lock()
		finish()
		mu.Unlock()
		return nil, err
	}
	defer cc.Stop()
	// Messages at the end of the stream can expire before they are delivered, so no
	// delivered message says "nothing pending": ask the consumer when nothing comes.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-decoded:
			c.res.Malformed += badMetaCnt
			return c, nil
		case <-ctx.Done():
			mu.Lock()
			finish()
			mu.Unlock()
			return nil, ctx.Err()
		case <-tick.C:
			mu.Lock()
			idle := time.Since(progress)
			mu.Unlock()
			if idle < time.Second {
				continue
			}
			ictx, cancel := context.WithTimeout(ctx, a.conn.timeout)
			ci, err := cons.Info(ictx)
			cancel()
			if err == nil && ci.NumPending == 0 {
				mu.Lock()
				finish()
				mu.Unlock()
			} else if idle > 30*time.Second {
				mu.Lock()
				finish()
				mu.Unlock()
				return nil, fmt.Errorf("reading stream %s: no message for %s", a.conn.stream, idle.Round(time.Second))
			}
		}
	}
}

// writeSnapshot reads the stream and writes one snapshot of it.
func (a *app) writeSnapshot(ctx context.Context, s *session, ttl time.Duration, writer string, batch int) (snapshotResult, error) {
	c := a.conn
	st, info, err := a.revocationStream(ctx, s, false)
	if err != nil {
		return snapshotResult{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, c.timeout)
	_, err = s.js.Stream(sctx, snapshot.StreamName(c.stream))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = s.js.CreateStream(sctx, wantedSnapshotStream(c.stream, c.subject, c.replicas))
		if err == nil {
			a.infof("created stream %s (subjects %s.>) for snapshots of %s", snapshot.StreamName(c.stream), snapshot.Prefix(c.subject), c.stream)
		}
	}
	cancel()
	if err != nil {
		return snapshotResult{}, fmt.Errorf("snapshot stream %s: %v", snapshot.StreamName(c.stream), err)
	}

	start := time.Now()
	col, err := a.readStream(ctx, st, info, batch)
	if err != nil {
		return snapshotResult{}, err
	}
	res := col.res
	res.Stream = c.stream
	res.ReadSeconds = time.Since(start).Seconds()

	// Drop expired entries, and order the rest by expiry: a gateway's loader does one
	// expiry-bucket lookup per change of bucket, so sorted chunks load fastest.
	now := a.now().Unix()
	live := make([]int32, 0, len(col.keys))
	for i := range col.keys {
		if col.exps[i] <= now {
			res.Expired++
			continue
		}
		live = append(live, int32(i))
	}
	slices.SortFunc(live, func(x, y int32) int { return cmp.Compare(col.exps[x], col.exps[y]) })
	keys := make([][32]byte, len(live))
	exps := make([]int64, len(live))
	for j, i := range live {
		keys[j], exps[j] = col.keys[i], col.exps[i]
	}
	var rkeys [][32]byte
	var rkinds []uint8
	var rcutoffs, rexps []int64
	for id, v := range col.rules {
		if v.exp <= now || v.cutoff <= 0 || v.cutoff > v.exp {
			res.Expired++
			continue
		}
		rkeys = append(rkeys, id.key)
		rkinds = append(rkinds, id.kind)
		rcutoffs = append(rcutoffs, v.cutoff)
		rexps = append(rexps, v.exp)
	}
	col.keys, col.exps, col.seqs, col.index, col.rules = nil, nil, nil, nil, nil
	res.Seq = col.lastSeq
	if len(keys)+len(rkeys) == 0 || res.Seq == 0 {
		res.Note = joinNote(res.Note, "no live revocations or rules: nothing to snapshot")
		return res, nil
	}

	wstart := time.Now()
	id := snapshot.NewID()
	chunkTTL := wire.TTL(now+int64((ttl+time.Minute)/time.Second), time.Unix(now, 0))
	var futs []jetstream.PubAckFuture
	// The manifest carries the SHA-256 of every chunk body, in order: a gateway with
	// signing keys checks each chunk against the signed manifest.
	digests := make([]string, 0, len(keys)/snapshot.ChunkSlots+len(rkeys)/snapshot.RuleChunkSlots+2)
	for from := 0; from < len(keys); from += snapshot.ChunkSlots {
		to := min(from+snapshot.ChunkSlots, len(keys))
		m := nats.NewMsg(snapshot.ChunkSubject(c.subject, id, len(futs)))
		m.Header.Set(jetstream.MsgTTLHeader, chunkTTL)
		m.Data = snapshot.EncodeChunk(keys[from:to], exps[from:to])
		digests = append(digests, snapshot.Digest(m.Data))
		f, err := s.js.PublishMsgAsync(m, jetstream.WithExpectStream(snapshot.StreamName(c.stream)), jetstream.WithStallWait(30*time.Second))
		if err != nil {
			return res, fmt.Errorf("writing snapshot chunk %d: %v", len(futs), err)
		}
		futs = append(futs, f)
	}
	tokenChunks := len(futs)
	for from := 0; from < len(rkeys); from += snapshot.RuleChunkSlots {
		to := min(from+snapshot.RuleChunkSlots, len(rkeys))
		m := nats.NewMsg(snapshot.ChunkSubject(c.subject, id, len(futs)))
		m.Header.Set(jetstream.MsgTTLHeader, chunkTTL)
		m.Data = snapshot.EncodeRuleChunk(rkeys[from:to], rkinds[from:to], rcutoffs[from:to], rexps[from:to])
		digests = append(digests, snapshot.Digest(m.Data))
		f, err := s.js.PublishMsgAsync(m, jetstream.WithExpectStream(snapshot.StreamName(c.stream)), jetstream.WithStallWait(30*time.Second))
		if err != nil {
			return res, fmt.Errorf("writing snapshot rule chunk %d: %v", len(futs)-tokenChunks, err)
		}
		futs = append(futs, f)
	}
	chunks := make([]uint64, len(futs))
	for i, f := range futs {
		select {
		case ack := <-f.Ok():
			chunks[i] = ack.Sequence
		case err := <-f.Err():
			return res, fmt.Errorf("snapshot chunk %d not stored: %v (the chunks written expire by themselves)", i, err)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	man := snapshot.Manifest{V: 1, ID: id, Stream: c.stream, StreamCreated: info.Created, Seq: res.Seq,
		Slots: len(keys), Chunks: chunks[:tokenChunks], WithRules: true, RuleSlots: len(rkeys),
		RuleChunks: chunks[tokenChunks:], Writer: writer, WrittenAt: time.Now().UTC(),
		ChunkSha256: digests[:tokenChunks], RuleChunkSha256: digests[tokenChunks:]}
	body, _ := json.Marshal(man)
	m := nats.NewMsg(snapshot.ManifestSubject(c.subject))
	m.Header.Set(jetstream.MsgTTLHeader, wire.TTL(now+int64(ttl/time.Second), time.Unix(now, 0)))
	m.Data = body
	a.signMsg(m)
	pctx, cancel := context.WithTimeout(ctx, c.timeout)
	_, err = s.js.PublishMsg(pctx, m, jetstream.WithExpectStream(snapshot.StreamName(c.stream)))
	cancel()
	if err != nil {
		return res, fmt.Errorf("writing the snapshot manifest: %v", err)
	}
	res.Written, res.ID, res.Slots, res.Chunks, res.Rules = true, id, len(keys), len(chunks), len(rkeys)
	// Remove the chunks of every older snapshot: all chunk messages stored before this
	// snapshot's first chunk (as the gateways do; a purge below sequence 1 would mean no
	// limit at all).
	if chunks[0] > 1 {
		snapStream, err := s.js.Stream(ctx, snapshot.StreamName(c.stream))
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, c.timeout)
			err = snapStream.Purge(pctx, jetstream.WithPurgeSubject(snapshot.ChunkFilter(c.subject)), jetstream.WithPurgeSequence(chunks[0]))
			cancel()
		}
		if err != nil {
			res.Note = joinNote(res.Note, "could not purge older snapshots ("+err.Error()+"); they expire by themselves")
		} else {
			res.PurgedOlder = true
		}
	}
	res.WriteSeconds = time.Since(wstart).Seconds()
	return res, nil
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func (a *app) printSnapshot(r snapshotResult) {
	if a.json {
		a.printJSON(r)
		return
	}
	w := a.stdout()
	if r.Written {
		fmt.Fprintf(w, "snapshot %s of stream %s: sequence %d, %d entries and %d rules in %d chunks (read %d messages in %.2fs, wrote in %.2fs)\n",
			r.ID, r.Stream, r.Seq, r.Slots, r.Rules, r.Chunks, r.Read, r.ReadSeconds, r.WriteSeconds)
	} else {
		fmt.Fprintf(w, "no snapshot written for stream %s (read %d messages)\n", r.Stream, r.Read)
	}
	fmt.Fprintf(w, "  left out: %d expired, %d duplicates, %d malformed\n", r.Expired, r.Duplicates, r.Malformed)
	if r.Written && r.PurgedOlder {
		fmt.Fprintf(w, "  older snapshots purged\n")
	}
	if r.Note != "" {
		fmt.Fprintf(w, "  note: %s\n", r.Note)
	}
}
