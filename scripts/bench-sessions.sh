#!/usr/bin/env bash
# Benchmarks of session and subject rules (OpenID back-channel logout), see BENCHMARKS.md
# "2026-12-02: sessions and users": the request path with no rule live and with 100k
# rules (yaegi, paired with a handler without rules), memory per rule, and 1,000
# logouts on gateway A until gateway B rejects, through two real Traefik processes.
# Writes bench-results/sessions-<date>.txt. About 10 minutes on two cores; run it on an
# otherwise idle machine (check `uptime`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$(go env GOPATH)/bin:$PATH"
command -v nats-server >/dev/null || go install github.com/nats-io/nats-server/v2@v2.12.1
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(go env GOPATH)/bin/nats-server}"
if [ -z "${TRAEFIK_BIN:-}" ]; then
  TRAEFIK_BIN="$(bash e2e/build-traefik.sh | tail -n 1)"
fi
export TRAEFIK_BIN
mkdir -p bench-results
out="bench-results/sessions-$(date -u +%Y%m%d-%H%M).txt"
{
  echo "# $(date -u +%FT%TZ)  $(go version)  $(nproc) cores  load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "## yaegi: what the check adds over pass-through, no rule live (1M entries)"
  (cd e2e && go test -run '^$' -bench 'YaegiAdded1M$' -benchtime 200000x -count 3 -timeout 30m ./yaegiload)
  echo
  echo "## yaegi: 1M entries and 100k session rules vs none; the same token again, and a new token each request"
  (cd e2e && go test -run '^$' -bench 'YaegiRules100kSteady' -benchtime 200000x -count 3 -timeout 30m ./yaegiload)
  (cd e2e && go test -run '^$' -bench 'YaegiRules100kFirstSight' -benchtime 20000x -count 3 -timeout 30m ./yaegiload)
  echo
  echo "## yaegi: memory per rule (100k rules)"
  (cd e2e && go test -run '^$' -bench 'YaegiMemoryPerRule' -benchtime 1x -count 2 -timeout 30m ./yaegiload)
  echo
  echo "## real Traefik x2, JetStream: back-channel logout on A until B rejects, 1,000 logouts"
  (cd e2e && go test -run '^$' -bench 'LogoutToRejection' -benchtime 1x -timeout 20m .)
} 2>&1 | grep -v -E '^(INFO|WARN) tokenrevoke' | tee "$out"
echo "results: $out"
