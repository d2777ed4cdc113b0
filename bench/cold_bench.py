"""Loading from a cold page cache, writing at disk speed, and headers of a
million tensors: safeweights against the reference `safetensors`, the Run:ai
model streamer and `dd`, in one run, with a chart of every ratio against its
target. Writes the `cold` section of BENCHMARKS.md and bench/plots/ratios.svg.

    .venv/bin/python bench/cold_bench.py [--gib 1] [--repeat 5] [--tensors 1000000]

Run as root: cold rows drop the page cache (`sync; echo 3 >
/proc/sys/vm/drop_caches`) before every run, which slows everything else on
the machine a little while it runs. Build first: `cargo build --release -p
safeweights-cli` and the Python package in release mode.

Honesty rules: every row runs its contestants interleaved (ours, theirs,
ours, theirs...), `--repeat` times; the table gives the median time of each
and the median of the per-round ratios with its range over the rounds; the
load average is recorded before and after. Each timed load runs in a fresh
process that reports the time of the work alone (no interpreter start), so
no run inherits another's mappings. Files live in a temporary directory
that is removed at the end.
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

PYTHON = sys.executable
CLI = str(bench_common.CLI)
PLOT = bench_common.ROOT / "bench" / "plots" / "ratios.svg"
PAGE = 4096

# ---- the work each child process times -------------------------------------

CHILD = r"""
import sys, time
work, path = sys.argv[1], sys.argv[2]
if not work.startswith("keys"):  # header rows time the interpreter start: keep it bare
    import torch

def touch(tensors):
    total = 0
    for t in tensors:
        flat = t.reshape(-1).view(torch.uint8)
        total += int(flat[::4096].sum()) if flat.numel() else 0
    return total

if work == "load_ours":
    import safeweights.torch as lib
elif work in ("load_ref", "get_ref", "keys_ref"):
    import safetensors.torch as lib
    from safetensors import safe_open
elif work in ("get_ours", "keys_ours"):
    from safeweights import safe_open
elif work == "load_runai":
    from runai_model_streamer import SafetensorsStreamer
elif work == "convert_ref":
    import safetensors.torch as lib
start = time.perf_counter()
if work in ("load_ours", "load_ref"):
    touch(lib.load_file(path).values())
elif work in ("get_ours", "get_ref"):
    with safe_open(path, framework="pt") as f:
        touch(f.get_tensor(k) for k in f.keys())
elif work == "load_runai":
    with SafetensorsStreamer() as streamer:
        streamer.stream_file(path)
        touch(t for _, t in streamer.get_tensors())
elif work in ("keys_ours", "keys_ref"):
    with safe_open(path, framework="np") as f:
        assert len(f.keys()) > 0
elif work == "convert_ref":
    state = torch.load(path, mmap=True, weights_only=True)
    lib.save_file(state, sys.argv[3])
print(time.perf_counter() - start)
"""


def child_seconds(work: str, *args: str) -> float:
    """Runs one timed piece of work in a fresh interpreter."""
    out = subprocess.run([PYTHON, "-c", CHILD, work, *args], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def wall_seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measured(argv: list[str]) -> tuple[float, float, int]:
    """Runs a whole process: (wall seconds, CPU seconds, peak RSS bytes).
    CPU time is the kernel's accounting of the child (wait4); the peak is
    its VmHWM, sampled every 2 ms, because wait4's ru_maxrss also counts
    the pages of this (large) process that the child had between fork and
    exec."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    peak = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, bench_common._status_kib(process.pid, ("VmHWM",)).get("VmHWM", 0) * 1024)
        time.sleep(0.002)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, argv)
    return wall, usage.ru_utime + usage.ru_stime, peak


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


# ---- rows -------------------------------------------------------------------


