package cli

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke/internal/sign"
)

// Environment variables of the signing key (the flags win over them).
const (
	envSignKeyID   = "TOKENREVOKE_SIGN_KEY_ID"
	envSignEd25519 = "TOKENREVOKE_SIGN_ED25519_KEY"
	envSignHMAC    = "TOKENREVOKE_SIGN_HMAC_SECRET"
)

// signFlags name the key a publishing command signs with.
type signFlags struct {
	keyID   string
	ed25519 string
	hmac    string
}

// registerSign adds the signing flags to a command that publishes.
func (a *app) registerSign(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&a.sign.keyID, "sign-key-id", "", "sign what is published with this key id (env "+envSignKeyID+"); the gateways must list the key")
	f.StringVar(&a.sign.ed25519, "sign-ed25519-key", "", "base64 Ed25519 seed of the signing key (env "+envSignEd25519+"; the env keeps it out of process lists)")
	f.StringVar(&a.sign.hmac, "sign-hmac-secret", "", "HMAC-SHA256 secret of the signing key, at least 32 bytes (env "+envSignHMAC+")")
}

// loadSigner resolves the signing key from the flags and the environment: nil when
// none is given. Errors never contain the key material.
func (a *app) loadSigner() error {
	pickEnv := func(flag, env string) string {
		if flag != "" {
			return flag
		}
		return strings.TrimSpace(a.getenv(env))
	}
	id := pickEnv(a.sign.keyID, envSignKeyID)
	ed := pickEnv(a.sign.ed25519, envSignEd25519)
	hm := pickEnv(a.sign.hmac, envSignHMAC)
	switch {
	case id == "" && ed == "" && hm == "":
		a.signer = nil
		return nil
	case ed != "" && hm != "":
		return usageErr("give one signing key: --sign-ed25519-key (%s) or --sign-hmac-secret (%s), not both", envSignEd25519, envSignHMAC)
	case ed == "" && hm == "":
		return usageErr("--sign-key-id (%s) needs a key: --sign-ed25519-key (%s) or --sign-hmac-secret (%s)", envSignKeyID, envSignEd25519, envSignHMAC)
	case id == "":
		return usageErr("a signing key needs its id: --sign-key-id (%s), as listed in the gateways' nats.signing.keys", envSignKeyID)
	}
	var (
		k   *sign.Key
		err error
	)
	if ed != "" {
		if k, err = sign.NewEd25519(id, ed); err != nil {
			return usageErr("--sign-ed25519-key (%s): %v", envSignEd25519, err)
		}
	} else if k, err = sign.NewHMAC(id, hm); err != nil {
		return usageErr("--sign-hmac-secret (%s): %v", envSignHMAC, err)
	}
	a.signer = k
	return nil
}

// signMsg adds the signature header to m when the command signs. m.Data must be final.
func (a *app) signMsg(m *nats.Msg) {
	if a.signer == nil {
		return
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(sign.Header, a.signer.Sign(m.Subject, m.Data))
}

// verifyFlags are the keys watch and check verify signatures with.
type verifyFlags struct {
	ed25519 []string
	hmac    []string
}

func (v *verifyFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&v.ed25519, "verify-ed25519-pub", nil, "kid=base64 of an Ed25519 public key to verify signatures with (repeatable)")
	f.StringArrayVar(&v.hmac, "verify-hmac-secret", nil, "kid=secret of an HMAC-SHA256 key to verify signatures with (repeatable)")
}

