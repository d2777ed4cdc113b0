#!/usr/bin/env bash
# Sets up a development environment from nothing but a Rust toolchain and
# Python 3.9+: a .venv with the Python dependencies, the `safeweights` CLI
# (release build) and the Python package installed into the .venv.
# Safe to run again: each step is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$python" -m venv .venv
fi
echo "==> installing Python dependencies (requirements-dev.txt)"
# --no-cache-dir: pip would otherwise keep a second copy of every wheel it
# downloads (4 GB for torch and its CUDA libraries) in ~/.cache/pip.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements-dev.txt

echo "==> building the safeweights CLI (release)"
cargo build --release --locked -p safeweights-cli --quiet

# With the test-only crash points (python/tests/test_crash_consistency.py);
# released wheels are built without them.
echo "==> building the Python package into .venv"
(cd python && VIRTUAL_ENV="$PWD/../.venv" PATH="$PWD/../.venv/bin:$PATH" \
    maturin develop --release --quiet --features fault-injection)
