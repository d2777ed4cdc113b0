#!/usr/bin/env bash
# Sets everything up, then runs the main job on the bundled example: a pickle
# checkpoint is scanned, converted to safetensors without executing any of
# it, inspected, validated, and loaded from Python.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

bin=target/release/safeweights
out=target/demo
mkdir -p "$out"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$bin" scan examples/tiny-model.pt
step "$bin" convert examples/tiny-model.pt "$out/tiny-model.safetensors" --force
step "$bin" inspect "$out/tiny-model.safetensors"
step "$bin" validate "$out/tiny-model.safetensors"
step .venv/bin/python - "$out/tiny-model.safetensors" <<'PY'
import sys
from safeweights import safe_open
from safeweights.torch import load_checkpoint

with safe_open(sys.argv[1], framework="pt") as f:
    print(f"{len(f.keys())} tensors, metadata keys: {sorted((f.metadata() or {}).keys())}")
state = load_checkpoint("examples/tiny-model.pt")  # the pickle file, read safely
print("load_checkpoint(tiny-model.pt) ->", sorted(state), "step =", state["step"])
PY
