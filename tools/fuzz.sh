#!/usr/bin/env bash
# Runs udpft's fuzz targets (fuzz/fuzz_targets) for a bounded time each.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). libFuzzer needs nightly-only compiler
# flags; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them. A crash is saved under
# fuzz/artifacts/TARGET/: turn it into a regression test (tests/wire.rs or tests/sim.rs)
# (the input itself can be replayed with `cargo fuzz run TARGET fuzz/artifacts/TARGET/FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1
for target in codec session_table; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target"
    cargo fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -max_len=4096
done
