"""One way through the code (issue 9): the native module returns
`RawTensor` records and never imports the Python package; Python converts
them, parses devices and holds the dtype table, once each."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import safetensors.torch
import torch

import safeweights
import safeweights.numpy
import safeweights.torch
from conftest import random_tensor, same_bits
from safeweights import _dtypes, _frameworks, _location
from safeweights._safeweights_rust import RawTensor, _SafeFile, load_torch_pickle

NATIVE_SOURCES = pathlib.Path(__file__).resolve().parents[1] / "src"


def record_bytes(record):
    return bytes(_frameworks.byte_array(record.storage, record.offset, record.nbytes))


def test_safe_open_slices_and_pickles_return_the_same_record_class(tmp_path):
    tensors = {"b": torch.arange(6, dtype=torch.int16).reshape(2, 3), "a": torch.ones(4, dtype=torch.bfloat16)}
    path = tmp_path / "m.safetensors"
    safetensors.torch.save_file(tensors, path)
    native = _SafeFile.open(str(path))
    records = native.tensors()
    assert [type(r) for r in records] == [RawTensor, RawTensor]
    assert [(r.name, r.dtype, r.shape, r.nbytes) for r in records] == [
        ("a", "bfloat16", (4,), 8),
        ("b", "int16", (2, 3), 12),
    ]
    assert records[0].storage is records[1].storage, "records of one mapped file share its storage"
    for record in records:
        assert record_bytes(record) == tensors[record.name].view(torch.uint8).numpy().tobytes()
        assert not record.requires_grad
    part = native.slice("b").read((slice(None), slice(None, None, -2)))
    assert isinstance(part, RawTensor) and part.shape == (2, 2) and part.name == "b"
    assert record_bytes(part) == tensors["b"].flip(1)[:, ::2].contiguous().numpy().tobytes()
    pickled = tmp_path / "m.pt"
    torch.save({"w": tensors["b"], "p": torch.nn.Parameter(torch.zeros(2))}, pickled)
    tree, pickle_records = load_torch_pickle(str(pickled))
    assert {type(r) for r in pickle_records} == {RawTensor}
    assert tree["w"].dtype == "int16" and tree["w"].shape == (2, 3) and record_bytes(tree["w"]) == record_bytes(records[1])
    assert tree["p"].requires_grad


def test_f4_records_carry_the_packed_framework_shape(tmp_path):
    packed = random_tensor((3, 4), torch.float4_e2m1fn_x2)
    path = tmp_path / "f4.safetensors"
    safetensors.torch.save_file({"q": packed}, path)
    [record] = _SafeFile.open(str(path)).tensors()
    assert (record.dtype, record.shape) == ("float4_e2m1fn_x2", (3, 4))
    assert same_bits(safeweights.torch.load_file(path)["q"], packed)


def test_an_odd_f4_dimension_is_an_unsupported_dtype(tmp_path):
    path = tmp_path / "odd.safetensors"
    header = b'{"q":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00" * 3)
    with pytest.raises(safeweights.UnsupportedDtypeError, match='"q".*packs pairs'):
        safeweights.torch.load_file(path)


def test_the_native_module_never_imports_the_package(tmp_path):
    # Every reader works with the package's Python modules made unimportable.
    path = tmp_path / "m.safetensors"
    pickled = tmp_path / "m.pt"
    safetensors.torch.save_file({"w": torch.arange(6.0)}, path)
    torch.save({"w": torch.arange(3)}, pickled)
    code = f"""
import sys
import safeweights._safeweights_rust as native
for name in list(sys.modules):
    if name.startswith("safeweights.") and name != "safeweights._safeweights_rust":
        sys.modules[name] = None
f = native._SafeFile.open({str(path)!r})
assert [r.nbytes for r in f.tensors()] == [24] and f.tensor("w").dtype == "float32"
assert f.slice("w").read(slice(1, 3)).nbytes == 8 and f.slice("w").whole().shape == (6,)
with open({str(path)!r}, "rb") as file:
    data = file.read()
assert native._SafeFile.from_bytes(data).keys() == ["w"]
import ctypes
pinned = (ctypes.c_ubyte * len(data)).from_buffer(bytearray(data))
record = native._SafeFile.from_memory(pinned, ctypes.addressof(pinned), len(data), True).tensor("w")
assert record.storage.writable and record.storage.address == ctypes.addressof(pinned)
tree, records = native.load_torch_pickle({str(pickled)!r})
assert tree["w"] is records[0]
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_no_native_source_imports_the_package():
    # The standard library (`operator`) is fine; the package never.
    sources = sorted(NATIVE_SOURCES.glob("*.rs"))
    assert sources, NATIVE_SOURCES
    for source in sources:
        text = source.read_text()
        for call in re.finditer(r"import\w*\(", text):
            arguments = text[call.end() : call.end() + 80]
            assert "safeweights" not in arguments, f"{source.name} imports the package: {arguments!r}"


