#!/usr/bin/env bash
# Runs every test of the project. On a fresh Debian machine with a Rust toolchain it first
# installs what the build needs (a C compiler for ring and the bundled SQLite) and the real
# clients the tests drive (Claude Code, from npm, into tests/clients), and PostgreSQL for the
# second pass of the store and proxy tests (scripts/postgres.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v kill >/dev/null || missing+=(procps)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error

# Every test, with records in SQLite files.
cargo test --locked --all-targets

# The store and proxy tests again, each in its own fresh PostgreSQL database.
source scripts/postgres.sh
cargo test --locked --test proxy --test records --test credentials --test retention --test postgres --test outage --test oauth --test usage_window --test storage
