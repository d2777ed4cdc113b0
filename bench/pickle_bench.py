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
import sys
from picklescan.scanner import scan_file_path
result = scan_file_path(sys.argv[1])
assert result.scan_err is False or result.scan_err == 0, result
"""


def make_checkpoint(path: Path, size_bytes: int) -> None:
    import torch

    per_tensor = size_bytes // TENSORS // 4
    torch.manual_seed(0)
    state = {f"layers.{i}.weight": torch.randn(per_tensor) for i in range(TENSORS)}
    torch.save(state, path)


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
    ours = best_of(args.runs, [str(CLI), "convert", str(checkpoint), str(ours_out), "--force"], sync)
    ours_nv = best_of(
        args.runs, [str(CLI), "convert", str(checkpoint), str(ours_out), "--force", "--no-verify"], sync
    )
    rows.append(("convert (with verification)", ours, ref))
    rows.append(("convert --no-verify", ours_nv, ref))

    scan_ref = best_of(args.runs, [PYTHON, "-c", PICKLESCAN, str(checkpoint)])
    scan_ours = best_of(args.runs, [str(CLI), "scan", str(checkpoint)])

    lines = [
        "## Safe pickle reader: convert and scan",
        "",
        f"Machine: {machine()}. Input: a {gib(size)} `torch.save` checkpoint of {TENSORS} float32 tensors,",
        "warm page cache, best of "
        f"{args.runs} runs, each command in its own process (peak memory = that process's max RSS).",
        "",
        "| work | safeweights | peak memory | reference | peak memory | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for label, (t_ours, m_ours), (t_ref, m_ref) in rows:
        lines.append(
            f"| {label} | {t_ours:.2f} s | {gib(m_ours)} | {t_ref:.2f} s (`torch.load` + `save_file`) "
            f"| {gib(m_ref)} | {t_ref / t_ours:.1f}x |"
        )
    lines.append(
        f"| scan | {scan_ours[0]:.3f} s ({size / scan_ours[0] / 2**30:.1f} GiB/s) | {gib(scan_ours[1])} "
        f"| {scan_ref[0]:.3f} s (picklescan) | {gib(scan_ref[1])} | {scan_ref[0] / scan_ours[0]:.1f}x |"
    )
    lines += ["", "Reproduce: `.venv/bin/python bench/pickle_bench.py` (after `scripts/setup.sh`)."]
    write_section("pickle", "\n".join(lines))
    print("\n".join(lines))
    if args.workdir is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
