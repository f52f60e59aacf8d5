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
