"""The package's one dtype table: the format's names ("F32") and the
frameworks' ("float32", shared by torch, numpy and ml_dtypes), and the
torch and numpy dtypes derived from it.

The native module's records carry framework names (`RawTensor.dtype`);
`torch_dtype` and `numpy_dtype` resolve them."""

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


def torch_dtype(name: str) -> Any:
    """The torch dtype named `name` (`"float32"`), or None if this torch
    has none. Names beyond the format's (`"complex128"`, from pickle
    checkpoints) resolve too; nothing but a `torch.dtype` is returned."""
    import torch

    dtype = getattr(torch, name, None) if isinstance(name, str) and not name.startswith("_") else None
    return dtype if isinstance(dtype, torch.dtype) else None


@functools.lru_cache(maxsize=None)
def torch_to_format() -> Dict[Any, str]:
    """torch dtype -> format name."""
    return {dtype: name for name, dtype in torch_dtypes().items()}


@functools.lru_cache(maxsize=None)
def numpy_dtypes() -> Dict[str, Any]:
    """Framework name -> numpy dtype (bfloat16 and float8 only with ml_dtypes)."""
    import numpy as np

    names = {name: attr for name, attr in _NAMES.items() if name not in _TORCH_ONLY}
    table = {attr: np.dtype(attr) for name, attr in names.items() if name not in _ML_DTYPES}
    try:
        import ml_dtypes
    except ImportError:
        return table
    for name in _ML_DTYPES:
        if hasattr(ml_dtypes, _NAMES[name]):
            table[_NAMES[name]] = np.dtype(getattr(ml_dtypes, _NAMES[name]))
    return table


def numpy_dtype(name: str) -> Any:
    """The numpy dtype for the framework name `name` (`"float32"`), or None
    (bfloat16 and the float8 types need ml_dtypes; packed F4 has none)."""
    return numpy_dtypes().get(name)


def format_numpy_dtypes() -> Dict[str, Any]:
    """Format name -> numpy dtype, for the dtypes numpy has."""
    table = numpy_dtypes()
    return {name: table[attr] for name, attr in _NAMES.items() if attr in table}
