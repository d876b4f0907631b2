#!/usr/bin/env bash
# Checks that what `auditrelay demo` writes is valid OCSF 1.8.0, with the shared Python
# validator (../shared/ocsf/validate-ocsf beside the checkout), as CI's last step.
#
#   scripts/validate-demo-ocsf.sh                 run the demo (300 records, with the binary the
#                                                 tests built), validate its events.ndjson
#   OCSF_FILE=x.ndjson scripts/validate-demo-ocsf.sh   validate x.ndjson instead, no demo run
#
# Passes only when the validator's summary says "N valid, 0 invalid" with N > 0; it runs with
# --strict, so a warning (a caption that disagrees with its id, a deprecated attribute) is an
# invalid event, as in `cargo test`'s schema check. Without
# ../shared (a user's machine) it says the check was skipped and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

shared=../shared/ocsf
if [ ! -f "$shared/validate-ocsf" ]; then
  echo "==> OCSF validation skipped: the shared validator is not available because ../shared is not beside the checkout"
  exit 0
fi

# Debian packages, as scripts/test.sh installs the compiler: python3, and python3-venv for the
# fallback below.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  echo "==> installing: $*"
  local sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@"
}
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv ||
  { echo "error: python3 is needed to run $shared/validate-ocsf" >&2; exit 1; }

# The validator's packages, pinned in its requirements.txt: into the system Python when pip
# allows it, else (PEP 668 "externally managed", or no pip) into a venv under target/.
venv=target/ocsf-venv
python=python3
pip_quiet=(-q --disable-pip-version-check)
if [ -x "$venv/bin/python" ]; then
  python=$venv/bin/python
  "$python" -m pip install "${pip_quiet[@]}" -r "$shared/requirements.txt"
elif ! PIP_ROOT_USER_ACTION=ignore python3 -m pip install "${pip_quiet[@]}" -r "$shared/requirements.txt" 2>/dev/null; then
  echo "==> system pip refused the validator's packages; installing them into $venv"
  python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv" && apt_install python3-venv && python3 -m venv "$venv"; }
  python=$venv/bin/python
  "$python" -m pip install "${pip_quiet[@]}" -r "$shared/requirements.txt"
fi

if [ -n "${OCSF_FILE:-}" ]; then
  events=$OCSF_FILE
  echo "==> validating $events (OCSF_FILE set: no demo run)"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  # The binary the tests built (same profile and features; `cargo run` would build the graph
  # again without the dev-dependency features). `--no-run` only makes sure it is up to date.
  cargo test --locked --quiet --no-run --test it >/dev/null 2>&1 || cargo test --locked --no-run --test it
  echo "==> target/debug/auditrelay demo --records 300 --out $out"
  target/debug/auditrelay demo --records 300 --out "$out"
  events=$out/events.ndjson
  echo "==> validating $events"
fi
[ -f "$events" ] || { echo "error: $events does not exist" >&2; exit 1; }

# Exit status 1 only means "some invalid": the summary line decides. At most 20 invalid events
# and 10 warnings are shown (a broken mapping would otherwise print one line per event).
report=$(mktemp)
warnings=$(mktemp)
trap 'rm -rf "${out:-}" "$report" "$warnings"' EXIT
status=0
"$python" "$shared/validate-ocsf" --strict "$events" >"$report" 2>"$warnings" || status=$?
if [ "$status" -ge 2 ]; then
  cat "$report" "$warnings"
  echo "error: validate-ocsf could not run (exit $status)" >&2
  exit 1
fi
show() { # FILE LIMIT WHAT: the first LIMIT lines of FILE, then how many more
  local total
  total=$(wc -l <"$1")
  head -n "$2" "$1"
  ((total <= $2)) || echo "... and $((total - $2)) more $3"
}
summary=$(tail -n 1 "$report")
sed -i '$d' "$report"
show "$report" 20 "invalid events"
show "$warnings" 10 "warnings"
echo "validate-ocsf: $summary"
if [[ $summary =~ ^([0-9]+)\ valid,\ 0\ invalid(,|$) ]] && ((BASH_REMATCH[1] > 0)); then
  echo "==> OCSF: every event in $events is valid"
else
  echo "error: $events is not valid OCSF 1.8.0 (wanted \"N valid, 0 invalid\" with N > 0)" >&2
  exit 1
fi
