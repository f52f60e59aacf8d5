# Sourced by the bench scripts: the kit's lib.sh (from BENCH_KIT, default ../../shared/bench),
# oha and nginx, and the kit's mock upstream, started now and stopped on exit together with the
# proxy whose pid is in $pid; then what the scripts share to load and measure builds.
# shellcheck shell=bash
kit="${BENCH_KIT:-$here/../../shared/bench}"
# shellcheck source=/dev/null
source "$kit/lib.sh"
ensure_oha; ensure_nginx
mkdir -p "$BENCH_TMP"
"$kit/mock-upstream.sh" start >/dev/null
pid=""
cleanup() {
  [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
  "$kit/mock-upstream.sh" stop >/dev/null || true
}
trap cleanup EXIT

# oha_post PORT OHA_ARGS...: oha's JSON report of POSTs of the kit's $KIND request body to the
# proxy on PORT, with the kit's client key.
oha_post() {
  local port=$1
  shift
  "$OHA" --no-tui --output-format json -m POST -T application/json -D "$kit/bodies/request-$KIND.json" \
    -H "authorization: Bearer $BENCH_CLIENT_KEY" -H "anthropic-version: 2023-06-01" \
    "$@" "http://127.0.0.1:$port/v1/messages"
}

# ticks PID: the CPU time (user + system, all threads) the process has used, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start_builds FIRST_PORT 'LABEL|VAR=value ...'...: starts each build with start.sh (its
# environment after the label) on ports from FIRST_PORT up, against the mock for $upstream,
# and waits for them; sets `labels`, `ports` and `pids` (process groups, stopped on exit with
# the mock).
start_builds() {
  local port=$1 build
  shift
  labels=(); ports=(); pids=()
  trap stop_builds EXIT
  for build in "$@"; do
    labels+=("${build%%|*}")
    # shellcheck disable=SC2086
    env ${build#*|} PROXY_PORT="$port" UPSTREAM_BASE_URL="http://127.0.0.1:$upstream" \
      PROXY_CLIENT_KEY="$BENCH_CLIENT_KEY" setsid "$here/start.sh" >"$BENCH_TMP/$port.log" 2>&1 &
    pids+=("$!"); ports+=("$port"); port=$((port + 1))
  done
  for port in "${ports[@]}"; do wait_port "$port" 120 || die "no proxy on $port: $BENCH_TMP/$port.log"; done
}

stop_builds() {
  local p
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  cleanup
}
