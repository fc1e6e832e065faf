package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/wire"
)

// importOpts are import's flags.
type importOpts struct {
	pf        pubFlags
	state     string
	restart   bool
	window    int
	ttl       time.Duration
	skew      time.Duration
	hint      string
	every     time.Duration
	maxReport int
	rate      int
}

// importState is the state file: every line up to Line (ending at byte Offset) is
// acknowledged by the stream (or needed no publish).
type importState struct {
	V         int    `json:"v"`
	Input     string `json:"input"`
	Line      int64  `json:"line"`
	Offset    int64  `json:"offset"`
	Published int64  `json:"published"`
	UpdatedAt string `json:"updatedAt"`
}

// importSummary is what import prints at the end.
type importSummary struct {
	Input        string  `json:"input"`
	Lines        int64   `json:"lines"`
	ResumedAfter int64   `json:"resumedAfter"`
	Published    int64   `json:"published"`
	Expired      int64   `json:"expired"`
	Blank        int64   `json:"blank"`
	Rejected     int64   `json:"rejected"`
	Seconds      float64 `json:"seconds"`
	PerSecond    float64 `json:"perSecond"`
	Stream       string  `json:"stream,omitempty"`
	State        string  `json:"state,omitempty"`
	Complete     bool    `json:"complete"`
}

func (a *app) importCmd() *cobra.Command {
	var o importOpts
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Bulk-revoke from a file: one token per line, or JSON lines; resumable",
		Long: `Publish many revocations at once. Each line of FILE (or stdin for "-") is one of:
  a raw token                                  hashed here, as revoke does
  {"token":"...","exp":1767225600}             exp optional (JWT exp + skew, or --ttl)
  {"sha256":"<64 hex>","exp":1767225600}       a digest; "kind":"jws" for a signing-input digest
                                               ("key" is accepted for "sha256"); exp optional (--ttl)
"hint" may be given in JSON lines. Blank lines and lines starting with # are skipped;
entries that have already expired are counted and skipped.

Publishes go through JetStream asynchronously with acknowledgements (at most --window
in flight). A state file (FILE.progress, or --state) records the line up to which every
line is acknowledged; it is written every second and when interrupted. Running the same
command again skips those lines (duplicates are harmless: one message per subject).
The state file is removed when the import completes. Progress goes to stderr: a bar on
a terminal, a line every --progress-every otherwise.`,
		Args: exactArgs(1, "one FILE (or - for stdin)"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := a.loadSigner(); err != nil {
				return err
			}
			return a.runImport(cmd.Context(), args[0], &o)
		}),
	}
	o.pf.register(cmd)
	a.registerSign(cmd)
	f := cmd.Flags()
	f.StringVar(&o.state, "state", "", "state file (default FILE.progress; none for stdin unless given)")
	f.BoolVar(&o.restart, "restart", false, "ignore an existing state file and start from the first line")
	f.IntVar(&o.window, "window", 4096, "most publishes awaiting their acknowledgement")
	f.DurationVar(&o.ttl, "ttl", 24*time.Hour, "lifetime of entries without exp (raw tokens without a readable exp, digests)")
	f.DurationVar(&o.skew, "clock-skew", time.Minute, "added to a JWT's exp")
	f.StringVar(&o.hint, "hint", "", "token_type_hint for lines that give none")
	f.DurationVar(&o.every, "progress-every", 5*time.Second, "interval of progress lines when stderr is not a terminal")
	f.IntVar(&o.rate, "rate", 0, "most publishes per second (0: as fast as the stream acknowledges)")
	f.IntVar(&o.maxReport, "report-rejected", 20, "rejected lines reported individually (the rest are counted)")
	return cmd
}

// importLine is one JSON input line.
type importLine struct {
	Token  *string `json:"token"`
	Sha256 string  `json:"sha256"`
	Key    string  `json:"key"`
	Kind   string  `json:"kind"`
	Exp    int64   `json:"exp"`
	Hint   string  `json:"hint"`
}

