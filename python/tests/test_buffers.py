"""Memory semantics: zero-copy views, writability, lifetime, buffer inputs."""

import gc

import numpy as np
import pytest
import safetensors.torch
import torch

import safeweights
import safeweights.numpy
import safeweights.torch


def test_loaded_tensors_are_writable_and_never_change_the_file(path):
    safeweights.torch.save_file({"w": torch.zeros(4)}, path)
    before = path.read_bytes()
    loaded = safeweights.torch.load_file(path)
    loaded["w"] += 5
    assert path.read_bytes() == before
    assert torch.equal(safeweights.torch.load_file(path)["w"], torch.zeros(4))
    arrays = safeweights.numpy.load_file(path)
    assert arrays["w"].flags.writeable
    arrays["w"][:] = 1
    assert path.read_bytes() == before


def test_tensors_outlive_the_handle(path):
    safeweights.torch.save_file({"w": torch.arange(1000.0)}, path)
    with safeweights.safe_open(path, "pt") as f:
        tensor = f.get_tensor("w")
        array = safeweights.safe_open(path, "np").get_tensor("w")
    del f
    gc.collect()
    assert tensor.sum() == 499500 and array.sum() == 499500


def test_tensors_have_their_own_storage_like_the_reference(path):
    safeweights.torch.save_file({"a": torch.ones(3), "b": torch.ones(5)}, path)
    loaded = safeweights.torch.load_file(path)
    assert safeweights.torch.storage_size(loaded["a"]) == 12
    assert safeweights.torch._find_shared_tensors(loaded) == safetensors.torch._find_shared_tensors(
        safetensors.torch.load_file(path)
    )


def test_buffer_inputs():
    data = safeweights.torch.save({"w": torch.arange(6.0)})
    with safeweights.safe_open(data, "np") as f:  # bytes: read-only views
        array = f.get_tensor("w")
        assert not array.flags.writeable
    with safeweights.safe_open(data, "pt") as f:  # torch: a copy
        tensor = f.get_tensor("w")
        tensor += 1
    assert safeweights.torch.load(data)["w"][0] == 0
    mutable = bytearray(data)
    with safeweights.safe_open(mutable, "np") as f:  # bytearray: views of it
        view = f.get_tensor("w")
        assert view.flags.writeable
    view[0] = 9
    assert safeweights.numpy.load(mutable)["w"][0] == 9
    with pytest.raises(BufferError):
        mutable.extend(b"x")  # pinned while views exist
    with safeweights.safe_open(memoryview(data), "pt") as f:
        assert torch.equal(f.get_tensor("w"), torch.arange(6.0))
    for loaded in (safeweights.torch.load(bytearray(data)), safeweights.torch.load(memoryview(data))):
        assert torch.equal(loaded["w"], torch.arange(6.0))


def test_pread_backend(path):
    tensors = {"a": torch.randn(10, 10), "b": torch.arange(5)}
    safeweights.torch.save_file(tensors, path)
    loaded = safeweights.torch.load_file(path, backend="pread")
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_safe_open_handle_on_an_open_file(path):
    safeweights.torch.save_file({"w": torch.ones(2)}, path)
    with open(path, "rb") as file:
        with safeweights._safe_open_handle(file, "pt") as f:
            assert torch.equal(f.get_tensor("w"), torch.ones(2))


def test_cuda_device_is_guarded(path):
    safeweights.torch.save_file({"w": torch.ones(2)}, path)
    if torch.cuda.is_available():
        loaded = safeweights.torch.load_file(path, device="cuda:0")
        assert loaded["w"].device.type == "cuda" and torch.equal(loaded["w"].cpu(), torch.ones(2))
        with safeweights.safe_open(path, "pt", device=0) as f:
            assert f.get_tensor("w").device == torch.device("cuda", 0)
    else:
        with safeweights.safe_open(path, "pt", device="cuda:0") as f:
            for read in (lambda: f.get_tensor("w"), f.get_tensors, lambda: f.get_slice("w")[:1], lambda: f.get_slice("w")[[0]]):
                with pytest.raises(safeweights.DeviceUnavailableError, match="cuda:0 is not available") as caught:
                    read()
                assert isinstance(caught.value, RuntimeError) and isinstance(caught.value, safeweights.SafetensorError)
