"""Bad input raises the documented exception with a helpful message."""

import os
import struct
import sys

import pytest
import safetensors
import safetensors.torch
import torch

import safeweights
import safeweights.numpy
import safeweights.torch
from safeweights import _dtypes


def header_file(path, header, data=b""):
    raw = header.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_missing_file_raises_file_not_found_like_the_reference(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError) as ours:
        safeweights.safe_open(missing, "pt")
    with pytest.raises(FileNotFoundError):
        safetensors.safe_open(str(missing), "pt")
    assert ours.value.filename == str(missing) and ours.value.errno == 2
    with pytest.raises(FileNotFoundError):
        safeweights.torch.load_file(missing)
    with pytest.raises(FileNotFoundError):
        safeweights.torch.load_checkpoint(missing)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_raises_permission_error(path):
    safeweights.torch.save_file({"a": torch.ones(1)}, path)
    path.chmod(0)
    with pytest.raises(PermissionError):
        safeweights.safe_open(path, "pt")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "too short"),
        (b"abc", "too short"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", "git-lfs"),
        (b"<!DOCTYPE html><html><body>login</body></html>", "HTML"),
        (b"PK\x03\x04" + b"\x00" * 40, "zip"),
        (b"\xff" * 16, "over the limit"),
    ],
)
def test_corrupt_files_raise_invalid_header_error(content, match, path):
    path.write_bytes(content)
    with pytest.raises(safeweights.InvalidHeaderError, match=match) as caught:
        safeweights.safe_open(path, "pt")
    assert str(path) in str(caught.value)
    with pytest.raises(safetensors.SafetensorError):  # the reference agrees it is invalid
        safetensors.safe_open(str(path), "pt")


@pytest.mark.parametrize(
    "header, data, match",
    [
        ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', b"\x00" * 4, "truncated"),
        ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', b"\x00" * 12, "extra bytes"),
        ('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', b"\x00" * 8, "need 12"),
        ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', b"\x00" * 12, "belong to no tensor"),
        ('{"a":{"dtype":"F32","shape":[2]', b"", "not valid JSON"),
        ('{"__metadata__":{"k":1}}', b"", "metadata"),
    ],
)
def test_invalid_headers(header, data, match, path):
    with pytest.raises(safeweights.InvalidHeaderError, match=match):
        safeweights.safe_open(header_file(path, header, data), "np")


def test_unknown_dtype_raises_unsupported_dtype_error(path):
    header_file(path, '{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}', b"\x00" * 16)
    with pytest.raises(safeweights.UnsupportedDtypeError, match="F128"):
        safeweights.safe_open(path, "pt")
    with pytest.raises(safeweights.UnsupportedDtypeError, match="F128"):
        safeweights.TensorSpec(dtype="F128", shape=[1], data_ptr=0, data_len=16)


@pytest.fixture
def without_ml_dtypes(monkeypatch):
    """numpy as it is without the ml_dtypes package (which adds bfloat16)."""
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    _dtypes.numpy_dtypes.cache_clear()
    yield
    _dtypes.numpy_dtypes.cache_clear()


def test_dtype_without_numpy_equivalent(path, without_ml_dtypes):
    safeweights.torch.save_file({"a": torch.ones(2, dtype=torch.bfloat16)}, path)
    with safeweights.safe_open(path, "np") as f:
        with pytest.raises(safeweights.UnsupportedDtypeError, match="'a' has dtype bfloat16.*ml_dtypes"):
            f.get_tensor("a")


def test_bfloat16_loads_through_ml_dtypes_when_installed(path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)
    safeweights.torch.save_file({"a": values}, path)
    with safeweights.safe_open(path, "np") as f:
        loaded = f.get_tensor("a")
    assert loaded.dtype == ml_dtypes.bfloat16
    assert loaded.astype("float32").tolist() == values.float().tolist()


