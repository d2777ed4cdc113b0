"""Rebuilding the `_PickledObject` records of the safe pickle reader: the
globals on torch's `weights_only` allow-list that the reader records as
data instead of interpreting (`torch.device`, `collections.Counter`,
layouts, quantized and sparse tensor rebuilds...), numpy arrays, scalars
and dtypes (decoded from their bytes, numpy's reconstructors never run),
and classes the caller allowed (rebuilt as torch rebuilds an allowed
global: `cls.__new__` plus `__setstate__` or a `__dict__` update).

Nothing here imports a module or calls a function named by the file: each
name is looked up in the tables below or among the allowed classes.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Dict, Optional

from . import _safe_types
from ._safeweights_rust import CheckpointError, UnsafeCheckpointError

Builder = Callable[[Any, Any], Any]


def build(obj: Any, value: Callable[[Any], Any], allowed: Dict[str, Any]) -> Any:
    """The Python value of one `_PickledObject`; `value` converts nested
    records (tensors, other objects)."""
    name = obj.global_name
    if not obj.called:
        return _reference(name, allowed)
    builder = _BUILDERS.get(name)
    if builder is not None:
        return builder(obj, value)
    cls = allowed.get(name)
    if cls is None:
        raise UnsafeCheckpointError(f"the checkpoint calls {name}, which is not allowed")
    return _allowed(cls, obj, value)


def _reference(name: str, allowed: Dict[str, Any]) -> Any:
    """A global used as a value (a layout, a qscheme, a class)."""
    if name in allowed:
        return allowed[name]
    if name in _BUILTIN_REFERENCES:
        return _BUILTIN_REFERENCES[name]
    module, _, attr = name.rpartition(".")
    if module == "numpy.dtypes":
        import numpy.dtypes

        return getattr(numpy.dtypes, attr)
    if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        import numpy

        return {"ndarray": numpy.ndarray, "dtype": numpy.dtype}.get(attr) or _unsupported(name)
    import torch

    found: Any = torch
    for part in name.split(".")[1:]:
        found = getattr(found, part, None)
    if found is None or not name.startswith("torch."):
        return _unsupported(name)
    return found


def _builtin_references() -> Dict[str, Any]:
    import builtins
    import codecs

    table: Dict[str, Any] = {f"builtins.{n}": getattr(builtins, n) for n in ("set", "complex", "bytearray", "bytes")}
    table.update({"_codecs.encode": codecs.encode, "collections.OrderedDict": collections.OrderedDict})
    table["collections.Counter"] = collections.Counter
    return table


_BUILTIN_REFERENCES = _builtin_references()


def _unsupported(name: str) -> Any:
    raise CheckpointError(f"the checkpoint uses {name} in a way safeweights cannot rebuild")


def _allowed(cls: Any, obj: Any, value: Callable[[Any], Any]) -> Any:
    import enum

    args = tuple(value(a) for a in obj.args)
    if not isinstance(cls, type):
        raise UnsafeCheckpointError(
            f"the checkpoint calls {obj.global_name}: allowed functions are never called, only classes rebuilt"
        )
    if not obj.new:
        if issubclass(cls, enum.Enum) and len(args) == 1 and not obj.has_state:
            return cls(args[0])  # a member lookup: nothing is constructed
        raise UnsafeCheckpointError(
            f"the checkpoint calls {obj.global_name}(...), which would run its __init__: only NEWOBJ"
            " (cls.__new__) and enum members are rebuilt"
        )
    state = value(obj.state) if obj.has_state else None
    instance = _safe_types.rebuild(cls, args, state)
    if obj.items:
        instance.extend(value(i) for i in obj.items)
    for key, item in obj.dict_items:
        instance[value(key)] = value(item)
    return instance


def _args(obj: Any, value: Callable[[Any], Any], count: Optional[range] = None) -> tuple:
    args = tuple(value(a) for a in obj.args)
    if count is not None and len(args) not in count:
        raise CheckpointError(f"unexpected arguments to {obj.global_name}: {len(args)}")
    return args


def _no_state(obj: Any) -> None:
    if obj.has_state or obj.items or obj.dict_items or obj.new:
        raise CheckpointError(f"unexpected use of {obj.global_name} (state or items given)")


def _counter(obj: Any, value: Callable[[Any], Any]) -> Any:
    _no_state(obj)
    args = _args(obj, value, range(0, 2))
    if args and not isinstance(args[0], dict):
        raise CheckpointError("collections.Counter expects a dict")
    return collections.Counter(*args)


def _ordered_dict(obj: Any, value: Callable[[Any], Any]) -> Any:
    """An OrderedDict, with BUILD's attributes (a state dict's `_metadata`)."""
    (items,) = _args(obj, value, range(1, 2))
    result = collections.OrderedDict(items)
    if obj.has_state:
        state = value(obj.state)
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise CheckpointError("an OrderedDict's state must be a dict of attributes")
        result.__dict__.update(state)
    return result


def _size(obj: Any, value: Callable[[Any], Any]) -> Any:
    import torch

    _no_state(obj)
    (sizes,) = _args(obj, value, range(1, 2))
    if not all(type(n) is int for n in sizes):
        raise CheckpointError("torch.Size expects ints")
    return torch.Size(sizes)


def _device(obj: Any, value: Callable[[Any], Any]) -> Any:
    import torch

    _no_state(obj)
    args = _args(obj, value, range(1, 3))
    if not isinstance(args[0], str) or (len(args) == 2 and type(args[1]) is not int):
        raise CheckpointError("torch.device expects (type[, index])")
    return torch.device(*args)


def _layout(obj: Any, value: Callable[[Any], Any]) -> Any:
    import torch

    _no_state(obj)
    (name,) = _args(obj, value, range(1, 2))
    found = getattr(torch, str(name).rpartition(".")[2], None) if str(name).startswith("torch.") else None
    if type(found) is not torch.layout:
        raise CheckpointError(f"{name!r} is not a torch layout")
    return found


def _qtensor(obj: Any, value: Callable[[Any], Any]) -> Any:
    import torch

    from ._torch_types import _PER_CHANNEL, _PER_TENSOR, _QUANTIZED

    _no_state(obj)
    storage, offset, size, stride, params, requires_grad = _args(obj, value, range(7, 8))[:6]
    qdtype = getattr(storage, "_safeweights_qdtype", None)
    if qdtype not in _QUANTIZED:
        raise CheckpointError("_rebuild_qtensor needs a quantized storage")
    scheme = params[0]
    if scheme in _PER_TENSOR:
        base = torch._empty_affine_quantized(
            [0], scale=float(params[1]), zero_point=int(params[2]), dtype=qdtype, device=storage.device
        )
    elif scheme in _PER_CHANNEL:
        base = torch._empty_per_channel_affine_quantized(
            [0], scales=params[1], zero_points=params[2], axis=int(params[3]), dtype=qdtype, device=storage.device
        )
    else:
        raise CheckpointError(f"cannot rebuild a quantized tensor with scheme {scheme}")
    typed = torch.storage.TypedStorage(wrap_storage=storage.clone().untyped_storage(), dtype=qdtype, _internal=True)
    tensor = base.set_(typed, int(offset), list(size), list(stride))
    if requires_grad:
        tensor.requires_grad_(True)
    return tensor


def _sparse(obj: Any, value: Callable[[Any], Any]) -> Any:
    import torch

    _no_state(obj)
    layout, data = _args(obj, value, range(2, 3))
    if layout == torch.sparse_coo:
        if len(data) == 3:
            indices, values, size = data
            coalesced = None
        else:
            indices, values, size, coalesced = data
        return torch.sparse_coo_tensor(indices, values, size, is_coalesced=coalesced, check_invariants=True)
    if layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
        compressed, plain, values, size = data
        return torch.sparse_compressed_tensor(compressed, plain, values, size, layout=layout, check_invariants=True)
    raise CheckpointError(f"cannot rebuild a sparse tensor with layout {layout}")


def _device_from_cpu(obj: Any, value: Callable[[Any], Any]) -> Any:
    import torch

    _no_state(obj)
    data, dtype, _device_name, requires_grad = _args(obj, value, range(4, 5))
    if not isinstance(data, torch.Tensor) or not isinstance(dtype, torch.dtype):
        raise CheckpointError("_rebuild_device_tensor_from_cpu_tensor expects (tensor, dtype, device, requires_grad)")
    tensor = data.to(dtype=dtype)
    return tensor.requires_grad_(True) if requires_grad else tensor


def _device_from_numpy(obj: Any, value: Callable[[Any], Any]) -> Any:
    import numpy as np
    import torch

    _no_state(obj)
    data, dtype, _device_name, requires_grad = _args(obj, value, range(4, 5))
    if type(data) is not np.ndarray or not isinstance(dtype, torch.dtype):
        raise CheckpointError("_rebuild_device_tensor_from_numpy expects (ndarray, dtype, device, requires_grad)")
    tensor = torch.from_numpy(data).to(dtype=dtype)
    return tensor.requires_grad_(True) if requires_grad else tensor


def _meta_tensor(obj: Any, value: Callable[[Any], Any]) -> Any:
    import torch

    _no_state(obj)
    dtype, size, stride, requires_grad = _args(obj, value, range(4, 5))
    return torch.empty_strided(list(size), list(stride), dtype=dtype, device="meta", requires_grad=bool(requires_grad))


def _numpy_dtype(obj: Any, value: Callable[[Any], Any]) -> Any:
    """`numpy.dtype(name, align, copy)` then BUILD `(version, byteorder,
    subdescr, names, fields, elsize, alignment, flags)`."""
    import numpy as np

    args = _args(obj, value, range(1, 4))
    if not isinstance(args[0], str):
        raise CheckpointError("numpy.dtype expects a type string")
    dtype = np.dtype(args[0])
    if dtype.hasobject:
        raise UnsafeCheckpointError("the checkpoint holds a numpy object dtype (its values are pickles)")
    if not obj.has_state:
        return dtype
    state = value(obj.state)
    if not isinstance(state, tuple) or len(state) < 8:
        raise CheckpointError("unexpected numpy dtype state")
    byteorder, subdescr, names, fields, elsize = state[1], state[2], state[3], state[4], state[5]
    if subdescr is not None or names is not None or fields is not None:
        raise CheckpointError("structured numpy dtypes are not supported")
    if dtype.kind in "mM" and len(state) >= 9:
        # datetime64/timedelta64: (None, (unit, count, num, den)).
        unit, count = state[8][1][0], state[8][1][1]
        if not isinstance(unit, bytes) or type(count) is not int:
            raise CheckpointError("unexpected numpy datetime metadata")
        dtype = np.dtype(f"{args[0]}[{count if count != 1 else ''}{unit.decode('ascii')}]")
    if dtype.kind in "USV" and type(elsize) is int and elsize > 0:
        count = elsize // 4 if dtype.kind == "U" else elsize
        dtype = np.dtype(f"{dtype.kind}{count}")
    if byteorder in ("<", ">"):
        dtype = dtype.newbyteorder(byteorder)
    return dtype


def _numpy_array(obj: Any, value: Callable[[Any], Any]) -> Any:
    """`_reconstruct(ndarray, (0,), b'b')` then BUILD `(version, shape,
    dtype, is_fortran, raw bytes)`: decoded from the bytes."""
    import numpy as np

    args = _args(obj, value, range(3, 4))
    if args[0] is not np.ndarray or not obj.has_state or obj.items or obj.dict_items:
        raise CheckpointError("unexpected numpy array reconstruction")
    state = value(obj.state)
    if not isinstance(state, tuple) or len(state) != 5:
        raise CheckpointError("unexpected numpy array state")
    _, shape, dtype, fortran, raw = state
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, (bytes, bytearray)):
        raise UnsafeCheckpointError("the checkpoint holds a numpy object array (its values are pickles)")
    shape = tuple(int(n) for n in shape)
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(raw):
        raise CheckpointError(f"a numpy array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes")
    flat = np.frombuffer(raw, dtype=dtype, count=count) if count else np.empty(0, dtype=dtype)
    array = flat.reshape(shape, order="F" if fortran else "C")
    # numpy's own unpickling returns arrays in native byte order.
    return array.astype(dtype.newbyteorder("=")) if not dtype.isnative else array.copy(order="K")


def _numpy_scalar(obj: Any, value: Callable[[Any], Any]) -> Any:
    import numpy as np

    _no_state(obj)
    args = _args(obj, value, range(1, 3))
    dtype = args[0]
    if not isinstance(dtype, np.dtype) or dtype.hasobject or len(args) != 2 or not isinstance(args[1], bytes):
        raise UnsafeCheckpointError("the checkpoint holds a numpy object scalar (its value is a pickle)")
    if len(args[1]) != dtype.itemsize:
        raise CheckpointError(f"a numpy {dtype} scalar needs {dtype.itemsize} bytes")
    return np.frombuffer(args[1], dtype=dtype)[0] if dtype.itemsize else np.zeros((), dtype=dtype)[()]


def _refused(what: str) -> Builder:
    def builder(obj: Any, value: Callable[[Any], Any]) -> Any:
        raise CheckpointError(f"the checkpoint calls {obj.global_name}: {what}")

    return builder


_BUILDERS: Dict[str, Builder] = {
    "collections.Counter": _counter,
    "collections.OrderedDict": _ordered_dict,
    "torch.Size": _size,
    "torch.device": _device,
    "torch.serialization._get_layout": _layout,
    "torch._utils._rebuild_qtensor": _qtensor,
    "torch._utils._rebuild_sparse_tensor": _sparse,
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": _device_from_cpu,
    "torch._utils._rebuild_device_tensor_from_numpy": _device_from_numpy,
    "torch._utils._rebuild_meta_tensor_no_storage": _meta_tensor,
    "torch._utils._rebuild_wrapper_subclass": _refused("tensor subclasses are not supported"),
    "numpy.dtype": _numpy_dtype,
    "numpy.core.multiarray._reconstruct": _numpy_array,
    "numpy._core.multiarray._reconstruct": _numpy_array,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
}