class Row:
    """One comparison: our samples, theirs, the target for theirs/ours
    (or ours/theirs for rates), and how to read it."""

    def __init__(self, label: str, against: str, target: float, ours: list[float], theirs: list[float],
                 kind: str = "speedup", nbytes: int = 0):
        self.label, self.against, self.target, self.kind = label, against, target, kind
        self.ours, self.theirs, self.nbytes = ours, theirs, nbytes

    def ratios(self) -> list[float]:
        if self.kind == "memory":  # ours / header size: lower is better
            return self.ours
        return [t / o for o, t in zip(self.ours, self.theirs)]

    def summary(self) -> tuple[float, float, float]:
        ratios = self.ratios()
        return statistics.median(ratios), min(ratios), max(ratios)

    def met(self) -> bool:
        median = self.summary()[0]
        return median <= self.target if self.kind == "memory" else median >= self.target


def interleaved(repeat: int, contestants: dict, before=None) -> dict[str, list[float]]:
    """Runs every contestant once per round, in turn, `repeat` rounds."""
    samples: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(repeat):
        for name, run in contestants.items():
            if before:
                before()
            samples[name].append(run())
    return samples


def make_file(path: Path, total: int, count: int) -> int:
    import safetensors.torch
    import torch

    per = total // count // 4
    tensors = {f"layers.{i}.weight": torch.full((per,), float(i)) for i in range(count)}
    safetensors.torch.save_file(tensors, path)
    return per * 4 * count


def cold_rows(directory: Path, total: int, repeat: int, rows: list[Row]) -> None:
    path = directory / "model.safetensors"
    nbytes = make_file(path, total, 200)
    p = str(path)
    s = interleaved(repeat, {
        "ours": lambda: child_seconds("load_ours", p),
        "ref": lambda: child_seconds("load_ref", p),
        "runai": lambda: child_seconds("load_runai", p),
        "dd": lambda: wall_seconds(["dd", f"if={p}", "of=/dev/null", "bs=16M", "status=none"]),
    }, before=drop_caches)
    rows.append(Row("cold load_file + touch", "safetensors", 1.5, s["ours"], s["ref"], nbytes=nbytes))
    rows.append(Row("cold load_file + touch", "Run:ai streamer", 1.0, s["ours"], s["runai"], nbytes=nbytes))
    rows.append(Row("cold load_file + touch", "dd (read rate)", 0.9, s["ours"], s["dd"], nbytes=nbytes))
    s = interleaved(repeat, {
        "ours": lambda: child_seconds("get_ours", p),
        "ref": lambda: child_seconds("get_ref", p),
    }, before=drop_caches)
    rows.append(Row("cold safe_open + get_tensor each + touch", "safetensors", 1.5, s["ours"], s["ref"], nbytes=nbytes))
    s = interleaved(repeat, {
        "ours": lambda: child_seconds("load_ours", p),
        "ref": lambda: child_seconds("load_ref", p),
    })
    rows.append(Row("warm load_file + touch", "safetensors", 1.0, s["ours"], s["ref"], nbytes=nbytes))
    checked = directory / "checked.safetensors"
    subprocess.run(["cp", p, str(checked)], check=True)
    subprocess.run([CLI, "checksum", str(checked), "--write"], check=True, stdout=subprocess.DEVNULL)
    s = interleaved(repeat, {
        "stats": lambda: wall_seconds([CLI, "stats", p]),
        "verify": lambda: wall_seconds([CLI, "verify", str(checked)]),
        "dd": lambda: wall_seconds(["dd", f"if={p}", "of=/dev/null", "bs=16M", "status=none"]),
    }, before=drop_caches)
    rows.append(Row("cold CLI stats", "dd (read rate)", 0.5, s["stats"], s["dd"], nbytes=nbytes))
    rows.append(Row("cold CLI verify", "dd (read rate)", 0.5, s["verify"], s["dd"], nbytes=nbytes))
    checked.unlink()
    convert_rows(directory, path, repeat, rows, nbytes)
    path.unlink()


