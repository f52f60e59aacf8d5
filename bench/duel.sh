#!/usr/bin/env bash
# Two builds under load at the same time: one oha per build, each with CONCURRENCY/2
# connections, started together, so that both meet the same machine (shared cores whose
# speed drifts from minute to minute, which alternating rounds in interleave.sh only average
# out). They share the CPU, so the build that spends less per request serves more: the ratio
# of their rates, and of their CPU per request (from /proc), measured in the same seconds, is
# the comparison. Each round swaps which oha starts first. Prints each round, then the median
# of the ratios (second build over first).
#   duel.sh 'LABEL|VAR=value ...' 'LABEL|VAR=value ...'   each: a label and the environment
#                                                        for start.sh (NEXUS_BIN=...)
#   ROUNDS (12), DURATION (5s), KIND (json or sse), CONCURRENCY (32), PAUSE_S (1)
# Needs oha, jq and curl, as the kit does (its lib.sh installs them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export BENCH_TMP="${BENCH_TMP:-/tmp/bench-duel}"
# shellcheck source=bench/mock.sh
source "$here/mock.sh"
ensure_jq; ensure_curl
[ "$#" -eq 2 ] || die "usage: duel.sh 'A|ENV...' 'B|ENV...'"
: "${ROUNDS:=12}" "${DURATION:=5s}" "${KIND:=json}" "${CONCURRENCY:=32}" "${PAUSE_S:=1}"
export BENCH_UPSTREAM_KEY DASHBOARD_PORT=0
if [ "$KIND" = json ]; then upstream=$MOCK_JSON_PORT; else upstream=$MOCK_SSE_PORT; fi

start_builds 18400 "$@"

load() { oha_post "$1" -z "$2" -c $((CONCURRENCY / 2)) >"$3"; } # load PORT DURATION OUT
# Both loads of a round, together; `wait` alone would wait for the proxies too.
both() { # both DURATION FIRST_OUT SECOND_OUT FIRST_INDEX
  local first=$4 second=$((1 - $4)) p1 p2
  load "${ports[$first]}" "$1" "$2" & p1=$!
  load "${ports[$second]}" "$1" "$3" & p2=$!
  wait "$p1" "$p2"
}
both 3s /dev/null /dev/null 0

results="$BENCH_TMP/duel.txt"; : >"$results"
for round in $(seq "$ROUNDS"); do
  sleep "$PAUSE_S"
  t0=$(ticks "${pids[0]}"); t1=$(ticks "${pids[1]}")
  if [ $((round % 2)) = 1 ]; then
    both "$DURATION" "$BENCH_TMP/a.json" "$BENCH_TMP/b.json" 0
  else
    both "$DURATION" "$BENCH_TMP/b.json" "$BENCH_TMP/a.json" 1
  fi
  sleep "$PAUSE_S" # what the writers still hold is written now, and counted
  t0=$(( $(ticks "${pids[0]}") - t0 )); t1=$(( $(ticks "${pids[1]}") - t1 ))
  n0=$(jq '.statusCodeDistribution["200"] // 0' "$BENCH_TMP/a.json")
  n1=$(jq '.statusCodeDistribution["200"] // 0' "$BENCH_TMP/b.json")
  [ "$n0" -gt 0 ] && [ "$n1" -gt 0 ] || die "round $round: no successful requests"
  echo "round=$round ${labels[0]}=$n0 ${labels[1]}=$n1 cpu_us_${labels[0]}=$(( t0 * 1000000 / $(getconf CLK_TCK) / n0 )) cpu_us_${labels[1]}=$(( t1 * 1000000 / $(getconf CLK_TCK) / n1 ))" \
    | tee -a "$results"
done
awk -v a="${labels[0]}" -v b="${labels[1]}" '
  { split($2, x, "="); split($3, y, "="); split($4, u, "="); split($5, v, "=")
    k++; r[k] = y[2] / x[2]; c[k] = v[2] / u[2] }
  END { asort(r); asort(c); m = int((k + 1) / 2)
        printf "%s over %s, median of %d rounds: requests %.3f, CPU per request %.3f\n", b, a, k, r[m], c[m] }' "$results"
