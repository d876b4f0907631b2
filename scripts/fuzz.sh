#!/usr/bin/env bash
# Fuzzes every parser of auditrelay with cargo-fuzz (libFuzzer), one target after another, for
# a fixed time each. The targets are fuzz/fuzz_targets/*.rs; each calls the function of the same
# name in src/fuzzing.rs (see fuzz/README.md).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   scripts/fuzz.sh                  every target, 60 s each
#   scripts/fuzz.sh 300              every target, 5 minutes each
#   scripts/fuzz.sh 600 config       one target
# Environment:
#   FUZZ_RSS_MB      libFuzzer's memory limit per target in MB (default 2048): more is a crash
#   FUZZ_TIMEOUT     seconds one input may take (default 10): longer is a crash
#   FUZZ_SANITIZER   address (default), leak, memory, thread or none (cargo fuzz --sanitizer)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz if it is
# missing. The working corpus grows under fuzz/corpus/<target>/ (seeded from fuzz/seeds/<target>/,
# both read each run), logs go to fuzz/logs/, crashes to fuzz/artifacts/<target>/ — all three
# gitignored. Exits non-zero if any target crashed (a panic, an abort, out of memory, a
# timeout), after running the others, and prints how to keep each crash as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2; }
rss_mb="${FUZZ_RSS_MB:-2048}"
timeout="${FUZZ_TIMEOUT:-10}"
sanitizer="${FUZZ_SANITIZER:-address}"

all=()
for f in fuzz/fuzz_targets/*.rs; do all+=("$(basename "$f" .rs)"); done
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "error: no fuzz target $t (targets: ${all[*]})" >&2; exit 2; }
done

cargo +nightly --version >/dev/null 2>&1 || {
  echo "error: the nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 1
}
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# One build for every target (the runs below then only check it is up to date).
echo "==> building the fuzz targets (sanitizer: $sanitizer)"
cargo +nightly fuzz build --sanitizer "$sanitizer"

mkdir -p fuzz/logs
failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  log="fuzz/logs/$t.log"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  echo "==> $t: ${seconds}s (log: $log)"
  status=0
  # Corpus dirs: the working one first (new inputs are written there), then the seeds.
  cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "$corpus" "fuzz/seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout="$timeout" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)"
  cov="$(grep -oE '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+' || true)"
  corp="$(grep -oE '^#[0-9]+.*corp: [0-9]+' "$log" | tail -1 | grep -oE 'corp: [0-9]+' | grep -oE '[0-9]+' || true)"
  if ((status)); then
    crash="$(grep -o 'Test unit written to .*' "$log" | tail -1 | sed 's/Test unit written to //' || true)"
    failed+=("$t|${crash:-no input written, see $log}")
    summary+=("$(printf '%-18s %6ss  execs %-10s cov %-6s corpus %-6s CRASH' "$t" "$seconds" "${execs:-?}" "${cov:-?}" "${corp:-?}")")
    echo "    CRASH (exit $status); last lines of $log:"
    tail -n 25 "$log" | sed 's/^/    | /'
  else
    summary+=("$(printf '%-18s %6ss  execs %-10s cov %-6s corpus %-6s ok' "$t" "$seconds" "${execs:-?}" "${cov:-?}" "${corp:-?}")")
  fi
done

echo
echo "==> summary"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo
  echo "==> crashes"
  for entry in "${failed[@]}"; do
    t="${entry%%|*}"
    input="${entry#*|}"
    echo "$t: $input"
    echo "    reproduce:  cargo +nightly fuzz run $t $input"
    echo "    keep it:    cp $input tests/fixtures/fuzz/$t/<what-it-is>"
    echo "    then fix the parser until: cargo test --test it fuzz_regressions::"
  done
  exit 1
fi
