#!/usr/bin/env bash
# Installs what building the tray app (src-tauri) needs on Debian/Ubuntu, when missing: the
# WebKitGTK webview, the tray (Ayatana AppIndicator), SVG icons, xdo, a C toolchain and
# Node.js for the UI. The headless server needs none of the GUI libraries.
# Sourced or run by scripts/desktop.sh, scripts/desktop-tests.sh and .ci/run.
set -euo pipefail

packages=(libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev
  build-essential pkg-config file nodejs npm "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
