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
# shellcheck source=bench/ab.sh
source "$here/ab.sh"
: "${N:=30000}" "${ROUNDS:=3}"

declare -A total
for round in $(seq "$ROUNDS"); do
  for variant in "$@"; do
    start_variant "$variant"
    before=$(ticks "$pid")
    load "$N" || die "$label: failed requests"
    after=$(ticks "$pid")
    stop_variant
    us=$(( (after - before) * 1000000 / $(getconf CLK_TCK) / N ))
    echo "cpu label=$label kind=$KIND round=$round us_per_request=$us $(rate)"
    total[$label]=$(( ${total[$label]:-0} + us ))
  done
done
for variant in "$@"; do
  label="${variant%%|*}"
  echo "cpu label=$label kind=$KIND mean_us_per_request=$(( total[$label] / ROUNDS ))"
done
