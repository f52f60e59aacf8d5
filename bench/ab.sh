# Sourced by cpu.sh and profile.sh: mock.sh, then ab's load against proxy variants started by
# start.sh. Sets `upstream` (the mock's port for KIND) and, after start_variant, `pid`.
#   N, WARM, C, KIND (json or sse), PROXY_PORT
#   LOAD=oha: oha sends the load instead of ab (ab is one thread and leaves the proxy short
#   of saturation, where a cost that grows with load, the writer's batches above all, hides;
#   use it with C=32 to profile the proxy as interleave.sh measures it)
# shellcheck shell=bash
: "${LOAD:=ab}"
# mock.sh wants a load generator; ab is not one it installs
[ "$LOAD" = oha ] || export OHA="${OHA:-/bin/true}"
# shellcheck source=bench/mock.sh
source "$here/mock.sh"
: "${WARM:=3000}" "${C:=4}" "${KIND:=json}" "${PROXY_PORT:=18100}"
command -v ab >/dev/null || die "ab not found: apt-get install apache2-utils"
export BENCH_TMP BENCH_UPSTREAM_KEY PROXY_PORT DASHBOARD_PORT=0
if [ "$KIND" = json ]; then upstream=$MOCK_JSON_PORT; else upstream=$MOCK_SSE_PORT; fi

# Sends $1 requests over C kept-alive connections; fails if any did.
load() {
  if [ "$LOAD" = oha ]; then
    oha_post "$PROXY_PORT" -n "$1" -c "$C" >"$BENCH_TMP/oha.json"
    jq -e '.statusCodeDistribution | keys == ["200"]' "$BENCH_TMP/oha.json" >/dev/null
    return
  fi
  ab -q -k -n "$1" -c "$C" -p "$kit/bodies/request-$KIND.json" -T application/json \
    -H "x-api-key: $BENCH_CLIENT_KEY" -H "anthropic-version: 2023-06-01" \
    "http://127.0.0.1:$PROXY_PORT/v1/messages" >"$BENCH_TMP/ab.out"
  awk '/^Non-2xx|^Failed requests/ && $NF != 0 {bad=1} END {exit bad}' "$BENCH_TMP/ab.out"
}

# Requests per second and mean latency (ms) of the last load, from ab's report.
rate() { awk '/^Requests per second/ {r=$4} /^Time per request/ && !t {t=$4} END {printf "rps=%d latency_ms=%.3f", r, t}' "$BENCH_TMP/ab.out"; }

# Starts the variant 'LABEL|VAR=value ...' (its environment for start.sh) and warms it up;
# sets `label` and `pid`.
start_variant() {
  label="${1%%|*}"
  local vars="${1#*|}"
  # shellcheck disable=SC2086
  env $vars UPSTREAM_BASE_URL="http://127.0.0.1:$upstream" PROXY_CLIENT_KEY="$BENCH_CLIENT_KEY" \
    setsid "$here/start.sh" >"$BENCH_TMP/variant.log" 2>&1 &
  pid=$!
  wait_port "$PROXY_PORT" 120 || die "$label did not start; see $BENCH_TMP/variant.log"
  load "$WARM" || die "$label: failed requests in the warm-up"
}

# Stops the variant started last.
stop_variant() {
  kill -TERM "$pid"; wait "$pid" || true; pid=""
}
