"""Scanner verdicts and scan speed on the crafted-file corpus.

- Verdicts: `safeweights scan`, picklescan, fickling and modelscan on every
  file of the regression corpora (python/tests/hostile/corpus.py: bypass
  classes published against pickle scanners, plus benign files;
  python/tests/hostile/containers.py: zip parser differentials in `.pt`
  and `.npz` files, compressed and nested containers, 7z archives). For each
  class: how many files, and how many each tool calls dangerous,
  suspicious, safe, or fails on. A payload file called safe, or a tool
  error on one, is a miss; a benign file called dangerous is a false alarm.
- Speed: `safeweights scan` of this branch against a baseline binary (the
  main branch's, `--baseline`), runs interleaved, median and spread: the
  corpus directory, a torch zip checkpoint and a legacy one.

Usage: .venv/bin/python bench/scan_bench.py [--baseline PATH] [--runs 7] [--no-write]
Writes the "scan-corpus" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import CLI, PYTHON, ROOT, machine, write_section

sys.path.insert(0, str(ROOT / "python" / "tests" / "hostile"))

TOOLS = ("safeweights", "picklescan", "fickling", "modelscan")

# Each tool runs in one child process over every file and prints a JSON
# map {path: verdict}; verdicts are dangerous, suspicious, safe or error.
PICKLESCAN = """
import json, sys
from picklescan.scanner import scan_file_path, SafetyLevel
out = {}
for path in sys.argv[1:]:
    try:
        r = scan_file_path(path)
        levels = {g.safety for g in r.globals}
        out[path] = ("dangerous" if r.infected_files or SafetyLevel.Dangerous in levels
                     else "error" if r.scan_err
                     else "suspicious" if SafetyLevel.Suspicious in levels else "safe")
    except Exception as e:
        out[path] = "error"
print(json.dumps(out))
"""

FICKLING = """
import json, sys
from fickling.fickle import Pickled
from fickling.analysis import check_safety, Severity
out = {}
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            severity = check_safety(Pickled.load(f)).severity
        out[path] = ("safe" if severity == Severity.LIKELY_SAFE
                     else "dangerous" if severity.value >= Severity.LIKELY_UNSAFE.value else "suspicious")
    except Exception:
        out[path] = "error"
print(json.dumps(out))
"""

MODELSCAN = """
import json, sys
from modelscan.modelscan import ModelScan
out = {}
for path in sys.argv[1:]:
    try:
        report = ModelScan().scan(path)
        severities = {i["severity"] for i in report.get("issues", [])}
        scanned = report.get("summary", {}).get("scanned", {}).get("total_scanned", 0)
        out[path] = ("dangerous" if severities & {"CRITICAL", "HIGH"}
                     else "suspicious" if severities else "safe" if scanned else "error")
    except Exception:
        out[path] = "error"
