"""Differential oracle: what the real loaders do with a file, next to what we do.

A scanner is only as good as its agreement with the loaders people really
use. This module runs those loaders (`pickle.load`, `torch.load` with
`weights_only=False`, `np.load(allow_pickle=True)`, gzip plus pickle) on a
file in a sandboxed subprocess and reports, per loader, whether the file's
payload ran and, when it loaded, the value it gave. Test payloads only ever
create a file named `MARKER` in the current directory (`touch_payload()`
builds one); each loader runs in a fresh directory of its own, so the
marker's presence there says exactly which loader ran the payload.

The API (all a test needs):

- `run_loaders(paths, loaders=LOADERS)`: `{path: {loader: LoaderResult}}`,
  every file and loader in one worker process (restarted after a crash or a
  hang, so one hostile file cannot hide another).
- `check(path, results, expect=...)`: runs our side (`safeweights scan
  --json`, `safeweights convert`, `load_checkpoint`, `safeweights.load` if
  it exists) and asserts the rules: when any real loader ran the payload,
  scan says dangerous and every one of ours refuses; when none did, every
  value we return equals the real loader's. Returns an `Ours` record.
- `reference_value(results)`: the value our loaders must match.
- `plain(value)`: the comparable form of a loaded value (containers,
  scalars, tensors and arrays by dtype, shape and bytes).
- `touch_payload()`: the command payloads run (`touch MARKER`).

The subprocess is this file run as a script (`python -I oracle.py`), with
a scrubbed environment, its own working directory, a file-size limit, and
a timeout per loader.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

MARKER = "MARKER"
"""The file a test payload creates in its working directory."""

LOADERS = ("pickle", "pickle_stream", "torch", "numpy", "gzip_pickle", "sevenzip")
"""The real loaders run on every file (`sevenzip`: extract with py7zr, then
load every member as a user would: torch.load, np.load or pickle.load)."""

ZIP_VIEWS = "zip_views"
"""Not a loader: what Python's `zipfile` and torch's own reader
(`torch._C.PyTorchFileReader`) see in a zip (run it through `run_loaders`
with `loaders=[ZIP_VIEWS]`; its value is `zip_views()`'s)."""

TIMEOUT_S = 60.0
"""Seconds one loader may take on one file."""

WORKER_START_TIMEOUT_S = 300.0
"""Seconds a fresh worker may take to import torch and numpy (not counted in
any job's timeout: on a busy machine the import alone takes seconds)."""

REPO = Path(__file__).resolve().parents[3]


def touch_payload() -> str:
    """The shell command a payload runs: creates MARKER in the cwd."""
    return f"touch {MARKER}"


@dataclass
class LoaderResult:
    """What one real loader did with one file."""

    loader: str
    ran_payload: bool
    loaded: bool
    value: Any = None
    """`plain()` of the loaded value when `loaded`."""
    error: str = ""
    """The exception (or 'timeout', 'crashed') when not `loaded`."""


# ---------------------------------------------------------------- values


def plain(value: Any, _depth: int = 0) -> Any:
    """A JSON-able form of a loaded value that two loaders can be compared
    on: mappings become `["dict", [[k, v], ...]]` (order kept), lists and
    tuples keep their kind, tensors and numpy arrays become
    `["array", dtype, shape, base64 bytes]` with the dtype spelled the same
    for both libraries, Parameters are their tensor, other objects their
    type and repr."""
    if _depth > 100:
        return ["deep"]
    deeper = _depth + 1
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, (bytes, bytearray)):
        return ["bytes", base64.b64encode(bytes(value)).decode()]
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return ["array", str(t.dtype).replace("torch.", ""), list(t.shape), base64.b64encode(raw).decode()]
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return ["object-array", list(value.shape), [plain(v, deeper) for v in value.reshape(-1).tolist()]]
        raw = np.ascontiguousarray(value).tobytes()
        return ["array", value.dtype.name, list(value.shape), base64.b64encode(raw).decode()]
    if np is not None and isinstance(value, np.generic):
        return plain(value.item(), deeper)
    if isinstance(value, dict):
        return ["dict", [[plain(k, deeper), plain(v, deeper)] for k, v in value.items()]]
    if isinstance(value, list):
        return ["list", [plain(v, deeper) for v in value]]
    if isinstance(value, tuple):
        return ["tuple", [plain(v, deeper) for v in value]]
    if isinstance(value, (set, frozenset)):
        return ["set", sorted((json.dumps(plain(v, deeper)) for v in value))]
    kind = type(value)
    return ["object", f"{kind.__module__}.{kind.__qualname__}", repr(value)]


