"""`safeweights.dcp` in one process (`no_dist=True`): exact values and
types, sharding into several files, consolidation, interop with torch's
`HuggingFaceStorageWriter`/`HuggingFaceStorageReader`, and the typed
errors for missing, truncated, corrupt and mixed-up shards. The
multi-rank jobs are in `test_dcp_distributed.py`."""

from __future__ import annotations

import collections
import datetime
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")

from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter  # noqa: E402
from torch.distributed.checkpoint.api import CheckpointException  # noqa: E402

import safeweights  # noqa: E402
from safeweights import safe_open  # noqa: E402
from safeweights.dcp import (  # noqa: E402
    ChecksumMismatchError,
    IncompleteCheckpointError,
    MissingShardError,
    PickledCheckpointError,
    SafeweightsStorageReader,
    SafeweightsStorageWriter,
    ShardMismatchError,
    TruncatedShardError,
    consolidate,
)

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def _state():
    torch.manual_seed(0)
    return {
        "model": {
            "embed": torch.randn(64, 16),
            "norm": torch.randn(16, dtype=torch.bfloat16),
            "count": torch.tensor(5, dtype=torch.int64),
            "mask": torch.tensor([True, False, True]),
        },
        "step": 7,
        "config": {
            "lr": 3e-4,
            "betas": (0.9, 0.95),
            "name": "tiny",
            "when": datetime.date(2026, 1, 2),
            "recent": collections.deque([1.5, 2.5], maxlen=4),
            "loss": np.float64(0.25),
        },
        "pair": (torch.arange(3), "with a tensor inside"),
    }


def _template():
    return {
        "model": {
            "embed": torch.zeros(64, 16),
            "norm": torch.zeros(16, dtype=torch.bfloat16),
            "count": torch.tensor(0, dtype=torch.int64),
            "mask": torch.zeros(3, dtype=torch.bool),
        },
        "step": None,
        "config": dict.fromkeys(["lr", "betas", "name", "when", "recent", "loss"]),
        "pair": None,
    }


def _save(path, state=None, **options):
    dcp.save(_state() if state is None else state, storage_writer=SafeweightsStorageWriter(str(path), **options), no_dist=True)


def _load(path, template=None, **options):
    template = _template() if template is None else template
    dcp.load(template, storage_reader=SafeweightsStorageReader(str(path), **options), no_dist=True)
    return template


def _failure(excinfo):
    """The error a rank raised, out of torch's CheckpointException."""
    (failure,) = excinfo.value.failures.values()
    error, _traceback = failure
    return error


def _assert_same_state(loaded, expected):
    for key, tensor in expected["model"].items():
        got = loaded["model"][key]
        assert got.dtype == tensor.dtype and torch.equal(got, tensor), key
    assert loaded["step"] == 7 and type(loaded["step"]) is int
    for key, value in expected["config"].items():
        assert loaded["config"][key] == value and type(loaded["config"][key]) is type(value), key
    assert torch.equal(loaded["pair"][0], expected["pair"][0]) and loaded["pair"][1] == expected["pair"][1]
    assert type(loaded["pair"]) is tuple


def test_round_trip_exact_values_and_types(tmp_path):
    _save(tmp_path)
    _assert_same_state(_load(tmp_path, verify=True), _state())


def test_files_are_plain_safetensors_without_pickle(tmp_path):
    _save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["__0_0.safetensors", "safeweights.dcp.json"]
    document = json.loads((tmp_path / "safeweights.dcp.json").read_text())
    assert document["state"]["step"]["object"]["value"] == {"version": 2, "root": 7}
    # The reference opens the shard; every tensor is there by its name.
    from safetensors import safe_open as reference_open

    with reference_open(str(tmp_path / "__0_0.safetensors"), framework="pt") as f:
        assert torch.equal(f.get_tensor("model.embed"), _state()["model"]["embed"])
        metadata = f.metadata()
        keys = set(f.keys())
    # Every tensor has its digest (the tuple's tensor is one of them).
    assert set(json.loads(metadata["safeweights.xxh3_128"])) == keys
    assert {"model.embed", "model.norm", "model.count", "model.mask"} < keys
    assert json.loads(metadata["DCP_SHARDING_INFO"])["model.embed"] == {"saved_offsets": [0, 0]}


