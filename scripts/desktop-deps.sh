#!/usr/bin/env bash
# Installs what building the tray app (src-tauri) needs on Debian/Ubuntu, when missing: the
# WebKitGTK webview, the tray (Ayatana AppIndicator), SVG icons, xdo, a C toolchain and
# Node.js for the UI, plus any packages named as arguments. The headless server needs none
# of the GUI libraries. Run by scripts/desktop.sh, scripts/desktop-tests.sh and .ci/run.
set -euo pipefail

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v npm >/dev/null || missing+=(nodejs npm)
for p in libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev file "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