print(json.dumps(out))
"""


def ours(paths: list[Path], cli: Path) -> dict[str, str]:
    out = {}
    for path in paths:
        run = subprocess.run([str(cli), "scan", "--json", str(path)], capture_output=True, text=True)
        out[str(path)] = json.loads(run.stdout)["verdict"] if run.stdout else "error"
    return out


def python_tool(script: str, paths: list[Path]) -> dict[str, str]:
    run = subprocess.run([PYTHON, "-c", script, *map(str, paths)], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if run.returncode != 0 or not run.stdout.strip():
        print(f"tool failed: {run.stderr[-500:]}", file=sys.stderr)
        return {str(p): "error" for p in paths}
    return json.loads(run.stdout.strip().splitlines()[-1])


OUTCOME = {"payload": "payload runs", "benign": "benign", None: "hostile, no oracle loader opens it"}
"""What the real loaders do with a class's files (a case's `expect`)."""

CONTAINER_CLASSES = {"zip": "zip ambiguity", "container": "compressed/nested", "7z": "7z", "benign": "benign containers"}


def label_of(case) -> str:
    """A case's row: the corpus's class, or the container corpus's, with
    the zip differentials split into torch checkpoints and `.npz` files."""
    if not getattr(case, "container", False):
        return case.cls
    label = CONTAINER_CLASSES[case.cls]
    if case.cls == "zip":
        label += " .npz" if case.name.endswith(".npz") else " .pt"
    return label


def build_containers(out: Path) -> list:
    """The container corpus as (case, path), cases marked as such."""
    import containers

    built = []
    for path, case in containers.corpus(str(out)):
        case.container = True
        built.append((case, Path(path)))
    return built


def verdict_table(built) -> list[str]:
    paths = [p for _, p in built]
    verdicts = {
        "safeweights": ours(paths, CLI),
        "picklescan": python_tool(PICKLESCAN, paths),
        "fickling": python_tool(FICKLING, paths),
        "modelscan": python_tool(MODELSCAN, paths),
    }
    classes: dict[tuple[str, str], list[str]] = {}
    for case, path in built:
        classes.setdefault((label_of(case), case.expect), []).append(str(path))
    lines = [
        "| class | files | " + " | ".join(TOOLS) + " |",
        "|---|---|" + "---|" * len(TOOLS),
    ]
    for (cls, expect), files in classes.items():
        cells = []
        for tool in TOOLS:
            counts = {v: sum(verdicts[tool][f] == v for f in files) for v in ("dangerous", "suspicious", "safe", "error")}
            cells.append(" / ".join(str(counts[v]) for v in ("dangerous", "suspicious", "safe", "error")))
        label = f"{cls} ({OUTCOME[expect]})"
        lines.append(f"| {label} | {len(files)} | " + " | ".join(cells) + " |")
    payloads = {str(p) for c, p in built if c.expect == "payload"}
    missed = {
        tool: sorted(Path(f).name for f, v in verdicts[tool].items() if v in ("safe", "error") and f in payloads)
        for tool in TOOLS
    }
    lines.append("")
    lines.append("Cells: dangerous / suspicious / safe / error. Payload files called safe (or that the tool fails on):")
    lines.append("")
    for tool in TOOLS:
        lines.append(f"- {tool}: {len(missed[tool])}" + (f" ({', '.join(missed[tool])})" if missed[tool] and len(missed[tool]) <= 12 else ""))
    return lines


def timed(cli: Path, target: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(cli), "scan", "--json", str(target)], capture_output=True)
    return time.perf_counter() - start


def speed_table(targets: dict[str, Path], baseline: Path, runs: int) -> list[str]:
    lines = [
        "| scan of | baseline (main) | this branch | ratio |",
        "|---|---|---|---|",
    ]
    for label, target in targets.items():
        base, mine = [], []
        for _ in range(runs):  # interleaved, so load drifts hit both alike
            base.append(timed(baseline, target))
            mine.append(timed(CLI, target))

        def show(xs: list[float]) -> str:
            return f"{statistics.median(xs) * 1e3:.1f} ms ({min(xs) * 1e3:.1f} to {max(xs) * 1e3:.1f})"

        ratio = statistics.median(mine) / statistics.median(base)
        lines.append(f"| {label} | {show(base)} | {show(mine)} | {ratio:.2f}x |")
    return lines


def speed_inputs(workdir: Path, corpus_dir: Path, containers_dir: Path) -> dict[str, Path]:
    import torch

    state = {f"layer{i}.weight": torch.randn(256, 256) for i in range(200)}
    zipped, legacy = workdir / "model.pt", workdir / "legacy.pt"
    torch.save(state, zipped)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    return {
        f"the corpus ({len(list(corpus_dir.iterdir()))} files)": corpus_dir,
        # The baseline reports 7z archives without opening them: slower here is expected.
        f"the container corpus ({len(list(containers_dir.iterdir()))} files, 7z opened here only)": containers_dir,
        f"torch zip checkpoint, 200 tensors ({zipped.stat().st_size >> 20} MiB)": zipped,
        f"legacy checkpoint, 200 tensors ({legacy.stat().st_size >> 20} MiB)": legacy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=Path("/work/main/target/release/safeweights"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from corpus import build_all

    with tempfile.TemporaryDirectory() as tmp:
        built = build_all(Path(tmp) / "corpus") + build_containers(Path(tmp) / "containers")
        lines = [
            "## Scanner against crafted files (`bench/scan_bench.py`)",
            "",
            f"Machine: {machine()}; numbers taken on a shared machine under load.",
            "The corpora are generated by `python/tests/hostile/corpus.py` and `containers.py` (payloads only",
            "touch a marker file; the differential tests check each one against the real loaders). Files carry",
            "the extension an attacker would give them (`.pkl`, `.pt`, `.npy`, `.npz`, `.7z`), since some tools",
            "go by name. 'hostile, no oracle loader opens it': crafted files that none of the oracle's loaders",
            "opens (ambiguous zips torch refuses, bzip2/xz pickles, nested archives, encrypted 7z); the least",
            "verdict the tests require of `scan` on them is suspicious or dangerous.",
            "",
        ]
        lines += verdict_table(built)
        if args.baseline.exists():
            lines += ["", f"Scan speed, {args.runs} interleaved runs each, median (min to max), process start included:", ""]
            lines += speed_table(speed_inputs(Path(tmp), Path(tmp) / "corpus", Path(tmp) / "containers"), args.baseline, args.runs)
        lines += ["", "Reproduce: `.venv/bin/python bench/scan_bench.py` (after `scripts/setup.sh`)."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("scan-corpus", body)


if __name__ == "__main__":
    main()
