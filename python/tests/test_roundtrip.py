"""Round trips against the reference safetensors, for every dtype."""

import json
import struct

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

import safeweights
import safeweights.numpy
import safeweights.torch
from conftest import NUMPY_DTYPES, TORCH_DTYPES, random_tensor, same_bits

SHAPES = [(), (0,), (2, 0, 3), (7,), (3, 4), (2, 3, 4, 2)]


def tensors_for(dtype):
    shapes = [(2, 4), (4,), (0, 2), (3, 2, 2)] if dtype == torch.float4_e2m1fn_x2 else SHAPES
    return {f"t{i}": random_tensor(shape, dtype, seed=i) for i, shape in enumerate(shapes)}


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_torch_save_is_byte_identical_to_the_reference(dtype):
    tensors = tensors_for(dtype)
    assert safeweights.torch.save(tensors) == safetensors.torch.save(tensors)
    meta = {"format": "pt"}
    assert safeweights.torch.save(tensors, metadata=meta) == safetensors.torch.save(tensors, metadata=meta)


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_torch_files_cross_read(dtype, tmp_path):
    tensors = tensors_for(dtype)
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    safeweights.torch.save_file(tensors, ours)
    safetensors.torch.save_file(tensors, theirs)
    assert ours.read_bytes() == theirs.read_bytes()
    for loaded in (safeweights.torch.load_file(theirs), safetensors.torch.load_file(ours)):
        assert loaded.keys() == tensors.keys()
        for name, tensor in tensors.items():
            assert same_bits(loaded[name], tensor), name
    with safeweights.safe_open(theirs, "pt") as f, safetensors.safe_open(theirs, "pt") as g:
        assert f.keys() == g.keys()
        # Zero-size tensors tie on offset; the reference orders ties arbitrarily.
        assert sorted(f.offset_keys()) == sorted(g.offset_keys())
        assert [k for k in f.offset_keys() if f.get_tensor(k).numel()] == [
            k for k in g.offset_keys() if g.get_tensor(k).numel()
        ]
        for name in f.keys():
            assert same_bits(f.get_tensor(name), g.get_tensor(name))
            assert f.get_slice(name).get_dtype() == g.get_slice(name).get_dtype()
            assert f.get_slice(name).get_shape() == g.get_slice(name).get_shape()


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_torch_load_from_bytes(dtype):
    tensors = tensors_for(dtype)
    loaded = safeweights.torch.load(safetensors.torch.save(tensors))
    assert all(same_bits(loaded[k], v) for k, v in tensors.items())


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=lambda d: np.dtype(d).name)
def test_numpy_round_trip_against_reference(dtype, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"a{i}": (rng.integers(0, 255, size=shape).astype(dtype)) for i, shape in enumerate(SHAPES)}
    data = safeweights.numpy.save(arrays)
    assert data == safetensors.numpy.save(arrays)
    for loaded in (safeweights.numpy.load(data), safetensors.numpy.load(data)):
        for name, array in arrays.items():
            assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array)
    safeweights.numpy.save_file(arrays, tmp_path / "a.safetensors")
    loaded = safeweights.numpy.load_file(tmp_path / "a.safetensors")
    assert all(np.array_equal(loaded[k], v) for k, v in arrays.items())


def test_numpy_big_endian_and_non_contiguous_arrays_are_written_correctly():
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    strided = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    loaded = safetensors.numpy.load(safeweights.numpy.save({"big": big, "strided": strided}))
    assert np.array_equal(loaded["big"], big) and np.array_equal(loaded["strided"], strided)


def test_metadata_with_many_keys_parses_equal():
    tensors = {"a": torch.zeros(2), "b": torch.ones(3, dtype=torch.float16)}
    meta = {f"k{i}": f"v{i}" for i in (3, 1, 2, 0)}
    ours = safeweights.torch.save(tensors, metadata=meta)
    theirs = safetensors.torch.save(tensors, metadata=meta)

    def header(data):
        (n,) = struct.unpack("<Q", data[:8])
        return json.loads(data[8 : 8 + n]), data[8 + n :]

    assert header(ours) == header(theirs)
    with safeweights.safe_open(ours, "pt") as f:
        assert f.metadata() == meta


