#!/usr/bin/env bash
# Start script for the benchmark kit (../shared/bench, see its README): runs the release
# build of claude-nexus in the foreground with records on, to a fresh SQLite file, or with
# NEXUS_BENCH_POSTGRES=postgres://user@host:port (a server; trust or password in the URL) to
# a fresh PostgreSQL database on it, migrated first.
#   PROXY_PORT, UPSTREAM_BASE_URL, BENCH_UPSTREAM_KEY, PROXY_CLIENT_KEY, BENCH_TMP
# Each start gets its own directory; its database URL is appended to
# $BENCH_TMP/claude-nexus-dbs so that rows can be counted afterwards.
# NEXUS_BENCH_LIMITS=1 sets limits and budgets on the key and the account (too high to refuse
# anything), to measure what checking and charging them costs.
# Build first: cargo build --release
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${NEXUS_BIN:-$here/../target/release/claude-nexus}"
mkdir -p "$BENCH_TMP"
dir="$(mktemp -d "$BENCH_TMP/claude-nexus.XXXXXX")"
mkdir -m 700 "$dir/credentials"
cat >"$dir/credentials/bench.local.credentials.json" <<JSON
{"type":"api_key","accountId":"acc_bench","api_key":"$BENCH_UPSTREAM_KEY","client_api_key":"$PROXY_CLIENT_KEY"}
JSON
chmod 600 "$dir/credentials/bench.local.credentials.json"
if [ -n "${NEXUS_BENCH_POSTGRES:-}" ]; then
  name="nexus_bench_$(basename "$dir" | tr -dc 'a-zA-Z0-9' | tr 'A-Z' 'a-z')"
  psql "$NEXUS_BENCH_POSTGRES/postgres" -qc "CREATE DATABASE $name"
  database_url="$NEXUS_BENCH_POSTGRES/$name"
  DATABASE_URL="$database_url" NEXUS_DATA_DIR="$dir" "$bin" migrate
else
  database_url="sqlite://$dir/requests.db"
fi
echo "$database_url" >>"$BENCH_TMP/claude-nexus-dbs"
if [ -n "${NEXUS_BENCH_LIMITS:-}" ]; then
  for who in --key=file:bench.local --account=bench.local; do
    DATABASE_URL="$database_url" NEXUS_DATA_DIR="$dir" CREDENTIALS_DIR="$dir/credentials" \
      API_KEY_SALT=bench-salt "$bin" limits set "$who" --requests-per-minute 1000000000 \
      --tokens-per-hour 1000000000000 --tokens-per-day 1000000000000 \
      --usd-per-day 1000000000 --usd-per-month 1000000000
  done
fi
export HOST=127.0.0.1 PORT="$PROXY_PORT" CLAUDE_API_BASE_URL="$UPSTREAM_BASE_URL" \
  CREDENTIALS_DIR="$dir/credentials" DATABASE_URL="$database_url" \
  NEXUS_DATA_DIR="$dir" API_KEY_SALT=bench-salt
exec "$bin" serve
