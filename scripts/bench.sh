#!/usr/bin/env bash
# End-to-end benchmarks through real Traefik v3.6.12 on this machine (see BENCHMARKS.md):
# throughput and latency (no middleware, pass-through yaegi plugin, ForwardAuth,
# tokenrevoke with 0 / 100k / 1M revoked entries, revoked token), propagation between
# two gateways, and replay time and memory of a fresh gateway.
#
#   bash scripts/bench.sh            # full run, 6-8 minutes; writes bench-results/ and BENCHMARKS.md
#   bash scripts/bench.sh -quick     # smoke check, about 3 minutes; writes bench-results/tmp/ only
#
# Other flags go to the Go command (cd e2e && go run ./cmd/bench -h lists them).
# The numbers mean something only on an otherwise idle machine: check `uptime` first.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# The load generator is wrk from Debian.
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing wrk (apt-get) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "bench: wrk is not installed; install it (Debian/Ubuntu: apt-get install wrk)" >&2
    exit 1
  fi
fi

# Build (or find in .cache/) the Traefik binary first, so its progress is not mixed
# with the benchmark's output. The first build takes 10-15 minutes.
if [ -z "${TRAEFIK_BIN:-}" ]; then
  TRAEFIK_BIN="$(bash e2e/build-traefik.sh | tail -n 1)"
fi
export TRAEFIK_BIN

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
cd e2e
exec go run ./cmd/bench "$@"
