"""Dtype tables between the format's names ("F32") and numpy / torch."""

from __future__ import annotations

import functools
from typing import Any, Dict

# Format name -> dtype name, spelled alike by torch, numpy and ml_dtypes.
# float4_e2m1fn_x2 packs two F4 values per element (the last dimension is
# halved on load and doubled on save).
_NAMES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "I32": "int32",
    "U32": "uint32",
    "I64": "int64",
    "U64": "uint64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
    "F4": "float4_e2m1fn_x2",
}

# Types numpy lacks; the ml_dtypes package provides them when installed.
_ML_DTYPES = {"BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0"}
# Packed pairs of F4 exist in torch only.
_TORCH_ONLY = {"F4"}


def torch_name(dtype: Any) -> str:
    """`"float32"` for `torch.float32`: the name `torch_dtypes` and
    `TensorSpec` use."""
    return str(dtype).rpartition(".")[2]


@functools.lru_cache(maxsize=None)
def torch_dtypes() -> Dict[str, Any]:
    """Format name -> torch dtype, for the dtypes this torch version has."""
    import torch

    table = {name: getattr(torch, attr, None) for name, attr in _NAMES.items()}
    return {name: dtype for name, dtype in table.items() if dtype is not None}


@functools.lru_cache(maxsize=None)
def torch_to_format() -> Dict[Any, str]:
    """torch dtype -> format name."""
    return {dtype: name for name, dtype in torch_dtypes().items()}


@functools.lru_cache(maxsize=None)
def numpy_dtypes() -> Dict[str, Any]:
    """Format name -> numpy dtype (BF16 and F8 only with ml_dtypes)."""
    import numpy as np

    table = {name: np.dtype(attr) for name, attr in _NAMES.items() if name not in _ML_DTYPES | _TORCH_ONLY}
    try:
        import ml_dtypes
    except ImportError:
        return table
    for name in _ML_DTYPES:
        if hasattr(ml_dtypes, _NAMES[name]):
            table[name] = np.dtype(getattr(ml_dtypes, _NAMES[name]))
    return table
