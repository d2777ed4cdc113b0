#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite: formatting and lints,
# the Rust tests (library, pickle reader, CLI), the Python tests, the
# packages as users install them (scripts/test-packaging.sh), and a short
# fuzzing run. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# One build per run: incremental caches would add 2 GB to target/ and save
# nothing. Disk is short on some CI machines; each stage reports what is left.
export CARGO_INCREMENTAL=0
disk() { echo "    (disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free)"; }

scripts/setup.sh
scripts/install-test-deps.sh
disk

export SAFEWEIGHTS_PYTHON="$PWD/.venv/bin/python"
# A missing Python, Python package or nginx fails the Rust tests instead of
# skipping them (each crate's tests/common `require`).
export SAFEWEIGHTS_REQUIRE_ALL=1

echo "==> cargo fmt --check"
cargo fmt --all -- --check

disk
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings

disk
echo "==> cargo test"
# fault-injection: the crash points the crash-consistency tests use (test-only).
cargo test --workspace --exclude safeweights-python --locked --features safeweights-cli/fault-injection

disk
echo "==> pytest"
.venv/bin/python -m pytest python/tests -q

disk
echo "==> the reference safetensors package's own Python tests, run against safeweights"
scripts/reference-tests.sh

disk
echo "==> packaging: crates, cargo install, sdist, the wheel in a fresh venv"
scripts/test-packaging.sh

disk
echo "==> fuzzing (${FUZZ_SECONDS:=20}s per target)"
fuzz/run.sh "$FUZZ_SECONDS"
