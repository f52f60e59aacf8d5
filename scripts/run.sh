#!/usr/bin/env bash
# Builds the web UI and the proxy, then runs it on 127.0.0.1:3000 with the dashboard on
# 127.0.0.1:3001 (records in SQLite in your data directory).
# Configuration comes from the environment (see README); arguments are passed to `serve`,
# e.g. scripts/run.sh --port 3100.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build)
cargo build --release --locked
creds="${CREDENTIALS_DIR:-credentials}"
mkdir -p "$creds"
chmod 700 "$creds"
if ! ls "$creds"/*.credentials.json >/dev/null 2>&1; then
  echo "No account yet: copy a template from credentials/ (see credentials/README.md)," >&2
  echo "for example with a key from: target/release/claude-nexus keys generate" >&2
fi
exec "${CARGO_TARGET_DIR:-target}/release/claude-nexus" serve "$@"