def convert_rows(directory: Path, source: Path, repeat: int, rows: list[Row], nbytes: int) -> None:
    import safetensors.torch
    import torch

    pt = directory / "model.pt"
    torch.save(safetensors.torch.load_file(source), pt)
    ours, theirs = directory / "ours.safetensors", directory / "theirs.safetensors"

    def before():
        ours.unlink(missing_ok=True)
        theirs.unlink(missing_ok=True)
        drop_caches()

    s = interleaved(repeat, {
        "ours": lambda: wall_seconds([CLI, "convert", str(pt), str(ours), "--no-fsync"]),
        # As users run it, like bench/pickle_bench.py: the whole process,
        # interpreter start and `import torch` included.
        "ref": lambda: wall_seconds([PYTHON, "-c", CHILD, "convert_ref", str(pt), str(theirs)]),
        "ref_work": lambda: child_seconds("convert_ref", str(pt), str(theirs)),
    }, before=before)
    rows.append(Row("cold convert (verified), whole processes", "torch.load(mmap) + save_file", 3.0,
                    s["ours"], s["ref"], nbytes=nbytes))
    rows.append(Row("cold convert (verified), theirs without interpreter start and imports",
                    "torch.load(mmap) + save_file", 1.0, s["ours"], s["ref_work"], nbytes=nbytes))
    for f in (pt, ours, theirs):
        f.unlink(missing_ok=True)


def write_rows(directory: Path, total: int, repeat: int, rows: list[Row]) -> None:
    """save_file against dd writing the same bytes, both without fsync,
    each after a sync and the deletion of its old copy (see python_bench)."""
    import safeweights.torch
    import torch

    count = 200
    per = total // count // 4
    tensors = {f"layers.{i}.weight": torch.full((per,), float(i)) for i in range(count)}
    nbytes = per * 4 * count
    ours, dd = directory / "save.safetensors", directory / "dd.bin"

    def timed(run, target):
        def go():
            bench_common.sync()
            target.unlink(missing_ok=True)
            start = time.perf_counter()
            run()
            return time.perf_counter() - start
        return go

    s = interleaved(repeat, {
        "ours": timed(lambda: safeweights.torch.save_file(tensors, ours, durable=False), ours),
        "dd": timed(lambda: subprocess.run(["dd", "if=/dev/zero", f"of={dd}", f"bs={1 << 20}",
                                            f"count={nbytes >> 20}"], check=True, capture_output=True), dd),
    })
    rows.append(Row("save_file", "dd (write rate)", 0.9, s["ours"], s["dd"], nbytes=nbytes))
    ours.unlink(missing_ok=True)
    dd.unlink(missing_ok=True)


def header_file(path: Path, count: int) -> int:
    """A file of `count` F32 tensors of 4 elements, header written directly."""
    names = sorted(f"t{i}" for i in range(count))
    parts = [f'"{n}":{{"dtype":"F32","shape":[4],"data_offsets":[{16 * i},{16 * i + 16}]}}'
             for i, n in enumerate(names)]
    header = ("{" + ",".join(parts) + "}").encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        f.truncate(8 + len(header) + 16 * count)
    return len(header)


def header_rows(directory: Path, count: int, repeat: int, rows: list[Row]) -> int:
    path = directory / "many.safetensors"
    size = header_file(path, count)
    p = str(path)
    ref = [PYTHON, "-c", CHILD, "keys_ref", p]
    contestants = {
        "ref": lambda: measured(ref),
        "validate": lambda: measured([CLI, "validate", p]),
        "keys": lambda: measured([PYTHON, "-c", CHILD, "keys_ours", p]),
        "inspect_json": lambda: measured([CLI, "inspect", "--json", p]),
        "inspect": lambda: measured([CLI, "inspect", p]),
    }
    s = interleaved(repeat, contestants)
    seconds = {k: [r[0] for r in v] for k, v in s.items()}
    cpu = {k: [r[1] for r in v] for k, v in s.items()}
    peak = {k: [r[2] / size for r in v] for k, v in s.items()}
    n = f"{count:,}"
    for key, label, target in [("validate", "CLI validate", 10.0), ("keys", "Python safe_open + keys()", 10.0),
                               ("inspect_json", "CLI inspect --json", 1.0), ("inspect", "CLI inspect", 1.0)]:
        rows.append(Row(f"{label}, {n} tensors (wall)", "safe_open + keys()", target, seconds[key], seconds["ref"]))
        rows.append(Row(f"{label}, {n} tensors (CPU)", "safe_open + keys()", target, cpu[key], cpu["ref"]))
    for key, label in [("validate", "CLI validate"), ("inspect_json", "CLI inspect --json"),
                       ("inspect", "CLI inspect"), ("keys", "Python safe_open + keys()"),
                       ("ref", "reference safe_open + keys()")]:
        rows.append(Row(f"{label}: peak memory / header size", "header size", 2.0, peak[key], peak[key], kind="memory"))
    path.unlink()
    return size


