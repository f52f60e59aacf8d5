#!/usr/bin/env bash
# Fuzzes the dashboard API against its own OpenAPI document with schemathesis (from PyPI,
# into a virtualenv under target/): starts the built binary on free ports with a throwaway
# data directory and a mock-free upstream (no request reaches it), runs every documented
# operation with generated inputs, and fails on any 5xx. /api/events (an endless stream) and
# POST /api/accounts (the OS keychain) are left out. Run by scripts/test.sh after the build;
# usage: scripts/fuzz-api.sh [binary].
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${1:-${CARGO_TARGET_DIR:-target}/debug/claude-nexus}
venv=$(realpath -m "${CARGO_TARGET_DIR:-target}/schemathesis-venv")
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi

dir=$(mktemp -d)
key=fuzz-dashboard-key-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
mkdir -m 700 "$dir/credentials"
env -i PATH="$PATH" NEXUS_DATA_DIR="$dir" CREDENTIALS_DIR="$dir/credentials" \
  DATABASE_URL="sqlite://$dir/records.db" DASHBOARD_PORT=0 DASHBOARD_API_KEY="$key" \
  CLAUDE_API_BASE_URL=http://127.0.0.1:9 \
  "$bin" serve --port 0 >"$dir/stdout" 2>"$dir/log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$dir"' EXIT

url=
for _ in $(seq 300); do
  url=$(grep -o 'dashboard on http://[0-9.:]*' "$dir/log" | head -1 | sed 's/dashboard on //') || true
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$dir/log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start" >&2; cat "$dir/log" >&2; exit 1; }

# POST /api/accounts is left out: it writes to the OS keychain, so here (no keychain) it answers
# 503 by design, and on a desktop it would fill the user's keychain with fuzz entries. Its
# validation is tested in tests/dashboard.rs.
# From the scratch directory, so schemathesis's cache (.schemathesis/) stays out of the tree.
cd "$dir"
"$venv/bin/schemathesis" run "$url/api/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error \
  --exclude-path /api/events \
  --exclude-name "POST /api/accounts" \
  --max-examples 40 \
  --workers 1 \
  --seed 1 \
  --no-color
