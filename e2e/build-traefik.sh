#!/usr/bin/env bash
# Builds the Traefik binary used by the end-to-end tests, the demo and the benchmarks.
#
# Traefik's own go.mod carries replace directives, so `go install ...@version` is refused.
# This script writes a throw-away module that requires Traefik and repeats those replaces,
# then builds cmd/traefik from it. The result is cached in .cache/ (git-ignored) and only
# rebuilt when TRAEFIK_VERSION changes. A cold build downloads ~3 GB of modules and takes
# 10-15 minutes on two cores; progress is printed while it runs.
#
# Prints the path of the binary on its last line of stdout.
set -euo pipefail

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TOKENREVOKE_CACHE:-$root/.cache}"
out="$cache/traefik-$TRAEFIK_VERSION/traefik"

# Capture the version first: with pipefail, `... | grep -q` can fail when grep exits
# before Traefik has finished writing (SIGPIPE), which forced needless rebuilds.
if [ -x "$out" ] && [[ "$("$out" version 2>/dev/null || true)" == *"Version:"*"${TRAEFIK_VERSION#v}"* ]]; then
  echo "$out"
  exit 0
fi

work="$cache/traefik-$TRAEFIK_VERSION/src"
mkdir -p "$work"
cat >"$work/go.mod" <<MOD
module tokenrevoke.local/traefikbuild

go 1.24

require github.com/traefik/traefik/v3 $TRAEFIK_VERSION

// The same replaces as Traefik's own go.mod at $TRAEFIK_VERSION.
replace (
	github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
	github.com/mailgun/minheap => github.com/containous/minheap v0.0.0-20190809180810-6e71eb837595
)
MOD
cat >"$work/tools.go" <<'GO'
//go:build tools

package traefikbuild

import _ "github.com/traefik/traefik/v3/cmd/traefik"
GO

cd "$work"
start=$(date +%s)
(
  # Progress while the long first build runs.
  while sleep 30; do
    echo "  ... building Traefik $TRAEFIK_VERSION: $(( $(date +%s) - start ))s, module cache $(du -sh "$(go env GOMODCACHE)" 2>/dev/null | cut -f1)" >&2
  done
) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT

echo "building Traefik $TRAEFIK_VERSION (first build: 10-15 minutes) ..." >&2
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
GOFLAGS=-mod=mod go get "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" >&2
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=${TRAEFIK_VERSION#v}" \
  -o "$out.tmp" github.com/traefik/traefik/v3/cmd/traefik
mv "$out.tmp" "$out"
echo "built Traefik $TRAEFIK_VERSION in $(( $(date +%s) - start ))s" >&2
echo "$out"
