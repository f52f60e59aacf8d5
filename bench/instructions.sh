#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a figure that does not drift with
# the machine's load, for comparing two builds of a change too small for compare.sh's noise.
# For each binary and kind (json, sse), two runs of the proxy under callgrind (bench/start.sh,
# records on), one sending N1 requests and one N2; their difference divided by N2 - N1 is the
# cost of a request, start-up and shutdown cancelled out. Counts user-space instructions of
# every thread (the SQLite writer and the log thread included), not the kernel's, and not
# cache misses: confirm a gain in time with A/B rounds too.
#   instructions.sh BINARY...   (default: target/release/claude-nexus)
#   N1 (default 1000), N2 (4000), C (4), KINDS ("json sse"), PROXY_PORT (18100),
#   BENCH_KIT (../../shared/bench)
# Needs valgrind (apt-get install valgrind). Keeps each run's callgrind.out in $BENCH_TMP for
# callgrind_annotate.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/mock.sh
source "$here/mock.sh"
: "${N1:=1000}" "${N2:=4000}" "${C:=4}" "${KINDS:=json sse}" "${PROXY_PORT:=18100}"
command -v valgrind >/dev/null || die "valgrind not found: apt-get install valgrind"
[ "$#" -gt 0 ] || set -- "$here/../target/release/claude-nexus"
export BENCH_TMP BENCH_UPSTREAM_KEY PROXY_PORT DASHBOARD_PORT=0

# instructions BINARY KIND N: sets $count to the instructions of one proxy run that served N
# requests.
instructions() {
  local bin="$1" kind="$2" n="$3" upstream out wrapper
  if [ "$kind" = json ]; then upstream=$MOCK_JSON_PORT; else upstream=$MOCK_SSE_PORT; fi
  out="$BENCH_TMP/callgrind.$(basename "$bin").$kind.$n.out"
  wrapper="$BENCH_TMP/callgrind-wrapper"
  printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s %s "$@"\n' \
    "$out" "$bin" >"$wrapper"
  chmod +x "$wrapper"
  UPSTREAM_BASE_URL="http://127.0.0.1:$upstream" \
    PROXY_CLIENT_KEY="$BENCH_CLIENT_KEY" NEXUS_BIN="$wrapper" \
    setsid "$here/start.sh" >"$BENCH_TMP/instructions.log" 2>&1 &
  pid=$!
  wait_port "$PROXY_PORT" 120 || die "proxy did not start; see $BENCH_TMP/instructions.log"
  "$OHA" -n "$n" -c "$C" --no-tui -m POST \
    -H "x-api-key: $BENCH_CLIENT_KEY" -H "content-type: application/json" \
    -H "anthropic-version: 2023-06-01" -D "$kit/bodies/request-$kind.json" \
    "http://127.0.0.1:$PROXY_PORT/v1/messages" >/dev/null
  kill -TERM "$pid"; wait "$pid" || true; pid=""
  count="$(awk '/^(summary|totals):/ {print $2; exit}' "$out")"
}

for bin in "$@"; do
  for kind in $KINDS; do
    instructions "$bin" "$kind" "$N1"; first="$count"
    instructions "$bin" "$kind" "$N2"
    echo "instructions bin=$(basename "$bin") kind=$kind per_request=$(( (count - first) / (N2 - N1) ))"
  done
done
