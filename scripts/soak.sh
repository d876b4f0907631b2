#!/usr/bin/env bash
# The long crash soak (issue 8): the RELEASE binary collects AUDITRELAY_SOAK_RECORDS records per
# simulated vendor (default 12 500, 50 000 in all) into a HEC emulator and a file sink while the
# test SIGKILLs it at random moments AUDITRELAY_SOAK_KILLS times (default 25) and restarts it,
# with a HEC outage two-thirds of the way through the kills; then it compares the metadata.uid sets (tests/it/soak.rs says what is
# proven). The quick variant of the same test runs in scripts/test.sh.
#
#   bash scripts/soak.sh                          # one soak run
#   AUDITRELAY_SOAK_ROUNDS=5 bash scripts/soak.sh # five, each with a new random seed
#   AUDITRELAY_SOAK_SEED=1234 bash scripts/soak.sh  # replay the kill moments of one run
set -euo pipefail
cd "$(dirname "$0")/.."

export AUDITRELAY_SOAK_RECORDS="${AUDITRELAY_SOAK_RECORDS:-12500}"
export AUDITRELAY_SOAK_KILLS="${AUDITRELAY_SOAK_KILLS:-25}"
rounds="${AUDITRELAY_SOAK_ROUNDS:-1}"

cargo test --release --locked --test it --no-run
for round in $(seq 1 "$rounds"); do
    echo "soak round $round of $rounds"
    cargo test --release --locked --test it soak:: -- --nocapture
done
