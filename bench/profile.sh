#!/usr/bin/env bash
# Where the proxy's CPU time goes per request, by thread and by function: perf samples of each
# variant under the same load (ab, kept-alive connections, records on via bench/start.sh; with
# LOAD=oha C=32, oha's, which saturates the proxy as interleave.sh does and ab does not),
# divided by the requests sent, so that two builds compare side by side. Build with symbols:
# CARGO_PROFILE_DESKTOP_STRIP=false CARGO_PROFILE_DESKTOP_DEBUG=line-tables-only.
#   profile.sh 'LABEL|VAR=value ...' ...   each variant: a label and the environment for start.sh
#   N (60000), WARM (3000), C (4), KIND (json or sse), FREQ (4999 samples/s), TOP (25)
# Needs ab (apache2-utils) and perf. Reports go to $BENCH_TMP/profile-<label>.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/ab.sh
source "$here/ab.sh"
: "${N:=60000}" "${FREQ:=4999}" "${TOP:=25}"
for variant in "$@"; do
  start_variant "$variant"
  perf record -q -F "$FREQ" -g -p "$pid" -o "$BENCH_TMP/perf-$label.data" 2>/dev/null &
  perf_pid=$!
  sleep 0.5
  load "$N" || die "$label: failed requests"
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  stop_variant
  out="$BENCH_TMP/profile-$label.txt"
  {
    echo "# $label: µs of CPU per request, by thread, then the top functions (thread, symbol)"
    perf report -i "$BENCH_TMP/perf-$label.data" --no-children --sort comm -F sample,comm --stdio -g none 2>/dev/null \
      | awk -v n="$N" -v f="$FREQ" '/^ *[0-9]+ / {printf "%8.2f  %s\n", $1 * 1e6 / f / n, $2}'
    perf report -i "$BENCH_TMP/perf-$label.data" --no-children --sort comm,sym -F sample,comm,sym --stdio -g none 2>/dev/null \
      | awk -v n="$N" -v f="$FREQ" '/^ *[0-9]+ / {s=$1; $1=""; printf "%8.2f %s\n", s * 1e6 / f / n, $0}' \
      | sort -rn | head -n "$TOP" || true
  } >"$out"
  cat "$out"
done