@pytest.mark.parametrize(
    "device, expected",
    [(None, "cpu"), ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), (0, "cuda:0"), (torch.device("cuda", 2), "cuda:2")],
    ids=str,
)
def test_one_device_parser_for_load_file_and_load_checkpoint(device, expected):
    assert _frameworks.parse_device(device) == torch.device(expected)
    if isinstance(device, (str, torch.device)):
        assert _location.Placement(device).fixed_device == torch.device(expected)


def test_meta_is_refused_by_load_file_as_the_reference_does_and_taken_by_map_location_as_torch_load_does(tmp_path):
    path = tmp_path / "m.safetensors"
    safeweights.torch.save_file({"w": torch.ones(2)}, path)
    with pytest.raises(safeweights.SafetensorError, match="device meta is invalid"):
        safeweights.torch.load_file(path, device="meta")
    got = safeweights.torch.load_checkpoint(path, map_location="meta")
    assert got["w"].device == torch.device("meta") == torch.load(_torch_file(tmp_path), map_location="meta")["w"].device


def _torch_file(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, path)
    return path


@pytest.mark.parametrize("device", ["nonsense", "cuda:x"], ids=str)
def test_invalid_devices_are_refused_alike(tmp_path, device):
    path = tmp_path / "m.safetensors"
    safeweights.torch.save_file({"w": torch.ones(2)}, path)
    with pytest.raises(safeweights.SafetensorError, match="device .* is invalid"):
        safeweights.torch.load_file(path, device=device)
    with pytest.raises(safeweights.SafetensorError, match="device .* is invalid"):
        safeweights.torch.load_checkpoint(path, map_location=device)


@pytest.mark.parametrize("device", [1.5, True, [0], -1], ids=str)
def test_values_that_are_no_device_at_all(tmp_path, device):
    # load_file says so as the reference does; map_location as before, a TypeError.
    path = tmp_path / "m.safetensors"
    safeweights.torch.save_file({"w": torch.ones(2)}, path)
    with pytest.raises(safeweights.SafetensorError, match="device .* is invalid"):
        safeweights.torch.load_file(path, device=device)
    with pytest.raises(TypeError, match="map_location must be"):
        safeweights.torch.load_checkpoint(path, map_location=device)


def test_legacy_and_safetensors_loads_share_one_converter(tmp_path, monkeypatch):
    seen = []
    original = _frameworks.TorchConverter.tensors

    def spy(self, records):
        seen.append([record.name for record in records])
        return original(self, records)

    monkeypatch.setattr(_frameworks.TorchConverter, "tensors", spy)
    path, pickled = tmp_path / "m.safetensors", tmp_path / "m.pt"
    safeweights.torch.save_file({"w": torch.ones(2)}, path)
    torch.save({"w": torch.ones(2)}, pickled)
    assert torch.equal(safeweights.torch.load_file(path)["w"], torch.ones(2))
    assert torch.equal(safeweights.torch.load_checkpoint(pickled)["w"], torch.ones(2))
    assert seen == [["w"], ["tensor of storage 0"]]


def test_framework_tables_come_from_the_one_dtype_table():
    assert safeweights.torch._TYPES == _dtypes.torch_dtypes()
    assert safeweights.torch._float8_e4m3fn is torch.float8_e4m3fn
    assert safeweights.numpy._TYPES["F32"] == np.float32 and safeweights.numpy._TYPES["BOOL"] == np.bool_
    for name, dtype in _dtypes.torch_dtypes().items():
        assert _dtypes.torch_dtype(_dtypes.torch_name(dtype)) is dtype, name
    assert _dtypes.torch_dtype("complex128") is torch.complex128
    assert _dtypes.torch_dtype("Tensor") is None and _dtypes.torch_dtype("__name__") is None


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_pickle_dtypes_beyond_the_format_load_through_the_shared_converter(tmp_path):
    path = tmp_path / "wide.pt"
    state = {
        "c128": torch.randn(3, dtype=torch.complex128),
        "c32": torch.randn(2, dtype=torch.complex64).to(torch.complex32),
        "f4": random_tensor((2, 3), torch.float4_e2m1fn_x2),
        "scalar": torch.tensor(7, dtype=torch.int64),
    }
    torch.save(state, path)
    loaded = safeweights.torch.load_checkpoint(path)
    for name, tensor in state.items():
        assert same_bits(loaded[name], tensor), name
