#!/usr/bin/env bash
# Packaging check (CI): builds the Debian package with cargo-deb, installs it on this machine,
# checks everything it installed, then purges it. Any missing piece fails the run with a
# message saying what; nothing is skipped.
#
#   bash scripts/package-check.sh             # `cargo deb` builds the release binary itself
#   bash scripts/package-check.sh --no-build  # package the existing target/release/auditrelay
#                                             # (`cargo deb --no-build`; or AUDITRELAY_DEB_NO_BUILD=1),
#                                             # e.g. after `cargo build --release --locked`
#   bash scripts/package-check.sh --no-build --profile dev
#                                             # package target/debug/auditrelay, the binary the test
#                                             # suite built: CI builds once, in one profile (the
#                                             # package's contents, not its speed, are under test)
#
# What is checked, after `dpkg -i`:
#   - the system user and group `auditrelay` exist (home /var/lib/auditrelay, no login shell);
#   - /etc/auditrelay (root:auditrelay 0750), /var/lib/auditrelay and /var/log/auditrelay
#     (auditrelay:auditrelay 0750) exist; /etc/auditrelay/auditrelay.toml is root:auditrelay
#     0640, a dpkg conffile, readable but not writable by the service user, and parses
#     (`auditrelay check`, run as that user, with placeholder secrets);
#   - the unit (as /usr/lib/systemd/system/auditrelay.service, nothing under /lib), sysusers.d
#     and tmpfiles.d files and the docs are installed; the man pages (generated from the clap
#     definitions by `cargo run --example mangen -- target/man` before `cargo deb`) are
#     installed gzipped, /usr/share/man/man1/auditrelay.1.gz and one per subcommand, and
#     `man -l` shows auditrelay(1)'s NAME section; the unit is NOT
#     enabled (the operator configures first); `systemd-analyze verify` accepts the unit;
#   - `systemd-analyze security --offline=true` rates the installed unit's exposure at most
#     AUDITRELAY_MAX_EXPOSURE (default 2.0);
#   - /usr/bin/auditrelay --version prints the package's version;
#   - reinstalling (the upgrade path) keeps a local change to the conffile and its mode;
#   - `dpkg --remove` keeps configuration and state; `dpkg --purge` removes them, the unit's
#     mask and enable state, leaving nothing of the package behind.
#
# The .deb stays: `==> built: <absolute path>` is printed once it is built and again at the end
# (cargo-deb's `target/debian/auditrelay_<version>-1_<arch>.deb`, under $CARGO_TARGET_DIR when
# that is set).
#
# Needs root (runs dpkg through sudo otherwise). Installs what it lacks: cargo-deb 3.x
# (`cargo install`, compiles for ~2 minutes once), dpkg-dev (dpkg-shlibdeps, for the
# package's dependencies) and systemd (systemd-analyze, systemd-sysusers, systemd-tmpfiles;
# installing it in a container does not start it). Meant for CI machines and containers: it
# refuses to run where auditrelay is already installed, and leaves the machine as it found it
# (the package is purged even when a check fails, and the auditrelay user, which a purge keeps
# by design, is deleted if this run created it).
set -euo pipefail
cd "$(dirname "$0")/.."

max_exposure=${AUDITRELAY_MAX_EXPOSURE:-2.0}
no_build=${AUDITRELAY_DEB_NO_BUILD:-0}
profile=release
expect_profile=0
for arg in "$@"; do
  if [ "$expect_profile" = 1 ]; then
    profile=$arg
    expect_profile=0
    continue
  fi
  case "$arg" in
    --no-build) no_build=1 ;;
    --profile) expect_profile=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "package-check: unknown argument: $arg (see --help)" >&2
      exit 2
      ;;
  esac
done

started=$SECONDS
fail() {
  echo "package-check: FAIL: $*" >&2
  exit 1
}
step() { echo "==> $*"; }
ok() { echo "    ok: $*"; }

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
as_root() { "${sudo_cmd[@]}" "$@"; }

user=auditrelay
unit_path=/usr/lib/systemd/system/auditrelay.service
config=/etc/auditrelay/auditrelay.toml
doc_dir=/usr/share/doc/auditrelay

