"""Concurrency soak: one writer replaces a file and a sharded checkpoint
over and over while many readers load them; every byte a reader gets must
belong to the save its metadata names. Reports wrong bytes (must be 0).

    .venv/bin/python bench/soak.py [--seconds 300] [--readers 6] [--mib 16] [--no-write]

The writer alternates `save_file` (single file) and a sharded save with
`overwrite=True` (four shards and an index, published as a set). Readers
alternate the mmap and pread backends and the two targets; a sharded load
refused because the writer removed an old shard under it is counted as a
refusal (the loader said so, nothing was mixed), never as a load.
Results go to the `soak` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common  # noqa: E402

TENSORS = 4


def fill(generation: int, index: int) -> int:
    return (generation * 7 + index) % 251


def writer(directory: str, mib: int, deadline: float, counter) -> None:
    from safeweights import TensorSpec
    from safeweights._safeweights_rust import serialize_sharded
    from safeweights.numpy import save_file

    each = (mib << 20) // TENSORS
    generation = 0
    while time.monotonic() < deadline:
        generation += 1
        arrays = {f"w{i}": np.full(each, fill(generation, i), dtype=np.uint8) for i in range(TENSORS)}
        metadata = {"generation": str(generation)}
        if generation % 2:
            save_file(arrays, os.path.join(directory, "single.safetensors"), metadata=metadata)
        else:
            spec = {
                name: TensorSpec(dtype="uint8", shape=[each], data_ptr=a.ctypes.data, data_len=a.nbytes)
                for name, a in arrays.items()
            }
            serialize_sharded(spec, os.path.join(directory, "sharded"), each, metadata, overwrite=True)
        counter.value = generation


def reader(directory: str, seed: int, deadline: float, results) -> None:
    from safeweights import SafetensorError, safe_open

    loads = refused = wrong = checked = 0
    turn = seed
    while time.monotonic() < deadline:
        turn += 1
        target = os.path.join(directory, "single.safetensors" if turn % 2 else "sharded")
        backend = "mmap" if (turn // 2) % 2 else "pread"
        if not os.path.exists(target):
            time.sleep(0.01)
            continue
        try:
            with safe_open(target, framework="np", backend=backend) as f:
                generation = int(f.metadata()["generation"])
                for i in range(TENSORS):
                    data = f.get_tensor(f"w{i}")
                    wrong += int(np.count_nonzero(data != fill(generation, i)))
                    checked += data.size
        except (SafetensorError, FileNotFoundError):
            refused += 1
            continue
        loads += 1
    results.put((loads, refused, wrong, checked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--readers", type=int, default=6)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="sw-soak-", dir=os.environ.get("BENCH_DIR"))
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    results = context.Queue()
    deadline = time.monotonic() + args.seconds + 5  # the spawned children start within seconds
    try:
        processes = [context.Process(target=writer, args=(directory, args.mib, deadline, counter))]
        processes += [context.Process(target=reader, args=(directory, i, deadline, results)) for i in range(args.readers)]
        for process in processes:
            process.start()
        totals = [results.get() for _ in range(args.readers)]
        for process in processes:
            process.join()
        if any(p.exitcode != 0 for p in processes):
            raise SystemExit(f"a soak process failed: {[p.exitcode for p in processes]}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    loads, refused, wrong, checked = (sum(column) for column in zip(*totals))
    lines = [
        "## Concurrency soak (`bench/soak.py`)",
        "",
        f"{bench_common.machine()}; {args.seconds:.0f} s, one writer and {args.readers} reader processes,",
        f"{args.mib} MiB per save, alternating a single file and a 4-shard checkpoint, mmap and pread.",
        "",
        "| saves | loads | bytes checked | wrong bytes | sharded loads refused (old shard removed under the reader) |",
        "|---|---|---|---|---|",
        f"| {counter.value} | {loads} | {checked / 2**30:.1f} GiB | **{wrong}** | {refused} |",
    ]
    if args.no_write:
        print("\n".join(lines))
    else:
        bench_common.publish("soak", lines)
    if wrong:
        raise SystemExit(f"{wrong} wrong bytes")


if __name__ == "__main__":
    main()