# ---------------------------------------------------------------- worker side


def _load(loader: str, path: str) -> Any:
    import pickle

    if loader == "pickle":
        with open(path, "rb") as f:
            return pickle.load(f)
    if loader == "pickle_stream":
        # Every consecutive pickle, as a reader of a legacy torch stream
        # (or any hand-rolled loader) would unpickle them.
        values = []
        with open(path, "rb") as f:
            while True:
                try:
                    values.append(pickle.load(f))
                except EOFError:
                    return values
    if loader == "gzip_pickle":
        import gzip

        with gzip.open(path, "rb") as f:
            return pickle.load(f)
    if loader == "torch":
        import torch

        return torch.load(path, weights_only=False, map_location="cpu")
    if loader == "sevenzip":
        return _extract_and_load(path)
    if loader == ZIP_VIEWS:
        return zip_views(path)
    if loader == "numpy":
        import numpy as np

        loaded = np.load(path, allow_pickle=True)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {name: loaded[name] for name in loaded.files}
        return loaded
    raise ValueError(f"unknown loader {loader!r}")


def _load_member(path: str) -> Any:
    """An extracted file, loaded the way a user would try: torch.load,
    then np.load, then pickle.load; the last error when none loads it."""
    error: BaseException = ValueError("not tried")
    for loader in ("torch", "numpy", "pickle"):
        try:
            return _load(loader, path)
        except Exception as e:  # the next loader may read it
            error = e
    raise error


def _extract_and_load(path: str) -> Any:
    """Extracts a 7z archive with py7zr (what 7-Zip would leave on disk)
    and loads every extracted file; `{relative path: value}`."""
    import py7zr

    out = os.path.abspath("extracted")
    with py7zr.SevenZipFile(path) as archive:
        archive.extractall(out)
    values = {}
    for root, _, files in sorted(os.walk(out)):
        for name in sorted(files):
            member = os.path.join(root, name)
            values[os.path.relpath(member, out)] = _load_member(member)
    return values


def zip_views(path: str) -> Dict[str, Any]:
    """What two real zip readers see: `{"zipfile": [names] or None,
    "zipfile_data_pkl": bytes or None, "torch": [records] or None,
    "torch_data_pkl": bytes or None}` (None: that reader refused the file;
    `*_data_pkl`: the `data.pkl` record it would unpickle). Run it in the
    sandboxed worker: torch's reader is C++ and this input is hostile."""
    import zipfile

    views: Dict[str, Any] = {"zipfile": None, "zipfile_data_pkl": None, "torch": None, "torch_data_pkl": None}
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            views["zipfile"] = names
            pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
            if pkl:
                views["zipfile_data_pkl"] = archive.read(pkl[0])
    except Exception:  # zipfile refused it: it sees no members
        pass
    try:
        import torch

        reader = torch._C.PyTorchFileReader(path)
        records = reader.get_all_records()
        views["torch"] = records
        if "data.pkl" in records:
            views["torch_data_pkl"] = reader.get_record("data.pkl")
    except Exception:  # torch's reader refused it: it sees no members
        pass
    return views