# --- Tools -------------------------------------------------------------------------------
step "tools"
command -v cargo >/dev/null 2>&1 || fail "cargo (the Rust toolchain) is not installed"
command -v dpkg >/dev/null 2>&1 || fail "dpkg is missing: this check needs a Debian-based machine"
packages=()
command -v dpkg-shlibdeps >/dev/null 2>&1 || packages+=(dpkg-dev)
for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
  command -v "$tool" >/dev/null 2>&1 || { packages+=(systemd) && break; }
done
if ((${#packages[@]})); then
  echo "    installing: ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
for tool in dpkg-shlibdeps systemd-analyze systemd-sysusers systemd-tmpfiles deb-systemd-helper setpriv; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is still missing after installing the packages above"
done
if ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.'; then
  echo "    installing cargo-deb 3.x (cargo install; compiles for a few minutes)"
  cargo install cargo-deb --locked --version '^3'
fi
cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.' || fail "cargo deb is not cargo-deb 3.x: $(cargo deb --version 2>&1 || true)"
ok "$(cargo deb --version), $(systemd-analyze --version | head -n1)"

# --- Refuse to touch a real installation ----------------------------------------------------
status=$(dpkg-query -W -f='${db:Status-Status}' auditrelay 2>/dev/null || true)
if [ -n "$status" ] && [ "$status" != "not-installed" ]; then
  fail "the auditrelay package is already on this machine (status: $status); this check installs and purges it, so run it on a CI machine or container only"
fi
for leftover in /etc/auditrelay /var/lib/auditrelay /var/log/auditrelay /etc/systemd/system/auditrelay.service; do
  if [ -e "$leftover" ] || [ -L "$leftover" ]; then
    fail "$leftover exists although the package is not installed; move it away first (a purge would delete it)"
  fi
done
user_existed=0
getent passwd "$user" >/dev/null && user_existed=1

# Whatever happens from here on, leave the machine as found.
installed=0
cleanup() {
  local rc=$?
  if [ "$installed" = 1 ]; then
    echo "==> cleanup: purging the package" >&2
    as_root dpkg --purge auditrelay >/dev/null 2>&1 || echo "package-check: could not purge auditrelay" >&2
  fi
  if [ "$user_existed" = 0 ] && getent passwd "$user" >/dev/null; then
    as_root userdel "$user" || echo "package-check: could not delete user $user" >&2
  fi
  if [ "$user_existed" = 0 ] && getent group "$user" >/dev/null; then
    as_root groupdel "$user" || echo "package-check: could not delete group $user" >&2
  fi
  if [ "$rc" -ne 0 ]; then
    echo "package-check: FAILED after $((SECONDS - started)) s" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT

# --- Build the package -----------------------------------------------------------------------
# The man pages, generated from the clap definitions (packaging/man/mangen.rs, in the dev
# profile: the tests' build) into target/man under the crate, where Cargo.toml's assets expect
# them; cargo-deb gzips them into usr/share/man/man1/.
man_dir=target/man
step "man pages (cargo run --example mangen -- $man_dir)"
mangen_out=$(cargo run --quiet --locked --example mangen -- "$man_dir") || fail "generating the man pages failed"
[ -f "$man_dir/auditrelay.1" ] || fail "cargo run --example mangen wrote no $man_dir/auditrelay.1"
ok "$mangen_out"
target_dir=${CARGO_TARGET_DIR:-target}
deb_args=(--locked --output "$target_dir/debian/")
if [ "$profile" != release ]; then
  [ "$no_build" = 1 ] || fail "--profile $profile needs --no-build (cargo deb builds only release binaries itself)"
  deb_args+=(--profile "$profile")
fi
if [ "$no_build" = 1 ]; then
  profile_dir=$profile
  [ "$profile" = dev ] && profile_dir=debug
  binary=$target_dir/$profile_dir/auditrelay
  step "cargo deb --no-build (packaging the existing $binary)"
  [ -x "$binary" ] || fail "--no-build: $binary does not exist; build it first (cargo build --locked, profile $profile)"
  newer=$(find src Cargo.toml Cargo.lock -newer "$binary" -print -quit)
  if [ -n "$newer" ]; then
    echo "    warning: $newer is newer than $binary: the package holds an older build" >&2
  fi
  deb_args+=(--no-build)
else
  step "cargo deb (release build)"
fi
deb=$(cargo deb "${deb_args[@]}" | tail -n1)
[ -f "$deb" ] || fail "cargo deb did not print the path of a .deb (got: '$deb')"
deb=$(realpath "$deb")
ok "$(du -h "$deb" | cut -f1), $(dpkg-deb -c "$deb" | grep -c '^-') files"
# The package stays where cargo deb wrote it (the install below is purged, the .deb is not):
# this line, repeated at the end, is where CI's log says to fetch it.
echo "==> built: $deb"
version=$(dpkg-deb -f "$deb" Version)
upstream_version=${version%-*}

# --- Install ---------------------------------------------------------------------------------
step "dpkg -i $deb"
installed=1
as_root env DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" || fail "dpkg -i failed"
status=$(dpkg-query -W -f='${db:Status-Status}' auditrelay)
[ "$status" = "installed" ] || fail "after dpkg -i, the package's status is '$status', not 'installed'"
ok "auditrelay $version installed"

# --- Checks ----------------------------------------------------------------------------------
expect_stat() { # PATH TYPE OWNER:GROUP MODE
  local path=$1 type=$2 want="$3 $4" got
  case "$type" in
    dir) [ -d "$path" ] || fail "$path is not a directory (missing?)" ;;
    file) [ -f "$path" ] || fail "$path is not a regular file (missing?)" ;;
  esac
  got=$(stat -c '%U:%G %a' "$path")
  [ "$got" = "$want" ] || fail "$path is $got, expected $want"
  ok "$path $got"
}
as_user() { as_root setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"; }

step "user and group"
entry=$(getent passwd "$user") || fail "no user $user after installing (sysusers.d entry not applied?)"
IFS=: read -r _ _ uid gid _ home shell <<<"$entry"
getent group "$user" >/dev/null || fail "no group $user"
[ "$(getent group "$user" | cut -d: -f3)" = "$gid" ] || fail "user $user's primary group is not $user"
[ "$home" = /var/lib/auditrelay ] || fail "user $user's home is $home, expected /var/lib/auditrelay"
case "$shell" in */nologin | /bin/false) ;; *) fail "user $user has a login shell: $shell" ;; esac
[ "$uid" -lt 1000 ] || fail "user $user has uid $uid, not a system uid"
ok "$entry"

step "directories and configuration"
expect_stat /etc/auditrelay dir root:auditrelay 750
expect_stat /var/lib/auditrelay dir auditrelay:auditrelay 750
expect_stat /var/log/auditrelay dir auditrelay:auditrelay 750
expect_stat "$config" file root:auditrelay 640
conffiles=$(dpkg-query -W -f='${Conffiles}\n' auditrelay)
echo "$conffiles" | awk '{print $1}' | grep -qx "$config" || fail "$config is not a conffile of the package (Conffiles: '$conffiles')"
ok "$config is a conffile"
cmp -s "$config" "$doc_dir/auditrelay.example.toml" || fail "$config differs from $doc_dir/auditrelay.example.toml"
as_user test -r "$config" || fail "user $user cannot read $config"
if as_user test -w "$config"; then fail "user $user can write $config"; fi
as_user test -w /var/lib/auditrelay || fail "user $user cannot write /var/lib/auditrelay"
ok "user $user reads (not writes) $config and writes /var/lib/auditrelay"
# The shipped example parses with the installed binary, read as the service user. Its secrets
# are ${ENV} references: give each a placeholder.
secret_env=()
# shellcheck disable=SC2016 # the ${...} are literal text searched for
while read -r var; do
  secret_env+=("$var=placeholder")
done < <(grep -v '^[[:space:]]*#' "$config" | grep -o '"\${[A-Za-z0-9_]*}"' | tr -d '"${}' | sort -u)
check_out=$(as_root env -i PATH=/usr/bin:/bin "${secret_env[@]}" setpriv --reuid="$user" --regid="$user" --init-groups -- \
  /usr/bin/auditrelay check -c "$config" 2>&1) || fail "auditrelay check -c $config failed as user $user: $check_out"
ok "$(echo "$check_out" | tail -n1)"

step "installed files"
for f in /usr/bin/auditrelay "$unit_path" /usr/lib/sysusers.d/auditrelay.conf /usr/lib/tmpfiles.d/auditrelay.conf \
  "$doc_dir/auditrelay.example.toml" "$doc_dir/README.md" "$doc_dir/copyright" \
  /usr/share/auditrelay/prometheus/auditrelay.rules.yml /usr/share/auditrelay/prometheus/auditrelay.rules.test.yml \
  /usr/share/auditrelay/grafana/auditrelay-dashboard.json; do
  [ -f "$f" ] || fail "$f is not installed"
done
# The installed alert rules are the ones promtool accepts (scripts/test.sh installs promtool).
if command -v promtool >/dev/null 2>&1; then
  promtool check rules /usr/share/auditrelay/prometheus/auditrelay.rules.yml >/dev/null ||
    fail "promtool refuses the installed /usr/share/auditrelay/prometheus/auditrelay.rules.yml"
  ok "promtool accepts the installed alert rules"
fi
[ -x /usr/bin/auditrelay ] || fail "/usr/bin/auditrelay is not executable"
# The package's own file list, not the file system: on a usr-merged machine /lib is /usr/lib,
# so a unit shipped under the legacy /lib/systemd/system would pass the test above too.
package_files=$(dpkg-query -L auditrelay)
echo "$package_files" | grep -qx "$unit_path" || fail "the package does not ship $unit_path (dpkg -L auditrelay)"
if echo "$package_files" | grep -q '^/lib/'; then
  fail "the package ships files under /lib (Debian puts them under /usr/lib): $(echo "$package_files" | grep '^/lib/' | tr '\n' ' ')"
fi
ok "the unit is shipped as $unit_path, nothing under /lib"
cmp -s "$unit_path" packaging/systemd/auditrelay.service || fail "$unit_path differs from packaging/systemd/auditrelay.service"
logrotate_conf=/etc/logrotate.d/auditrelay
[ -f "$logrotate_conf" ] || fail "$logrotate_conf is not installed"
cmp -s "$logrotate_conf" packaging/logrotate/auditrelay || fail "$logrotate_conf differs from packaging/logrotate/auditrelay"
echo "$conffiles" | awk '{print $1}' | grep -qx "$logrotate_conf" || fail "$logrotate_conf is not a conffile of the package"
if command -v logrotate >/dev/null 2>&1; then
  # -d: parse and show what would be done, change nothing.
  lr_out=$(as_root logrotate -d "$logrotate_conf" 2>&1) || fail "logrotate -d $logrotate_conf failed: $lr_out"
  if echo "$lr_out" | grep -qi "error"; then fail "logrotate -d $logrotate_conf reports an error: $lr_out"; fi
  ok "$logrotate_conf parses (logrotate -d)"
else
  echo "package-check: logrotate is not installed; $logrotate_conf not parsed" >&2
fi
ok "binary, unit, sysusers.d, tmpfiles.d, docs"
man_page=/usr/share/man/man1/auditrelay.1.gz
[ -f "$man_page" ] || fail "$man_page is not installed"
echo "$package_files" | grep -qx "$man_page" || fail "the package does not ship $man_page (dpkg -L auditrelay)"
gzip -t "$man_page" || fail "$man_page is not a valid gzip file"
zcat "$man_page" | grep -qx '\.SH NAME' || fail "$man_page has no NAME section"
for page in "$man_dir"/*.1; do
  [ -f "/usr/share/man/man1/$(basename "$page").gz" ] || fail "/usr/share/man/man1/$(basename "$page").gz is not installed"
done
if command -v man >/dev/null 2>&1 && man_out=$(MANWIDTH=100 man -l "$man_page" 2>/dev/null) && [ -n "$man_out" ]; then
  name_line=$(echo "$man_out" | sed -n '/^NAME/{n;p;q}' | sed 's/^ *//')
else
  # No man (or a minimised image's stub): the roff source's NAME line.
  name_line=$(zcat "$man_page" | sed -n '/^\.SH NAME/{n;p;q}')
fi
echo "$name_line" | grep -q '^auditrelay ' || fail "$man_page's NAME section does not name auditrelay: '$name_line'"
ok "$man_page and $(($(ls "$man_dir"/*.1 | wc -l) - 1)) subcommand pages; NAME: $name_line"
if compgen -G "/etc/systemd/system/*.wants/auditrelay.service" >/dev/null; then
  fail "installing enabled auditrelay.service; the operator must configure it first"
fi
ok "auditrelay.service is not enabled"

step "systemd-analyze verify $unit_path"
verify_out=$(systemd-analyze verify "$unit_path" 2>&1) || fail "systemd-analyze verify failed: $verify_out"
if echo "$verify_out" | grep -q 'auditrelay'; then
  fail "systemd-analyze verify complained about the unit: $verify_out"
fi
ok "no complaint${verify_out:+ (other output: $verify_out)}"

step "systemd-analyze security --offline=true $unit_path"
security_out=$(systemd-analyze security --offline=true "$unit_path" 2>&1) || fail "systemd-analyze security failed: $security_out"
exposure=$(echo "$security_out" | sed -n 's/.*Overall exposure level for auditrelay\.service: \([0-9][0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "no 'Overall exposure level' in the output of systemd-analyze security: $security_out"
echo "$security_out" | grep '✗' || true
if ! awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e + 0 <= m + 0) }'; then
  fail "exposure $exposure is above $max_exposure: the unit's hardening regressed (see the ✗ lines above)"
