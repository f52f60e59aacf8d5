#!/usr/bin/env bash
# Runs the keychain tests (tests/keychain.rs) against the real Secret Service: a private D-Bus
# session with an unlocked gnome-keyring (the password is piped on stdin), in a throwaway HOME,
# so nothing touches the user's own keyring. Installs gnome-keyring and D-Bus when missing.
# Called by scripts/test.sh; extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v dbus-run-session >/dev/null || missing+=(dbus dbus-daemon)
command -v gnome-keyring-daemon >/dev/null || missing+=(gnome-keyring)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

home=$(mktemp -d)
runtime=$(mktemp -d)
chmod 700 "$runtime"
trap 'rm -rf "$home" "$runtime"' EXIT
export NEXUS_KEYCHAIN_TESTS=1 CARGO_HOME=${CARGO_HOME:-$HOME/.cargo} RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
export HOME=$home XDG_RUNTIME_DIR=$runtime
dbus-run-session -- bash -c '
  echo -n test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  cargo test --locked --test keychain "$@"' keychain-tests "$@"
