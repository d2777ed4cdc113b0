"""Helpers shared by the Python-driven benchmarks: timing child processes,
measuring their peak memory, and updating one section of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
PYTHON = sys.executable
CLI = ROOT / "target" / "release" / "safeweights"


def _status_kib(pid: int, fields: tuple[str, ...]) -> dict[str, int]:
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in fields:
                    values[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return values


def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """Runs a command to completion; returns (seconds, peak anonymous
    memory, peak RSS), memory in bytes.

    Peak RSS (the kernel's high-water mark) counts pages of memory-mapped
    files too, which are page cache the kernel can drop at any time; peak
    anonymous memory (RssAnon, sampled every 2 ms) is the memory the
    process allocated itself, which is what a conversion really needs."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    peak_anon = peak_rss = 0
    while process.poll() is None:
        values = _status_kib(process.pid, ("RssAnon", "VmHWM"))
        peak_anon = max(peak_anon, values.get("RssAnon", 0) * 1024)
        peak_rss = max(peak_rss, values.get("VmHWM", 0) * 1024)
        time.sleep(0.002)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, argv)
    return seconds, peak_anon, peak_rss


def best_of(n: int, argv: list[str], before=None) -> tuple[float, int, int]:
    """The best run of `n`: (seconds, peak anonymous memory, peak RSS)."""
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


def free_page_reporting() -> str:
    """A sentence on whether this (virtual) machine hands freed memory back
    to its host at once (virtio-balloon free page reporting): then every
    first write to a page, page-cache pages of a new file included, takes a
    fault in the host, which every writer pays per byte. Empty when not."""
    features = sorted(Path("/sys/bus/virtio/drivers/virtio_balloon").glob("virtio*/features"))
    reporting = any(len(f.read_text()) > 5 and f.read_text()[5] == "1" for f in features)
    if not reporting:
        return ""
    params = Path("/sys/module/page_reporting/parameters")

    def param(name: str) -> str:
        path = params / name
        return path.read_text().strip() if path.exists() else "?"

    return (
        "This machine is a virtual machine whose balloon device reports freed memory to its host"
        f" (virtio-balloon free page reporting: blocks of order {param('page_reporting_order')},"
        f" after {param('min_free_ms')} ms; {int(param('reported_kib') or 0) / 2**20:,.0f} GiB reported since boot),"
        " so the first write to a page, page-cache pages of a new file included, takes a fault in the host."
    )


def gib(n: int) -> str:
    """Bytes as GiB, or MiB below 1 GiB."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def write_section(name: str, body: str, markdown: Path = BENCHMARKS_MD) -> None:
    """Replaces the text between `<!-- name:start -->` and `<!-- name:end -->`
    in `markdown` (appending the section when it is missing)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = markdown.read_text() if markdown.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    markdown.write_text(text)


def ratio_table(rows: list[tuple[str, float, float, int]]) -> list[str]:
    """Markdown table lines for `(label, reference seconds, our seconds,
    bytes)` rows: both times, the speedup and our rate."""
    lines = [
        "| work | reference | safeweights | speedup | safeweights rate |",
        "|---|---|---|---|---|",
    ]
    for label, t_ref, t_ours, nbytes in rows:
        lines.append(f"| {label} | {t_ref:.3f} s | {t_ours:.3f} s | {t_ref / t_ours:.2f}x | {nbytes / t_ours / 1e9:.2f} GB/s |")
    return lines


def publish(name: str, lines: list[str]) -> None:
    """Prints a section and writes it into BENCHMARKS.md."""
    body = "\n".join(lines)
    print(body)
    write_section(name, body)