def test_huge_ish_shapes_and_many_tensors(tmp_path):
    tensors = {"big": torch.randn(1 << 20), "wide": torch.zeros(1, 1, 1, 1, 1, 1, 3)}
    tensors.update({f"many.{i}": torch.full((i % 5,), float(i)) for i in range(300)})
    path = tmp_path / "m.safetensors"
    safeweights.torch.save_file(tensors, path)
    loaded = safetensors.torch.load_file(path)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    ours, theirs = safeweights.torch.load_file(path), safetensors.torch.load_file(path)
    assert [k for k in ours if ours[k].numel()] == [k for k in theirs if theirs[k].numel()]


def test_f4_header_shape_is_doubled_like_the_reference():
    packed = random_tensor((3, 4), torch.float4_e2m1fn_x2)
    spec = safeweights.TensorSpec(dtype="float4_e2m1fn_x2", shape=[3, 4], data_ptr=packed.data_ptr(), data_len=12)
    assert spec.shape == [3, 8] and spec.dtype == "F4"
    with safeweights.safe_open(safeweights.torch.save({"x": packed}), "pt") as f:
        assert f.get_slice("x").get_shape() == [3, 8]
        assert f.get_tensor("x").shape == (3, 4)


def test_deserialize_and_serialize_match_the_reference():
    tensors = {"w": torch.arange(6, dtype=torch.int32), "b": torch.ones(2, 2)}
    data = safetensors.torch.save(tensors)
    # The reference lists tensors in HashMap order; ours are sorted by name.
    assert dict(safeweights.deserialize(data)) == dict(safetensors.deserialize(data))
    assert [k for k, _ in safeweights.deserialize(data)] == ["b", "w"]
    specs = safeweights.torch._flatten_as_ptr(tensors, [])
    assert safeweights.serialize(specs) == data
    rebuilt = safeweights.torch._view2torch(safeweights.deserialize(data))
    assert sorted(rebuilt) == sorted(tensors)
    for name, tensor in tensors.items():
        assert rebuilt[name].dtype == tensor.dtype and torch.equal(rebuilt[name], tensor), name


def test_save_model_and_load_model_handle_tied_weights(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.b = torch.nn.Linear(4, 4)
            self.b.weight = self.a.weight

    model = Tied()
    path = tmp_path / "tied.safetensors"
    safeweights.torch.save_model(model, path)
    assert safetensors.safe_open(path, "pt").metadata() == {"b.weight": "a.weight"}
    fresh = Tied()
    missing, unexpected = safeweights.torch.load_model(fresh, path)
    assert not missing and not unexpected
    assert torch.equal(fresh.b.weight, model.a.weight)
    reference_missing, _ = safetensors.torch.load_model(Tied(), path)
    assert set(missing) == set(reference_missing)


def test_empty_tensor_with_huge_dims_loads_like_the_reference(tmp_path):
    # torch.empty([0, 2**40, 2**40]) overflows computing strides; the
    # reference reshapes an empty tensor and returns it.
    header = json.dumps({"e": {"dtype": "F32", "shape": [0, 2**40, 2**40], "data_offsets": [0, 0]}}).encode()
    path = tmp_path / "empty.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with safetensors.safe_open(path, framework="pt") as f:
        want = f.get_tensor("e")
    with safeweights.safe_open(path, framework="pt") as f:
        got = f.get_tensor("e")
    loaded = safeweights.torch.load_file(path)["e"]
    from_bytes = safeweights.torch.load(path.read_bytes())["e"]
    for t in (got, loaded, from_bytes):
        assert (t.shape, t.stride(), t.dtype) == (want.shape, want.stride(), want.dtype)
    assert safetensors.torch.load_file(path)["e"].shape == loaded.shape
