#!/usr/bin/env bash
# Builds the web UI and the tray app, then starts it: the tray icon, the window with the
# dashboard, and the proxy on 127.0.0.1:3000 (settings, credentials and records in your
# config and data directories; the headless server's variables, PORT, DATABASE_URL, …, win).
# On a fresh Debian/Ubuntu machine it first installs the system packages the build needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/desktop-deps.sh
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build)
cargo build --locked --profile desktop -p claude-nexus-desktop
exec "${CARGO_TARGET_DIR:-target}/desktop/claude-nexus-desktop" "$@"
