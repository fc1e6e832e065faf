#!/usr/bin/env bash
# Runs every test of the project, the way CI does:
#   1. gofmt / go vet / vendor check of both modules
#   2. the plugin module natively (go test -race)
#   3. the same packages under the yaegi v0.16.1 interpreter (what Traefik runs)
#   4. the e2e module: the plugin loaded exactly as Traefik loads it, gateways sharing
#      revocations over an embedded nats-server, and real Traefik v3.6.12 processes
# It installs what it needs (yaegi CLI, nats-server, the nats command, promtool and prometheus, Traefik built
# from the Go module proxy into .cache/). Set SKIP_TRAEFIK_BUILD=1 with TRAEFIK_BIN=... to use a prebuilt binary.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "tools"
if ! yaegi version 2>/dev/null | grep -q 'v0.16.1'; then
  go install github.com/traefik/yaegi/cmd/yaegi@v0.16.1
fi
if ! nats-server --version 2>/dev/null | grep -q 'v2.12.1'; then
  go install github.com/nats-io/nats-server/v2@v2.12.1
fi
export NATS_SERVER_BIN="$gobin/nats-server"
# The nats command (natscli) lists and pings the gateways in e2e (TestFleetView): the
# variable makes that test fail, not skip, without it.
if ! "$gobin/nats" --version 2>&1 | grep -q 'v0.5.0'; then
  go install github.com/nats-io/natscli/nats@v0.5.0
fi
export NATS_CLI_BIN="$gobin/nats" TOKENREVOKE_REQUIRE_NATSCLI=1
# The differential test runs a Python backend that verifies ES256 with the cryptography
# package, and the identity-provider tests run oidc-provider on Node (npm ci on first use).
if ! python3 -c 'import cryptography' 2>/dev/null; then
  if ! /usr/bin/python3 -c 'import cryptography' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3 python3-cryptography >/dev/null
  fi
  export PYTHON=/usr/bin/python3
fi
command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
# The differential test's Django (under gunicorn) and Starlette (under uvicorn) backends
# run on Debian's packages; its Express backends are npm packages (npm ci on first use).
if ! /usr/bin/python3 -c 'import django, gunicorn, starlette, multipart, uvicorn, jwt' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-django python3-gunicorn python3-starlette \
    python3-multipart python3-uvicorn python3-jwt >/dev/null
fi
export PYTHON_WEB=/usr/bin/python3
echo "yaegi $(yaegi version 2>/dev/null || echo '?'), $(nats-server --version)"

# promtool lints the metrics page (TestMetricsPromtool); Debian ships it in the
# prometheus package. The variable makes that test fail, not skip, without it.
# The same package's prometheus binary scrapes real gateways in e2e (TestFleetTraefik).
{ command -v promtool && command -v prometheus; } >/dev/null || (apt-get update && apt-get install -y --no-install-recommends prometheus)
export TOKENREVOKE_REQUIRE_PROMTOOL=1
promtool --version 2>&1 | sed -n 1p

step "format and vet"
unformatted="$(gofmt -l $(git ls-files '*.go' | grep -v '^vendor/'))"
if [ -n "$unformatted" ]; then
  echo "gofmt needed:"; echo "$unformatted"; exit 1
fi
go vet ./...
(cd e2e && go vet ./...)
if grep -qE 'nats-io/nats.go|hashicorp/golang-lru/v2' go.mod; then
  echo "the plugin module must not depend on nats.go or golang-lru/v2 (they cannot run in Traefik)"; exit 1
fi

step "tokenrevoke command (cmd/tokenrevoke)"
(cd cmd/tokenrevoke && go vet ./... && go test -count=1 ./...)

step "plugin module, native (race detector on)"
go test -race -count=1 ./...

step "plugin module under yaegi v0.16.1"
# yaegi resolves imports through GOPATH, so the module is mounted at its import path.
ygp="$(mktemp -d)"
trap 'rm -rf "$ygp"' EXIT
mkdir -p "$ygp/src/github.com/tokenrevoke"
ln -s "$root" "$ygp/src/github.com/tokenrevoke/tokenrevoke"
(cd "$ygp/src/github.com/tokenrevoke/tokenrevoke" && GOPATH="$ygp" GO111MODULE=off yaegi test .)
(cd "$ygp/src/github.com/tokenrevoke/tokenrevoke/natsclient" && GOPATH="$ygp" GO111MODULE=off yaegi test .)

step "Traefik binary"
if [ -z "${TRAEFIK_BIN:-}" ]; then
  TRAEFIK_BIN="$(bash e2e/build-traefik.sh | tail -n 1)"
fi
export TRAEFIK_BIN
"$TRAEFIK_BIN" version | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail

step "e2e module: yaegi loader, NATS propagation, real Traefik"
(cd e2e && go test -count=1 -timeout 30m ./...)

step "all tests passed"
