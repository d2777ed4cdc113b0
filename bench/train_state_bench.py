"""A whole training state through `safeweights.save`/`safeweights.load`
against `torch.save`/`torch.load`: speed and peak memory.

The state is what a trainer writes at a checkpoint: a model's state dict,
its AdamW state (two moments and a step per parameter), a scheduler, the
RNG states (python, numpy, torch) and a config with numpy scalars in it.

Every measurement runs in its own child process (so peak memory is the
operation's own), the variants interleaved round by round so all see the
same machine state; the tables give the median and the spread (min to max)
of the operation's own time, measured inside the child, and the peak
anonymous memory the child allocated during it (sampled every 2 ms; the
state being saved, which the child builds first, is not counted). Loads
touch one byte per 4 KiB page of every tensor.

Beside the saves, the same run measures what bounds them: the same tensor
bytes written into a preallocated file with one `os.pwrite` each (the write
floor: the kernel's copy
into the page cache, which every saver pays), `dd` of the same size, and
`torch.save` without its CRC32; the speedup any writer can show over
`torch.save` on this filesystem is at most torch.save / floor.

    .venv/bin/python bench/train_state_bench.py --size-mib 1024 --rounds 7
    .venv/bin/python bench/train_state_bench.py --size-mib 128 --rounds 3 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common  # noqa: E402

PAGE = 4096

# The child: builds or loads, times only the operation, prints JSON.
CHILD = r"""
import json, os, random, resource, subprocess, sys, time
import numpy as np
import torch
import safeweights

PAGE = 4096


def cpu_seconds():
    # This process's threads and its finished children (dd).
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def anon_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def state(total_bytes):
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    # Weights + two AdamW moments = 3 copies; 32 square layers.
    layers = 32
    side = int((total_bytes / 3 / layers / 4) ** 0.5)
    model = torch.nn.Sequential(*[torch.nn.Linear(side, side) for _ in range(layers)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=1000)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    scheduler.step()
    model.zero_grad(set_to_none=True)
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
        "config": {"lr": 1e-3, "betas": (0.9, 0.999), "epochs": 3, "name": "bench", "best_loss": np.float64(0.5)},
        "step": 1000,
    }


def tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors(v)


def touch(obj):
    total = 0
    for t in tensors(obj):
        flat = t.detach().reshape(-1).view(torch.uint8)
        total += int(flat[::PAGE].sum()) if flat.numel() else 0
    return total


NUMPY_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32)),
                 np._core.multiarray.scalar, type(np.dtype(np.float64))]

# The same tensor bytes, one pwrite each, into a new preallocated file (as
# our writer and any careful one preallocates: on ext4 writes into allocated
# blocks skip the per-page block reservation): no structure, no temporary
# file, no fsync. The page-cache copy that every saver on this filesystem
# pays; nothing can save the state much faster.
def write_floor(obj, path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, sum(t.numel() * t.element_size() for t in tensors(obj)))
        offset = 0
        for t in tensors(obj):
            data = memoryview(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
            while data:
                written = os.pwrite(fd, data, offset)
                data, offset = data[written:], offset + written
    finally:
        os.close(fd)


op, path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
if op == "save_dd":
    obj = {}
    before = anon_kib()
    print("ready", flush=True)
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size >> 20}", "status=none"], check=True)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
elif op.startswith("save"):
    obj = state(size)
    before = anon_kib()
    print("ready", flush=True)
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    if op == "save_safeweights":
        # torch.save syncs nothing: compared like for like, without fsync.
        safeweights.save(obj, path, durable=False)
    elif op == "save_safeweights_durable":
        safeweights.save(obj, path)
    elif op == "save_floor":
        write_floor(obj, path)
    elif op == "save_touch":
        # No file: new memory of the same size, one byte written per page.
        fresh = np.empty(size, dtype=np.uint8)
        fresh[::PAGE] = 1
    elif op == "save_torch_nocrc":
        torch.serialization.set_crc32_options(False)
        torch.save(obj, path)
    else:
        torch.save(obj, path)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
