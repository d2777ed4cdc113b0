"""torch values in a checkpoint's structure: sizes, dtypes, devices,
layouts, memory formats, and tensors of every kind (dense, parameters,
quantized per tensor and per channel, sparse COO/CSR/CSC/BSR/BSC).

Dense tensors go to the file's data section through the encoder's
`on_tensor`; quantized and sparse tensors are recorded as the dense
tensors torch rebuilds them from, with their parameters. See `_types`.
"""

from __future__ import annotations

from typing import Any, Dict

import torch

from ._dtypes import torch_name
from ._safe_types import UnsafeTypeError
from ._structure import torch_dtype

_QUANTIZED = {torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4}
_PER_TENSOR = {torch.per_tensor_affine}
_PER_CHANNEL = {torch.per_channel_affine, torch.per_channel_affine_float_qparams}
# Layout -> (names of its component tensors, how to get them).
_SPARSE = {
    torch.sparse_coo: ("indices", "values"),
    torch.sparse_csr: ("crow_indices", "col_indices", "values"),
    torch.sparse_csc: ("ccol_indices", "row_indices", "values"),
    torch.sparse_bsr: ("crow_indices", "col_indices", "values"),
    torch.sparse_bsc: ("ccol_indices", "row_indices", "values"),
}
_VALUE_TYPES = (torch.Size, torch.dtype, torch.device, torch.layout, torch.memory_format)


def _name(obj: Any) -> str:
    return str(obj).rpartition(".")[2]


def _where(path: str) -> str:
    return path or "the root"


def is_torch_value(value: Any) -> bool:
    return isinstance(value, torch.Tensor) or type(value) in _VALUE_TYPES


def encode_torch(encoder: Any, value: Any, path: str) -> Any:
    kind = type(value)
    if kind is torch.Size:
        return {"$size": list(value)}
    if kind is torch.dtype:
        return {"$dtype": torch_name(value)}
    if kind is torch.device:
        return {"$device": str(value)}
    if kind is torch.layout:
        return {"$layout": _name(value)}
    if kind is torch.memory_format:
        return {"$memory_format": _name(value)}
    if kind not in (torch.Tensor, torch.nn.Parameter):
        raise UnsafeTypeError(
            f"cannot save the {kind.__module__}.{kind.__qualname__} at {_where(path)}: only torch.Tensor and"
            " nn.Parameter are saved as tensors; save `x.as_subclass(torch.Tensor)` or the tensors it holds"
        )
    if value.is_quantized:
        return _encode_quantized(encoder, value, path)
    if value.layout in _SPARSE:
        return _encode_sparse(encoder, value, path)
    if value.layout != torch.strided:
        raise TypeError(f"cannot save the {value.layout} tensor at {_where(path)}: call .to_dense() first")
    return encoder.on_tensor(value, path)


def _encode_quantized(encoder: Any, value: Any, path: str) -> Dict[str, Any]:
    scheme = value.qscheme()
    if scheme not in _PER_TENSOR | _PER_CHANNEL:
        raise TypeError(f"cannot save the quantized tensor at {_where(path)}: torch itself cannot rebuild {scheme}")
    # The storage's bytes, as torch.save keeps them: integer representation.
    raw = torch.empty(0, dtype=torch.uint8, device=value.device).set_(value.untyped_storage())
    record: Dict[str, Any] = {
        "$qtensor": encoder.on_tensor(raw, path),
        "dtype": torch_name(value.dtype),
        "scheme": _name(scheme),
        "offset": value.storage_offset(),
        "shape": list(value.shape),
        "stride": list(value.stride()),
    }
    if scheme in _PER_TENSOR:
        record["scale"] = encoder.encode(value.q_scale(), path)
        record["zero_point"] = value.q_zero_point()
    else:
        record["scales"] = encoder.on_tensor(value.q_per_channel_scales(), f"{path}.scales")
        record["zero_points"] = encoder.on_tensor(value.q_per_channel_zero_points(), f"{path}.zero_points")
        record["axis"] = value.q_per_channel_axis()
    return record