def _worker() -> None:
    """Reads jobs (one JSON line each) from stdin; for each, announces it,
    runs the loader in the job's directory and prints the outcome."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 28, 1 << 28))
    # Import the loaders' libraries before the first job, so a job's timeout
    # measures the load, not torch's import (seconds on a busy machine).
    import numpy  # noqa: F401
    import torch  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        os.chdir(job["cwd"])
        print(json.dumps({"id": job["id"], "started": True}), flush=True)
        try:
            value = plain(_load(job["loader"], job["path"]))
            outcome = {"id": job["id"], "loaded": True, "value": value}
        except BaseException as error:  # a payload may raise anything, SystemExit included
            outcome = {"id": job["id"], "loaded": False, "error": f"{type(error).__name__}: {error}"[:500]}
        print(json.dumps(outcome), flush=True)


# ---------------------------------------------------------------- parent side


def _sandbox_env(home: str) -> Dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "OMP_NUM_THREADS": "1",
        "LC_ALL": "C.UTF-8",
    }


def _run_jobs(jobs: List[dict], home: str, timeout: float) -> Dict[int, dict]:
    """Runs jobs in one worker; returns outcomes by id. A job that hangs or
    kills the worker gets an error outcome and the rest run in a new one."""
    outcomes: Dict[int, dict] = {}
    pending = list(jobs)
    while pending:
        proc = subprocess.Popen(
            [sys.executable, "-I", __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=home,
            env=_sandbox_env(home),
            text=True,
        )
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump(stream=proc.stdout) -> None:
            for out in stream:
                lines.put(out)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        assert proc.stdin is not None
        proc.stdin.write("".join(json.dumps(j) + "\n" for j in pending))
        proc.stdin.close()
        current: Optional[int] = None
        started = lines.get(timeout=WORKER_START_TIMEOUT_S)
        assert started is not None and json.loads(started).get("ready"), f"the oracle worker did not start: {started!r}"
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                proc.kill()
                if current is not None:
                    outcomes[current] = {"loaded": False, "error": "timeout"}
                break
            if line is None:
                if current is not None and current not in outcomes:
                    outcomes[current] = {"loaded": False, "error": "crashed"}
                break
            message = json.loads(line)
            if message.get("started"):
                current = message["id"]
            else:
                outcomes[message["id"]] = message
                current = None
        proc.wait()
        pending = [j for j in pending if j["id"] not in outcomes]
    return outcomes


def run_loaders(
    paths: Iterable[os.PathLike | str], loaders: Iterable[str] = LOADERS, timeout: float = TIMEOUT_S
) -> Dict[str, Dict[str, LoaderResult]]:
    """Runs every real loader on every file, sandboxed. Keys are `str(path)`."""
    paths = [os.path.abspath(p) for p in paths]
    loaders = list(loaders)
    with tempfile.TemporaryDirectory(prefix="sw-oracle-") as home:
        jobs = []
        for i, path in enumerate(paths):
            for loader in loaders:
                cwd = os.path.join(home, f"{i}-{loader}")
                os.mkdir(cwd)
                jobs.append({"id": len(jobs), "path": path, "loader": loader, "cwd": cwd})
        outcomes = _run_jobs(jobs, home, timeout)
        results: Dict[str, Dict[str, LoaderResult]] = {p: {} for p in paths}
        for job in jobs:
            outcome = outcomes[job["id"]]
            results[job["path"]][job["loader"]] = LoaderResult(
                loader=job["loader"],
                ran_payload=os.path.exists(os.path.join(job["cwd"], MARKER)),
                loaded=outcome["loaded"],
                value=outcome.get("value"),
                error=outcome.get("error", ""),
            )
    return results


def payload_ran(results: Dict[str, LoaderResult]) -> List[str]:
    """The loaders that ran the file's payload."""
    return [name for name, r in results.items() if r.ran_payload]


REFERENCE_ORDER = ("torch", "numpy", "pickle", "gzip_pickle", "sevenzip")
"""Whose value counts when several loaders load a file: a legacy torch
stream's first pickle is only its magic number to `pickle.load`."""


def reference_value(results: Dict[str, LoaderResult]) -> Optional[LoaderResult]:
    """The first loader (in REFERENCE_ORDER) that loaded the file cleanly."""
    for name in REFERENCE_ORDER:
        r = results.get(name)
        if r is not None and r.loaded and not r.ran_payload:
            return r
    return None


