// Package cli is the tokenrevoke operator command: revoke, revoke-session,
// revoke-subject, import, check, watch, snapshot, purge, gateways and keygen, over
// nats.go.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/sign"
)

// Exit codes (documented in --help and README.md).
const (
	ExitOK          = 0
	ExitError       = 1   // NATS, I/O, stream or data problem
	ExitUsage       = 2   // bad flags or arguments
	ExitNotRevoked  = 3   // check: the token is not (or no longer) revoked
	ExitRejected    = 4   // import: finished, but some lines were rejected
	ExitInterrupted = 130 // interrupted (Ctrl-C); import saved its progress, rerun resumes
)

const exitCodesHelp = `Exit codes:
  0    success
  1    error (NATS connection, stream, I/O, bad data)
  2    usage error (unknown command, bad flag or argument)
  3    check: not revoked (no entry, or its exp has passed)
  4    import: finished, but some lines were rejected (listed on stderr)
  130  interrupted (Ctrl-C); for import, everything acknowledged is recorded in
       the state file and the same command resumes after it`

// Env is what the command reads and writes besides NATS; tests pass their own.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads environment variables (os.Getenv when nil).
	Getenv func(string) string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Ready, if set, is called by long-running commands (watch) once they listen.
	Ready func()
}

// exitError carries an exit code; errors that are not exitErrors come from argument
// parsing and exit with ExitUsage.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func fail(code int, format string, args ...interface{}) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// usageErr is a usage problem found after parsing (conflicting flags...).
func usageErr(format string, args ...interface{}) error { return fail(ExitUsage, format, args...) }

// silentExit ends the command with code and no message (the command printed its result).
func silentExit(code int) error { return &exitError{code: code, err: errSilent} }

var errSilent = errors.New("")

// app holds the global flags and the environment for one run.
type app struct {
	env  Env
	conn connFlags
	json bool
	// sign names the signing key; signer is that key once loadSigner ran (nil: unsigned).
	sign   signFlags
	signer *sign.Key
}

func (a *app) now() time.Time {
	if a.env.Now != nil {
		return a.env.Now()
	}
	return time.Now()
}

func (a *app) getenv(k string) string {
	if a.env.Getenv != nil {
		return a.env.Getenv(k)
	}
	return os.Getenv(k)
}

func (a *app) stdout() io.Writer { return a.env.Stdout }
func (a *app) stderr() io.Writer { return a.env.Stderr }

// printJSON writes v as one line of JSON.
func (a *app) printJSON(v interface{}) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(a.stdout(), "%s\n", b)
}

// infof writes a human note to stderr (stdout stays for results).
func (a *app) infof(format string, args ...interface{}) {
	fmt.Fprintf(a.stderr(), format+"\n", args...)
}

func isTerminal(f interface{}) bool {
	if file, ok := f.(*os.File); ok {
		return term.IsTerminal(int(file.Fd()))
	}
	return false
}

// runE adapts a command body: a plain error it returns is a runtime error (exit 1).
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return &exitError{code: ExitError, err: err}
	}
}

// Run executes the command line args (without the program name) and returns the exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	a := &app{env: env}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.code == ExitError && ctx.Err() != nil {
			// Interrupted while connecting or waiting: not a failure of its own.
			ee.code = ExitInterrupted
		}
		if ee.err != errSilent {
			fmt.Fprintf(env.Stderr, "tokenrevoke: %v\n", ee.err)
		}
		if ee.code == ExitUsage {
			fmt.Fprintf(env.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return ee.code
	}
	// Not from a command body: cobra's own parsing (unknown command or flag, arguments).
	fmt.Fprintf(env.Stderr, "tokenrevoke: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
	return ExitUsage
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "tokenrevoke",
		Short: "Operate tokenrevoke: revoke tokens, sessions and subjects over NATS, check, watch, import, snapshot, purge",
		Long: `tokenrevoke publishes and inspects the revocations that tokenrevoke gateways
(the Traefik middleware) enforce, over core NATS or a JetStream stream.

Tokens are hashed on this machine: only SHA-256 digests are published (wire format
version 2: kinds token, jws, sid and sub).

Connection flags work like the nats CLI's: --server (or NATS_URL), --creds, --nkey,
--user/--password, --token, --tlscert/--tlskey/--tlsca, and --context (a nats CLI
context in ~/.config/nats/context/<name>.json; the selected context is used when no
--context is given). Flags win over the context.

Gateways with signing keys drop unsigned messages: revoke, revoke-session,
revoke-subject, import and snapshot sign with --sign-key-id and --sign-ed25519-key or
--sign-hmac-secret (or TOKENREVOKE_SIGN_KEY_ID, TOKENREVOKE_SIGN_ED25519_KEY,
TOKENREVOKE_SIGN_HMAC_SECRET); keygen makes an Ed25519 key.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return err })
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodesHelp + "\n")
	pf := root.PersistentFlags()
	a.conn.register(pf)
	pf.BoolVar(&a.json, "json", false, "print results as JSON (one object per line)")
	root.AddCommand(
		a.revokeCmd(),
		a.revokeRuleCmd("revoke-session", "sid"),
		a.revokeRuleCmd("revoke-subject", "sub"),
		a.importCmd(),
		a.checkCmd(),
		a.watchCmd(),
		a.snapshotCmd(),
		a.purgeCmd(),
		a.gatewaysCmd(),
		a.keygenCmd(),
	)
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}

// exactArgs is cobra.ExactArgs with a friendlier message.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s expects %s, got %d argument(s)", cmd.Name(), what, len(args))
		}
		return nil
	}
}

// jsonTime formats unix seconds for human output.
func unixTime(s int64) string {
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}
