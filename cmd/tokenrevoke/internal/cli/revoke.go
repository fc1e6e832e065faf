package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/wire"
)

// pubFlags are the flags of every publishing command.
type pubFlags struct {
	origin string
	client string
}

func (p *pubFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.origin, "origin", "cli", "origin written into the message (the publisher's name)")
	cmd.Flags().StringVar(&p.client, "client", "", "client id written into the message (optional)")
}

// published is the result of one publish, as printed.
type published struct {
	Published bool   `json:"published"`
	Kind      string `json:"kind"`
	Key       string `json:"key"`
	Subject   string `json:"subject"`
	Cutoff    int64  `json:"cutoff,omitempty"`
	Exp       int64  `json:"exp"`
	Stream    string `json:"stream,omitempty"`
	Seq       uint64 `json:"seq,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

func (a *app) printPublished(r published) {
	if a.json {
		a.printJSON(r)
		return
	}
	if !r.Published {
		fmt.Fprintf(a.stdout(), "not published: %s (%s %s)\n", r.Reason, r.Kind, r.Key)
		return
	}
	where := "core NATS"
	if r.Stream != "" {
		where = fmt.Sprintf("stream %s seq %d", r.Stream, r.Seq)
	}
	extra := ""
	if r.Cutoff != 0 {
		extra = " cutoff " + unixTime(r.Cutoff)
	}
	fmt.Fprintf(a.stdout(), "revoked %s %s%s until %s (%s, %s)\n", r.Kind, r.Key, extra, unixTime(r.Exp), r.Subject, where)
}

// publishEntry publishes one entry (JetStream with Nats-TTL and ack, or core NATS with
// a flush) and returns the stream sequence (0 on core NATS).
func (a *app) publishEntry(ctx context.Context, s *session, e *wire.Entry, subject string) (uint64, error) {
	now := a.now()
	m := nats.NewMsg(subject)
	m.Data = e.Encode()
	a.signMsg(m)
	if s.js == nil {
		if err := s.nc.PublishMsg(m); err != nil {
			return 0, err
		}
		return 0, s.nc.FlushTimeout(a.conn.timeout)
	}
	if _, _, err := a.revocationStream(ctx, s, true); err != nil {
		return 0, err
	}
	m.Header.Set(jetstream.MsgTTLHeader, wire.TTL(e.Exp, now))
	pctx, cancel := context.WithTimeout(ctx, a.conn.timeout)
	defer cancel()
	ack, err := s.js.PublishMsg(pctx, m, jetstream.WithExpectStream(a.conn.stream))
	if err != nil {
		return 0, fmt.Errorf("publish to stream %s not acknowledged: %v", a.conn.stream, err)
	}
	return ack.Sequence, nil
}

// readSecret reads a token (or other value) from an argument, or from stdin for "-":
// the first line, surrounding white space removed.
func (a *app) readSecret(arg, what string) (string, error) {
	v := arg
	if arg == "-" && isTerminal(a.env.Stdin) {
		// Typed by hand: no echo.
		fmt.Fprintf(a.stderr(), "%s: ", what)
		b, err := term.ReadPassword(int(a.env.Stdin.(*os.File).Fd()))
		fmt.Fprintln(a.stderr())
		if err != nil {
			return "", fmt.Errorf("reading the %s: %v", what, err)
		}
		v = string(b)
	} else if arg == "-" {
		line, err := bufio.NewReaderSize(a.env.Stdin, 64<<10).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", fmt.Errorf("reading the %s from stdin: %v", what, err)
		}
		v = line
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return "", usageErr("the %s is empty", what)
	}
	return v, nil
}

// parseTime reads unix seconds, RFC 3339, or "now".
func (a *app) parseTime(flag, v string) (int64, error) {
	if v == "" || v == "now" {
		return a.now().Unix(), nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 || n > wire.MaxExpiry {
			return 0, usageErr("--%s: %d is out of range", flag, n)
		}
		return n, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, usageErr("--%s: %q is neither unix seconds nor an RFC 3339 time", flag, v)
	}
	return t.Unix(), nil
}

func (a *app) revokeCmd() *cobra.Command {
	var (
		pf      pubFlags
		sha     string
		kind    string
		expFlag string
		ttl     time.Duration
		skew    time.Duration
		hint    string
	)
	cmd := &cobra.Command{
		Use:   "revoke TOKEN|-",
		Short: "Revoke one token (hashed here; only its digest is published)",
		Long: `Revoke one token. The token is hashed on this machine and never sent: a JWS compact
token (two dots, starting with "e") is kind jws, keyed by the SHA-256 of its signing
input (everything before the last dot); a JWE (four dots) is kind jwe, keyed by the
SHA-256 of its canonical spelling; any other token is kind token, keyed by the SHA-256
of the exact string. Pass "-" to read the token from stdin (keeps it out of shell
history and process lists); a token that starts with "-" goes after "--" or on stdin.

The revocation lasts until the JWT's exp claim plus --clock-skew, or --ttl for a token
without a readable exp. With --stream it is published through JetStream with a
Nats-TTL header and the command waits for the stream's acknowledgement (the stream is
created with the gateways' configuration if missing); without, it is published on core
NATS and flushed.

With --sha256 HEX a digest known in advance is revoked (--kind token or jws, --exp
unix seconds or RFC 3339; default now + --ttl).`,
		Example: `  printf %s "$TOKEN" | tokenrevoke revoke -
  tokenrevoke revoke -- -opaque-token-starting-with-a-dash
  tokenrevoke revoke --sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 --exp 2026-12-31T00:00:00Z`,
		Args: func(cmd *cobra.Command, args []string) error {
			if sha != "" {
				if len(args) != 0 {
					return fmt.Errorf("revoke takes either TOKEN or --sha256, not both")
				}
				return nil
			}
			return exactArgs(1, "one TOKEN (or - for stdin, or --sha256 HEX)")(cmd, args)
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := a.loadSigner(); err != nil {
				return err
			}
			if hint != "" && hint != "access_token" && hint != "refresh_token" {
				return usageErr("--hint must be access_token or refresh_token")
			}
			now := a.now()
			var e wire.Entry
			if sha != "" {
				k, err := wire.ParseKey(sha)
				if err != nil {
					return usageErr("--sha256: %v", err)
				}
				if kind != wire.KindToken && kind != wire.KindJWS && kind != wire.KindJWE {
					return usageErr("--kind must be token, jws or jwe")
				}
				e.Kind, e.Key = kind, k.Hex()
				e.Exp = now.Add(ttl).Unix()
				if expFlag != "" {
					if e.Exp, err = a.parseTime("exp", expFlag); err != nil {
						return err
					}
				}
			} else {
				if cmd.Flags().Changed("exp") || cmd.Flags().Changed("kind") {
					return usageErr("--exp and --kind go with --sha256; a token's kind and exp come from the token")
				}
				tok, err := a.readSecret(args[0], "token")
				if err != nil {
					return err
				}
				kind, k := wire.TokenKey(tok)
				e.Kind, e.Key = kind, k.Hex()
				e.Exp = wire.TokenExpiry(tok, now, skew, ttl)
			}
			e.Hint, e.Origin, e.Client = hint, pf.origin, pf.client
			e.RevokedAt = now.UTC().Format(time.RFC3339)
			k, _ := wire.ParseKey(e.Key)
			return a.publishAndPrint(cmd.Context(), &e, wire.Subject(a.conn.subject, e.Kind, k))
		}),
	}
	pf.register(cmd)
	a.registerSign(cmd)
	f := cmd.Flags()
	f.StringVar(&sha, "sha256", "", "revoke this digest (64 hex) instead of a token")
	f.StringVar(&kind, "kind", wire.KindToken, "with --sha256: token (digest of the whole token) or jws (digest of the signing input)")
	f.StringVar(&expFlag, "exp", "", "with --sha256: expiry, unix seconds or RFC 3339 (default now + --ttl)")
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime of a revocation whose token has no readable exp")
	f.DurationVar(&skew, "clock-skew", time.Minute, "added to a JWT's exp")
	f.StringVar(&hint, "hint", "", "token_type_hint: access_token or refresh_token")
	return cmd
}

// publishAndPrint publishes e unless it has already expired, and prints the outcome.
func (a *app) publishAndPrint(ctx context.Context, e *wire.Entry, subject string) error {
	r := published{Kind: e.Kind, Key: e.Key, Subject: subject, Cutoff: e.Cutoff, Exp: e.Exp, Stream: a.conn.stream}
	if e.Exp <= a.now().Unix() {
		r.Reason = "already expired at " + unixTime(e.Exp) + ": nothing left to enforce"
		r.Stream = ""
		a.printPublished(r)
		return nil
	}
	s, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	seq, err := a.publishEntry(ctx, s, e, subject)
	if err != nil {
		return err
	}
	r.Published, r.Seq = true, seq
	a.printPublished(r)
	return nil
}

// revokeRuleCmd is revoke-session (kind sid) and revoke-subject (kind sub).
func (a *app) revokeRuleCmd(name, kind string) *cobra.Command {
	var (
		pf       pubFlags
		issuer   string
		value    string
		cutoff   string
		lifetime time.Duration
	)
	what := map[string]string{wire.KindSID: "session", wire.KindSub: "subject"}[kind]
	cmd := &cobra.Command{
		Use:   name + " --issuer ISS --" + kind + " " + strings.ToUpper(kind),
		Short: "Revoke every token of one " + what + " issued up to a cutoff (a " + kind + " rule)",
		Long: `Publish a ` + kind + ` rule (wire format version 2): every token of issuer ISS whose ` + kind + ` claim
is ` + strings.ToUpper(kind) + ` and whose iat is at or before --cutoff is revoked. Only
sha256(ISS + "\x00" + ` + strings.ToUpper(kind) + `) is published, on <subject>.` + kind + `.<digest>.
A later rule for the same key moves the cutoff forward.

The rule lasts until cutoff + --max-token-lifetime (the longest lifetime of the
issuer's tokens): by then every token it covers has expired.
Pass "-" as --` + kind + ` to read the value from stdin.`,
		Args: exactArgs(0, "no positional arguments"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := a.loadSigner(); err != nil {
				return err
			}
			if issuer == "" || value == "" {
				return usageErr("--issuer and --%s are required", kind)
			}
			v, err := a.readSecret(value, kind)
			if err != nil {
				return err
			}
			if lifetime <= 0 {
				return usageErr("--max-token-lifetime must be positive")
			}
			c, err := a.parseTime("cutoff", cutoff)
			if err != nil {
				return err
			}
			k := wire.RuleKey(issuer, v)
			e := wire.Entry{Kind: kind, Key: k.Hex(), Cutoff: c, Exp: c + int64(lifetime/time.Second),
				Origin: pf.origin, Client: pf.client, RevokedAt: a.now().UTC().Format(time.RFC3339)}
			if e.Exp > wire.MaxExpiry {
				e.Exp = wire.MaxExpiry
			}
			return a.publishAndPrint(cmd.Context(), &e, wire.Subject(a.conn.subject, kind, k))
		}),
	}
	pf.register(cmd)
	a.registerSign(cmd)
	f := cmd.Flags()
	f.StringVar(&issuer, "issuer", "", "issuer (the tokens' iss claim)")
	f.StringVar(&value, kind, "", "the "+kind+" claim value (- reads it from stdin)")
	f.StringVar(&cutoff, "cutoff", "now", "revoke tokens issued at or before this time: unix seconds, RFC 3339 or now")
	f.DurationVar(&lifetime, "max-token-lifetime", 24*time.Hour, "longest lifetime of the issuer's tokens; the rule lasts until cutoff plus this")
	return cmd
}
