#!/usr/bin/env bash
# The tray app's tests: its unit tests (menu model, Claude Code settings merge and restore,
# port handling, which notifications are shown, settings), then the real app end to end
# (src-tauri/tests/window.rs) under Xvfb, in a private D-Bus session with an unlocked
# gnome-keyring and a throwaway HOME, driven through WebDriver (tauri-driver and
# WebKitWebDriver). Screenshots land in target/ui-screenshots/desktop-*.png.
# Installs what it needs when missing; expects ui/dist built (scripts/test.sh builds it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/desktop-deps.sh webkit2gtk-driver xvfb xauth dbus dbus-daemon gnome-keyring procps
export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo} RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
if ! command -v tauri-driver >/dev/null; then
  echo "installing tauri-driver (one-off)"
  cargo install tauri-driver --version "^2" --locked --quiet
fi
export TAURI_DRIVER=${TAURI_DRIVER:-$(command -v tauri-driver)}

cargo test --locked -p claude-nexus-desktop --all-targets

runtime=$(mktemp -d)
chmod 700 "$runtime"
trap 'rm -rf "$runtime"' EXIT
export XDG_RUNTIME_DIR=$runtime
xvfb-run -a -s "-screen 0 1280x900x24 -nolisten tcp" dbus-run-session -- bash -c '
  echo -n test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  cargo test --locked -p claude-nexus-desktop --test window -- --ignored --test-threads=1'
