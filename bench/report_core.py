#!/usr/bin/env python3
"""Turns criterion's results for the core benchmarks into a Markdown table
and puts it into BENCHMARKS.md between marker comments, leaving the rest of
the file alone.

    report_core.py <criterion dir> <BENCHMARKS.md>
"""
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common  # noqa: E402


ROWS = [
    ("header_parse", "10k", "Header JSON parse, 10k tensors (ours also validates; reference: serde_json only)"),
    ("header_parse", "1M", "Header JSON parse, 1M tensors (ours also validates; reference: serde_json only)"),
    ("validate", "10k", "Parse + validate a file in memory, 10k tensors"),
    ("validate", "1M", "Parse + validate a file in memory, 1M tensors"),
    ("serialize_memory", None, "Serialize to memory"),
    ("serialize_file", None, "Serialize to a file (after `sync`)"),
    ("read_warm_mmap", None, "Open (mmap) + read every byte of every tensor, warm cache"),
    ("read_warm_owned", None, "Open + copy every tensor into owned buffers, warm cache"),
]


def load(criterion, group, impl, param):
    base = os.path.join(criterion, group, impl)
    if param is None:
        params = [p for p in sorted(os.listdir(base)) if not p.startswith(".")] if os.path.isdir(base) else []
        if not params:
            return None
        param = params[0]
    path = os.path.join(base, param, "new")
    try:
        with open(os.path.join(path, "estimates.json")) as f:
            estimates = json.load(f)
        with open(os.path.join(path, "benchmark.json")) as f:
            bench = json.load(f)
    except FileNotFoundError:
        return None
    throughput = (bench.get("throughput") or {}).get("Bytes")
    return param, estimates["median"]["point_estimate"] / 1e9, throughput


def fmt_time(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_rate(result):
    _, seconds, size = result
    if not size:
        return ""
    rate = size / seconds
    return f" ({rate / 2**30:.2f} GiB/s)" if rate >= 2**30 else f" ({rate / 2**20:.0f} MiB/s)"


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rustc = "rustc ?"
    return f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}, {rustc}"


def main():
    criterion, markdown = sys.argv[1], sys.argv[2]
    lines = [
        "## Core library against the reference `safetensors` crate",
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine()}; the reference is the "
        "`safetensors` 0.8 Rust crate, run in the same process and the same run. Medians of "
        "criterion samples. Ratio = reference time / our time (above 1: we are faster).",
        "",
        "| capability | size | ours | reference | ratio |",
        "|---|---|---|---|---|",
    ]
    for group, param, title in ROWS:
        ours = load(criterion, group, "ours", param)
        theirs = load(criterion, group, "reference", param)
        if not ours or not theirs:
            continue
        ratio = theirs[1] / ours[1]
        lines.append(
            f"| {title} | {ours[0]} | {fmt_time(ours[1])}{fmt_rate(ours)} | "
            f"{fmt_time(theirs[1])}{fmt_rate(theirs)} | {ratio:.2f}x |"
        )
    lines += [
        "",
        "Notes: the machine is shared and has 2 cores, so numbers move by 10 to 30% between runs; "
        "writes depend on the page cache's dirty state (each write starts after `sync`). "
        "The write and read rows use 200 F32 tensors.",
        "",
        "Reproduce: `bench/run_core.sh` (about 5 to 10 minutes; `SAFEWEIGHTS_BENCH_MIB=256` for a "
        "smaller model). It runs `cargo bench -p safeweights-bench --bench core` and rewrites this section.",
    ]
    section = "\n".join(lines)
    bench_common.write_section("core-benchmarks", section, Path(markdown))
    print(section)


if __name__ == "__main__":
    main()
