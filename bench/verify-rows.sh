#!/usr/bin/env bash
# Lost-row and memory check under load, beside the kit's compare.sh: for JSON and SSE, start
# the proxy (bench/start.sh, records on; SQLite, or PostgreSQL with NEXUS_BENCH_POSTGRES), send two batches of N requests at
# concurrency C with oha, note the proxy's RSS after each batch and its peak, stop it with SIGTERM (which
# flushes the record queue), then count the rows in its database. Every request must be a row.
#   N (default 100000), C (32), BENCH_KIT (../../shared/bench), PROXY_PORT (18100)
# Build first: cargo build --release
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/mock.sh
source "$here/mock.sh"
: "${N:=100000}" "${C:=32}" "${PROXY_PORT:=18100}"
export BENCH_TMP PROXY_PORT BENCH_UPSTREAM_KEY

failed=0
for kind in json sse; do
  if [ "$kind" = json ]; then port=$MOCK_JSON_PORT; else port=$MOCK_SSE_PORT; fi
  : >"$BENCH_TMP/claude-nexus-dbs"
  UPSTREAM_BASE_URL="http://127.0.0.1:$port" PROXY_CLIENT_KEY="$BENCH_CLIENT_KEY" \
    setsid "$here/start.sh" >"$BENCH_TMP/verify-$kind.log" 2>&1 &
  pid=$!
  wait_port "$PROXY_PORT" 60 || die "proxy did not start; see $BENCH_TMP/verify-$kind.log"
  sent=0 ok=0 rss=()
  for batch in 1 2; do
    out="$(KIND=$kind oha_post "$PROXY_PORT" -n "$N" -c "$C")"
    ok=$((ok + $(jq '.statusCodeDistribution["200"] // 0' <<<"$out")))
    sent=$((sent + N))
    rss+=("$(( $(awk '/VmRSS/{print $2}' "/proc/$pid/status") / 1024 ))")
  done
  # The most it held at any time (the kernel's high-water mark), before SIGTERM flushes.
  peak="$(( $(awk '/VmHWM/{print $2}' "/proc/$pid/status") / 1024 ))"
  kill -TERM "$pid"; wait "$pid" || true; pid=""
  db="$(cat "$BENCH_TMP/claude-nexus-dbs")"
  count="SELECT COUNT(*), COALESCE(SUM(CASE WHEN response_status = 200 THEN 1 ELSE 0 END), 0) FROM api_requests"
  case "$db" in
    sqlite://*) read -r rows rows_ok < <(python3 -c '
import sqlite3, sys
print(*sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone())
' "${db#sqlite://}" "$count") ;;
    *) read -r rows rows_ok < <(psql "$db" -tAF ' ' -c "$count") ;;
  esac
  echo "verify_$kind sent=$sent ok=$ok rows=$rows rows_200=$rows_ok lost=$((sent - rows)) rss_mb_after_batch1=${rss[0]} rss_mb_after_batch2=${rss[1]} rss_mb_peak=$peak"
  [ "$rows" -eq "$sent" ] && [ "$ok" -eq "$sent" ] || failed=1
done
exit "$failed"