// parseImportLine turns one line into an entry; skip is "blank" or "expired" for lines
// that need no publish, err explains a rejected line.
func (a *app) parseImportLine(line []byte, o *importOpts, now time.Time) (e wire.Entry, key wire.Key, skip string, err error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] == '#' {
		return e, key, "blank", nil
	}
	e.Hint = o.hint
	if line[0] == '{' {
		var l importLine
		if err := json.Unmarshal(line, &l); err != nil {
			return e, key, "", errors.New("not valid JSON")
		}
		if l.Sha256 != "" && l.Key != "" {
			return e, key, "", errors.New(`give "sha256" or "key", not both`)
		}
		digest := l.Sha256 + l.Key
		switch {
		case l.Token != nil && digest != "":
			return e, key, "", errors.New(`give "token" or a digest, not both`)
		case l.Token != nil:
			tok := *l.Token
			if tok == "" {
				return e, key, "", errors.New(`"token" is empty`)
			}
			if l.Kind != "" {
				return e, key, "", errors.New(`"kind" goes with a digest; a token's kind comes from the token`)
			}
			e.Kind, key = wire.TokenKey(tok)
			e.Exp = wire.TokenExpiry(tok, now, o.skew, o.ttl)
		case digest != "":
			if key, err = wire.ParseKey(digest); err != nil {
				return e, key, "", err
			}
			switch l.Kind {
			case "", wire.KindToken:
				e.Kind = wire.KindToken
			case wire.KindJWS, wire.KindJWE:
				e.Kind = l.Kind
			default:
				return e, key, "", fmt.Errorf(`"kind" must be token, jws or jwe, not %q`, l.Kind)
			}
			e.Exp = now.Add(o.ttl).Unix()
		default:
			return e, key, "", errors.New(`a JSON line needs "token" or "sha256"`)
		}
		if l.Exp != 0 {
			if l.Exp < 0 || l.Exp > wire.MaxExpiry {
				return e, key, "", errors.New(`"exp" is out of range`)
			}
			e.Exp = l.Exp
		}
		if l.Hint != "" {
			e.Hint = l.Hint
		}
		if e.Hint != "" && e.Hint != "access_token" && e.Hint != "refresh_token" {
			return e, key, "", errors.New(`"hint" must be access_token or refresh_token`)
		}
	} else {
		tok := string(line)
		e.Kind, key = wire.TokenKey(tok)
		e.Exp = wire.TokenExpiry(tok, now, o.skew, o.ttl)
	}
	if e.Exp <= now.Unix() {
		return e, key, "expired", nil
	}
	e.Key = key.Hex()
	return e, key, "", nil
}

// inflight is one line on its way: fut is nil for a line that needs no publish.
type inflight struct {
	line   int64
	offset int64 // byte offset just after the line
	msg    *nats.Msg
	fut    jetstream.PubAckFuture
	flush  bool // core NATS: flush, then everything before is confirmed
}

// importer is one run of import.
type importer struct {
	a      *app
	o      *importOpts
	s      *session
	input  string
	state  string
	start  time.Time
	resume int64
	// resumeOffset is the byte offset the run started from.
	resumeOffset int64
	// publishedBefore is what earlier runs published (from the state file).
	publishedBefore int64

	// Confirmed progress (atomic): lines and bytes up to which everything is acknowledged.
	doneLine   int64
	doneOffset int64
	published  int64
	expired    int64
	blank      int64
	rejected   int64
	readLine   int64 // lines read so far (including unconfirmed)

	mu       sync.Mutex
	stateErr error
}

