"""Helpers for the end-to-end tests with real training frameworks."""

import json
import os
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]

# Formats `safeweights scan` reports for files that hold a pickle.
PICKLE_FORMATS = {"torch zip checkpoint", "legacy torch checkpoint", "pickle", "zip archive"}


def cli() -> str:
    """The `safeweights` binary: $SAFEWEIGHTS_CLI, else the newest that
    `scripts/setup.sh` (release) or `cargo test` (debug) left in target/.
    Missing, the test fails."""
    if os.environ.get("SAFEWEIGHTS_CLI"):
        return os.environ["SAFEWEIGHTS_CLI"]
    built = [REPO / "target" / profile / "safeweights" for profile in ("release", "debug")]
    built = [path for path in built if path.is_file()]
    if built:
        return str(max(built, key=lambda path: path.stat().st_mtime))
    raise AssertionError("no safeweights binary: run `cargo build -p safeweights-cli` or set SAFEWEIGHTS_CLI")


def scan(directory) -> dict:
    """`safeweights scan --json` of a directory, by relative path."""
    done = subprocess.run([cli(), "scan", "--json", str(directory)], capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    return {os.path.relpath(f["path"], directory): f for f in report["files"]}


def assert_no_pickle(directory, expected_safetensors):
    """No file under `directory` holds a pickle, and each name in
    `expected_safetensors` (relative paths) is a safetensors file."""
    files = scan(directory)
    pickled = {path: f["format"] for path, f in files.items() if f["format"] in PICKLE_FORMATS}
    assert not pickled, f"pickle files in the output: {pickled}"
    for name in expected_safetensors:
        assert name in files, f"{name} missing from {sorted(files)}"
        assert files[name]["format"] == "safetensors", (name, files[name])
    return files


def assert_same_state(a, b):
    """Two state dicts with the same keys and bit-identical tensors."""
    assert list(a) == list(b)
    for key in a:
        x, y = a[key], b[key]
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)), key
