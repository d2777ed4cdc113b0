"""numpy values in a checkpoint's structure: arrays (their bytes in the
data section, returned as numpy arrays), scalars and dtypes, each with its
exact dtype (byte order included). Object arrays and structured dtypes are
refused: they hold Python objects or layouts a dtype string cannot name.
See `_types`.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict

import numpy as np

from ._safe_types import UnsafeTypeError


def _where(path: str) -> str:
    return path or "the root"


def _exact_dtype(dtype: Any, path: str, what: str) -> str:
    """The dtype string that names `dtype` exactly, or a refusal."""
    if dtype.hasobject:
        raise UnsafeTypeError(
            f"cannot save the {what} at {_where(path)}: dtype object holds Python objects (a pickle);"
            " store numbers, or convert to a list"
        )
    name = dtype.str
    if dtype.fields is not None or dtype.subdtype is not None or np.dtype(name) != dtype:
        raise TypeError(
            f"cannot save the {what} at {_where(path)}: its dtype {dtype} has no exact string form;"
            " save each field as its own array"
        )
    return name


def encode_numpy(encoder: Any, value: Any, path: str) -> Any:
    kind = type(value)
    if isinstance(value, np.dtype):
        return {"$npdtype": _exact_dtype(value, path, "numpy dtype")}
    if isinstance(value, np.generic):
        name = _exact_dtype(value.dtype, path, f"numpy.{kind.__name__} scalar")
        return {"$npscalar": name, "hex": value.tobytes().hex()}
    if kind is not np.ndarray:
        raise UnsafeTypeError(
            f"cannot save the {kind.__module__}.{kind.__qualname__} at {_where(path)}: only plain numpy arrays are"
            " saved; convert it with numpy.asarray(x)"
        )
    return _encode_array(encoder, value, path)


def _encode_array(encoder: Any, value: Any, path: str) -> Dict[str, Any]:
    import torch

    name = _exact_dtype(value.dtype, path, "numpy array")
    array = value
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if any(s < 0 for s in array.strides) or not array.flags.aligned:
        array = np.ascontiguousarray(array)
    record: Dict[str, Any] = {}
    with warnings.catch_warnings():
        # A read-only array is only read here.
        warnings.simplefilter("ignore", UserWarning)
        try:
            tensor = torch.from_numpy(array)
        except TypeError:
            # A dtype torch lacks (datetime64, strings, longdouble): its bytes.
            tensor = torch.from_numpy(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
            record["raw"] = True
    return {"$ndarray": encoder.on_tensor(tensor, path), "dtype": name, "shape": list(value.shape), **record}


def _dtype(name: Any, path: str) -> Any:
    from ._types import _invalid, _str

    dtype = np.dtype(_str(name, path))
    if dtype.hasobject:
        raise _invalid(path, "numpy object dtypes are never loaded (they hold pickles)")
    return dtype


def decode_numpy(decoder: Any, record: Dict[str, Any], path: str) -> Any:
    from ._types import _ints, _invalid, _str

    tag = next(iter(record))
    dtype = _dtype(record[tag] if tag != "$ndarray" else record["dtype"], path)
    if tag == "$npdtype":
        return dtype
    if tag == "$npscalar":
        data = bytes.fromhex(_str(record["hex"], path))
        if len(data) != dtype.itemsize:
            raise _invalid(path, f"a {dtype} scalar needs {dtype.itemsize} bytes, got {len(data)}")
        if not data:
            return np.zeros((), dtype=dtype)[()]
        return np.frombuffer(data, dtype=dtype)[0]
    shape = tuple(_ints(record["shape"], path))
    array = decoder.tensors.array(record["$ndarray"]).numpy()
    if record.get("raw"):
        return array.view(dtype).reshape(shape)
    if array.dtype != dtype:
        array = array.astype(dtype)
    if array.shape != shape:
        raise _invalid(path, f"the array's data has shape {array.shape}, the record says {shape}")
    return array
