#!/usr/bin/env bash
# Where the proxy's CPU time goes per request, by thread and by function: perf samples of each
# variant under the same load (ab, kept-alive connections, records on via bench/start.sh),
# divided by the requests sent, so that two builds compare side by side. Build with symbols:
# CARGO_PROFILE_DESKTOP_STRIP=false CARGO_PROFILE_DESKTOP_DEBUG=line-tables-only.
#   profile.sh 'LABEL|VAR=value ...' ...   each variant: a label and the environment for start.sh
#   N (60000), WARM (3000), C (4), KIND (json or sse), FREQ (4999 samples/s), TOP (25)
# Needs ab (apache2-utils) and perf. Reports go to $BENCH_TMP/profile-<label>.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export OHA="${OHA:-/bin/true}"
# shellcheck source=bench/mock.sh
source "$here/mock.sh"
: "${N:=60000}" "${WARM:=3000}" "${C:=4}" "${KIND:=json}" "${PROXY_PORT:=18100}" "${FREQ:=4999}" "${TOP:=25}"
export BENCH_TMP BENCH_UPSTREAM_KEY PROXY_PORT DASHBOARD_PORT=0
if [ "$KIND" = json ]; then upstream=$MOCK_JSON_PORT; else upstream=$MOCK_SSE_PORT; fi
load() {
  ab -q -k -n "$1" -c "$C" -p "$kit/bodies/request-$KIND.json" -T application/json \
    -H "x-api-key: $BENCH_CLIENT_KEY" -H "anthropic-version: 2023-06-01" \
    "http://127.0.0.1:$PROXY_PORT/v1/messages" >"$BENCH_TMP/ab.out"
}
for variant in "$@"; do
  label="${variant%%|*}"; vars="${variant#*|}"
  # shellcheck disable=SC2086
  env $vars UPSTREAM_BASE_URL="http://127.0.0.1:$upstream" PROXY_CLIENT_KEY="$BENCH_CLIENT_KEY" \
    setsid "$here/start.sh" >"$BENCH_TMP/profile.log" 2>&1 &
  pid=$!
  wait_port "$PROXY_PORT" 120 || die "proxy did not start; see $BENCH_TMP/profile.log"
  load "$WARM"
  perf record -q -F "$FREQ" -g -p "$pid" -o "$BENCH_TMP/perf-$label.data" 2>/dev/null &
  perf_pid=$!
  sleep 0.5
  load "$N"
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  kill -TERM "$pid"; wait "$pid" || true; pid=""
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
