#!/usr/bin/env bash
# Builds and runs every fuzz target for N seconds each (default 30); exits
# non-zero if any target finds a crash (the input is saved in fuzz/artifacts/).
#
#   fuzz/run.sh [seconds]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); runs on stable through
# RUSTC_BOOTSTRAP=1. New inputs go to fuzz/target/corpus-work/, so the
# committed seeds in fuzz/corpus/ stay small.
set -euo pipefail
seconds="${1:-30}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
targets=(header reader pickle_vm zip_reader zip_differential gguf seven_zip)
cargo fuzz build
status=0
for target in "${targets[@]}"; do
    work="target/corpus-work/$target"
    log="target/fuzz-$target.log"
    mkdir -p "$work"
    # libFuzzer reports every new input; keep that in a log and print the
    # totals, or the end of the log when something is found.
    if cargo fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
        echo "fuzz $target: ${seconds}s, $runs runs, no crash"
    else
        echo "!! fuzz $target found a crash (input saved in fuzz/artifacts/$target/):" >&2
        tail -n 40 "$log" >&2
        status=1
    fi
done
exit "$status"