# ---- report -----------------------------------------------------------------


def table(rows: list[Row]) -> list[str]:
    lines = ["| work | against | ours (median) | theirs (median) | ratio: median (range) | target | met |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        median, low, high = r.summary()
        if r.kind == "memory":
            lines.append(f"| {r.label} | {r.against} | {median:.2f}x | | {median:.2f}x ({low:.2f} to {high:.2f}) "
                         f"| at most {r.target:g}x | {'yes' if r.met() else '**no**'} |")
            continue
        rate = f" ({r.nbytes / statistics.median(r.ours) / 1e9:.2f} GB/s)" if r.nbytes else ""
        lines.append(f"| {r.label} | {r.against} | {statistics.median(r.ours):.3f} s{rate} | "
                     f"{statistics.median(r.theirs):.3f} s | {median:.2f}x ({low:.2f} to {high:.2f}) | "
                     f"at least {r.target:g}x | {'yes' if r.met() else '**no**'} |")
    return lines


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.label}\nvs {r.against}" if r.kind != "memory" else f"{r.label}\n(lower is better)" for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.5))
    for y, r in enumerate(rows):
        median, low, high = r.summary()
        colour = "#2a9d3f" if r.met() else "#d1495b"
        ax.barh(y, median, color=colour, height=0.6)
        ax.errorbar(median, y, xerr=[[median - low], [high - median]], color="black", capsize=3, lw=1)
        ax.plot([r.target, r.target], [y - 0.4, y + 0.4], color="black", lw=2.5)
        ax.text(max(median, r.target) * 1.05, y, f"{median:.2f}x (target {r.target:g}x)", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ratio (speedup: theirs / ours; memory: ours / header size), log scale; "
                  "black tick: target, bar: median, whisker: range")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tensors", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None, help="directory on the disk to test (default: a temporary one)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md and the plot")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("cold rows drop the page cache: run as root")
    total = int(args.gib * (1 << 30))
    load_before = os.getloadavg()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        directory = Path(name)
        cold_rows(directory, total, args.repeat, rows)
        write_rows(directory, total, args.repeat, rows)
        header_size = header_rows(directory, args.tensors, args.repeat, rows)
    load_after = os.getloadavg()
    import runai_model_streamer  # noqa: F401  (its version, for the record)
    import safetensors

    from importlib.metadata import version

    title = (f"{bench_common.machine()}; {bench_common.gib(total)} in 200 tensors; {args.repeat} interleaved rounds; "
             f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    lines = [
        "## Cold cache, writes and million-tensor headers (`bench/cold_bench.py`)",
        "",
        f"Machine: {bench_common.machine()}; safetensors {safetensors.__version__}, runai-model-streamer "
        f"{version('runai-model-streamer')}. {bench_common.gib(total)} of float32 in 200 tensors (written by the "
        f"reference); a header of {args.tensors:,} tensors ({header_size / 1e6:.1f} MB). {args.repeat} rounds, "
        "contestants interleaved in each; cold rows drop the page cache before every run. 1-minute load average "
        f"{load_before[0]:.2f} at the start and {load_after[0]:.2f} at the end.",
        "",
        *table(rows),
        "",
        "Ratio: the other side's time over ours (above 1: we are faster), the median of the per-round ratios and "
        "their range; for `dd` rows it is our rate as a fraction of dd's. Memory rows: the process's peak RSS over "
        "the header's size. Load and get_tensor rows touch one byte per 4 KiB page of every tensor; each runs in a "
        "fresh process that times the work alone. Header rows time whole processes, as users run them "
        "(interpreter start included for Python). The Run:ai streamer reads with its default settings.",
    ]
    body = "\n".join(lines)
    print(body)
    print(json.dumps({r.label + " / " + r.against: r.summary() for r in rows}, indent=1))
    if not args.no_write:
        plot(rows, PLOT, title)
        bench_common.write_section("cold", body)


if __name__ == "__main__":
    main()
