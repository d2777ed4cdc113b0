#!/usr/bin/env bash
# Installs the tools the test suite uses besides the Rust toolchain and the
# Python packages (scripts/setup.sh installs those):
#   nginx-light  serves fixtures over HTTP Range requests (CLI tests/remote.rs)
#   bsdutils     provides `script`, a pseudo-terminal for the colour test
#   zsh, fish    check that the generated completion scripts parse (`zsh -n`,
#                `fish -n`; bash is always there)
#   groff-base   renders the generated man page (CLI tests/packaging.rs)
#   strace       counts fsync calls in the durability tests (python/tests/test_durability.py)
#   cargo-fuzz   runs the fuzz targets (fuzz/run.sh), from crates.io
#   GGUF files   written by llama.cpp's converter, from llama-cpp-python's
#                source distribution on PyPI (scripts/fetch-gguf-fixtures.py;
#                python/tests/test_gguf_real_files.py), into target/test-data/
# Tests that need one of these and do not find it skip with a SKIPPED notice,
# or fail under SAFEWEIGHTS_REQUIRE_ALL=1 (scripts/test.sh, so in CI).
set -euo pipefail
missing=0
for tool in nginx script zsh fish groff strace; do
    command -v "$tool" >/dev/null || missing=1
done
if [ "$missing" = 1 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light bsdutils zsh fish groff-base strace >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
python3 scripts/fetch-gguf-fixtures.py
