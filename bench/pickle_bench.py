"""Benchmarks the safe pickle reader against the usual tools, in one run.

- convert: a ~2 GiB torch checkpoint to safetensors, `safeweights convert`
  against the reference way (`torch.load` then `safetensors.torch.save_file`):
  time and peak memory of each, in separate processes.
- scan: `safeweights scan` against picklescan on the same files.

Usage: .venv/bin/python bench/pickle_bench.py [--size-gib 2] [--workdir DIR]
Writes the "pickle" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench_common import CLI, PYTHON, best_of, gib, machine, sync, write_section

TENSORS = 200

REFERENCE_CONVERT = """
import sys, torch
from safetensors.torch import save_file
state = torch.load(sys.argv[1], weights_only=True, map_location="cpu")
save_file(state, sys.argv[2])
"""

PICKLESCAN = """
import os, sys
from picklescan.scanner import scan_directory_path, scan_file_path
path = sys.argv[1]
result = scan_directory_path(path) if os.path.isdir(path) else scan_file_path(path)
assert not result.scan_err and result.infected_files == 0, result
"""

SMALL_FILES = 100


def make_checkpoint(path: Path, size_bytes: int) -> None:
    import torch

    per_tensor = size_bytes // TENSORS // 4
    torch.manual_seed(0)
    state = {f"layers.{i}.weight": torch.randn(per_tensor) for i in range(TENSORS)}
    torch.save(state, path)


def make_small_checkpoints(directory: Path) -> None:
    """A model repository's worth of small checkpoints, zip and legacy."""
    import torch

    directory.mkdir(exist_ok=True)
    for i in range(SMALL_FILES):
        state = {f"w{j}": torch.randn(64, 64) for j in range(8)}
        legacy = i % 2 == 1
        torch.save(state, directory / f"part{i}.bin", _use_new_zipfile_serialization=not legacy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sw-pickle-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = workdir / "pytorch_model.bin"
    size = int(args.size_gib * 2**30)
    if not checkpoint.exists():
        print(f"writing {gib(size)} checkpoint to {checkpoint}")
        make_checkpoint(checkpoint, size)
    size = checkpoint.stat().st_size
    ours_out, ref_out = workdir / "ours.safetensors", workdir / "ref.safetensors"

    rows = []
    ref = best_of(args.runs, [PYTHON, "-c", REFERENCE_CONVERT, str(checkpoint), str(ref_out)], sync)
    ours = best_of(args.runs, [str(CLI), "convert", str(checkpoint), str(ours_out), "--force", "--no-fsync"], sync)
    ours_nv = best_of(
        args.runs, [str(CLI), "convert", str(checkpoint), str(ours_out), "--force", "--no-verify", "--no-fsync"], sync
    )
    rows.append(("convert (with verification)", ours, ref))
    rows.append(("convert --no-verify", ours_nv, ref))

    scan_ref = best_of(args.runs, [PYTHON, "-c", PICKLESCAN, str(checkpoint)])
    scan_ours = best_of(args.runs, [str(CLI), "scan", str(checkpoint)])
    small = workdir / "small"
    if not small.exists():
        make_small_checkpoints(small)
    small_size = sum(f.stat().st_size for f in small.iterdir())
    dir_ref = best_of(args.runs, [PYTHON, "-c", PICKLESCAN, str(small)])
    dir_ours = best_of(args.runs, [str(CLI), "scan", str(small)])

    lines = [
        "## Safe pickle reader: convert and scan",
        "",
        f"Machine: {machine()}. Input: a {gib(size)} `torch.save` checkpoint of {TENSORS} float32 tensors,",
        f"warm page cache, best of {args.runs} runs, each command in its own process. Memory columns:",
        "peak anonymous memory (what the process allocated, sampled every 2 ms) / peak RSS (the kernel's",
        "high-water mark, which also counts pages of memory-mapped files: page cache the kernel can drop).",
        "",
        "| work | safeweights | memory | reference | memory | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for label, ours_run, ref_run in rows:
        lines.append(
            f"| {label} | {ours_run[0]:.2f} s | {gib(ours_run[1])} / {gib(ours_run[2])} "
            f"| {ref_run[0]:.2f} s (`torch.load` + `save_file`) | {gib(ref_run[1])} / {gib(ref_run[2])} "
            f"| {ref_run[0] / ours_run[0]:.1f}x |"
        )
    lines.append(
        f"| scan | {scan_ours[0]:.3f} s ({size / scan_ours[0] / 2**30:.1f} GiB/s) "
        f"| {gib(scan_ours[1])} / {gib(scan_ours[2])} | {scan_ref[0]:.3f} s (picklescan) "
        f"| {gib(scan_ref[1])} / {gib(scan_ref[2])} | {scan_ref[0] / scan_ours[0]:.1f}x |"
    )
    lines.append(
        f"| scan a directory of {SMALL_FILES} checkpoints ({gib(small_size)}, zip and legacy) "
        f"| {dir_ours[0]:.3f} s | {gib(dir_ours[1])} / {gib(dir_ours[2])} | {dir_ref[0]:.3f} s (picklescan) "
        f"| {gib(dir_ref[1])} / {gib(dir_ref[2])} | {dir_ref[0] / dir_ours[0]:.1f}x |"
    )
    lines += [
        "",
        "The reference times include starting Python and importing torch or picklescan, as a user's",
        "script would; `scan` reads only the pickles of a torch zip (tensor storages are raw bytes that",
        "are never interpreted), so its time does not grow with the model's size.",
    ]
    lines += ["", "Reproduce: `.venv/bin/python bench/pickle_bench.py` (after `scripts/setup.sh`)."]
    write_section("pickle", "\n".join(lines))
    print("\n".join(lines))
    if args.workdir is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
