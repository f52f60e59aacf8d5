# Sourced by the bench scripts: the kit's lib.sh (from BENCH_KIT, default ../../shared/bench),
# oha and nginx, and the kit's mock upstream, started now and stopped on exit together with the
# proxy whose pid is in $pid.
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
