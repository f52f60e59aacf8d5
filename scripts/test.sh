#!/usr/bin/env bash
# Runs every test of the project. On a fresh Debian machine with a Rust toolchain it first
# installs what the build needs (a C compiler for ring and the bundled SQLite, Node.js for
# the web UI), the tray app's system packages (scripts/desktop-tests.sh), the real clients the tests drive (Claude Code, from
# npm, into tests/clients), Debian's Chromium for the dashboard's browser tests, D-Bus and
# gnome-keyring for the keychain tests, nginx for the reverse-proxy test, and PostgreSQL for the second pass of the store and
# proxy tests (scripts/postgres.sh). It builds the UI (ui/dist, which the binary embeds) and
# runs its unit tests before the Rust tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v kill >/dev/null || missing+=(procps)
command -v npm >/dev/null || missing+=(nodejs npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)   # scripts/fuzz-api.sh
# The keychain's tests need a session bus and gnome-keyring (scripts/keychain-tests.sh); the
# library it links, libdbus, is built from source with the project (no libdbus-1-dev).
command -v dbus-run-session >/dev/null || missing+=(dbus dbus-daemon)
command -v gnome-keyring-daemon >/dev/null || missing+=(gnome-keyring)
# tests/reverse_proxy.rs runs Debian's nginx (unprivileged, in a temporary directory; no
# service is started) with a certificate made by openssl.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error

# The official MCP Python SDK, the real client of tests/mcp.rs (from PyPI, into target/).
mcp_venv=$(realpath -m "${CARGO_TARGET_DIR:-target}/mcp-venv")
if [ ! -x "$mcp_venv/bin/python" ] || ! "$mcp_venv/bin/python" -c 'import mcp' 2>/dev/null; then
  python3 -m venv "$mcp_venv"
  "$mcp_venv/bin/pip" install --quiet --disable-pip-version-check mcp==2.3.0
fi

# The dashboard UI: install, type-check and build (embedded by the Rust build), unit tests.
# Its browser tests run inside `cargo test` (tests/ui.rs) against the real binary.
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build && npm test)

# Every test, with records in SQLite files.
cargo test --locked --all-targets

# The soak run for a minute (bench/soak.sh runs it for ten): memory, descriptors and tasks
# stay flat under mixed traffic with faults, and every request is a row.
SOAK_SECONDS=60 cargo test --locked --test soak -- --ignored --nocapture

# The dashboard API fuzzed against its OpenAPI document (schemathesis): no 5xx.
scripts/fuzz-api.sh

# The keychain tests again, against the real Secret Service (a private D-Bus session with an
# unlocked gnome-keyring).
scripts/keychain-tests.sh

# The tray app: its unit tests, then the real app in a real window under Xvfb, driven through
# WebDriver (installs the WebKitGTK build packages, webkit2gtk-driver and tauri-driver).
scripts/desktop-tests.sh

# The store and proxy tests again, each in its own fresh PostgreSQL database.
source scripts/postgres.sh
cargo test --locked --test proxy --test records --test credentials --test retention --test postgres --test outage --test oauth --test usage_window --test storage --test dashboard --test client_keys --test server --test limits --test alerts --test conversations
