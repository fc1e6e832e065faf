#!/usr/bin/env bash
# The worst requests a client can construct (issue 18: "the worst request you can
# construct costs at most 10x a normal slow-path request"), under yaegi v0.16.1 loaded as
# Traefik loads the plugin: e2e/yaegiload/worst_bench_test.go (BenchmarkYaegiWorst).
# Each input is served through one middleware beside a paired first-sight baseline; the
# table gives its cost, its ratio to the baseline and PASS/FAIL against 10x.
#
# With TRAEFIK_BIN (or WORST_TRAEFIK=1 and a binary harness can find), it also runs
# BenchmarkTraefikWorstLatency (e2e/worst_test.go): a normal request's latency through a
# real Traefik while 4 connections send worst inputs, beside the same without them.
#
# Writes bench-results/worst-<date>.txt. About 3 minutes (plus 1-2 with Traefik).
#   WORST_BENCHTIME  go test -benchtime per input (default 0.3s; a slow input runs once)
#   WORST_PLUGIN_ROOT  load this plugin source tree instead of the repository's (e.g. an
#                    older commit: git archive <commit> | tar -x -C /tmp/old), both benchmarks
#   WORST_RAW        tabulate this file (an earlier run's go test output) instead of running
#   WORST_FILTER     groups to run (regexp on the first name level, default: all), e.g. 'query|auth'
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$(go env GOPATH)/bin:$PATH"
mkdir -p bench-results
out="bench-results/worst-$(date -u +%Y%m%d-%H%M).txt"
if [ -n "${WORST_RAW:-}" ]; then
  out=/dev/null # only print the table again
fi
raw="$(mktemp)"
trap 'rm -f "$raw"' EXIT
benchtime="${WORST_BENCHTIME:-0.3s}"
filter="${WORST_FILTER:-}"
bench='YaegiWorst'
if [ -n "$filter" ]; then
  bench="YaegiWorst/(baseline|$filter)"
fi

{
  echo "# $(date -u +%FT%TZ)  $(go version)  $(nproc) cores  $(git rev-parse --short HEAD) ($(git rev-parse --abbrev-ref HEAD))"
  echo "# plugin source: ${WORST_PLUGIN_ROOT:-this repository}"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# go test -run '^\$' -bench '$bench' -benchtime $benchtime ./yaegiload (in e2e/)"
  echo
} | tee "$out"

if [ -n "${WORST_RAW:-}" ]; then
  cp "$WORST_RAW" "$raw" # tabulate an earlier run's raw output again
else
  (cd e2e && go test -run '^$' -bench "$bench" -benchtime "$benchtime" -timeout 20m ./yaegiload) 2>&1 |
    grep -v ' WARN tokenrevoke' | tee "$raw" >/dev/null
fi

{
  echo "## raw output"
  cat "$raw"
  echo
  echo "## table"
  echo "# cost: the worst request alone (ServeHTTP under yaegi); x-base: over the baseline requests"
  echo "# paired with it (the verdict, bound 10x); x-ref: over the median of all paired baselines"
  echo "# (steadier on a loaded machine); status: the middleware's answer (200: passed on)"
  awk '
    function metric(unit,   i) { for (i = 3; i < NF; i++) if ($(i+1) == unit) return $i; return "" }
    function human(ns) {
      if (ns >= 1e9) return sprintf("%.2f s", ns / 1e9)
      if (ns >= 1e6) return sprintf("%.1f ms", ns / 1e6)
      return sprintf("%.1f us", ns / 1e3)
    }
    /^BenchmarkYaegiWorst\// {
      name = $1; sub(/^BenchmarkYaegiWorst\//, "", name); sub(/-[0-9]+$/, "", name)
      if (name ~ /^baseline\//) { nbl++; bl[nbl] = name; blns[nbl] = metric("base-ns/req"); blruns[nbl] = $2; next }
      n++; nm[n] = name; w[n] = metric("worst-ns/req"); x[n] = metric("x-base"); st[n] = metric("status"); b[n] = metric("base-ns/req")
    }
    END {
      for (i = 1; i <= n; i++) sb[i] = b[i] + 0
      # median of the paired baselines (insertion sort: n is about 100)
      for (i = 2; i <= n; i++) { v = sb[i]; j = i - 1; while (j >= 1 && sb[j] > v) { sb[j+1] = sb[j]; j-- } sb[j+1] = v }
      ref = (n > 0) ? sb[int((n + 1) / 2)] : 1
      printf "%-40s %12s %10s %10s %7s  %s\n", "input", "cost", "x-base", "x-ref", "status", "verdict"
      for (i = 1; i <= nbl; i++) printf "%-40s %12s %10s %10s %7s  %s\n", bl[i], human(blns[i]), "-", "-", "-", "baseline (" blruns[i] " runs)"
      printf "%-40s %12s %10s %10s %7s  %s\n", "median of paired baselines", human(ref), "-", "-", "-", ""
      for (i = 1; i <= n; i++) {
        verdict = (x[i] + 0 <= 10) ? "PASS" : "FAIL"
        if (verdict == "FAIL") fails++
        printf "%-40s %12s %10.1f %10.1f %7d  %s\n", nm[i], human(w[i]), x[i], w[i] / ref, st[i], verdict
        rows[i] = sprintf("%012.1f|%s|%s|%.1f|%.1f|%d", x[i], nm[i], human(w[i]), x[i], w[i] / ref, st[i])
      }
      printf "\n%d inputs, %d over 10x (x-base)\n", n, fails + 0
      printf "\n## top 10 by x-base (input, cost, x-base, x-ref, status)\n"
      cmd = "sort -r"
      for (i = 1; i <= n; i++) print rows[i] | cmd
      close(cmd)
    }
  ' "$raw" | awk -F'|' '
    /^[0-9]+\.[0-9]+\|/ { if (++k <= 10) printf "%2d. %-40s %12s %10s x %10s x  %s\n", k, $2, $3, $4, $5, $6; next }
    { print }
  '
} | tee -a "$out"

if [ -z "${TRAEFIK_BIN:-}" ] && [ -x /work/main/.cache/traefik-v3.6.12/traefik ] && [ "${WORST_TRAEFIK:-}" = 1 ]; then
  export TRAEFIK_BIN=/work/main/.cache/traefik-v3.6.12/traefik
fi
if [ -n "${TRAEFIK_BIN:-}" ]; then
  {
    echo
    echo "## through real Traefik ($TRAEFIK_BIN): a normal request's latency, idle and while 4 connections send a worst input"
    (cd e2e && go test -run '^$' -bench 'TraefikWorstLatency' -benchtime 1x -timeout 10m . 2>&1 | grep -E '^(Benchmark|ok|FAIL|---|\s+worst_test)' || true)
  } | tee -a "$out"
fi
[ "$out" = /dev/null ] || echo "results: $out"
