"""torch's default DCP format (`FileSystemWriter`: a pickled `.metadata`
and `.distcp` files of back-to-back `torch.save` zips), read without
unpickling anything: `scan` judges each `.distcp` item at the range the
metadata records (a payload hidden in one is still dangerous), and
`safeweights convert DIR OUT` writes what `dcp_to_torch_save` then
`torch.load(weights_only=True)` gives. The multi-rank (chunked) case is
in `test_dcp_distributed.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")

from torch.distributed.checkpoint.format_utils import dcp_to_torch_save  # noqa: E402

import safeweights  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from exact import assert_exact  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


class _Payload:
    """What an attacker saves as a value: its pickle calls os.system."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _state():
    torch.manual_seed(0)
    return {
        "model": {
            "embed": torch.randn(16, 8),
            "norm": torch.randn(8, dtype=torch.bfloat16),
            "count": torch.tensor(5, dtype=torch.int64),
            "mask": torch.tensor([True, False, True]),
        },
        "optim": [{"exp_avg": torch.ones(2, 2)}, {"exp_avg": torch.zeros(3)}],
        "step": 7,
        "cfg": {"lr": 3e-4, "betas": (0.9, 0.95), "name": "tiny", "nothing": None, "flags": [True, 2]},
        "size": torch.Size([2, 3]),
    }


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "safeweights", *args], capture_output=True, text=True, timeout=120
    )


def _oracle(directory, tmp_path):
    """torch's own answer: consolidate, then the weights-only loader."""
    path = tmp_path / "oracle.pt"
    dcp_to_torch_save(str(directory), str(path))
    return torch.load(path, weights_only=True)


def test_payload_hidden_in_a_distcp_item_is_dangerous(tmp_path):
    ckpt = tmp_path / "ckpt"
    dcp.save({"w": torch.ones(3), "evil": _Payload()}, checkpoint_id=str(ckpt), no_dist=True)
    result = _cli("scan", str(ckpt), "--json")
    report = json.loads(result.stdout)
    by_name = {os.path.basename(f["path"]): f for f in report["files"]}
    distcp = by_name["__0_0.distcp"]
    assert distcp["verdict"] == "dangerous", report
    assert any("system" in f["subject"] and "evil" in (f.get("member") or "") for f in distcp["findings"]), distcp
    assert result.returncode == 1


def test_a_distcp_with_bytes_the_metadata_does_not_cover_stays_strict(tmp_path):
    ckpt = tmp_path / "ckpt"
    dcp.save({"w": torch.ones(3), "step": 1}, checkpoint_id=str(ckpt), no_dist=True)
    with open(ckpt / "__0_0.distcp", "ab") as f:
        torch.save({"hidden": torch.ones(1)}, f)
    report = json.loads(_cli("scan", str(ckpt), "--json").stdout)
    by_name = {os.path.basename(f["path"]): f for f in report["files"]}
    assert by_name["__0_0.distcp"]["verdict"] == "dangerous", report


def test_convert_equals_torch_consolidation(tmp_path):
    ckpt = tmp_path / "ckpt"
    dcp.save(_state(), checkpoint_id=str(ckpt), no_dist=True)
    out = tmp_path / "out.safetensors"
    result = _cli("convert", str(ckpt), str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tensors"] == 6
    assert_exact(safeweights.load(str(out)), _oracle(ckpt, tmp_path))
    # Any safetensors reader opens it, by dotted names.
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(out))["model.embed"], _state()["model"]["embed"])


def test_convert_into_shards(tmp_path):
    ckpt = tmp_path / "ckpt"
    dcp.save(_state(), checkpoint_id=str(ckpt), no_dist=True)
    out = tmp_path / "out"
    result = _cli("convert", str(ckpt), str(out) + "/", "--max-shard-size", "300B")
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors.index.json").is_file()
    assert len(list(out.glob("model-*-of-*.safetensors"))) > 1
    assert_exact(safeweights.load(str(out)), _oracle(ckpt, tmp_path))


def test_convert_refuses_a_payload_and_writes_nothing(tmp_path):
    ckpt = tmp_path / "ckpt"
    dcp.save({"w": torch.ones(3), "evil": _Payload()}, checkpoint_id=str(ckpt), no_dist=True)
    out = tmp_path / "out.safetensors"
    result = _cli("convert", str(ckpt), str(out))
    assert result.returncode == 1, result.stderr
    assert "posix" in result.stderr and "evil" in result.stderr, result.stderr
    assert not out.exists()


def test_convert_names_a_truncated_distcp(tmp_path):
    ckpt = tmp_path / "ckpt"
    dcp.save(_state(), checkpoint_id=str(ckpt), no_dist=True)
    path = ckpt / "__0_0.distcp"
    os.truncate(path, os.path.getsize(path) - 10)
    result = _cli("convert", str(ckpt), str(tmp_path / "out.safetensors"))
    assert result.returncode != 0
    assert "__0_0.distcp" in result.stderr, result.stderr
    assert not (tmp_path / "out.safetensors").exists()
