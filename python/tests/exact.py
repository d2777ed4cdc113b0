"""`assert_exact(a, b)`: same type and value all the way down (tensors
and numpy arrays compared by dtype, shape and bits)."""

import decimal
import math

import numpy as np
import torch


def assert_exact(got, want, path="root"):
    assert type(got) is type(want), f"{path}: {type(got)} is not {type(want)}"
    if isinstance(want, torch.Tensor):
        _tensor(got, want, path)
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape, f"{path}: {got.dtype}{got.shape}"
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes(), path
    elif isinstance(want, np.generic):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), path
    elif isinstance(want, decimal.Decimal):
        assert str(got) == str(want), path
    elif isinstance(want, float):
        assert got == want or (math.isnan(got) and math.isnan(want)), path
        assert math.copysign(1, got) == math.copysign(1, want), path
    elif isinstance(want, dict):
        assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for key in want:
            assert type(next(k for k in got if k == key)) is type(key), f"{path}: key {key!r}"
            assert_exact(got[key], want[key], f"{path}.{key}")
        assert vars(got) == vars(want) if hasattr(want, "__dict__") else True
        if hasattr(want, "default_factory"):
            assert got.default_factory is want.default_factory, path
    elif isinstance(want, (list, tuple)) and not hasattr(want, "_fields"):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_exact(g, w, f"{path}.{i}")
    elif hasattr(want, "__dict__") and not isinstance(want, type):
        assert vars(got).keys() == vars(want).keys(), path
        for key in vars(want):
            assert_exact(vars(got)[key], vars(want)[key], f"{path}.{key}")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"
        if hasattr(want, "tzinfo"):
            assert got.tzinfo == want.tzinfo and type(got.tzinfo) is type(want.tzinfo), path
            assert getattr(got, "fold", 0) == getattr(want, "fold", 0), path


def _tensor(got, want, path):
    assert got.dtype == want.dtype and got.shape == want.shape, f"{path}: {got.dtype}{got.shape}"
    assert got.layout == want.layout and got.requires_grad == want.requires_grad, path
    assert got.device == want.device, path
    if want.is_quantized:
        assert got.qscheme() == want.qscheme(), path
        assert torch.equal(got.int_repr(), want.int_repr()), path
        if want.qscheme() == torch.per_tensor_affine:
            assert (got.q_scale(), got.q_zero_point()) == (want.q_scale(), want.q_zero_point()), path
        else:
            assert torch.equal(got.q_per_channel_scales(), want.q_per_channel_scales()), path
            assert torch.equal(got.q_per_channel_zero_points(), want.q_per_channel_zero_points()), path
            assert got.q_per_channel_axis() == want.q_per_channel_axis(), path
    elif want.layout != torch.strided:
        assert torch.equal(got.to_dense(), want.to_dense()), path
        if want.layout == torch.sparse_coo:
            assert got.is_coalesced() == want.is_coalesced(), path
    else:
        assert torch.equal(got.detach().view(torch.uint8) if got.dim() else got.detach(), want.detach().view(torch.uint8) if want.dim() else want.detach()), path