def test_handle_errors(path):
    safeweights.torch.save_file({"a": torch.ones(2)}, path)
    with safeweights.safe_open(path, "pt") as f:
        with pytest.raises(safeweights.TensorNotFoundError, match="missing"):
            f.get_tensor("missing")
    with pytest.raises(safeweights.SafetensorError, match="closed"):
        f.keys()
    with pytest.raises(safeweights.SafetensorError, match="framework"):
        safeweights.safe_open(path, "tensorflow")
    with pytest.raises(safeweights.SafetensorError, match="device"):
        safeweights.safe_open(path, "pt", device="nonsense")
    with pytest.raises(safeweights.SafetensorError, match="backend"):
        safeweights.safe_open(path, "pt", backend="carrier-pigeon")


@pytest.mark.parametrize("bad", [123, None, 1.5, object()])
def test_wrong_source_types_raise_type_error(bad):
    with pytest.raises(TypeError):
        safeweights.safe_open(bad, "pt")


def test_save_errors_match_the_reference():
    shared = torch.zeros(4)
    cases = [
        ({"a": torch.zeros(4)[::2]}, ValueError),
        ({"a": 1}, ValueError),
        ([torch.zeros(1)], ValueError),
        ({"a": shared, "b": shared}, RuntimeError),
    ]
    for tensors, error in cases:
        with pytest.raises(error):
            safeweights.torch.save(tensors)
        with pytest.raises(error):
            safetensors.torch.save(tensors)
    with pytest.raises(TypeError):
        safeweights.torch.save({"a": torch.zeros(1)}, metadata={"a": 1})
    with pytest.raises(TypeError):
        safeweights.torch.load("not bytes")
    with pytest.raises(safeweights.InvalidTensorError, match="reserved"):
        safeweights.torch.save({"__metadata__": torch.zeros(1)})


def test_writer_rejects_inconsistent_specs():
    data = torch.zeros(4)
    spec = safeweights.TensorSpec(dtype="float32", shape=[5], data_ptr=data.data_ptr(), data_len=16)
    with pytest.raises(safeweights.InvalidTensorError, match="needs 20 bytes"):
        safeweights.serialize({"a": spec})


def test_writing_into_a_missing_directory_raises_os_error(tmp_path):
    with pytest.raises(OSError):
        safeweights.torch.save_file({"a": torch.ones(1)}, tmp_path / "missing" / "x.safetensors")


def test_load_garbage_bytes():
    with pytest.raises(safeweights.InvalidHeaderError):
        safeweights.torch.load(b"garbage")
    with pytest.raises(safeweights.InvalidHeaderError):
        safeweights.numpy.load(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")


def test_serialize_takes_only_tensor_specs_like_the_reference():
    # Raw dicts (the form before 0.8.0) are a TypeError, as in the reference.
    raw = {"dtype": "float32", "shape": [1], "data_ptr": 0, "data_len": 0}
    for value in (raw, {"dtype": "float32", "shape": [1], "data": b"\x00" * 4}, 1, None):
        with pytest.raises(TypeError, match='tensor "t": expected a TensorSpec'):
            safeweights.serialize({"t": value})
    with pytest.raises(TypeError):
        safetensors.serialize({"t": raw})


def test_duplicate_names_given_to_the_writer_are_the_callers_mistake():
    data = torch.ones(1)
    spec = safeweights.TensorSpec(dtype="float32", shape=[1], data_ptr=data.data_ptr(), data_len=4)
    with pytest.raises(safeweights.InvalidTensorError, match='"a"') as caught:
        safeweights.serialize([("a", spec), ("a", spec)])
    assert not isinstance(caught.value, safeweights.InvalidHeaderError)


def test_duplicate_keys_in_a_file_are_an_invalid_header(path):
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00" * 4)
    with pytest.raises(safeweights.InvalidHeaderError, match='"a" appears twice'):
        safeweights.torch.load_file(path)


def test_pickle_refusals_are_unsafe_checkpoint_errors(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": print}, path)
    with pytest.raises(safeweights.UnsafeCheckpointError, match="print"):
        safeweights.torch.load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        safeweights._safeweights_rust.load_torch_pickle(str(tmp_path / "missing.pt"))