// keys parses the verify flags. Errors name the flag and the kid, never the key.
func (v *verifyFlags) keys() (map[string]*sign.Key, error) {
	keys := map[string]*sign.Key{}
	add := func(flag string, vals []string, mk func(id, key string) (*sign.Key, error)) error {
		for i, s := range vals {
			id, key, ok := strings.Cut(s, "=")
			if !ok || id == "" || key == "" {
				return usageErr("--%s #%d: expected kid=key", flag, i+1)
			}
			if !sign.ValidID(id) {
				return usageErr("--%s #%d: the key id must be 1-64 characters of A-Z a-z 0-9 . _ -", flag, i+1)
			}
			if keys[id] != nil {
				return usageErr("--%s: key id %q given twice", flag, id)
			}
			k, err := mk(id, key)
			if err != nil {
				return usageErr("--%s %s: %v", flag, id, err)
			}
			keys[id] = k
		}
		return nil
	}
	if err := add("verify-ed25519-pub", v.ed25519, sign.NewEd25519Public); err != nil {
		return nil, err
	}
	if err := add("verify-hmac-secret", v.hmac, sign.NewHMAC); err != nil {
		return nil, err
	}
	return keys, nil
}

// sigValues are the message's signature headers (any spelling of the name).
func sigValues(h nats.Header) []string {
	var vals []string
	for k, v := range h {
		if strings.EqualFold(k, sign.Header) {
			vals = append(vals, v...)
		}
	}
	return vals
}

// describeSig is the human form of a signature check.
func describeSig(r sign.Result) string {
	switch r.Status {
	case sign.Unsigned, sign.Malformed, "":
		return "sig " + r.Status
	case sign.Unverified:
		return fmt.Sprintf("signed by %s (%s), not verified", r.Kid, r.Alg)
	default:
		return fmt.Sprintf("sig %s kid %s (%s)", r.Status, r.Kid, r.Alg)
	}
}

func (a *app) keygenCmd() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "keygen [--id ID]",
		Short: "Make a fresh Ed25519 key for signing bus messages, as YAML for the plugin configuration",
		Long: `Print a fresh Ed25519 key pair as two YAML documents ready to paste into the
plugin configuration (the tokenrevoke middleware's options): the first, with
ed25519PrivateKey and signWith, for the gateways (or the one publisher) that sign
with it; the second, with ed25519PublicKey, is the entry to add to nats.signing.keys
of every gateway that must accept what it signs. The comment at the end shows the
environment for this command to sign with the key.

The private key is printed on stdout: redirect it to a protected file.
--json prints {"id", "ed25519PrivateKey", "ed25519PublicKey"} instead.`,
		Args: exactArgs(0, "no arguments"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			seed, pub, err := sign.Generate()
			if err != nil {
				return err
			}
			if id == "" {
				b, _ := sign.DecodeBase64(pub)
				id = fmt.Sprintf("ed25519-%x", b[:4])
			}
			if !sign.ValidID(id) {
				return usageErr("--id must be 1-64 characters of A-Z a-z 0-9 . _ -")
			}
			if a.json {
				a.printJSON(map[string]string{"id": id, "ed25519PrivateKey": seed, "ed25519PublicKey": pub})
				return nil
			}
			fmt.Fprintf(a.stdout(), `# tokenrevoke Ed25519 signing key %[1]s, made %[4]s.
# Both documents go into the middleware's plugin options (plugins.tokenrevoke).
# 1. Gateways that sign with it (keep this private key secret):
nats:
  signing:
    keys:
      - id: "%[1]s"
        ed25519PrivateKey: "%[2]s"
    signWith: "%[1]s"
---
# 2. Every gateway that accepts messages signed with it: add this entry to its
#    nats.signing.keys (it keeps its own signWith).
nats:
  signing:
    keys:
      - id: "%[1]s"
        ed25519PublicKey: "%[3]s"
# 3. The tokenrevoke command signing with it (revoke, revoke-session,
#    revoke-subject, import, snapshot):
#      export %[5]s=%[1]s
#      export %[6]s=%[2]s
#    or --sign-key-id %[1]s --sign-ed25519-key ... (visible in process lists).
#    watch and check verify it with --verify-ed25519-pub %[1]s=%[3]s
`, id, seed, pub, a.now().UTC().Format("2006-01-02T15:04:05Z"), envSignKeyID, envSignEd25519)
			return nil
		}),
	}
	cmd.Flags().StringVar(&id, "id", "", "key id (1-64 of A-Z a-z 0-9 . _ -; default ed25519-<first 8 hex of the public key>)")
	return cmd
}