func (a *app) runImport(ctx context.Context, input string, o *importOpts) error {
	if o.window < 1 {
		return usageErr("--window must be at least 1")
	}
	im := &importer{a: a, o: o, input: input, state: o.state}
	var in io.Reader = a.env.Stdin
	var size int64 = -1
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		if im.state == "" {
			im.state = input + ".progress"
		}
	}
	var st importState
	if im.state != "" && !o.restart {
		b, err := os.ReadFile(im.state)
		switch {
		case err == nil:
			if err := json.Unmarshal(b, &st); err != nil || st.V != 1 || st.Line < 0 || st.Offset < 0 {
				return fmt.Errorf("state file %s is unreadable; delete it or pass --restart", im.state)
			}
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("state file: %v", err)
		}
	}
	im.resume, im.resumeOffset = st.Line, st.Offset
	im.publishedBefore = st.Published

	s, err := a.open(ctx, jetstream.WithPublishAsyncMaxPending(2*o.window+16), jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return err
	}
	defer s.close()
	im.s = s
	if s.js != nil {
		if _, _, err := a.revocationStream(ctx, s, true); err != nil {
			return err
		}
	}

	r := bufio.NewReaderSize(in, 1<<20)
	// Skip the lines a previous run confirmed; their bytes must add up to the same offset.
	var off int64
	for line := int64(0); line < st.Line; line++ {
		b, err := readLine(r)
		off += int64(len(b))
		if err == io.EOF && len(b) == 0 {
			return fmt.Errorf("state file %s says %d lines were imported, but %s has only %d; delete it or pass --restart", im.state, st.Line, input, line)
		}
		if err != nil && err != io.EOF {
			return err
		}
	}
	if off != st.Offset {
		return fmt.Errorf("%s changed since state file %s was written (its first %d lines end at byte %d, not %d); delete it or pass --restart", input, im.state, st.Line, off, st.Offset)
	}
	if st.Line > 0 {
		a.infof("resuming %s after line %d (state %s)", input, st.Line, im.state)
	}
	atomic.StoreInt64(&im.doneLine, st.Line)
	atomic.StoreInt64(&im.doneOffset, st.Offset)
	atomic.StoreInt64(&im.readLine, st.Line)
	im.start = time.Now()
	// A steady stream of small, short-lived allocations: collect less often.
	defer debug.SetGCPercent(debug.SetGCPercent(400))

	// The collector confirms lines in order as their acknowledgements arrive.
	queue := make(chan inflight, o.window)
	collectErr := make(chan error, 1)
	pctx, stopPipeline := context.WithCancel(ctx)
	defer stopPipeline()
	go func() {
		err := im.collect(pctx, queue)
		if err != nil {
			// Stop the feeder and let it finish sending what it holds.
			stopPipeline()
			im.drain(queue)
		}
		collectErr <- err
	}()

	// State writer and progress reporter.
	bg := make(chan struct{})
	var bgWG sync.WaitGroup
	bgWG.Add(1)
	go func() {
		defer bgWG.Done()
		im.background(bg, size)
	}()

	readErr := im.feed(pctx, r, off, queue)
	close(queue)
	cerr := <-collectErr
	close(bg)
	bgWG.Wait()
	im.finishProgress(size)

	complete := readErr == nil && cerr == nil && ctx.Err() == nil
	if im.state != "" {
		if complete {
			if err := os.Remove(im.state); err != nil && !errors.Is(err, os.ErrNotExist) {
				a.infof("could not remove state file %s: %v", im.state, err)
			}
		} else if err := im.writeState(); err != nil {
			a.infof("could not write state file %s: %v", im.state, err)
		}
	}
	sum := im.summary(complete)
	if a.json {
		a.printJSON(sum)
	} else {
		fmt.Fprintf(a.stdout(), "import %s: %d lines, %d published (%d skipped as expired, %d blank, %d rejected) in %.1fs (%.0f/s)%s\n",
			input, sum.Lines, sum.Published, sum.Expired, sum.Blank, sum.Rejected, sum.Seconds, sum.PerSecond, resumed(sum.ResumedAfter))
	}
	switch {
	case ctx.Err() != nil:
		return &exitError{code: ExitInterrupted, err: fmt.Errorf("interrupted: lines 1-%d are acknowledged%s", sum.Lines, im.resumeHint())}
	case cerr != nil || readErr != nil:
		err := cerr
		if err == nil {
			err = readErr
		}
		return fmt.Errorf("import stopped at line %d: %v%s", sum.Lines, err, im.resumeHint())
	case sum.Rejected > 0:
		return fail(ExitRejected, "%d line(s) rejected", sum.Rejected)
	}
	return nil
}