def test_max_shard_size_splits_a_rank_into_files(tmp_path):
    _save(tmp_path, max_shard_size=2048, thread_count=2)
    shards = sorted(n for n in os.listdir(tmp_path) if n.endswith(".safetensors"))
    assert len(shards) >= 2 and shards[0] == "__0_0.safetensors"
    for name in shards:
        assert os.path.getsize(tmp_path / name) < 2048 + 4096 + 1024  # the largest tensor alone is 4 KiB
    _assert_same_state(_load(tmp_path), _state())


def test_durable_false_and_no_checksums(tmp_path):
    _save(tmp_path, durable=False, checksums=False)
    _assert_same_state(_load(tmp_path), _state())
    with pytest.raises(CheckpointException) as excinfo:
        _load(tmp_path, verify=True)
    assert isinstance(_failure(excinfo), ChecksumMismatchError)
    assert "stores no checksums" in str(_failure(excinfo))


def test_resharded_slices_read_only_their_range(tmp_path):
    """A load whose destination is a chunk of the saved tensor (as a rank
    of another world size would get) reads exactly that box."""
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.metadata import MetadataIndex
    from torch.distributed.checkpoint.planner import LoadItemType, LoadPlan, ReadItem

    _save(tmp_path)
    reader = SafeweightsStorageReader(str(tmp_path))
    metadata = reader.read_metadata()
    reader.set_up_storage_reader(metadata, True)
    destination = torch.zeros(10, 6)
    item = ReadItem(
        type=LoadItemType.TENSOR,
        dest_index=MetadataIndex("embed_part"),
        dest_offsets=torch.Size([0, 0]),
        storage_index=MetadataIndex("model.embed", [0, 0]),
        storage_offsets=torch.Size([20, 5]),
        lengths=torch.Size([10, 6]),
    )
    planner = DefaultLoadPlanner()
    planner.set_up_planner({"embed_part": destination}, metadata, True)
    reader.read_data(LoadPlan([item]), planner).wait()
    assert torch.equal(destination, _state()["model"]["embed"][20:30, 5:11])


