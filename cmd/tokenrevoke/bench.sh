#!/usr/bin/env bash
# Times `tokenrevoke import` of BENCH_N generated entries (default 1,000,000) and
# `tokenrevoke snapshot` of the resulting stream, against a local nats-server (built
# from the module's nats-server/v2 dependency) with JetStream on 127.0.0.1.
#
#   bash cmd/tokenrevoke/bench.sh            # 1M entries
#   BENCH_N=100000 bash cmd/tokenrevoke/bench.sh
#
# The input mixes the three line formats: opaque tokens, JWS-shaped tokens (kind jws)
# and JSON digest lines. Everything lives in a temporary directory, removed at the end.
set -euo pipefail

n="${BENCH_N:-1000000}"
port="${BENCH_PORT:-14333}"
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "==> build (tokenrevoke, nats-server $(cd "$here" && go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2))"
(cd "$here" && go build -o "$tmp/tokenrevoke" . && go build -o "$tmp/nats-server" github.com/nats-io/nats-server/v2)

echo "==> nats-server -js on 127.0.0.1:$port"
"$tmp/nats-server" -js -a 127.0.0.1 -p "$port" -sd "$tmp/store" >"$tmp/nats.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  if grep -q "Server is ready" "$tmp/nats.log"; then break; fi
  sleep 0.1
done
grep -q "Server is ready" "$tmp/nats.log" || { cat "$tmp/nats.log"; exit 1; }
url="nats://127.0.0.1:$port"

echo "==> generate $n lines"
now=$(date +%s)
awk -v n="$n" -v e=$((now + 7200)) 'BEGIN {
  for (i = 1; i <= n; i++) {
    r = i % 3
    if (r == 0)      printf "opaque-bench-token-%d-6b3f0a9c51d2e874\n", i
    else if (r == 1) printf "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJiZW5jaC0%d.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg\n", i
    else             printf "{\"sha256\":\"%08x%08x%08x%08x%08x%08x%08x%08x\",\"exp\":%d}\n", i, i*7, i*13, i*31, 17, 19, 23, i*37, e
  }
}' >"$tmp/revocations.txt"
ls -l "$tmp/revocations.txt" | awk '{printf "    %s bytes\n", $5}'

echo "==> import"
start=$(date +%s.%N)
"$tmp/tokenrevoke" -s "$url" import "$tmp/revocations.txt" --progress-every 10s
import_s=$(echo "$(date +%s.%N) - $start" | bc)

echo "==> snapshot"
start=$(date +%s.%N)
"$tmp/tokenrevoke" -s "$url" snapshot
snapshot_s=$(echo "$(date +%s.%N) - $start" | bc)

echo "==> spot checks"
"$tmp/tokenrevoke" -s "$url" check "opaque-bench-token-3-6b3f0a9c51d2e874" >/dev/null && echo "    first opaque token revoked"
"$tmp/tokenrevoke" -s "$url" check "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJiZW5jaC0$((n - (n % 3 == 1 ? 0 : (n % 3 == 0 ? 2 : 1)))).other-sig" >/dev/null && echo "    last jws token revoked (any signature)"

printf '\nresult: import of %d entries %.1f s (%.0f/s); snapshot %.1f s (whole command, %d cores)\n' \
  "$n" "$import_s" "$(echo "$n / $import_s" | bc -l)" "$snapshot_s" "$(nproc)"