@dataclass
class Ours:
    """What safeweights did with one file."""

    scan_verdict: str
    scan_json: dict
    convert_rc: int
    convert_wrote: bool
    loaded: Dict[str, Any] = field(default_factory=dict)
    """`plain()` of what each Python loader returned, by loader name."""
    refused: Dict[str, str] = field(default_factory=dict)
    """The exception each Python loader raised, by loader name."""


def cli() -> str:
    """The safeweights binary (SAFEWEIGHTS_CLI, else target/release)."""
    binary = os.environ.get("SAFEWEIGHTS_CLI", str(REPO / "target" / "release" / "safeweights"))
    assert os.access(binary, os.X_OK), f"{binary} missing: run scripts/setup.sh (or set SAFEWEIGHTS_CLI)"
    return binary


def run_ours(path: os.PathLike | str) -> Ours:
    """Runs scan, convert and the Python loaders on `path`."""
    import safeweights
    from safeweights.torch import load_checkpoint

    path = os.fspath(path)
    scan = subprocess.run([cli(), "scan", "--json", path], capture_output=True, text=True, timeout=120)
    assert scan.returncode in (0, 1, 2), scan.stderr
    report = json.loads(scan.stdout)
    with tempfile.TemporaryDirectory(prefix="sw-convert-") as out_dir:
        out = os.path.join(out_dir, "out.safetensors")
        convert = subprocess.run([cli(), "convert", "--json", path, out], capture_output=True, text=True, timeout=120)
        wrote = bool(os.listdir(out_dir))
    ours = Ours(report["verdict"], report, convert.returncode, wrote)
    python_loaders = {"load_checkpoint": load_checkpoint}
    if hasattr(safeweights, "load"):
        python_loaders["safeweights.load"] = safeweights.load
    for name, loader in python_loaders.items():
        try:
            ours.loaded[name] = plain(loader(path))
        except safeweights.SafetensorError as error:
            ours.refused[name] = f"{type(error).__name__}: {error}"
    return ours


def check(path: os.PathLike | str, results: Dict[str, LoaderResult], expect: Optional[str] = None) -> Ours:
    """Asserts that we agree with the real loaders on `path`.

    - If any real loader ran the payload: scan's verdict is `dangerous`,
      convert fails and writes nothing, and every Python loader raises a
      `SafetensorError`.
    - Otherwise, whatever our Python loaders return equals the reference
      value (the first real loader that loaded the file); refusing is allowed.

    `expect="payload"` also asserts that some real loader ran the payload,
    and `expect="benign"` that none did and one loaded it (so a corpus file
    that stopped exercising its class fails instead of passing vacuously).
    """
    ran = payload_ran(results)
    name = os.path.basename(os.fspath(path))
    summary = {k: (r.ran_payload, r.loaded, r.error[:120]) for k, r in results.items()}
    if expect == "payload":
        assert ran, f"{name}: no real loader ran the payload: {summary}"
    elif expect == "benign":
        assert not ran, f"{name}: a real loader ran a payload: {ran}"
        assert reference_value(results) is not None, f"{name}: no real loader loaded it: {summary}"
    ours = run_ours(path)
    if ran:
        assert ours.scan_verdict == "dangerous", f"{name}: {ran} ran the payload, scan says {ours.scan_verdict}: {ours.scan_json}"
        assert ours.convert_rc != 0 and not ours.convert_wrote, f"{name}: {ran} ran the payload, convert accepted it"
        assert not ours.loaded, f"{name}: {ran} ran the payload, {list(ours.loaded)} returned a value"
    else:
        reference = reference_value(results)
        for loader, value in ours.loaded.items():
            assert reference is not None, f"{name}: {loader} loaded what no real loader could: {summary}"
            assert value == reference.value, f"{name}: {loader} differs from {reference.loader}"
    return ours


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker()
