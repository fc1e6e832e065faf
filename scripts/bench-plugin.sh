#!/usr/bin/env bash
# Micro-benchmarks of the plugin itself (no Traefik process): the request path with a
# non-revoked and a revoked bearer token, natively and under yaegi v0.16.1 (loaded as
# Traefik loads it), memory per revoked entry at 1M entries, the cross-gateway
# propagation latency and the JetStream replay (sync) time.
# Writes bench-results/plugin-<date>.txt. Takes about 10 minutes on two cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$(go env GOPATH)/bin:$PATH"
mkdir -p bench-results
out="bench-results/plugin-$(date -u +%Y%m%d-%H%M).txt"
{
  echo "# $(date -u +%FT%TZ)  $(go version)  $(nproc) cores  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "## native: request path (2M requests each), memory per entry at 1M"
  go test -run '^$' -bench 'Native(PassThrough|Tokenrevoke)' -benchtime 2000000x -count 3 .
  go test -run '^$' -bench 'NativeMemoryPerEntry' -benchtime 1x .
  echo
  echo "## yaegi v0.16.1, loaded as Traefik loads plugins: request path (300k requests each)"
  (cd e2e && go test -run '^$' -bench 'Yaegi(PassThrough|Tokenrevoke)' -benchtime 300000x -count 3 ./yaegiload)
  echo
  echo "## yaegi: what the check adds over pass-through, both in one process, alternating blocks (1M entries)"
  (cd e2e && go test -run '^$' -bench 'YaegiAdded1M' -benchtime 300000x -count 5 ./yaegiload)
  echo
  echo "## yaegi: what reading a 2 KiB form body adds (POST, same bearer header, 1M entries)"
  (cd e2e && go test -run '^$' -bench 'YaegiAddedFormPost2K' -benchtime 30000x -count 3 ./yaegiload)
  echo
  echo "## yaegi: memory per entry and interpreted insert cost at 1M entries"
  (cd e2e && go test -run '^$' -bench 'YaegiMemoryPerEntry' -benchtime 1x ./yaegiload)
  echo
  echo "## yaegi: store candidates at 1M entries (golang-lru v1, map + container/list, the plugin's store)"
  (cd e2e && go test -run '^$' -bench 'CacheCandidates' -benchtime 1x -timeout 30m ./cachebench)
  echo
  echo "## yaegi: propagation A(200) -> B(401), two interpreters on one nats-server, 1,000 revocations"
  (cd e2e && go test -count=1 -run 'TestPropagationLatency' -v ./propagation | grep -E 'propagation A|ok|FAIL')
  echo
  echo "## yaegi: fresh gateway replaying a JetStream stream in full (100k revocations, no snapshot)"
  (cd e2e && SYNC_N=100000 go test -run '^$' -bench 'YaegiSync$' -benchtime 1x -timeout 30m ./propagation)
  echo
  echo "## yaegi: fresh gateway joining a synced one: snapshot + tail (100k and 1M revocations)"
  (cd e2e && SYNC_N=100000 go test -run '^$' -bench 'YaegiSyncFromSnapshot' -benchtime 1x -timeout 30m ./propagation)
  (cd e2e && SYNC_N=1000000 go test -run '^$' -bench 'YaegiSyncFromSnapshot' -benchtime 1x -timeout 30m ./propagation)
} 2>&1 | grep -v ' WARN tokenrevoke' | tee "$out"
echo "results: $out"
