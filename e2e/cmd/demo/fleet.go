package main

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// fleetHelp tells how to look at the demo's fleet: the Prometheus metrics of each
// gateway, `tokenrevoke gateways` and `nats micro`, and the operator command's main uses,
// all pointed at the demo's NATS server.
func fleetHelp(natsURL, aURL, bURL, stream, subject, token string) string {
	root := "."
	if r, err := harness.RepoRoot(); err == nil {
		root = r
	}
	// The command is built into .cache/ (ignored by git), next to the Traefik binary.
	bin := filepath.Join(root, ".cache", "tokenrevoke")
	cmd := bin + " -s " + natsURL
	if stream != "REVOCATIONS" {
		cmd += fmt.Sprintf(" --stream '%s'", stream)
	}
	if subject != "tokens.revoked" {
		cmd += " --subject " + subject
	}
	var b strings.Builder
	fmt.Fprintf(&b, `
  # Prometheus metrics of each gateway (no credentials; README "Metrics"):
  curl -s %[1]s%[2]s
  curl -s %[3]s%[2]s | grep -E '^tokenrevoke_(cache_entries|revocations_total|nats_connected|synced)'

  # Fleet view (README "Fleet view"): build the operator command once, then ask every gateway:
  (cd %[4]s && go build -o %[5]s .)
  %[6]s gateways    # one table for the fleet; --json for scripts
  nats -s %[7]s micro ls tokenrevoke    # the same gateways, nats CLI (also micro info, micro stats)

  # The operator command's main uses (only digests leave this machine; --help on each):
  %[6]s revoke %[8]s-cli --ttl 1h    # both gateways reject it
  %[6]s watch    # live revocations, decoded (Ctrl-C stops)
`, aURL, metricsPath, bURL, filepath.Join(root, "cmd", "tokenrevoke"), bin, cmd, natsURL, token)
	if stream != "" {
		fmt.Fprintf(&b, `  %[1]s check %[2]s-cli    # revoked? from the stream (exit 3 when not)
  %[1]s snapshot    # a snapshot that gateways started later load
`, cmd, token)
	}
	jwt := demoJWT(time.Now().Unix())
	fmt.Fprintf(&b, `
  # Sessions (README "Sessions and users"): a JWT of session demo-session passes (200);
  # end the session with the command, and both gateways reject it (401):
  curl -s -o /dev/null -w '%%{http_code}\n' -H 'Authorization: Bearer %[1]s' %[2]s/api/orders
  %[3]s revoke-session --issuer https://idp.demo.test --sid demo-session
  curl -s -o /dev/null -w '%%{http_code}\n' -H 'Authorization: Bearer %[1]s' %[4]s/api/orders
`, jwt, bURL, cmd, aURL)
	return b.String()
}

// demoJWT is an access token of session demo-session issued at iat. Its signature is a
// placeholder: the gateways read claims without checking it (a rule only denies), and
// the demo's echo backend checks nothing.
func demoJWT(iat int64) string {
	enc := base64.RawURLEncoding.EncodeToString
	h := enc([]byte(`{"alg":"ES256","typ":"at+jwt","kid":"demo"}`))
	p := enc([]byte(fmt.Sprintf(`{"iss":"https://idp.demo.test","sub":"alice","sid":"demo-session","iat":%d,"exp":%d}`, iat, iat+3600)))
	return h + "." + p + "." + enc([]byte("demo-signature"))
}
