package cli

import (
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/sign"
	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/wire"
)

// watchLine is one decoded message as watch prints it.
type watchLine struct {
	Subject   string `json:"subject"`
	Seq       uint64 `json:"seq,omitempty"`
	StoredAt  string `json:"storedAt,omitempty"`
	V         int    `json:"v,omitempty"`
	Kind      string `json:"kind,omitempty"`
	Key       string `json:"key,omitempty"`
	Cutoff    int64  `json:"cutoff,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Hint      string `json:"hint,omitempty"`
	Origin    string `json:"origin"`
	Client    string `json:"client,omitempty"`
	RevokedAt string `json:"revokedAt,omitempty"`
	Error     string `json:"error,omitempty"`
	// Sig is the message's signature: unsigned, unverified (no verify keys given),
	// valid, unknownKid, wrongAlg, invalid or malformed, with its kid and alg.
	Sig sign.Result `json:"signature"`
}

func (a *app) watchCmd() *cobra.Command {
	var (
		all   bool
		since time.Duration
		count int
		vf    verifyFlags
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Print revocations as they are published (decoded; only digests travel)",
		Long: `Print every revocation and rule as it is published, one line each (--json: one JSON
object per line). With --stream, an ordered consumer follows the stream from now on
(--all: from its first stored message; --since D: from D ago); without a stream,
a core NATS subscription on <subject>.>. Messages the gateways would drop are printed
with the reason. Runs until Ctrl-C or --count messages.`,
		Args: exactArgs(0, "no arguments"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if a.conn.stream == "" && (all || since > 0) {
				return usageErr("--all and --since need a stream")
			}
			if all && since > 0 {
				return usageErr("--all and --since exclude each other")
			}
			keys, err := vf.keys()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.open(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			var mu sync.Mutex
			n := 0
			done := make(chan struct{})
			emit := func(l watchLine) {
				mu.Lock()
				defer mu.Unlock()
				if count > 0 && n >= count {
					return
				}
				a.printWatch(l)
				n++
				if count > 0 && n == count {
					close(done)
				}
			}
			filter := a.conn.subject + ".>"
			if s.js == nil {
				sub, err := s.nc.Subscribe(filter, func(m *nats.Msg) {
					emit(a.decodeWatch(m.Subject, m.Data, 0, time.Time{}, keys, m.Header))
				})
				if err != nil {
					return err
				}
				defer sub.Unsubscribe()
				if err := s.nc.FlushTimeout(a.conn.timeout); err != nil {
					return err
				}
				a.infof("watching %s on core NATS", filter)
			} else {
				st, _, err := a.revocationStream(ctx, s, false)
				if err != nil {
					return err
				}
				cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
				if all {
					cfg.DeliverPolicy = jetstream.DeliverAllPolicy
				} else if since > 0 {
					t := a.now().Add(-since)
					cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
				}
				cons, err := st.OrderedConsumer(ctx, cfg)
				if err != nil {
					return err
				}
				cc, err := cons.Consume(func(m jetstream.Msg) {
					var seq uint64
					var at time.Time
					if md, err := m.Metadata(); err == nil {
						seq, at = md.Sequence.Stream, md.Timestamp
					}
					emit(a.decodeWatch(m.Subject(), m.Data(), seq, at, keys, m.Headers()))
				})
				if err != nil {
					return err
				}
				defer cc.Stop()
				a.infof("watching stream %s (%s)", a.conn.stream, filter)
			}
			if a.env.Ready != nil {
				a.env.Ready()
			}
			select {
			case <-ctx.Done():
			case <-done:
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&all, "all", false, "start with every message stored in the stream")
	f.DurationVar(&since, "since", 0, "start with the messages stored in the last D")
	f.IntVar(&count, "count", 0, "exit after this many messages (0: run until interrupted)")
	vf.register(cmd)
	return cmd
}

func (a *app) decodeWatch(subject string, data []byte, seq uint64, at time.Time, keys map[string]*sign.Key, h nats.Header) watchLine {
	e, _, err := wire.Decode(a.conn.subject, subject, data)
	l := watchLine{Subject: subject, Seq: seq, V: e.V, Kind: e.Kind, Key: e.Key, Cutoff: e.Cutoff, Exp: e.Exp,
		Hint: e.Hint, Origin: e.Origin, Client: e.Client, RevokedAt: e.RevokedAt}
	if !at.IsZero() {
		l.StoredAt = at.UTC().Format(time.RFC3339Nano)
	}
	if err != nil {
		// Show nothing of a malformed body: it could hold anything.
		l = watchLine{Subject: subject, Seq: seq, StoredAt: l.StoredAt, Error: err.Error()}
	}
	l.Sig = sign.Check(keys, subject, data, sigValues(h))
	return l
}

func (a *app) printWatch(l watchLine) {
	if a.json {
		a.printJSON(l)
		return
	}
	at := l.StoredAt
	if at == "" {
		at = a.now().UTC().Format(time.RFC3339Nano)
	}
	if l.Error != "" {
		fmt.Fprintf(a.stdout(), "%s seq %d MALFORMED on %s: %s (%s)\n", at, l.Seq, l.Subject, l.Error, describeSig(l.Sig))
		return
	}
	extra := ""
	if l.Cutoff != 0 {
		extra += " cutoff " + unixTime(l.Cutoff)
	}
	if l.Client != "" {
		extra += " client " + l.Client
	}
	if l.Hint != "" {
		extra += " hint " + l.Hint
	}
	fmt.Fprintf(a.stdout(), "%s seq %d v%d %-5s %s exp %s origin %q%s (%s)\n", at, l.Seq, l.V, l.Kind, l.Key, unixTime(l.Exp), l.Origin, extra, describeSig(l.Sig))
}