def _components(value: Any) -> Any:
    if value.layout == torch.sparse_coo:
        return [value._indices(), value._values()]
    names = _SPARSE[value.layout]
    return [getattr(value, name)() for name in names]


def _encode_sparse(encoder: Any, value: Any, path: str) -> Dict[str, Any]:
    names = _SPARSE[value.layout]
    parts = _components(value.detach())
    record: Dict[str, Any] = {
        "$sparse": _name(value.layout),
        "tensors": [encoder.on_tensor(part, f"{path}.{name}") for name, part in zip(names, parts)],
        "size": list(value.shape),
    }
    if value.layout == torch.sparse_coo:
        record["coalesced"] = value.is_coalesced()
    if value.requires_grad:
        record["requires_grad"] = True
    return record


def decode_torch(decoder: Any, record: Dict[str, Any], path: str) -> Any:
    from ._types import _ints, _invalid, _str

    tag = next(iter(record))
    body = record[tag]
    if tag in ("$tensor", "$view"):
        return decoder.tensors.tensor(record)
    if tag == "$size":
        return torch.Size(_ints(body, path))
    if tag == "$dtype":
        return torch_dtype(body)
    if tag == "$device":
        return torch.device(_str(body, path))
    if tag in ("$layout", "$memory_format"):
        kind = torch.layout if tag == "$layout" else torch.memory_format
        found = getattr(torch, _str(body, path), None)
        if type(found) is not kind:
            raise _invalid(path, f"{body!r} is not a torch {kind.__name__}")
        return found
    if tag == "$qtensor":
        return _decode_quantized(decoder, record, path)
    layout = getattr(torch, _str(body, path), None)
    if layout not in _SPARSE:
        raise _invalid(path, f"{body!r} is not a sparse layout")
    parts = [decoder.tensors.tensor(part) for part in record["tensors"]]
    if len(parts) != len(_SPARSE[layout]):
        raise _invalid(path, f"a {body} tensor needs {len(_SPARSE[layout])} component tensors")
    size = _ints(record["size"], path)
    if layout == torch.sparse_coo:
        result = torch.sparse_coo_tensor(*parts, size, is_coalesced=bool(record.get("coalesced")), check_invariants=True)
    else:
        result = torch.sparse_compressed_tensor(*parts, size, layout=layout, check_invariants=True)
    if record.get("requires_grad"):
        result.requires_grad_(True)
    return result


def _decode_quantized(decoder: Any, record: Dict[str, Any], path: str) -> Any:
    from ._types import _float, _int, _ints, _invalid

    dtype = torch_dtype(record["dtype"])
    if dtype not in _QUANTIZED:
        raise _invalid(path, f"{record['dtype']!r} is not a quantized dtype")
    scheme = getattr(torch, str(record["scheme"]), None)
    # Where map_location puts it (torch rebuilds a quantized tensor on its
    # storage's device); a copy: the storage holds exactly the tensor's
    # bytes, as torch.load's would.
    raw = decoder.tensors.tensor(record["$qtensor"]).clone()
    if scheme in _PER_TENSOR:
        scale, zero_point = _float(record["scale"], path), _int(record["zero_point"], path)
        base = torch._empty_affine_quantized([0], scale=scale, zero_point=zero_point, dtype=dtype, device=raw.device)
    elif scheme in _PER_CHANNEL:
        scales = decoder.tensors.tensor(record["scales"])
        zero_points = decoder.tensors.tensor(record["zero_points"])
        axis = _int(record["axis"], path)
        base = torch._empty_per_channel_affine_quantized(
            [0], scales=scales, zero_points=zero_points, axis=axis, dtype=dtype, device=raw.device
        )
    else:
        raise _invalid(path, f"unknown quantization scheme {record['scheme']!r}")
    storage = torch.storage.TypedStorage(wrap_storage=raw.untyped_storage(), dtype=dtype, _internal=True)
    # torch checks that the view stays inside the storage.
    return base.set_(storage, _int(record["offset"], path), _ints(record["shape"], path), _ints(record["stride"], path))
