#!/usr/bin/env bash
# CPU time the proxy spends per request (user + system, all threads, from /proc), for comparing
# builds or settings on a machine too busy for compare.sh's throughput to mean much: the same
# requests (ab, kept-alive connections, records on via bench/start.sh) against each variant,
# in alternating rounds, after a warm-up.
#   cpu.sh 'LABEL|VAR=value ...' ...   each variant: a label and the environment for start.sh
#                                       (NEXUS_BIN, NEXUS_BENCH_LIMITS, ...)
#   N (30000 per round), WARM (3000), C (4), ROUNDS (3), KIND (json or sse), PROXY_PORT (18100)
# Needs ab (apt-get install apache2-utils). Prints one line per variant and round (with ab's
# requests per second and mean latency, which on a busy machine vary more than the CPU time),
# then the mean per variant.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export OHA="${OHA:-/bin/true}"   # mock.sh wants a load generator; this script uses ab
# shellcheck source=bench/mock.sh
source "$here/mock.sh"
: "${N:=30000}" "${WARM:=3000}" "${C:=4}" "${ROUNDS:=3}" "${KIND:=json}" "${PROXY_PORT:=18100}"
command -v ab >/dev/null || die "ab not found: apt-get install apache2-utils"
export BENCH_TMP BENCH_UPSTREAM_KEY PROXY_PORT DASHBOARD_PORT=0
if [ "$KIND" = json ]; then upstream=$MOCK_JSON_PORT; else upstream=$MOCK_SSE_PORT; fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() {
  ab -q -k -n "$1" -c "$C" -p "$kit/bodies/request-$KIND.json" -T application/json \
    -H "x-api-key: $BENCH_CLIENT_KEY" -H "anthropic-version: 2023-06-01" \
    "http://127.0.0.1:$PROXY_PORT/v1/messages" >"$BENCH_TMP/ab.out"
  awk '/^Non-2xx|^Failed requests/ && $NF != 0 {bad=1} END {exit bad}' "$BENCH_TMP/ab.out"
}
# Requests per second and mean latency (ms) of the last load, from ab's report.
rate() { awk '/^Requests per second/ {r=$4} /^Time per request/ && !t {t=$4} END {printf "rps=%d latency_ms=%.3f", r, t}' "$BENCH_TMP/ab.out"; }

declare -A total
for round in $(seq "$ROUNDS"); do
  for variant in "$@"; do
    label="${variant%%|*}"; vars="${variant#*|}"
    # shellcheck disable=SC2086
    env $vars UPSTREAM_BASE_URL="http://127.0.0.1:$upstream" PROXY_CLIENT_KEY="$BENCH_CLIENT_KEY" \
      setsid "$here/start.sh" >"$BENCH_TMP/cpu.log" 2>&1 &
    pid=$!
    wait_port "$PROXY_PORT" 120 || die "proxy did not start; see $BENCH_TMP/cpu.log"
    load "$WARM" || die "$label: failed requests in the warm-up"
    before=$(ticks "$pid")
    load "$N" || die "$label: failed requests"
    after=$(ticks "$pid")
    kill -TERM "$pid"; wait "$pid" || true; pid=""
    us=$(( (after - before) * 1000000 / $(getconf CLK_TCK) / N ))
    echo "cpu label=$label kind=$KIND round=$round us_per_request=$us $(rate)"
    total[$label]=$(( ${total[$label]:-0} + us ))
  done
done
for variant in "$@"; do
  label="${variant%%|*}"
  echo "cpu label=$label kind=$KIND mean_us_per_request=$(( total[$label] / ROUNDS ))"
done