fi
ok "exposure $exposure (limit $max_exposure)"

step "/usr/bin/auditrelay --version"
version_out=$(/usr/bin/auditrelay --version) || fail "/usr/bin/auditrelay --version failed"
[ "$version_out" = "auditrelay $upstream_version" ] || fail "--version printed '$version_out', expected 'auditrelay $upstream_version'"
ok "$version_out"

step "reinstall (upgrade path) keeps a local configuration change"
echo "# local change by package-check" | as_root tee -a "$config" >/dev/null
as_root env DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$deb" >/dev/null || fail "reinstalling failed"
tail -n1 "$config" | grep -qx "# local change by package-check" || fail "reinstalling lost the local change to $config"
expect_stat "$config" file root:auditrelay 640

step "dpkg --remove keeps configuration and state"
as_root dpkg --remove auditrelay >/dev/null || fail "dpkg --remove failed"
[ ! -e /usr/bin/auditrelay ] || fail "/usr/bin/auditrelay is still there after dpkg --remove"
[ ! -e "$unit_path" ] || fail "$unit_path is still there after dpkg --remove"
[ ! -e "$man_page" ] || fail "$man_page is still there after dpkg --remove"
[ -f "$config" ] || fail "dpkg --remove deleted $config (a conffile: it must stay until purge)"
[ -d /var/lib/auditrelay ] || fail "dpkg --remove deleted /var/lib/auditrelay (the queue: it must stay until purge)"
ok "binary, unit and man pages gone; $config and /var/lib/auditrelay kept"

step "dpkg --purge"
as_root dpkg --purge auditrelay >/dev/null || fail "dpkg --purge failed"
installed=0
status=$(dpkg-query -W -f='${db:Status-Status}' auditrelay 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = "not-installed" ] || fail "after dpkg --purge the package's status is '$status'"
for gone in /etc/auditrelay /var/lib/auditrelay /var/log/auditrelay /usr/lib/sysusers.d/auditrelay.conf \
  /usr/lib/tmpfiles.d/auditrelay.conf "$doc_dir" /etc/systemd/system/auditrelay.service; do
  if [ -e "$gone" ] || [ -L "$gone" ]; then fail "$gone is still there after dpkg --purge"; fi
done
getent passwd "$user" >/dev/null || fail "dpkg --purge deleted user $user (it is meant to keep it)"
ok "nothing of the package left (user $user kept by design; this script deletes it if it created it)"

echo "==> built: $deb"
echo "package-check: OK: exposure $exposure, $((SECONDS - started)) s"
