#!/usr/bin/env bash
# Builds the tray app's Debian package with the Tauri CLI (from npm), from the same tree and
# build profile as scripts/desktop.sh: target/desktop/bundle/deb/Claude Nexus_<version>_amd64.deb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/desktop-deps.sh
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build)
npx --yes @tauri-apps/cli@2 build --bundles deb -- --locked --profile desktop
ls -l target/desktop/bundle/deb/*.deb