else:
    before = anon_kib()
    print("ready", flush=True)
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    if op == "load_safeweights":
        obj = safeweights.load(path)
    else:
        # torch needs numpy allowed to read the RNG state, as transformers does.
        with torch.serialization.safe_globals(NUMPY_GLOBALS):
            obj = torch.load(path, weights_only=True, mmap=op == "load_torch_mmap")
    touch(obj)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
print(json.dumps({"seconds": seconds, "cpu": cpu, "before_kib": before, "bytes": sum(t.numel() * t.element_size() for t in tensors(obj))}))
"""

VARIANTS = {
    "save_safeweights": "safeweights.save(durable=False)",
    "save_safeweights_durable": "safeweights.save (default: fsync file and directory)",
    "save_torch": "torch.save",
    "save_torch_nocrc": "torch.save without CRC32 (set_crc32_options(False))",
    "save_floor": "write floor: the same tensor bytes, preallocated, os.pwrite each, no structure/temp file/fsync",
    "save_dd": "dd if=/dev/zero bs=1M, same size, same directory",
    "save_touch": "no file: first write to new memory of the same size, one byte per 4 KiB page",
    "load_safeweights": "safeweights.load + touch",
    "load_torch": "torch.load(weights_only=True) + touch",
    "load_torch_mmap": "torch.load(weights_only=True, mmap=True) + touch",
}


def run(op: str, path: Path, size: int) -> dict:
    """One child: its own timing, and the peak anonymous memory above what it
    held before the operation."""
    argv = [bench_common.PYTHON, "-c", CHILD, op, str(path), str(size)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    # Sampling starts when the operation does (after imports and the state).
    ready = process.stdout.readline() if process.stdout else ""
    if ready.strip() != "ready":
        process.wait()
        raise SystemExit(f"{op} failed before it started (exit code {process.returncode})")
    peak = 0
    while process.poll() is None:
        peak = max(peak, bench_common._status_kib(process.pid, ("RssAnon",)).get("RssAnon", 0))
        time.sleep(0.002)
    out = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"{op} failed with exit code {process.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["extra_bytes"] = max(0, peak - result["before_kib"]) * 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="tensor bytes in the state (default 1024)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    size = args.size_mib << 20
    load_average = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=bench_common.ROOT / "target") as tmp:
        directory = Path(tmp)
        files = {"safeweights": directory / "state.safetensors", "torch": directory / "state.pt"}
        # The files the loads read, written once.
        run("save_safeweights", files["safeweights"], size)
        run("save_torch", files["torch"], size)
        results: dict[str, list[dict]] = {op: [] for op in VARIANTS}
        for round_ in range(args.rounds):
            order = list(VARIANTS)
            order = order[round_ % len(order) :] + order[: round_ % len(order)]
            for op in order:
                if op.startswith("save"):
                    target = directory / f"out-{op}"
                    bench_common.sync()
                    target.unlink(missing_ok=True)
                else:
                    target = files["safeweights" if op == "load_safeweights" else "torch"]
                results[op].append(run(op, target, size))
                if op.startswith("save"):
                    target.unlink(missing_ok=True)  # one saved copy on disk at a time
        sizes = {name: path.stat().st_size for name, path in files.items()}
    nbytes = results["load_safeweights"][0]["bytes"]
    lines = report(results, nbytes, sizes, args, load_average)
    if args.no_write:
        print("\n".join(lines))
    else:
        bench_common.publish("train-state", lines)


def report(results: dict, nbytes: int, sizes: dict, args: argparse.Namespace, load_average: float) -> list[str]:
    def median(op: str) -> float:
        return statistics.median(r["seconds"] for r in results[op])

    def spread(op: str) -> str:
        times = [r["seconds"] for r in results[op]]
        return f"{min(times):.3f} to {max(times):.3f} s"

    def memory(op: str) -> str:
        return bench_common.gib(int(statistics.median(r["extra_bytes"] for r in results[op])))

    import numpy
    import torch

    import safeweights

    lines = [
        "## Training state: `safeweights.save`/`load` against `torch.save`/`torch.load` (`bench/train_state_bench.py`)",
        "",
        f"Machine: {bench_common.machine()}; torch {torch.__version__}, numpy {numpy.__version__}, safeweights"
        f" {safeweights.__version__}. A training state of {bench_common.gib(nbytes)} of tensors (a 32-layer model, its"
        " AdamW state, a cosine scheduler, python/numpy/torch RNG states, a config with numpy scalars); files:"
        f" {bench_common.gib(sizes['safeweights'])} (safeweights), {bench_common.gib(sizes['torch'])} (torch)."
        f" {args.rounds} interleaved rounds, each operation in its own process, warm page cache; 1-minute load"
        f" average {load_average:.2f} at the start.",
        "",
        "| work | safeweights | torch | speedup (medians) | target | safeweights spread | torch spread |",
        "|---|---|---|---|---|---|---|",
    ]
    pairs = [
        ("save, no fsync on either side", "save_safeweights", "save_torch", "at least 3x"),
        ("save, ours durable (the default) vs torch.save (no fsync)", "save_safeweights_durable", "save_torch", "none: not like for like"),
        ("load + touch vs torch.load(weights_only=True)", "load_safeweights", "load_torch", "at least 10x"),
        ("load + touch vs torch.load(weights_only=True, mmap=True)", "load_safeweights", "load_torch_mmap", "at least 1.5x"),
    ]
    for label, ours, theirs, target in pairs:
        lines.append(
            f"| {label} | {median(ours):.3f} s | {median(theirs):.3f} s | {median(theirs) / median(ours):.2f}x"
            f" | {target} | {spread(ours)} | {spread(theirs)} |"
        )
    # What bounds the save here: the copy into the page cache, which every
    # writer pays; torch.save pays it too, plus its CRC32 and pickling. CPU
    # time (all threads, and dd's process) is the work done, which a busy
    # machine stretches less than the wall clock.
    def cpu(op: str) -> float:
        return statistics.median(r["cpu"] for r in results[op])

    lines += [
        "",
        "What bounds a save on this machine (same run; every row writes the same bytes into a new file):",
        "",
        "| writer | median | spread | torch.save / this | CPU time (median) | torch.save / this, CPU |",
        "|---|---|---|---|---|---|",
    ]
    for op in ("save_touch", "save_floor", "save_dd", "save_safeweights", "save_torch_nocrc", "save_torch"):
        lines.append(
            f"| {VARIANTS[op]} | {median(op):.3f} s | {spread(op)} | {median('save_torch') / median(op):.2f}x"
            f" | {cpu(op):.3f} s | {cpu('save_torch') / cpu(op):.2f}x |"
        )
    lines += [
        "",
        f"`safeweights.save(durable=False)` takes {median('save_safeweights') / median('save_floor'):.2f}x the write"
        f" floor's time ({cpu('save_safeweights') / cpu('save_floor'):.2f}x its CPU time). No writer can beat"
        f" torch.save by more than {median('save_torch') / median('save_floor'):.2f}x in time here: both pay the"
        " kernel's copy into the page cache; torch.save adds its CRC32, its pickling and writes into blocks it did not"
        f" preallocate (torch.save without its CRC32: {median('save_torch_nocrc'):.3f} s).",
    ]
    reporting = bench_common.free_page_reporting()
    if reporting:
        lines += [
            "",
            f"{reporting} Writing one byte into each page of new memory the size of the state takes"
            f" {median('save_touch'):.3f} s here ({spread('save_touch')}), with no file at all: that much of every"
            " save's time may be the host's, whoever saves.",
        ]
    lines += ["", "| operation | peak anonymous memory during it (median) |", "|---|---|"]
    lines += [f"| {VARIANTS[op]} | {memory(op)} |" for op in VARIANTS]
    cores = os.cpu_count() or 1
    if load_average > cores:
        lines += [
            "",
            f"**The machine was busy (load average {load_average:.2f} on {cores} cores): these numbers are noisy"
            " (see the spread); rerun on a quiet machine, at `--size-mib 1024`, for the real ones.**",
        ]
    lines += [
        "",
        "Memory is what the process allocated during the operation, above what it held before (for saves, the state"
        " itself is not counted); mapped file pages are page cache and not counted. torch.load reads the numpy RNG"
        " state inside `torch.serialization.safe_globals` with numpy's reconstructors, as transformers does.",
    ]
    return lines


if __name__ == "__main__":
    main()
