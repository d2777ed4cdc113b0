"""The safe pickle reader accepts what `torch.load(weights_only=True)`
accepts, checked against the installed torch's own allow-list, and
rebuilds it as `torch.load` does; numpy data (Hugging Face's
`rng_state.pth`) and caller-allowed classes included. Nothing is run."""

import argparse
import collections
import dataclasses
import enum
import io
import json
import random
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from exact import assert_exact
from torch._weights_only_unpickler import _get_allowed_globals

import safeweights


def torch_zip_with_pickle(pickle_bytes):
    """A torch.save zip whose data.pkl is `pickle_bytes`."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = pickle_bytes if info.filename.endswith("/data.pkl") else source.read(info)
            target.writestr(info.filename, data)
    return out.getvalue()


def reference_pickle(module, name):
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."


@pytest.mark.parametrize("dotted", sorted(_get_allowed_globals()))
def test_every_global_torch_allows_is_accepted(dotted):
    module, _, name = dotted.rpartition(".")
    data = torch_zip_with_pickle(reference_pickle(module, name))
    got = safeweights.load(io.BytesIO(data))
    want = _get_allowed_globals()[dotted]
    if isinstance(want, torch.serialization.StorageType):
        # torch's table holds a wrapper; the object named is the storage class.
        want = torch
        for part in dotted.split(".")[1:]:
            want = getattr(want, part)
    assert got is want or got == want, f"{dotted}: {got!r}"


def test_globals_outside_the_allow_list_are_refused_by_name():
    for module, name in [("os", "system"), ("builtins", "eval"), ("numpy", "load"), ("torch", "load")]:
        data = torch_zip_with_pickle(reference_pickle(module, name))
        with pytest.raises(safeweights.UnsafeCheckpointError, match=f"{module}.*{name}"):
            safeweights.load(io.BytesIO(data))


def transformers_rng_state(path):
    """What transformers.Trainer._save_rng_state writes (cpu only)."""
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    random.random(), np.random.rand(3), torch.rand(2)
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}, path)


@pytest.mark.parametrize("legacy", [False, True])
def test_trainer_rng_state_loads_equal_to_torch_load(legacy, tmp_path):
    path = tmp_path / "rng_state.pth"
    transformers_rng_state(path)
    if legacy:
        torch.save(torch.load(path, weights_only=False), path, _use_new_zipfile_serialization=False)
    want = torch.load(path, weights_only=False)
    got = safeweights.load(path)
    assert_exact(got, want)
    random.setstate(got["python"])
    np.random.set_state(got["numpy"])
    torch.random.set_rng_state(got["cpu"])
    draws = (random.random(), np.random.rand(), torch.rand(1))
    random.setstate(want["python"])
    np.random.set_state(want["numpy"])
    torch.random.set_rng_state(want["cpu"])
    assert draws == (random.random(), np.random.rand(), torch.rand(1))


def torch_allowed_values():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "device": torch.device("cuda", 1),
            "cpu_device": torch.device("cpu"),
            "counter": collections.Counter(a=3, b=1),
            "layout": torch.sparse_csr,
            "qscheme": torch.per_channel_affine,
            "int4": torch.int4,
            "sparse_coo": torch.tensor([[0.0, 2.0], [3.0, 0.0]]).to_sparse(),
            "sparse_csr": torch.eye(3).to_sparse_csr(),
            "sparse_bsc": torch.arange(16.0).reshape(4, 4).to_sparse_bsc((2, 2)),
            "qtensor": torch.quantize_per_tensor(torch.rand(2, 3), 0.1, 2, torch.qint8),
            "qtensor_per_channel": torch.quantize_per_channel(
                torch.randn(2, 3), torch.tensor([0.1, 0.2], dtype=torch.float64), torch.tensor([1, 2]), 0, torch.quint8
            ),
            "meta": torch.empty(2, 3, device="meta"),
            "parameter": torch.nn.Parameter(torch.ones(2)),
            "size": torch.Size([3, 4]),
            "state_dict": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).state_dict(),
        }


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_allowed_values_rebuild_as_torch_load(legacy, tmp_path):
    values = torch_allowed_values()
    path = tmp_path / "values.pt"
    torch.save(values, path, _use_new_zipfile_serialization=not legacy)
    want = torch.load(path, weights_only=True)
    got = safeweights.load(path)
    for key in values:
        if key == "meta":
            assert got[key].device.type == "meta" and got[key].shape == want[key].shape
        else:
            assert_exact(got[key], want[key], key)
    assert type(got["state_dict"]) is collections.OrderedDict
    assert got["state_dict"]._metadata == want["state_dict"]._metadata


NUMPY_VALUES = {
    "array": np.arange(12, dtype=np.float32).reshape(3, 4),
    "big_endian": np.arange(4, dtype=">i8"),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "strings": np.array(["ab", "cde"]),
    "bytes": np.array([b"x", b"yz"]),
    "datetime": np.array(["2020-01-01"], dtype="datetime64[D]"),
    "empty": np.zeros((0, 3), dtype=np.uint16),
    "scalar": np.float64(0.25),
    "int_scalar": np.int32(-3),
    "dtype": np.dtype("<u4"),
    "str_dtype": np.dtype("U7"),
}


@pytest.mark.parametrize("name", list(NUMPY_VALUES))
def test_numpy_values_decode_as_data_equal_to_torch_load(name, tmp_path):
    path = tmp_path / "np.pt"
    torch.save({"v": NUMPY_VALUES[name]}, path)
    want = torch.load(path, weights_only=False)["v"]
    got = safeweights.load(path)["v"]
    assert_exact(got, want)
    if isinstance(got, np.ndarray):
        assert got.flags.writeable and got.flags.f_contiguous == want.flags.f_contiguous


def test_numpy_object_arrays_are_refused(tmp_path):
    path = tmp_path / "o.pt"
    torch.save({"v": np.array([{"a": 1}], dtype=object)}, path)
    with pytest.raises(safeweights.UnsafeCheckpointError):
        safeweights.load(path)


# Classes the caller allows, rebuilt as torch's weights_only unpickler does.


@dataclasses.dataclass
class TrainingArgs:
    output_dir: str
    lr: float = 1e-3

    def __post_init__(self):
        TrainingArgs.inits += 1


TrainingArgs.inits = 0


class Mode(enum.IntEnum):
    TRAIN = 1
    EVAL = 2


class Sneaky:
    def __init__(self):
        raise AssertionError("never run")

    def __setstate__(self, state):
        self.state = state


def test_allowed_classes_are_rebuilt_without_running_init(tmp_path):
    path = tmp_path / "args.bin"
    value = {"args": TrainingArgs("out"), "mode": Mode.EVAL, "ns": argparse.Namespace(a=1, b=[2])}
    sneaky = Sneaky.__new__(Sneaky)
    sneaky.x = 1
    value["sneaky"] = sneaky
    torch.save(value, path)
    inits = TrainingArgs.inits
    allowed = [TrainingArgs, Mode, argparse.Namespace, Sneaky]
    got = safeweights.load(path, safe_types=allowed)
    with torch.serialization.safe_globals(allowed):
        want = torch.load(path, weights_only=True)
    assert TrainingArgs.inits == inits
    assert got["args"] == want["args"] and type(got["args"]) is TrainingArgs
    assert got["mode"] is Mode.EVAL and got["ns"] == want["ns"]
    assert type(got["sneaky"]) is Sneaky and got["sneaky"].state == {"x": 1}
    with torch.serialization.safe_globals(allowed):
        assert safeweights.load(path)["args"] == TrainingArgs("out")


def test_a_class_not_allowed_is_refused_naming_it(tmp_path):
    path = tmp_path / "args.bin"
    torch.save({"args": TrainingArgs("out")}, path)
    with pytest.raises(safeweights.UnsafeCheckpointError, match="test_legacy_allowlist.*TrainingArgs"):
        safeweights.load(path)


def test_scan_calls_no_global_torch_allows_dangerous(tmp_path):
    """`safeweights scan` on one file per global of the installed torch's
    allow-list: every file is safe (none suspicious or dangerous)."""
    names = sorted(_get_allowed_globals())
    for index, dotted in enumerate(names):
        module, _, name = dotted.rpartition(".")
        (tmp_path / f"{index:04d}.pt").write_bytes(torch_zip_with_pickle(reference_pickle(module, name)))
    done = subprocess.run(
        [sys.executable, "-m", "safeweights", "--json", "scan", str(tmp_path)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    report = json.loads(done.stdout)
    verdicts = {names[int(Path(f["path"]).stem)]: f["verdict"] for f in report["files"]}
    assert verdicts == {dotted: "safe" for dotted in names}
    assert done.returncode == 0 and report["verdict"] == "safe"
