#!/usr/bin/env bash
# The soak run (tests/soak.rs) against a release build, for SOAK_SECONDS (default 600): mixed
# JSON and SSE traffic with client aborts, upstream 529/429, truncated and slow streams and
# wrong keys, a client key rotated and the credential file edited during the run, all on
# loopback against the tests' mock upstream. Prints the proxy's RSS, open descriptors,
# threads, tasks, queued and spooled records once warm and at the end, and requests vs rows;
# fails when they do not stay flat or a request is not a row. scripts/test.sh runs it for
# 60 s against the debug build. TEST_DATABASE_URL=postgres://… runs it on PostgreSQL.
#   SOAK_SECONDS (600), NEXUS_BIN (target/release/claude-nexus, built if missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${NEXUS_BIN:-${CARGO_TARGET_DIR:-target}/release/claude-nexus}"
[ -x "$bin" ] || cargo build --release --locked
NEXUS_BIN="$(realpath "$bin")" SOAK_SECONDS="${SOAK_SECONDS:-600}" \
  exec cargo test --locked --test soak -- --ignored --nocapture
