"""numpy support: a drop-in for `safetensors.numpy`.

Example:

```python
import numpy as np
from safeweights.numpy import save_file, load_file

save_file({"embedding": np.zeros((512, 1024))}, "model.safetensors")
arrays = load_file("model.safetensors")
```

BF16 and the 8-bit float dtypes have no numpy type; they load when the
`ml_dtypes` package is installed and raise `UnsupportedDtypeError` otherwise.
"""

import os
import sys
from typing import Any, Dict, List, Optional, Union

import numpy as np

from . import TensorSpec, _dtypes, deserialize, safe_open, serialize, serialize_file
from ._safe_open import _storage_options


class _InvalidArraysError(ValueError, AttributeError):
    """Not a dict of numpy arrays. A ValueError, as `safetensors.torch`
    raises for the same mistake, and an AttributeError, which the reference
    `safetensors.numpy` raises (from `.items()` or `.dtype`)."""


def _flatten(tensor_dict: Dict[str, np.ndarray], keep_alive_buffer: List) -> Dict[str, TensorSpec]:
    """TensorSpecs pointing at each array's own memory (copies only for
    big-endian or non-contiguous arrays, which are kept alive in the buffer)."""
    if not isinstance(tensor_dict, dict):
        raise _InvalidArraysError(f"Expected a dict of [str, np.ndarray] but received {type(tensor_dict)}")
    flattened = {}
    for k, v in tensor_dict.items():
        if not isinstance(v, np.ndarray):
            raise _InvalidArraysError(f"Key `{k}` is invalid, expected np.ndarray but received {type(v)}")
        tensor = v
        if not _is_little_endian(tensor):
            tensor = tensor.byteswap(inplace=False).view(tensor.dtype.newbyteorder("<"))
        if not tensor.flags.c_contiguous:
            tensor = np.ascontiguousarray(tensor)
        keep_alive_buffer.append(tensor)
        flattened[k] = TensorSpec(
            dtype=_dtype_name(tensor.dtype),
            shape=tensor.shape,
            data_ptr=tensor.ctypes.data,
            data_len=tensor.nbytes,
        )
    return flattened


def _dtype_name(dtype: np.dtype) -> str:
    # ml_dtypes' types carry their torch-style names ("bfloat16", ...).
    return "bool" if dtype == np.bool_ else dtype.name


def save(tensor_dict: Dict[str, np.ndarray], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serializes arrays to the bytes of a safetensors file.

    Example: `data = save({"embedding": np.zeros((512, 1024))})`."""
    keep_alive_buffer = []
    return serialize(_flatten(tensor_dict, keep_alive_buffer), metadata=metadata)


def save_file(
    tensor_dict: Dict[str, np.ndarray],
    filename: Union[str, os.PathLike],
    metadata: Optional[Dict[str, str]] = None,
    *,
    durable: bool = True,
    storage_options: Optional[Dict[str, Any]] = None,
) -> None:
    """Writes arrays to `filename` (atomically, through a temporary file).
    With `durable` (the default) the file is on disk when this returns;
    `durable=False` skips the flushes, for scratch files.

    Example: `save_file({"embedding": np.zeros((512, 1024))}, "model.safetensors")`."""
    keep_alive_buffer = []
    serialize_file(
        _flatten(tensor_dict, keep_alive_buffer),
        filename,
        metadata=metadata,
        durable=durable,
        storage_options=_storage_options(storage_options),
    )


def load(data: bytes) -> Dict[str, np.ndarray]:
    """Loads arrays from the bytes of a safetensors file. The arrays are
    writable and independent of `data` (copied once, as the reference does).

    Example: `arrays = load(open("model.safetensors", "rb").read())`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"argument 'bytes': expected bytes, bytearray or memoryview, got {type(data).__name__}")
    with safe_open(bytearray(data), framework="np") as f:
        return f.get_tensors()


def load_file(
    filename: Union[str, os.PathLike],
    *,
    backend: str = "mmap",
    storage_options: Optional[Dict[str, Any]] = None,
) -> Dict[str, np.ndarray]:
    """Loads every array of a file (or sharded checkpoint index) in file order.

    The arrays are zero-copy views of a private (copy-on-write) map of the
    file: writable, and writes never reach the file.

    Example: `arrays = load_file("model.safetensors")`."""
    with safe_open(filename, framework="np", backend=backend, storage_options=storage_options) as f:
        return f.get_tensors()


# Format name -> numpy dtype (the reference's name), from the one table.
_TYPES = _dtypes.format_numpy_dtypes()


def _getdtype(dtype_str: str) -> np.dtype:
    return _TYPES[dtype_str]


def _view2np(safeview) -> Dict[str, np.ndarray]:
    """Arrays from `deserialize` output."""
    result = {}
    for k, v in safeview:
        dtype = _getdtype(v["dtype"])
        result[k] = np.frombuffer(v["data"], dtype=dtype).reshape(v["shape"])
    return result


def _is_little_endian(tensor: np.ndarray) -> bool:
    byteorder = tensor.dtype.byteorder
    if byteorder == "=":
        return sys.byteorder == "little"
    if byteorder in ("|", "<"):
        return True
    if byteorder == ">":
        return False
    raise ValueError(f"Unexpected byte order {byteorder}")
