#!/usr/bin/env bash
# Installs the tools the test suite uses besides the Rust toolchain and the
# Python packages (scripts/setup.sh installs those):
#   nginx-light  serves fixtures over HTTP Range requests (CLI tests/remote.rs)
#   bsdutils     provides `script`, a pseudo-terminal for the colour test
#   strace       counts fsync calls in the durability tests (python/tests/test_durability.py)
#   cargo-fuzz   runs the fuzz targets (fuzz/run.sh), from crates.io
# The CLI tests that need nginx or `script` print a notice and skip when
# they are missing; CI always has them through this script.
set -euo pipefail
if ! command -v nginx >/dev/null || ! command -v script >/dev/null || ! command -v strace >/dev/null; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light bsdutils strace >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
