"""`safeweights.dcp` in real multi-process jobs: 4 cpu ranks (gloo),
a tiny model and its AdamW state sharded with FSDP2's `fully_shard`,
saved through `SafeweightsStorageWriter` (`dcp.save` and
`dcp.async_save`), then loaded into 4 ranks (bit-identical resume), 2
ranks, 1 rank and a plain process; one rank failing during a save. The
jobs themselves are in `dcp_jobs.py`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.checkpoint")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import dcp_jobs  # noqa: E402

from safeweights.dcp import IncompleteCheckpointError, SafeweightsStorageReader  # noqa: E402

# Generous: 4 processes importing torch on a busy 2-core machine. A hang
# (a rank waiting forever on one that failed) ends the test at this limit.
JOB_TIMEOUT_S = 420

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="needs dependency: torch.distributed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(world_size: int, job, *args) -> None:
    """Runs `job` on `world_size` gloo ranks; fails (killing them) if they
    do not all finish within JOB_TIMEOUT_S."""
    context = mp.start_processes(
        dcp_jobs.run, args=(world_size, _free_port(), job, args), nprocs=world_size, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{job.__name__} on {world_size} ranks did not finish in {JOB_TIMEOUT_S}s (a hang)")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The 4-rank job's directories, once for the module."""
    root = tmp_path_factory.mktemp("dcp")
    dirs = {name: str(root / name) for name in ("ckpt", "async", "failed")}
    _spawn(4, dcp_jobs.save_resume_and_fail, dirs["ckpt"], dirs["async"], dirs["failed"], str(root))
    return root, dirs


def test_four_ranks_save_and_resume_bit_identically(saved):
    root, dirs = saved
    names = sorted(os.listdir(dirs["ckpt"]))
    assert names == ["__0_0.safetensors", "__1_0.safetensors", "__2_0.safetensors", "__3_0.safetensors", "safeweights.dcp.json"]
    # load_and_check ran on all 4 ranks inside the job and left its marker.
    assert (root / "loaded-4").read_text() == "ok"


def test_loads_into_two_ranks(saved):
    root, dirs = saved
    _spawn(2, dcp_jobs.load_and_check, dirs["ckpt"], str(root), False)
    assert (root / "loaded-2").read_text() == "ok"


def test_async_save_loads_into_one_rank(saved):
    root, dirs = saved
    _spawn(1, dcp_jobs.load_and_check, dirs["async"], str(root), False)
    assert (root / "loaded-1").read_text() == "ok"


def test_loads_into_a_plain_process(saved):
    root, dirs = saved
    # In a subprocess, so that nothing of this process's torch.distributed
    # state can help.
    code = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import dcp_jobs; dcp_jobs.load_plain({dirs['ckpt']!r}, {str(root)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=JOB_TIMEOUT_S)


def test_a_rank_failing_during_save_fails_every_rank_and_leaves_no_checkpoint(saved):
    root, dirs = saved
    # Every rank got torch's CheckpointException naming rank 2's error.
    for rank in range(4):
        assert "No space left on device (injected)" in (root / f"raised-{rank}").read_text()
    assert not os.path.exists(os.path.join(dirs["failed"], "safeweights.dcp.json"))
    with pytest.raises(IncompleteCheckpointError, match="did not finish"):
        SafeweightsStorageReader(dirs["failed"]).read_metadata()


def test_our_checkpoint_directory_scans_safe(saved):
    _, dirs = saved
    result = subprocess.run(
        [sys.executable, "-m", "safeweights", "scan", dirs["ckpt"], "--json"], capture_output=True, text=True, timeout=120
    )
    import json

    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    verdicts = {os.path.basename(f["path"]): f["verdict"] for f in report["files"]}
    assert verdicts and set(verdicts.values()) == {"safe"}, verdicts
    assert all(f["format"] != "pickle" for f in report["files"])


def test_consolidation_of_tensors_split_along_any_dimension(saved, tmp_path):
    from safeweights import safe_open
    from safeweights.dcp import consolidate

    root, _ = saved
    written = consolidate(str(root / "columns"), str(tmp_path / "out"), max_shard_size="1KB")
    assert written[-1].endswith("model.safetensors.index.json")
    expected = dcp_jobs.column_tensors()
    with safe_open(str(tmp_path / "out"), framework="pt") as f:
        assert sorted(f.keys()) == sorted(expected)
        for name, tensor in expected.items():
            got = f.get_tensor(name)
            assert got.dtype == tensor.dtype and torch.equal(got, tensor), name


def test_convert_of_torch_default_format_joins_chunks_along_any_dimension(saved, tmp_path):
    """The column job saved again by torch's FileSystemWriter (pickle):
    `safeweights convert` joins the 4 ranks' chunks without unpickling,
    and agrees with torch's own `dcp_to_torch_save`."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    import safeweights

    root, _ = saved
    ckpt = str(root / "columns-torch")
    out = tmp_path / "columns.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "safeweights", "convert", ckpt, str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    got = safeweights.load(str(out))
    dcp_to_torch_save(ckpt, str(tmp_path / "oracle.pt"))
    oracle = torch.load(tmp_path / "oracle.pt", weights_only=True)
    expected = dcp_jobs.column_tensors()
    assert list(got) == list(oracle) and sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
        assert torch.equal(got[name], oracle[name]), name


def test_cli_on_a_four_rank_checkpoint(saved, tmp_path):
    import json

    _, dirs = saved

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "safeweights", *args], capture_output=True, text=True, timeout=120)

    inspected = cli("inspect", dirs["ckpt"], "--json")
    assert inspected.returncode == 0, inspected.stderr
    report = json.loads(inspected.stdout)
    assert report["world_size"] == 4 and len(report["files"]) == 4
    by_name = {t["name"]: t for t in report["tensors"]}
    assert len(by_name["model.0.weight"]["chunks"]) == 4 and by_name["model.0.weight"]["shape"] == [16, 8]
    assert {v["name"]: v["type"] for v in report["values"]}["step"] == "int"
    assert cli("validate", dirs["ckpt"]).returncode == 0
    assert cli("verify", dirs["ckpt"]).returncode == 0
    consolidated = cli("consolidate", dirs["ckpt"], str(tmp_path / "hf"), "--max-shard-size", "2KB")
    assert consolidated.returncode == 0, consolidated.stderr
    assert cli("validate", str(tmp_path / "hf")).returncode == 0
