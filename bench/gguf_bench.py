"""Benchmarks GGUF conversions against the gguf package, in one run.

- GGUF to safetensors F16: a Q4_0 and a Q8_0 file, `safeweights convert
  model.gguf out.safetensors --dtype f16` against GGUFReader +
  gguf.quants.dequantize + safetensors' save_file.
- safetensors F32 to GGUF Q8_0: `safeweights convert in.safetensors
  out.gguf --outtype q8_0` against GGUFWriter + gguf.quants.quantize.

Runs are interleaved (reference, ours, reference, ours...) so that load on
a shared machine hits both alike; the table gives the median time, the
spread (min-max) and the peak memory (anonymous, and RSS with mapped
pages) of each. Inputs are random valid blocks (finite scales) and random
normal F32 values; every file lives in a temporary directory removed at
the end.

Each round also times writing the output's size of zeros with `dd` (the
floor any converter has on this machine: the kernel copying the bytes into
the page cache), and the table gives each side's CPU time (user + system,
from the kernel's accounting of the child), which load disturbs less than
wall time. The load average is printed with the table.

Usage: .venv/bin/python bench/gguf_bench.py [--size-mib 1024] [--rounds 3] [--workdir DIR]
Writes the "gguf" section of BENCHMARKS.md (<!-- gguf:start --> ... <!-- gguf:end -->).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np

from bench_common import CLI, PYTHON, gib, machine, publish, run_child, sync

ROW = 4096  # elements per row

REFERENCE_TO_SAFETENSORS = """
import sys, numpy as np, gguf
from safetensors.numpy import save_file
reader = gguf.GGUFReader(sys.argv[1])
out = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float16) for t in reader.tensors}
save_file(out, sys.argv[2])
"""

REFERENCE_TO_GGUF = """
import sys, gguf
from safetensors import safe_open
writer = gguf.GGUFWriter(sys.argv[2], "llama")
with safe_open(sys.argv[1], "np") as f:
    for name in f.keys():
        q = gguf.quants.quantize(f.get_tensor(name), gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
"""


def random_blocks(rng, qtype, rows: int) -> np.ndarray:
    """Random blocks of `qtype` whose f16 scales are finite and small."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows, ROW // block, size), dtype=np.uint8)
    scale = (rng.random((rows, ROW // block)) * 0.01).astype(np.float16).view(np.uint8).reshape(rows, -1, 2)
    data[..., :2] = scale
    return data.reshape(rows, -1)


def make_gguf(path: Path, qtype, total: int, rng) -> None:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[qtype]
    row_bytes = ROW // block * size
    rows_per_tensor = max(1, (64 << 20) // row_bytes)
    writer = gguf.GGUFWriter(str(path), "llama")
    written, i = 0, 0
    while written < total:
        rows = min(rows_per_tensor, max(1, (total - written) // row_bytes))
        writer.add_tensor(f"t{i}.weight", random_blocks(rng, qtype, rows), raw_dtype=qtype)
        written += rows * row_bytes
        i += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def make_f32(path: Path, total: int, rng) -> None:
    from safetensors.numpy import save_file

    rows = max(1, (64 << 20) // (ROW * 4))
    tensors, written, i = {}, 0, 0
    while written < total:
        n = min(rows, max(1, (total - written) // (ROW * 4)))
        tensors[f"t{i}.weight"] = rng.standard_normal((n, ROW), dtype=np.float32)
        written += n * ROW * 4
        i += 1
    save_file(tensors, str(path))


def timed(argv: list[str]) -> tuple[float, int, int, float]:
    """`run_child` plus the child's CPU time (user + system) in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, anon, rss = run_child(argv)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, anon, rss, cpu


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    import gguf

    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--note", default="", help="a line about the machine's load, printed with the table")
    args = parser.parse_args()
    assert CLI.exists(), f"build the CLI first: cargo build --release -p safeweights-cli ({CLI})"
    total = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="gguf-bench-", dir=args.workdir))
    rng = np.random.default_rng(0)
    Q = gguf.GGMLQuantizationType
    try:
        inputs = {"q4_0": work / "q4_0.gguf", "q8_0": work / "q8_0.gguf", "f32": work / "f32.safetensors"}
        make_gguf(inputs["q4_0"], Q.Q4_0, total, rng)
        make_gguf(inputs["q8_0"], Q.Q8_0, total, rng)
        make_f32(inputs["f32"], total, rng)
        out_st, out_gguf = work / "out.safetensors", work / "out.gguf"
        tasks = {}
        for name in ("q4_0", "q8_0"):
            src = str(inputs[name])
            tasks[f"{name.upper()} GGUF to safetensors F16"] = (
                [PYTHON, "-c", REFERENCE_TO_SAFETENSORS, src, str(out_st)],
                [str(CLI), "--no-fsync", "convert", src, str(out_st), "--dtype", "f16", "--force"],
                inputs[name].stat().st_size,
            )
        tasks["F32 safetensors to GGUF Q8_0"] = (
            [PYTHON, "-c", REFERENCE_TO_GGUF, str(inputs["f32"]), str(out_gguf)],
            [str(CLI), "--no-fsync", "convert", str(inputs["f32"]), str(out_gguf), "--outtype", "q8_0", "--force"],
            inputs["f32"].stat().st_size,
        )
        results = {label: ([], [], [], []) for label in tasks}
        out_sizes = {}
        load_before = load()
        for _ in range(args.rounds):
            for label, (ref, ours, _) in tasks.items():
                # gguf-py's writers never fsync, so the speedup compares
                # against ours with --no-fsync; the durable default (fsync
                # before the rename) is timed beside it.
                durable = [a for a in ours if a != "--no-fsync"]
                runs = ((ref, results[label][0]), (ours, results[label][1]), (durable, results[label][2]))
                for argv, bucket in runs:
                    sync()
                    bucket.append(timed(argv))
                    for out in (out_st, out_gguf):
                        if out.exists():
                            out_sizes[label] = out.stat().st_size
                        out.unlink(missing_ok=True)
                # The floor: the same number of bytes written by dd.
                blocks = math.ceil(out_sizes[label] / (8 << 20))
                sync()
                dd = ["dd", "if=/dev/zero", f"of={out_st}", "bs=8M", f"count={blocks}", "status=none"]
                results[label][3].append(timed(dd))
                out_st.unlink(missing_ok=True)
        lines = [
            f"GGUF conversions, {gib(total)} inputs, median of {args.rounds} interleaved runs "
            f"(spread min-max); {machine()}. Load average (1, 5, 15 min) {load_before} before, {load()} after.",
        ]
        if args.note:
            lines.append(args.note)
        lines += [
            "",
            "Both sides write without fsync (gguf-py never syncs; safeweights with --no-fsync); the durable"
            " column is safeweights' default (fsync before the rename), for reference. CPU is user + system"
            " time of the process. dd: writing the output's size of zeros (`dd bs=8M`), the floor for any"
            " converter here.",
            "",
            "| work | input / output | reference (gguf-py) | safeweights --no-fsync | speedup | CPU reference / safeweights "
            "| safeweights durable | dd of the output | peak memory reference | peak memory safeweights |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        med = lambda runs, i=0: statistics.median(r[i] for r in runs)
        spread = lambda runs: f"{min(r[0] for r in runs):.2f}-{max(r[0] for r in runs):.2f}"
        mem = lambda runs: f"{gib(max(r[1] for r in runs))} anon / {gib(max(r[2] for r in runs))} RSS"
        for label, (ref_runs, our_runs, durable_runs, dd_runs) in results.items():
            size = tasks[label][2]
            t_ref, t_ours = med(ref_runs), med(our_runs)
            lines.append(
                f"| {label} | {gib(size)} / {gib(out_sizes[label])} | {t_ref:.2f} s ({spread(ref_runs)}) "
                f"| {t_ours:.2f} s ({spread(our_runs)}) | {t_ref / t_ours:.1f}x "
                f"| {med(ref_runs, 3):.2f} s / {med(our_runs, 3):.2f} s "
                f"| {med(durable_runs):.2f} s ({spread(durable_runs)}) | {med(dd_runs):.2f} s ({spread(dd_runs)}) "
                f"| {mem(ref_runs)} | {mem(our_runs)} |"
            )
        publish("gguf", lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
