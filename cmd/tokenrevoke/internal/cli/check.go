package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/sign"
	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/wire"
)

// checkResult is what check prints.
type checkResult struct {
	Revoked   bool   `json:"revoked"`
	Kind      string `json:"kind"`
	Key       string `json:"key"`
	Subject   string `json:"subject"`
	V         int    `json:"v,omitempty"`
	Cutoff    int64  `json:"cutoff,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Hint      string `json:"hint,omitempty"`
	Origin    string `json:"origin,omitempty"`
	Client    string `json:"client,omitempty"`
	RevokedAt string `json:"revokedAt,omitempty"`
	Seq       uint64 `json:"seq,omitempty"`
	StoredAt  string `json:"storedAt,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// Sig is the stored message's signature (absent when there is no message).
	Sig *sign.Result `json:"signature,omitempty"`
}

// lookup is one subject to look at.
type lookup struct {
	kind string
	key  wire.Key
}

func (a *app) checkCmd() *cobra.Command {
	var (
		sha    string
		kind   string
		issuer string
		sid    string
		sub    string
		vf     verifyFlags
	)
	cmd := &cobra.Command{
		Use:   "check TOKEN|-",
		Short: "Say whether a token (or digest, session, subject) is revoked, from the stream",
		Long: `Look a token up in the revocation stream by its subject (one message get; the stream
is not read) and print the entry: kind, key, exp, origin, revokedAt. Exits 3 when there
is no entry or its exp has passed.

A JWS token is looked up by its version-2 key (signing input) and then by its
version-1 key (the whole token), which gateways that publish version 1 use.
Also: --sha256 HEX [--kind token|jws], or --issuer ISS with --sid SID or --sub SUB
for session and subject rules.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if sha != "" || issuer != "" {
				return exactArgs(0, "no TOKEN with --sha256 or --issuer")(cmd, args)
			}
			return exactArgs(1, "one TOKEN (or - for stdin, --sha256 HEX, or --issuer with --sid/--sub)")(cmd, args)
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := a.needStream("check"); err != nil {
				return err
			}
			keys, err := vf.keys()
			if err != nil {
				return err
			}
			var looks []lookup
			switch {
			case sha != "":
				k, err := wire.ParseKey(sha)
				if err != nil {
					return usageErr("--sha256: %v", err)
				}
				if kind != wire.KindToken && kind != wire.KindJWS && kind != wire.KindJWE && kind != wire.KindSID && kind != wire.KindSub {
					return usageErr("--kind must be token, jws, jwe, sid or sub")
				}
				looks = []lookup{{kind, k}}
			case issuer != "":
				if (sid == "") == (sub == "") {
					return usageErr("--issuer goes with exactly one of --sid and --sub")
				}
				if sid != "" {
					looks = []lookup{{wire.KindSID, wire.RuleKey(issuer, sid)}}
				} else {
					looks = []lookup{{wire.KindSub, wire.RuleKey(issuer, sub)}}
				}
			default:
				tok, err := a.readSecret(args[0], "token")
				if err != nil {
					return err
				}
				kind, k := wire.TokenKey(tok)
				looks = []lookup{{kind, k}}
				if kind != wire.KindToken {
					looks = append(looks, lookup{wire.KindToken, wire.V1Key(tok)})
				}
			}
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.close()
			st, _, err := a.revocationStream(cmd.Context(), s, false)
			if err != nil {
				return err
			}
			r, err := a.check(cmd.Context(), st, looks, keys)
			if err != nil {
				return err
			}
			a.printCheck(r)
			if !r.Revoked {
				return silentExit(ExitNotRevoked)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&sha, "sha256", "", "look up this digest (64 hex) instead of a token")
	f.StringVar(&kind, "kind", wire.KindToken, "with --sha256: token, jws, sid or sub")
	f.StringVar(&issuer, "issuer", "", "with --sid or --sub: look up a session or subject rule")
	f.StringVar(&sid, "sid", "", "session id (with --issuer)")
	f.StringVar(&sub, "sub", "", "subject (with --issuer)")
	vf.register(cmd)
	return cmd
}

// check looks each candidate up until one is a live entry.
func (a *app) check(ctx context.Context, st jetstream.Stream, looks []lookup, keys map[string]*sign.Key) (checkResult, error) {
	now := a.now().Unix()
	first := checkResult{Kind: looks[0].kind, Key: looks[0].key.Hex(), Subject: wire.Subject(a.conn.subject, looks[0].kind, looks[0].key), Reason: "no entry"}
	for _, l := range looks {
		subject := wire.Subject(a.conn.subject, l.kind, l.key)
		gctx, cancel := context.WithTimeout(ctx, a.conn.timeout)
		m, err := st.GetLastMsgForSubject(gctx, subject)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return first, fmt.Errorf("looking up %s: %v", subject, err)
		}
		e, _, derr := wire.Decode(a.conn.subject, subject, m.Data)
		r := checkResult{Kind: e.Kind, Key: e.Key, Subject: subject, V: e.V, Cutoff: e.Cutoff, Exp: e.Exp,
			Hint: e.Hint, Origin: e.Origin, Client: e.Client, RevokedAt: e.RevokedAt, Seq: m.Sequence,
			StoredAt: m.Time.UTC().Format(time.RFC3339)}
		sr := sign.Check(keys, subject, m.Data, sigValues(m.Header))
		r.Sig = &sr
		switch {
		case derr != nil:
			r.Kind, r.Key = l.kind, l.key.Hex()
			r.Reason = "the stored message is malformed, gateways drop it: " + derr.Error()
		case e.Exp <= now:
			r.Reason = "expired at " + unixTime(e.Exp)
		default:
			r.Revoked = true
			return r, nil
		}
		first = r
	}
	return first, nil
}

func (a *app) printCheck(r checkResult) {
	if a.json {
		a.printJSON(r)
		return
	}
	w := a.stdout()
	if !r.Revoked {
		fmt.Fprintf(w, "not revoked: %s (%s %s)\n", r.Reason, r.Kind, r.Key)
		return
	}
	fmt.Fprintf(w, "revoked\n  kind       %s (v%d)\n  key        %s\n", r.Kind, r.V, r.Key)
	if r.Cutoff != 0 {
		fmt.Fprintf(w, "  cutoff     %s (%d)\n", unixTime(r.Cutoff), r.Cutoff)
	}
	fmt.Fprintf(w, "  exp        %s (%d)\n  origin     %q\n", unixTime(r.Exp), r.Exp, r.Origin)
	if r.Client != "" {
		fmt.Fprintf(w, "  client     %s\n", r.Client)
	}
	if r.Hint != "" {
		fmt.Fprintf(w, "  hint       %s\n", r.Hint)
	}
	fmt.Fprintf(w, "  revokedAt  %s\n  stored     seq %d at %s on %s\n", r.RevokedAt, r.Seq, r.StoredAt, r.Subject)
	if r.Sig != nil {
		fmt.Fprintf(w, "  signature  %s\n", describeSig(*r.Sig))
	}
}
