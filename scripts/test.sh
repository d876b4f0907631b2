#!/usr/bin/env bash
# Runs every test of auditrelay on a fresh Debian machine: installs the system packages the
# tests need, then checks formatting and lints and runs the whole test suite (one build, dev
# profile). A test whose receiver is missing fails; nothing is skipped in silence.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the build and the tests need. A C compiler builds the bundled SQLite and
# the TLS library. The syslog tests start a real rsyslog (Debian's) with its GnuTLS and OpenSSL
# network drivers; its system service is never started (the tests run their own rsyslogd).
# Debian's prometheus gives `promtool`, which tests/it/prometheus_rules.rs runs on the shipped
# alert rules and a scrape of the agent; its server is not started in a container without
# systemd (nothing listens on 9090), and the tests never start it.
packages=()
command -v cc >/dev/null 2>&1 || packages+=(gcc libc6-dev)
for pkg in rsyslog rsyslog-gnutls rsyslog-openssl prometheus; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || packages+=("$pkg")
done
if ((${#packages[@]})); then
  echo "==> installing: ${packages[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

command -v cargo >/dev/null 2>&1 || { echo "error: cargo (the Rust toolchain) is not installed" >&2; exit 1; }

echo "==> cargo fmt --check"
cargo fmt --all -- --check
# Modules declared by a macro (`vendors!`, `sinks!`) are invisible to cargo fmt: check every
# source file directly too.
find src tests benches packaging -name '*.rs' -print0 | xargs -0 rustfmt --check --edition 2024
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked --lib --bins --tests