func resumed(after int64) string {
	if after == 0 {
		return ""
	}
	return fmt.Sprintf(", resumed after line %d", after)
}

func (im *importer) resumeHint() string {
	if im.state == "" {
		return " (no state file: pass --state to make an import from stdin resumable)"
	}
	return "; state saved to " + im.state + ", run the same command again to resume"
}

// readLine returns the next line including its newline; a line longer than the reader's
// buffer is returned whole.
func readLine(r *bufio.Reader) ([]byte, error) {
	b, err := r.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return b, err
	}
	long := append([]byte(nil), b...)
	for err == bufio.ErrBufferFull {
		b, err = r.ReadSlice('\n')
		long = append(long, b...)
	}
	return long, err
}

// feed reads lines, publishes them and queues them for the collector, in order.
func (im *importer) feed(ctx context.Context, r *bufio.Reader, off int64, queue chan<- inflight) error {
	a, o := im.a, im.o
	line := im.resume
	core := im.s.js == nil
	subject := a.conn.subject
	sinceFlush := 0
	sent := 0
	started := time.Now()
	var lastTTL string
	var lastHdr nats.Header
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b, err := readLine(r)
		if len(b) == 0 && err != nil {
			if err == io.EOF {
				if core {
					queue <- inflight{line: line, offset: off, flush: true}
				}
				return nil
			}
			return err
		}
		if err != nil && err != io.EOF {
			return err
		}
		line++
		off += int64(len(b))
		now := a.now()
		e, key, skip, perr := a.parseImportLine(b, o, now)
		it := inflight{line: line, offset: off}
		switch {
		case perr != nil:
			n := atomic.AddInt64(&im.rejected, 1)
			if n <= int64(o.maxReport) {
				im.note("line %d rejected: %v", line, perr)
			} else if n == int64(o.maxReport)+1 {
				im.note("more lines rejected; only counted from here on")
			}
		case skip == "expired":
			atomic.AddInt64(&im.expired, 1)
		case skip == "blank":
			atomic.AddInt64(&im.blank, 1)
		default:
			if o.rate > 0 {
				// Pace publishes: publish number sent is due sent/rate seconds in.
				if ahead := time.Until(started.Add(time.Duration(sent) * time.Second / time.Duration(o.rate))); ahead > 0 {
					select {
					case <-time.After(ahead):
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				sent++
			}
			e.Origin, e.Client = o.pf.origin, o.pf.client
			e.RevokedAt = now.UTC().Format(time.RFC3339)
			m := &nats.Msg{Subject: wire.Subject(subject, e.Kind, key), Data: e.Encode()}
			signed := a.signer != nil
			a.signMsg(m)
			if core {
				if err := im.s.nc.PublishMsg(m); err != nil {
					return err
				}
				it.msg = m
				sinceFlush++
				it.flush = sinceFlush >= o.window
				if it.flush {
					sinceFlush = 0
				}
			} else {
				if signed {
					// Each signed message has a header of its own.
					m.Header.Set(jetstream.MsgTTLHeader, wire.TTL(e.Exp, now))
				} else {
					// Messages with the same TTL share one (never modified) header.
					if ttl := wire.TTL(e.Exp, now); ttl != lastTTL {
						lastTTL, lastHdr = ttl, nats.Header{jetstream.MsgTTLHeader: []string{ttl}}
					}
					m.Header = lastHdr
				}
				it.msg = m
				fut, err := im.publishAsync(ctx, m)
				if err != nil {
					return err
				}
				it.fut = fut
			}
		}
		atomic.StoreInt64(&im.readLine, line)
		select {
		case queue <- it:
		case <-ctx.Done():
			// The collector stopped (an error) or we were interrupted: this line is not
			// confirmed, and nothing after it will be.
			return ctx.Err()
		}
	}
}

// publishAsync starts one publish, retrying briefly when the client is stalled or
// reconnecting.
func (im *importer) publishAsync(ctx context.Context, m *nats.Msg) (jetstream.PubAckFuture, error) {
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		var fut jetstream.PubAckFuture
		if fut, err = im.s.js.PublishMsgAsync(m); err == nil {
			return fut, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, err
}

// collect waits for each queued line's acknowledgement in order and advances the
// confirmed line. A publish that failed is retried synchronously a few times; if it
// still fails, collection stops there (nothing after it is confirmed).
func (im *importer) collect(ctx context.Context, queue <-chan inflight) error {
	stream := im.a.conn.stream
	var pendLine, pendOff, pendPublished int64
	for it := range queue {
		if it.fut != nil {
			var ack *jetstream.PubAck
			select {
			case ack = <-it.fut.Ok():
			case err := <-it.fut.Err():
				var rerr error
				ack, rerr = im.retry(ctx, it.msg, err)
				if rerr != nil {
					return rerr
				}
			}
			if ack.Stream != stream {
				return fmt.Errorf("line %d was stored in stream %q, not %q (overlapping streams?)", it.line, ack.Stream, stream)
			}
			atomic.AddInt64(&im.published, 1)
		} else if im.s.js == nil {
			// Core NATS: lines are confirmed when a later flush returns.
			pendLine, pendOff = it.line, it.offset
			if it.msg != nil {
				pendPublished++
			}
			if !it.flush {
				continue
			}
			if err := im.s.nc.FlushTimeout(im.a.conn.timeout); err != nil {
				return fmt.Errorf("flush: %v", err)
			}
			atomic.AddInt64(&im.published, pendPublished)
			pendPublished = 0
			it.line, it.offset = pendLine, pendOff
		}
		atomic.StoreInt64(&im.doneOffset, it.offset)
		atomic.StoreInt64(&im.doneLine, it.line)
	}
	return nil
}

// retry republishes m synchronously after a failed asynchronous publish.
func (im *importer) retry(ctx context.Context, m *nats.Msg, first error) (*jetstream.PubAck, error) {
	err := first
	for attempt := 0; attempt < 5; attempt++ {
		if ctx.Err() != nil {
			break
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), im.a.conn.timeout)
		ack, perr := im.s.js.PublishMsg(pctx, m)
		cancel()
		if perr == nil {
			return ack, nil
		}
		err = perr
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	return nil, fmt.Errorf("publish of %s not acknowledged: %v", m.Subject, err)
}

// drain empties the queue after a failure, so the feeder never blocks on it.
func (im *importer) drain(queue <-chan inflight) {
	go func() {
		for range queue {
		}
	}()
}

func (im *importer) note(format string, args ...interface{}) {
	im.mu.Lock()
	defer im.mu.Unlock()
	fmt.Fprintf(im.a.stderr(), "\r\033[K"+format+"\n", args...)
}

// writeState records the confirmed line atomically (temp file and rename).
func (im *importer) writeState() error {
	if im.state == "" {
		return nil
	}
	abs, _ := filepath.Abs(im.input)
	if im.input == "-" {
		abs = "-"
	}
	b, _ := json.Marshal(importState{V: 1, Input: abs, Line: atomic.LoadInt64(&im.doneLine),
		Offset: atomic.LoadInt64(&im.doneOffset), Published: im.publishedBefore + atomic.LoadInt64(&im.published),
		UpdatedAt: time.Now().UTC().Format(time.RFC3339)})
	tmp := im.state + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, im.state)
}

func (im *importer) summary(complete bool) importSummary {
	el := time.Since(im.start).Seconds()
	lines := atomic.LoadInt64(&im.doneLine)
	rate := 0.0
	if el > 0 {
		rate = float64(lines-im.resume) / el
	}
	st := im.state
	if complete {
		st = ""
	}
	return importSummary{Input: im.input, Lines: lines, ResumedAfter: im.resume,
		Published: atomic.LoadInt64(&im.published), Expired: atomic.LoadInt64(&im.expired),
		Blank: atomic.LoadInt64(&im.blank), Rejected: atomic.LoadInt64(&im.rejected),
		Seconds: el, PerSecond: rate, Stream: im.a.conn.stream, State: st, Complete: complete}
}
