"""Python-level benchmarks: safeweights vs the reference safetensors and
torch.save / torch.load, side by side in one run.

    .venv/bin/python bench/python_bench.py [--gib 1] [--repeat 3] [--no-write]

Build the extension in release mode first (see python/pyproject.toml).
Results go to the `python` section of BENCHMARKS.md.

What is measured (best of `--repeat` runs, warm page cache):
- save_file of N float32 tensors totalling the size, after os.sync() (see
  `fresh` for the order of sync and delete, which matters on a VM), with
  `dd` writing the same number of bytes to the same disk as the raw rate;
- load_file, then touching one byte in every 4 KiB page of every tensor
  (which faults every page in, the real cost of a mapped load);
- a training checkpoint (model + Adam state + scheduler): save_checkpoint vs
  torch.save, load_checkpoint vs torch.load(weights_only=True) (with and
  without mmap=True), and load_checkpoint of the torch.save file through
  the safe pickle reader.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import safetensors.torch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common  # noqa: E402

import safeweights.torch  # noqa: E402

PAGE = 4096


def best(repeat, run, before=None):
    times = []
    for _ in range(repeat):
        if before:
            before()
        gc.collect()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def best_pair(repeat, run_ref, run_ours, before_ref, before_ours):
    """Best times of two runs, interleaved so both see the same disk state."""
    ref, ours = [], []
    for _ in range(repeat):
        ref.append(best(1, run_ref, before_ref))
        ours.append(best(1, run_ours, before_ours))
    return min(ref), min(ours)


def fresh(path):
    """Before a timed write of `path`: flush all dirty data, then delete the
    old copy of the file just before the write starts.

    On this VM, memory freed by the guest is handed back to the host after
    about 2 s (virtio-balloon free page reporting), and the next write that
    needs those pages waits for the host to fault them in again: writes
    into "cold" memory were 2-10x slower and random. Deleting the file last
    lets the write reuse its page cache pages while they are still warm.
    Both libraries get the same treatment."""

    def run():
        bench_common.sync()
        path.unlink(missing_ok=True)

    return run


def touch(tensors):
    """Reads one byte per page of every tensor."""
    total = 0
    for tensor in tensors:
        flat = tensor.reshape(-1).view(torch.uint8)
        total += int(flat[::PAGE].sum()) if flat.numel() else 0
    return total


def make_tensors(total_bytes, count):
    per = total_bytes // count // 4
    return {f"layers.{i}.weight": torch.randn(per) for i in range(count)}


def dd_rate(directory, nbytes):
    target = directory / "dd.bin"
    mib = max(nbytes >> 20, 1)

    def run():
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={mib}"],
            check=True,
            capture_output=True,
        )

    seconds = best(3, run, before=fresh(target))
    target.unlink(missing_ok=True)
    return (mib << 20) / seconds


def bench_files(directory, total_bytes, count, repeat, rows, write):
    tensors = make_tensors(total_bytes, count)
    nbytes = sum(t.numel() * 4 for t in tensors.values())
    ours, theirs = directory / "ours.safetensors", directory / "theirs.safetensors"

    if write:
        t_ref, t_ours = best_pair(
            repeat,
            lambda: safetensors.torch.save_file(tensors, theirs),
            # Without fsync, like the reference; bench/durability_bench.py
            # measures what the default durable=True adds.
            lambda: safeweights.torch.save_file(tensors, ours, durable=False),
            fresh(theirs),
            fresh(ours),
        )
        rows.append((f"save_file, {count} tensors", t_ref, t_ours, nbytes))
    else:
        safetensors.torch.save_file(tensors, theirs)
        safeweights.torch.save_file(tensors, ours)
    del tensors
    t_ref = best(repeat, lambda: touch(safetensors.torch.load_file(theirs).values()))
    t_ours = best(repeat, lambda: touch(safeweights.torch.load_file(ours).values()))
    rows.append((f"load_file + touch every page, {count} tensors", t_ref, t_ours, nbytes))
    ours.unlink()
    theirs.unlink()
    return nbytes


def training_checkpoint(total_bytes):
    """Model weights plus Adam's two moments: about `total_bytes` in all."""
    per_layer = total_bytes // 3 // 64
    side = int((per_layer // 4) ** 0.5)
    model = torch.nn.Sequential(*[torch.nn.Linear(side, side, bias=True) for _ in range(64)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    scheduler.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": 1}


def all_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from all_tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from all_tensors(value)


def bench_checkpoint(directory, total_bytes, repeat, rows):
    state = training_checkpoint(total_bytes)
    nbytes = sum(t.numel() * t.element_size() for t in all_tensors(state))
    pt, ours = directory / "ckpt.pt", directory / "ckpt.safetensors"

    t_ref, t_ours = best_pair(
        repeat,
        lambda: torch.save(state, pt),
        lambda: safeweights.torch.save_checkpoint(state, ours, durable=False),
        fresh(pt),
        fresh(ours),
    )
    rows.append(("save_checkpoint vs torch.save", t_ref, t_ours, nbytes))
    del state
    t_torch_load = best(repeat, lambda: touch(all_tensors(torch.load(pt, weights_only=True))))
    t_ours = best(repeat, lambda: touch(all_tensors(safeweights.torch.load_checkpoint(ours))))
    rows.append(("load_checkpoint vs torch.load(weights_only=True)", t_torch_load, t_ours, nbytes))
    t_ref = best(repeat, lambda: touch(all_tensors(torch.load(pt, weights_only=True, mmap=True))))
    rows.append(("load_checkpoint vs torch.load(weights_only=True, mmap=True)", t_ref, t_ours, nbytes))
    t_ours = best(repeat, lambda: touch(all_tensors(safeweights.torch.load_checkpoint(pt))))
    rows.append(("load_checkpoint(torch.save file) vs torch.load(weights_only=True)", t_torch_load, t_ours, nbytes))
    pt.unlink()
    ours.unlink()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--dir", default=None, help="directory on the disk to test (default: a temporary one)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    total = int(args.gib * (1 << 30))
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        directory = Path(name)
        dd = dd_rate(directory, total)
        for count in (200, 2000):
            bench_files(directory, total, count, args.repeat, rows, not args.no_write)
            print(rows[-2:] if len(rows) > 1 else rows, flush=True)
        bench_checkpoint(directory, total, args.repeat, rows)
    lines = [
        "## Python package (`bench/python_bench.py`)",
        "",
        f"Machine: {bench_common.machine()}; torch {torch.__version__}, safetensors {safetensors.__version__}, "
        f"safeweights {safeweights.__version__}. {bench_common.gib(total)} of float32 data, best of {args.repeat}, "
        "warm page cache; before each timed write, `os.sync()` and then the old copy of the file deleted "
        f"(see `fresh` in bench/python_bench.py); 1-minute load average {load:.2f} at the start.",
        "",
        f"Raw write rate (`dd bs=1M`, same disk, page cache): {dd / 1e9:.2f} GB/s.",
        "",
        *bench_common.ratio_table(rows),
    ]
    lines += [
        "",
        "Reference column: safetensors for save_file/load_file, torch for checkpoints. "
        "Load rows touch one byte per 4 KiB page of every tensor after loading (GPU loading: the cuda section). "
        "Write rows move by up to 2x between runs on this shared VM even so; compare several runs.",
    ]
    bench_common.publish("python", lines)


if __name__ == "__main__":
    main()
