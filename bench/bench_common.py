"""Helpers shared by the Python-driven benchmarks: timing child processes,
measuring their peak memory, and updating one section of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
PYTHON = sys.executable
CLI = ROOT / "target" / "release" / "safeweights"


def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Runs a command to completion; returns (seconds, peak RSS in bytes).

    Each measured command runs in its own process so that its peak memory
    is its own (RUSAGE_CHILDREN's maxrss is the largest child so far, so we
    fork a fresh helper per measurement)."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "dt = time.perf_counter() - t\n"
        "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    )
    out = subprocess.run(
        [PYTHON, "-c", wrapper, *argv],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    ).stdout.split()
    return float(out[0]), int(out[1])


def best_of(n: int, argv: list[str], before=None) -> tuple[float, int]:
    """Best time and the peak memory of that best run over `n` runs."""
    results = []
    for _ in range(n):
        if before:
            before()
        results.append(run_child(argv))
    return min(results)


def sync() -> None:
    os.sync()
    time.sleep(0.5)


def machine() -> str:
    cores = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {cores} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def write_section(name: str, body: str) -> None:
    """Replaces the text between `<!-- name:start -->` and `<!-- name:end -->`
    in BENCHMARKS.md (appending the section when it is missing)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)
