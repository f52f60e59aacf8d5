#!/usr/bin/env bash
# compare.sh's measurements (oha: throughput at 32 connections, p50 at a fixed 200 requests/s),
# for builds run side by side and measured in alternating rounds, so that a machine whose speed
# drifts during the run (shared cores) slows every build alike. Each round starts with the next
# build (what one build leaves behind, a checkpoint or a backlog, falls on each in turn) and
# every measurement follows a pause. Prints each round (with the proxy's CPU per request in the
# throughput run, from /proc, which the machine's drift moves less than the rate), then per
# build the median over rounds of its ratios to the first build of the same round, with the
# quartiles of those ratios (the spread a difference has to clear).
#   interleave.sh 'LABEL|VAR=value ...' ...   each build: a label and the environment for
#                                             start.sh (NEXUS_BIN=..., NEXUS_BENCH_LIMITS=1)
#   ROUNDS (6), DURATION (5s), KIND (json or sse), CONCURRENCY (32), RATE (200),
#   LAT_CONCURRENCY (4), PAUSE_S (2)
# Needs oha, jq and curl, as the kit does (its lib.sh installs them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export BENCH_TMP="${BENCH_TMP:-/tmp/bench-interleave}"
# shellcheck source=bench/mock.sh
source "$here/mock.sh"
ensure_jq; ensure_curl
: "${ROUNDS:=6}" "${DURATION:=5s}" "${KIND:=json}" "${CONCURRENCY:=32}" "${RATE:=200}"
: "${LAT_CONCURRENCY:=4}" "${PAUSE_S:=2}"
export BENCH_UPSTREAM_KEY DASHBOARD_PORT=0
if [ "$KIND" = json ]; then upstream=$MOCK_JSON_PORT; else upstream=$MOCK_SSE_PORT; fi

start_builds 18300 "$@"

oha_p() { # oha_p PORT DURATION args... -> "rps p50_ms"
  local port=$1 duration=$2; shift 2
  oha_post "$port" -z "$duration" "$@" \
    | jq -r '"\(.summary.requestsPerSec | round) \(.latencyPercentiles.p50 * 1e6 | round / 1e3)"'
}
for port in "${ports[@]}"; do oha_p "$port" 3s -c "$CONCURRENCY" >/dev/null; done

results="$BENCH_TMP/rounds.txt"; : >"$results"
for round in $(seq "$ROUNDS"); do
  for k in "${!ports[@]}"; do
    i=$(( (k + round) % ${#ports[@]} ))
    sleep "$PAUSE_S"
    t0=$(ticks "${pids[$i]}")
    read -r rps _ < <(oha_p "${ports[$i]}" "$DURATION" -c "$CONCURRENCY")
    sleep "$PAUSE_S" # what the writer still holds is written now, and counted
    t=$(( $(ticks "${pids[$i]}") - t0 ))
    cpu=$(( t * 1000000 / $(getconf CLK_TCK) / (rps * ${DURATION%s}) ))
    read -r _ p50 < <(oha_p "${ports[$i]}" "$DURATION" -c "$LAT_CONCURRENCY" -q "$RATE" --latency-correction)
    echo "round=$round label=${labels[$i]} rps=$rps p50_ms_at_$RATE=$p50 cpu_us_per_request=$cpu" \
      | tee -a "$results"
  done
done
# Per round, each build against the first; then the median of those ratios.
awk -v first="${labels[0]}" '
  { split($2, l, "="); split($3, r, "="); split($4, p, "="); split($5, c, "=")
    round = $1; lab = l[2]; rps[round, lab] = r[2]; p50[round, lab] = p[2]; cpu[round, lab] = c[2]
    if (!(lab in seen)) { seen[lab] = 1; order[++n] = lab } rounds[round] = 1 }
  END {
    for (i = 1; i <= n; i++) {
      lab = order[i]; k = 0
      for (round in rounds) {
        k++; rr[k] = rps[round, lab] / rps[round, first]; pr[k] = p50[round, lab] / p50[round, first]
        cr[k] = cpu[round, lab] / cpu[round, first]
      }
      asort(rr); asort(pr); asort(cr); m = int((k + 1) / 2); q = int((k + 3) / 4); h = k + 1 - q
      printf "%s: median ratios against %s over %d rounds (quartiles): rps %.3f (%.3f-%.3f), p50 %.3f (%.3f-%.3f), CPU per request %.3f (%.3f-%.3f)\n", lab, first, k, rr[m], rr[q], rr[h], pr[m], pr[q], pr[h], cr[m], cr[q], cr[h]
    }
  }' "$results"