def test_consolidate_to_hugging_face_layout(tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    _save(ckpt)
    written = consolidate(str(ckpt), str(out), max_shard_size=2048)
    names = sorted(os.listdir(out))
    assert "model.safetensors.index.json" in names and len(written) == len(names)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    count = len(set(index["weight_map"].values()))
    assert count >= 2 and all(n.endswith(f"-of-{count:05d}.safetensors") for n in index["weight_map"].values())
    # Full tensors, for every safetensors reader and torch's HF reader.
    loaded = safeweights.load(str(out))
    for key, tensor in _state()["model"].items():
        assert torch.equal(loaded[f"model.{key}"], tensor)
    template = {f"model.{k}": torch.zeros_like(v) for k, v in _state()["model"].items()}
    dcp.load(template, storage_reader=HuggingFaceStorageReader(str(out)), no_dist=True)
    for key, tensor in _state()["model"].items():
        assert torch.equal(template[f"model.{key}"], tensor)
    with pytest.raises(FileExistsError):
        consolidate(str(ckpt), str(out))
    consolidate(str(ckpt), str(out), overwrite=True)


def test_torch_hf_reader_loads_our_directory(tmp_path):
    _save(tmp_path, state={"model": _state()["model"]})
    template = {"model": {k: torch.zeros_like(v) for k, v in _state()["model"].items()}}
    dcp.load(template, storage_reader=HuggingFaceStorageReader(str(tmp_path)), no_dist=True)
    for key, tensor in _state()["model"].items():
        assert torch.equal(template["model"][key], tensor)


def test_we_load_torch_hf_writer_output(tmp_path):
    state = {"model": _state()["model"]}
    state["model"].pop("mask")  # torch's HF reader's dtype table has no bool
    dcp.save(state, storage_writer=HuggingFaceStorageWriter(str(tmp_path)), no_dist=True)
    template = {"model": {k: torch.zeros_like(v) for k, v in state["model"].items()}}
    _load(tmp_path, template)
    for key, tensor in state["model"].items():
        assert torch.equal(template["model"][key], tensor)


def test_torch_hf_writer_with_a_value_is_reported_as_pickle(tmp_path):
    dcp.save({"w": torch.ones(3), "step": 7}, storage_writer=HuggingFaceStorageWriter(str(tmp_path)), no_dist=True)
    with pytest.raises(PickledCheckpointError, match="starts with a torch.save pickle") as excinfo:
        SafeweightsStorageReader(str(tmp_path)).read_metadata()
    assert excinfo.value.path.endswith("model-00001-of-00001.safetensors")
    # Through dcp.load, torch re-raises metadata errors as an AssertionError with our message.
    with pytest.raises(CheckpointException, match="starts with a torch.save pickle"):
        _load(tmp_path, {"w": torch.zeros(3), "step": 0})


def test_torch_default_format_is_reported_as_pickle(tmp_path):
    dcp.save({"w": torch.ones(3), "step": 7}, checkpoint_id=str(tmp_path), no_dist=True)
    with pytest.raises(PickledCheckpointError, match="torch's default DCP format.*SafeweightsStorageWriter"):
        SafeweightsStorageReader(str(tmp_path)).read_metadata()
    with pytest.raises(CheckpointException, match="torch's default DCP format"):
        _load(tmp_path, {"w": torch.zeros(3), "step": 0})


def test_scan_of_torch_default_format_reports_pickle_not_danger(tmp_path):
    dcp.save({"w": torch.ones(3), "step": 7, "cfg": {"a": (1, 2)}}, checkpoint_id=str(tmp_path), no_dist=True)
    result = subprocess.run(
        [sys.executable, "-m", "safeweights", "scan", str(tmp_path), "--json"], capture_output=True, text=True, timeout=120
    )
    report = json.loads(result.stdout)
    by_name = {os.path.basename(f["path"]): f for f in report["files"]}
    assert by_name[".metadata"]["format"] == "pickle"
    assert all(f["verdict"] != "dangerous" for f in report["files"]), report
    # Each .distcp item was judged as the torch.save zip torch loads.
    assert by_name["__0_0.distcp"]["verdict"] == "safe", report
    assert result.returncode == 1  # not safe: it is pickle


def test_missing_shard(tmp_path):
    _save(tmp_path)
    os.unlink(tmp_path / "__0_0.safetensors")
    with pytest.raises(CheckpointException) as excinfo:
        _load(tmp_path)
    error = _failure(excinfo)
    assert isinstance(error, MissingShardError) and isinstance(error, safeweights.CheckpointError)
    assert error.path.endswith("__0_0.safetensors") and "model.embed" in error.tensors
    assert "__0_0.safetensors" in str(error) and "model.embed" in str(error)


def test_truncated_shard(tmp_path):
    _save(tmp_path)
    path = tmp_path / "__0_0.safetensors"
    os.truncate(path, os.path.getsize(path) - 100)
    with pytest.raises(CheckpointException) as excinfo:
        _load(tmp_path)
    error = _failure(excinfo)
    assert isinstance(error, TruncatedShardError) and "truncated" in str(error) and "model.embed" in str(error)


def test_corrupted_shard_fails_verification(tmp_path):
    _save(tmp_path)
    path = tmp_path / "__0_0.safetensors"
    with safe_open(str(path), framework="pt") as f:
        keys = f.offset_keys()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor's data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointException) as excinfo:
        _load(tmp_path, verify=True)
    error = _failure(excinfo)
    assert isinstance(error, ChecksumMismatchError) and error.path.endswith("__0_0.safetensors")
    assert error.tensors == [keys[-1]] and "corrupt" in str(error)


def test_shard_of_another_save(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _save(first)
    _save(second)
    os.replace(second / "__0_0.safetensors", first / "__0_0.safetensors")
    with pytest.raises(CheckpointException) as excinfo:
        _load(first)
    assert isinstance(_failure(excinfo), ShardMismatchError)


def test_rank_count_mismatch(tmp_path):
    _save(tmp_path)
    path = tmp_path / "safeweights.dcp.json"
    document = json.loads(path.read_text())
    document["world_size"] = 4
    path.write_text(json.dumps(document))
    with pytest.raises(CheckpointException) as excinfo:
        _load(tmp_path)
    error = _failure(excinfo)
    assert isinstance(error, ShardMismatchError) and "rank count" in str(error)


def test_failed_save_over_a_checkpoint_leaves_none_that_looks_complete(tmp_path):
    _save(tmp_path)

    class Failing(SafeweightsStorageWriter):
        def _write(self, plan, planner):
            raise OSError(28, "No space left on device (injected)")

    with pytest.raises(CheckpointException):
        dcp.save(_state(), storage_writer=Failing(str(tmp_path)), no_dist=True)
    with pytest.raises(IncompleteCheckpointError, match="did not finish"):
        SafeweightsStorageReader(str(tmp_path)).read_metadata()


def test_a_save_with_fewer_files_removes_the_old_ones(tmp_path):
    _save(tmp_path, max_shard_size=1024)
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".safetensors")]) > 1
    _save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["__0_0.safetensors", "safeweights.dcp.json"]
    _assert_same_state(_load(tmp_path), _state())


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "safeweights", *args], capture_output=True, text=True, timeout=120)


