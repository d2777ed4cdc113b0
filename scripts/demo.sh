#!/usr/bin/env bash
# Sets everything up, then runs the main job on the bundled example: a pickle
# checkpoint is scanned, converted to safetensors without executing any of
# it, inspected, validated, and loaded from Python. Then a checkpoint with a
# payload is made on the spot, to show it flagged, refused and never run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

bin=target/release/safeweights
out=target/demo
rm -rf "$out"
mkdir -p "$out"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; "$@"; }
expect_refusal() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; if "$@"; then echo "expected a refusal" >&2; exit 1; fi; }

step "$bin" scan examples/tiny-model.pt
step "$bin" convert examples/tiny-model.pt "$out/tiny-model.safetensors"
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

# A checkpoint whose loading would run a shell command (made here, never loaded).
.venv/bin/python - "$out" <<'PY'
import os, sys, torch
class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {sys.argv[1]}/PWNED",))
torch.save({"weight": torch.zeros(2), "extra": Payload()}, f"{sys.argv[1]}/evil.pt")
PY
expect_refusal "$bin" scan "$out/evil.pt"
expect_refusal "$bin" convert "$out/evil.pt" "$out/evil.safetensors"
if [ -e "$out/PWNED" ]; then echo "the payload ran!" >&2; exit 1; fi
printf '\nThe payload was flagged and refused, and it never ran (%s/PWNED does not exist).\n' "$out"
