"""Dtype tables between the format's names ("F32") and numpy / torch."""

from __future__ import annotations

import functools
from typing import Any, Dict

# Format name -> torch attribute name. float4_e2m1fn_x2 packs two F4 values
# per element (the last dimension is halved on load and doubled on save).
_TORCH_NAMES = {
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

_NUMPY_NAMES = {
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
    "F32": "float32",
    "F64": "float64",
    "C64": "complex64",
}

# Types numpy lacks; the ml_dtypes package provides them when installed.
_ML_DTYPES_NAMES = {
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
}


@functools.lru_cache(maxsize=None)
def torch_dtypes() -> Dict[str, Any]:
    """Format name -> torch dtype, for the dtypes this torch version has."""
    import torch

    table = {name: getattr(torch, attr, None) for name, attr in _TORCH_NAMES.items()}
    return {name: dtype for name, dtype in table.items() if dtype is not None}


@functools.lru_cache(maxsize=None)
def torch_to_format() -> Dict[Any, str]:
    """torch dtype -> format name."""
    return {dtype: name for name, dtype in torch_dtypes().items()}


@functools.lru_cache(maxsize=None)
def numpy_dtypes() -> Dict[str, Any]:
    """Format name -> numpy dtype (BF16 and F8 only with ml_dtypes)."""
    import numpy as np

    table = {name: np.dtype(attr) for name, attr in _NUMPY_NAMES.items()}
    try:
        import ml_dtypes
    except ImportError:
        return table
    for name, attr in _ML_DTYPES_NAMES.items():
        if hasattr(ml_dtypes, attr):
            table[name] = np.dtype(getattr(ml_dtypes, attr))
    return table