def test_cli_validate_and_verify_report_broken_shards(tmp_path):
    _save(tmp_path, max_shard_size=2048)
    assert _cli("validate", str(tmp_path)).returncode == 0
    assert _cli("verify", str(tmp_path)).returncode == 0
    # A flipped byte: valid structure, but verify names the tensor.
    last = sorted(n for n in os.listdir(tmp_path) if n.endswith(".safetensors"))[-1]
    path = tmp_path / last
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    verified = _cli("verify", str(tmp_path))
    assert verified.returncode == 1 and last in verified.stderr and "does not match its checksum" in verified.stderr
    # A truncated shard: validate says which file and which tensors.
    os.truncate(path, len(data) - 3)
    validated = _cli("validate", str(tmp_path), "--json")
    assert validated.returncode == 1
    report = json.loads(validated.stdout)["files"][0]
    assert report["valid"] is False and last in report["error"] and "when saved" in report["error"]


def test_checksums_are_the_reference_xxh3_128_of_each_tensor(tmp_path):
    import xxhash

    _save(tmp_path)
    with safe_open(str(tmp_path / "__0_0.safetensors"), framework="pt") as f:
        stored = json.loads(f.metadata()["safeweights.xxh3_128"])
        keys = list(f.keys())
        expected = {}
        for key in keys:
            flat = f.get_tensor(key).reshape(-1)
            raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
            expected[key] = xxhash.xxh3_128_hexdigest(raw)
    assert stored == expected and len(stored) == len(keys)
    _assert_same_state(_load(tmp_path, verify=True), _state())


def test_sha256_checksums_of_earlier_saves_still_verify(tmp_path):
    # Checkpoints saved before the writer hashed while writing carry
    # SHA-256 digests under the `checksum` key: rewrite the shard that way.
    import hashlib

    from safetensors.torch import load_file, save_file

    _save(tmp_path)
    path = tmp_path / "__0_0.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    tensors = load_file(str(path))
    del metadata["safeweights.xxh3_128"]
    digests = {k: hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest() for k, t in tensors.items()}
    metadata["safeweights.sha256"] = json.dumps(dict(sorted(digests.items())), separators=(",", ":"))
    save_file(tensors, str(path), metadata=metadata)
    document = json.loads((tmp_path / "safeweights.dcp.json").read_text())
    document["files"]["__0_0.safetensors"]["bytes"] = path.stat().st_size
    (tmp_path / "safeweights.dcp.json").write_text(json.dumps(document))
    _assert_same_state(_load(tmp_path, verify=True), _state())
    assert _cli("verify", str(tmp_path)).returncode == 0
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointException) as excinfo:
        _load(tmp_path, verify=True)
    assert isinstance(_failure(excinfo), ChecksumMismatchError) and "sha256" in str(_failure(excinfo))
    assert _cli("verify", str(tmp_path)).returncode == 1
