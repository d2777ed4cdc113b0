"""What durable saves cost: save_file with `durable=True` (the default:
fsync of the file before its rename, of the directory after) against
`durable=False`, and the same for a sharded save_checkpoint-style write.

    .venv/bin/python bench/durability_bench.py [--mib 64 256] [--rounds 9] [--no-write]

Runs are interleaved (durable, fast, durable, fast, ...) so both see the
same disk and page-cache state; each row gives the median and the spread
(min to max) of `--rounds` runs. The file is deleted and os.sync() called
before every run, so dirty pages of an earlier run are not flushed on our
clock. Results go to the `durability` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common  # noqa: E402

from safeweights import TensorSpec  # noqa: E402
from safeweights._safeweights_rust import serialize_sharded  # noqa: E402
from safeweights.numpy import save_file  # noqa: E402


def timed(run, before) -> float:
    before()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleaved(rounds: int, runs: dict, before) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(timed(run, before))
    return times


def cell(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms ({min(values) * 1000:.1f}–{max(values) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sw-durability-", dir=os.environ.get("BENCH_DIR")))
    rows = []
    try:
        for mib in args.mib:
            array = np.ones(mib << 18, dtype=np.float32)
            path = work / "model.safetensors"
            shards = work / "shards"
            raw = array.view(np.uint8)
            quarter = raw.nbytes // 4
            parts = [raw[i * quarter : (i + 1) * quarter] for i in range(4)]
            spec = {
                f"w{i}": TensorSpec(dtype="uint8", shape=[quarter], data_ptr=p.ctypes.data, data_len=quarter)
                for i, p in enumerate(parts)
            }

            def fresh():
                if path.exists():
                    path.unlink()
                shutil.rmtree(shards, ignore_errors=True)
                os.sync()

            times = interleaved(
                args.rounds,
                {
                    "file durable": lambda: save_file({"w": array}, path),
                    "file fast": lambda: save_file({"w": array}, path, durable=False),
                    "shards durable": lambda: serialize_sharded(spec, str(shards), quarter),
                    "shards fast": lambda: serialize_sharded(spec, str(shards), quarter, durable=False),
                },
                fresh,
            )
            for kind, label in (("file", f"save_file, {mib} MiB"), ("shards", f"4 shards + index, {mib} MiB")):
                durable, fast = times[f"{kind} durable"], times[f"{kind} fast"]
                cost = statistics.median(durable) - statistics.median(fast)
                rows.append(f"| {label} | {cell(durable)} | {cell(fast)} | {cost * 1000:+.1f} ms |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "## Durability (`bench/durability_bench.py`)",
        "",
        f"{bench_common.machine()}; {args.rounds} interleaved rounds, median (min–max); the file removed",
        "and `os.sync()` before each run. `durable=True` (the default) fsyncs each file before its rename",
        "and the directory after it; `durable=False` (CLI `--no-fsync`) does neither.",
        "",
        "| write | durable (default) | durable=False | cost of durability |",
        "|---|---|---|---|",
        *rows,
    ]
    if args.no_write:
        print("\n".join(lines))
    else:
        bench_common.publish("durability", lines)


if __name__ == "__main__":
    main()
