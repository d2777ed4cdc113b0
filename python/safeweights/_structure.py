"""Encoding a checkpoint's Python structure as JSON, with exact types.

Every non-JSON-native value is a one-key object whose key starts with `$`,
so the encoding is unambiguous:

| Python                      | JSON                                         |
|-----------------------------|----------------------------------------------|
| None, bool, int, str        | themselves                                   |
| float (finite)              | a number with a fraction or exponent (`1.0`) |
| float nan / inf / -inf      | `{"$float": "nan"}` / `"inf"` / `"-inf"`     |
| list                        | an array                                     |
| tuple / torch.Size          | `{"$tuple": [...]}` / `{"$size": [...]}`     |
| set                         | `{"$set": [...]}`                            |
| dict / OrderedDict          | `{"$dict": [[key, value], ...]}` / `{"$odict": ..., "meta": ...}` |
| torch.dtype / torch.device  | `{"$dtype": "float32"}` / `{"$device": "cuda:0"}` |
| tensor                      | `{"$tensor": entry, ...}` or `{"$view": entry, ...}` (see _checkpoint) |

Dict keys are encoded like values, so int keys (optimizer state) and key
order survive. OrderedDict's `_metadata` attribute (module versions used by
`load_state_dict`) is kept under `meta`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Dict, List

from ._dtypes import torch_name
from ._safeweights_rust import CheckpointError

_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode(value: Any, path: str, on_tensor: Callable[[Any, str], Dict[str, Any]]) -> Any:
    """Encodes `value`; `on_tensor(tensor, path)` returns a tensor's record."""
    import torch

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, torch.Tensor):
        return on_tensor(value, path)
    if isinstance(value, torch.dtype):
        return {"$dtype": torch_name(value)}
    if isinstance(value, torch.device):
        return {"$device": str(value)}
    if isinstance(value, list):
        return [encode(v, _join(path, i), on_tensor) for i, v in enumerate(value)]
    if isinstance(value, torch.Size):
        return {"$size": list(value)}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, _join(path, i), on_tensor) for i, v in enumerate(value)]}
    if isinstance(value, (set, frozenset)):
        return {"$set": [encode(v, _join(path, i), on_tensor) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        items = [[encode(k, path, _no_tensor_keys), encode(v, _join(path, k), on_tensor)] for k, v in value.items()]
        if isinstance(value, OrderedDict):
            record: Dict[str, Any] = {"$odict": items}
            meta = getattr(value, "_metadata", None)
            if meta is not None:
                record["meta"] = encode(meta, path, _no_tensor_keys)
            return record
        return {"$dict": items}
    raise TypeError(
        f"cannot save a {type(value).__module__}.{type(value).__qualname__} at {path or 'the root'}:"
        " checkpoints hold tensors, dicts, lists, tuples, sets, None, bool, int, float, str, torch.dtype and torch.device"
    )


def _no_tensor_keys(value: Any, path: str) -> Any:
    raise TypeError(f"a tensor cannot be a dict key or metadata (at {path or 'the root'})")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def decode(value: Any, on_tensor: Callable[[Dict[str, Any]], Any]) -> Any:
    """Rebuilds what `encode` produced; `on_tensor(record)` returns a tensor."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [decode(v, on_tensor) for v in value]
    if not isinstance(value, dict) or not value:
        raise CheckpointError(f"invalid checkpoint structure: unexpected {type(value).__name__}")
    tag = next(iter(value))
    body = value[tag]
    if tag in ("$tensor", "$view"):
        return on_tensor(value)
    if tag == "$float" and body in _FLOATS:
        return _FLOATS[body]
    if tag == "$tuple":
        return tuple(decode(v, on_tensor) for v in _list(body))
    if tag == "$size":
        import torch

        return torch.Size(int(v) for v in _list(body))
    if tag == "$set":
        return {decode(v, on_tensor) for v in _list(body)}
    if tag in ("$dict", "$odict"):
        pairs = [(decode(k, on_tensor), decode(v, on_tensor)) for k, v in map(_pair, _list(body))]
        if tag == "$dict":
            return dict(pairs)
        result = OrderedDict(pairs)
        if "meta" in value:
            result._metadata = decode(value["meta"], on_tensor)
        return result
    if tag == "$dtype":
        return torch_dtype(body)
    if tag == "$device":
        import torch

        return torch.device(body)
    raise CheckpointError(f"invalid checkpoint structure: unknown tag {tag!r}")


def torch_dtype(name: Any) -> Any:
    """`torch.<name>` if it is a dtype (never any other attribute)."""
    import torch

    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"invalid checkpoint structure: {name!r} is not a torch dtype")
    return dtype


def _list(body: Any) -> List[Any]:
    if not isinstance(body, list):
        raise CheckpointError("invalid checkpoint structure: expected a list")
    return body


def _pair(item: Any) -> Any:
    if not isinstance(item, list) or len(item) != 2:
        raise CheckpointError("invalid checkpoint structure: dict items must be [key, value] pairs")
    return item
