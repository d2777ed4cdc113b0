"""safeweights.save / safeweights.load: torch.save and torch.load's
signatures, every input format, map_location as torch takes it, and hostile
files refused without their payload ever running."""

import io
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from exact import assert_exact
from test_sniff import _reference_file_with_residue

import safeweights

STATE = {"w": torch.arange(6.0).reshape(2, 3), "step": 7, "lr": np.float64(0.1)}


def test_top_level_save_and_load_exist_and_torch_module_keeps_its_meaning():
    import inspect

    assert list(inspect.signature(safeweights.save).parameters) == [
        "obj",
        "f",
        "metadata",
        "max_shard_size",
        "overwrite",
        "durable",
        "storage_options",
    ]
    load_params = inspect.signature(safeweights.load).parameters
    assert list(load_params) == ["f", "map_location", "weights_only", "mmap", "safe_types", "storage_options"]
    assert load_params["storage_options"].kind is inspect.Parameter.KEYWORD_ONLY
    assert load_params["map_location"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    # safeweights.torch.save/load stay the safetensors.torch functions (bytes).
    data = safeweights.torch.save({"a": torch.ones(2)})
    assert torch.equal(safeweights.torch.load(data)["a"], torch.ones(2))


@pytest.mark.parametrize("kind", ["str", "pathlike", "file"])
def test_save_and_load_take_paths_path_likes_and_file_objects(kind, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    if kind == "file":
        with open(path, "wb") as f:
            safeweights.save(STATE, f)
        with open(path, "rb") as f:
            got = safeweights.load(f, "cpu", weights_only=False)
    else:
        target = str(path) if kind == "str" else path
        safeweights.save(STATE, target, metadata={"who": "test"})
        got = safeweights.load(target, None, weights_only=True, mmap=False)
        with safeweights.safe_open(path, "pt") as f:
            assert f.metadata()["who"] == "test"
    assert_exact(got, STATE)
    buffer = io.BytesIO()
    safeweights.save(STATE, buffer)
    buffer.seek(0)
    assert_exact(safeweights.load(buffer), STATE)


def test_the_result_is_a_valid_safetensors_file_for_the_reference(tmp_path):
    from safetensors import safe_open as reference_open

    path = tmp_path / "ckpt.safetensors"
    safeweights.save({"model": {"w": torch.ones(2, 2)}, "numbers": np.arange(3)}, path)
    with reference_open(str(path), "pt") as f:
        assert sorted(f.keys()) == ["model.w", "numbers"]
        assert "safeweights.checkpoint" in f.metadata()


def test_sharded_save_loads_from_the_directory_and_the_index(tmp_path):
    state = {"layers": [torch.full((256,), float(i)) for i in range(8)], "step": 1}
    safeweights.save(state, tmp_path / "ckpt", max_shard_size=2048)
    assert_exact(safeweights.load(tmp_path / "ckpt"), state)
    assert_exact(safeweights.load(tmp_path / "ckpt" / "model.safetensors.index.json"), state)


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_save_files_load_as_torch_load_weights_only(legacy, tmp_path):
    model = torch.nn.Linear(3, 2)
    state = {"model": model.state_dict(), "epoch": 2, "size": torch.Size([1, 2])}
    path = tmp_path / "old.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    got = safeweights.load(path)
    want = torch.load(path, weights_only=True)
    assert got["epoch"] == want["epoch"] and list(got["model"]) == list(want["model"])
    for key in want["model"]:
        assert torch.equal(got["model"][key], want["model"][key])


def test_npy_and_npz_files_load_as_numpy(tmp_path):
    array = np.arange(12, dtype=">i4").reshape(3, 4)
    np.save(tmp_path / "a.npy", array)
    for mmap in (None, False):
        got = safeweights.load(tmp_path / "a.npy", mmap=mmap)
        assert type(got) is np.ndarray and got.dtype == array.dtype and np.array_equal(got, array)
    with open(tmp_path / "a.npy", "rb") as f:
        assert np.array_equal(safeweights.load(f), array)
    np.savez_compressed(tmp_path / "b.npz", x=array, y=np.ones(2))
    got = safeweights.load(tmp_path / "b.npz")
    assert list(got) == ["x", "y"] and np.array_equal(got["x"], array)


def test_npy_object_arrays_are_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(safeweights.CheckpointError, match="o.npy"):
        safeweights.load(tmp_path / "o.npy")


def _saved_on(tmp_path, location):
    """A checkpoint whose tensors were saved on `location` (written as a
    cpu file whose records say `location`)."""
    import json

    path = tmp_path / "dev.safetensors"
    safeweights.save({"w": torch.ones(2), "a": np.ones(1)}, path)
    with safeweights.safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = f.get_tensors()
    doc = json.loads(meta["safeweights.checkpoint"])
    doc["root"]["$dict"][0][1]["device"] = location
    meta["safeweights.checkpoint"] = json.dumps(doc)
    safeweights.torch.save_file({k: v.clone() for k, v in tensors.items()}, path, metadata=meta)
    return path


def test_map_location_forms_of_torch_load(tmp_path):
    path = _saved_on(tmp_path, "cuda:7")
    for where in ["cpu", torch.device("cpu"), {"cuda:7": "cpu"}, lambda storage, location: storage]:
        got = safeweights.load(path, where)
        assert got["w"].device == torch.device("cpu") and torch.equal(got["w"], torch.ones(2))
        assert type(got["a"]) is np.ndarray
    seen = []

    def record(storage, location):
        seen.append((type(storage), location))
        return storage

    safeweights.load(path, record)
    assert seen == [(torch.UntypedStorage, "cuda:7")]
    if not torch.cuda.is_available():
        with pytest.raises(safeweights.CheckpointError, match="map_location='cpu'"):
            safeweights.load(path)
        with pytest.raises(safeweights.CheckpointError, match="CUDA is not available"):
            safeweights.load(path, {"cuda:0": "cpu"})
    with pytest.raises(TypeError, match="map_location must be"):
        safeweights.load(path, 3.5)


def test_map_location_callable_result_is_the_storage_used(tmp_path):
    path = tmp_path / "c.safetensors"
    safeweights.save({"w": torch.arange(4.0), "v": torch.ones(2)}, path)
    returned = []

    def copy(storage, location):
        returned.append(storage.clone())
        return returned[-1]

    got = safeweights.load(path, copy)
    assert [t.untyped_storage().data_ptr() for t in got.values()] == [s.data_ptr() for s in returned]
    assert torch.equal(got["w"], torch.arange(4.0))


# Header-length residues through safeweights.load (regression: 0x80).


def test_every_header_length_residue_loads_through_safeweights_load(tmp_path):
    for residue in range(256):
        data = _reference_file_with_residue(residue)
        assert struct.unpack("<Q", data[:8])[0] % 256 == residue
        path = tmp_path / f"r{residue}.safetensors"
        path.write_bytes(data)
        assert torch.equal(safeweights.load(path)["w"], torch.arange(6.0).reshape(2, 3)), residue
        assert torch.equal(safeweights.load(io.BytesIO(data))["w"], torch.arange(6.0).reshape(2, 3)), residue


def test_checkpoints_with_every_header_length_residue_load(tmp_path):
    seen = set()
    for pad in range(600):
        path = tmp_path / "c.safetensors"
        safeweights.save({"w": torch.ones(1), "pad": "x" * pad}, path)
        seen.add(struct.unpack("<Q", path.read_bytes()[:8])[0] % 256)
        assert safeweights.load(path)["pad"] == "x" * pad
    assert len(seen) >= 32


# Hostile files: refused, payload never run.

PAYLOADS = {
    "zip": "torch.save(Evil(), path)",
    "legacy": "torch.save(Evil(), path, _use_new_zipfile_serialization=False)",
    "nested": "torch.save({'model': {'w': torch.ones(1)}, 'x': [Evil()]}, path)",
}


@pytest.fixture(scope="module")
def malicious(tmp_path_factory):
    """Pickles whose loading would create `marker`, written in one subprocess."""
    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "pwned"
    script = (
        "import os, torch\n"
        "class Evil:\n"
        f"    def __reduce__(self): return (os.system, ('touch {marker}',))\n"
    )
    for kind, line in PAYLOADS.items():
        script += f"path = {str(folder / kind)!r}\n{line}\n"
    subprocess.run([sys.executable, "-c", script], check=True)
    return folder, marker


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_malicious_pickles_are_refused_and_never_run(kind, malicious):
    folder, marker = malicious
    path = folder / kind
    assert path.exists() and not marker.exists()
    for weights_only in (True, False):
        with pytest.raises(safeweights.UnsafeCheckpointError, match="system"):
            safeweights.load(path, weights_only=weights_only)
        with open(path, "rb") as f, pytest.raises(safeweights.UnsafeCheckpointError):
            safeweights.load(f, weights_only=weights_only)
    assert not os.path.exists(marker)


def test_map_location_dict_on_a_torch_save_file_keeps_container_types(tmp_path):
    import collections

    path = tmp_path / "sd.pt"
    state = {"model": torch.nn.BatchNorm1d(2).state_dict(), "counts": collections.Counter(a=1), "t": (torch.ones(1),)}
    torch.save(state, path)
    got = safeweights.load(path, {"cpu": "cpu"})
    assert type(got["model"]) is collections.OrderedDict and got["model"]._metadata == state["model"]._metadata
    assert got["counts"] == state["counts"] and torch.equal(got["t"][0], torch.ones(1))
    seen = []
    safeweights.load(path, lambda storage, location: seen.append(location))
    assert seen and set(seen) == {"cpu"}


def test_deeply_nested_structures_are_refused_cleanly(tmp_path):
    path = tmp_path / "deep.safetensors"
    depth = 100_000
    structure = '{"version": 2, "root": ' + '{"$tuple": [' * depth + "1" + "]}" * depth + "}"
    safeweights.torch.save_file({"a": torch.ones(1)}, path, metadata={"safeweights.checkpoint": structure})
    with pytest.raises(safeweights.CheckpointError):
        safeweights.load(path)
