"""A checkpoint's Python structure as JSON, with exact types (version 2).

Every value comes back with its exact type and value, or is refused when
saving, naming where it sits (`optimizer.state.0.step`) and what to do.
Types are matched exactly (`type(x) is float`), never with `isinstance`,
so a subclass (`np.float64`, `IntEnum`, a named tuple, `defaultdict`) is
never silently saved as its base class.

Every non-JSON-native value is an object whose first key starts with `$`:

| Python                                  | JSON                                                   |
|-----------------------------------------|--------------------------------------------------------|
| None, bool, int, str, list              | themselves                                             |
| float                                   | a number (`1.0`); `{"$float": "nan" / "inf" / "-inf"}` |
| tuple, set, frozenset                   | `{"$tuple": [...]}`, `{"$set": ...}`, `{"$frozenset": ...}` |
| dict, OrderedDict (with `_metadata`)    | `{"$dict": [[k, v], ...]}`, `{"$odict": ..., "meta": ...}` |
| Counter, deque, defaultdict             | `{"$counter": items}`, `{"$deque": [...], "maxlen": n}`, `{"$defaultdict": items, "factory": type}` |
| complex                                 | `{"$complex": [re, im]}`                               |
| bytes, bytearray                        | `{"$bytes": "<base64>"}`, or a tensor record when large |
| datetime, date, time, timedelta         | `{"$datetime": [y, m, d, H, M, S, us], "tz": ..., "fold": 1}` ... |
| timezone, ZoneInfo                      | `{"$timezone": [offset, name]}`, `{"$zoneinfo": key}`  |
| pathlib paths, UUID, Decimal, Fraction  | `{"$path": str, "type": "PosixPath"}`, `{"$uuid": ...}`, ... |
| range, slice                            | `{"$range": [start, stop, step]}`, `{"$slice": [...]}` |
| a class (allowed or built in)           | `{"$type": "module.qualname"}`                         |
| torch.Size, dtype, device, layout       | `{"$size": [...]}`, `{"$dtype": "float32"}`, ...      |
| tensor, Parameter                       | `{"$tensor": entry, ...}` or `{"$view": entry, ...}` (see _checkpoint) |
| quantized tensor                        | `{"$qtensor": storage bytes, "dtype", "scheme", "shape", "stride", "offset", scale/zero point(s)}` |
| sparse tensor (COO, CSR, CSC, BSR, BSC) | `{"$sparse": layout, "tensors": [...], "size": [...]}` |
| numpy array                             | `{"$ndarray": tensor record, "dtype": "<f8", "shape": [...]}` |
| numpy scalar, numpy dtype               | `{"$npscalar": "<f8", "hex": bytes}`, `{"$npdtype": "<f8"}` |
| enum member (allowed class)             | `{"$enum": "module.qualname", "value": ...}`           |
| other allowed class                     | `{"$object": name, "args": [...], "state": ..., "items": [...], "dictitems": [...]}` |

Version 1 (the tags up to `$device`) is a subset, read by the same decoder.
"""

from __future__ import annotations

import base64
import collections
import datetime
import decimal
import enum
import fractions
import math
import pathlib
import sys
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import _safe_types
from ._dtypes import torch_name
from ._safe_types import UnsafeTypeError
from ._safeweights_rust import CheckpointError

VERSION = 2
READS = (1, 2)

# Byte strings longer than this go to the data section.
LARGE_BYTES = 1024

_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_PATHS = {cls.__name__: cls for cls in (pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.PosixPath, pathlib.WindowsPath)}
_BUILTIN_TYPES = {
    f"{cls.__module__}.{cls.__qualname__}": cls
    for cls in (
        int, float, complex, str, bytes, bytearray, bool, list, tuple, dict, set, frozenset, type(None), object,
        collections.OrderedDict, collections.Counter, collections.deque, collections.defaultdict,
    )
}  # fmt: skip

OnTensor = Callable[[Any, str], Dict[str, Any]]


# Values that encode as themselves (exact types: a bool or int subclass such
# as an IntEnum is not one of them).
_SELF_ENCODED = frozenset({bool, str, int})


def _where(path: str) -> str:
    return path or "the root"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _encode_float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


class Encoder:
    """Encodes one object; `on_tensor(tensor, path)` returns the record of
    a dense tensor (and decides where its bytes go)."""

    def __init__(self, on_tensor: OnTensor) -> None:
        self.on_tensor = on_tensor
        self.allowed = {id(cls): name for name, cls in _safe_types.get_safe_types().items()}
        self.open: set = set()

    def encode(self, value: Any, path: str = "") -> Any:
        kind = type(value)
        if value is None or kind is bool or kind is str or kind is int:
            return value
        if kind is float:
            return _encode_float(value)
        method = _ENCODERS.get(kind)
        if method is not None:
            return method(self, value, path)
        return self.other(value, path)

    # Containers (the ones that can hold themselves are checked for cycles).

    # JSON scalars are their own encoding: no path is built for them (an
    # RNG state holds hundreds of ints; saves stay close to the write floor).

    def items(self, pairs: Any, path: str) -> List[List[Any]]:
        encode = self.encode
        return [
            [
                k if type(k) in _SELF_ENCODED else encode(k, path),
                v if v is None or type(v) in _SELF_ENCODED else encode(v, _join(path, k)),
            ]
            for k, v in pairs
        ]

    def seq(self, values: Any, path: str) -> List[Any]:
        encode = self.encode
        return [
            v if v is None or type(v) in _SELF_ENCODED else encode(v, _join(path, i)) for i, v in enumerate(values)
        ]

    def container(self, value: Any, path: str, build: Callable[[], Any]) -> Any:
        key = id(value)
        if key in self.open:
            raise TypeError(f"cannot save {_where(path)}: it contains itself")
        self.open.add(key)
        try:
            return build()
        finally:
            self.open.discard(key)

    def list(self, value: list, path: str) -> Any:
        return self.container(value, path, lambda: self.seq(value, path))

    def tuple(self, value: tuple, path: str) -> Any:
        return self.container(value, path, lambda: {"$tuple": self.seq(value, path)})

    def set(self, value: Any, path: str) -> Any:
        tag = "$set" if type(value) is set else "$frozenset"
        return {tag: self.seq(value, path)}

    def dict(self, value: dict, path: str) -> Any:
        return self.container(value, path, lambda: {"$dict": self.items(value.items(), path)})

    def odict(self, value: collections.OrderedDict, path: str) -> Any:
        extra = set(vars(value)) - {"_metadata"}
        if extra:
            raise TypeError(
                f"cannot save the OrderedDict at {_where(path)}: it has attributes {sorted(extra)} besides `_metadata`;"
                " use a dataclass (allowed with safeweights.add_safe_types) to keep them"
            )

        def build() -> Any:
            record: Dict[str, Any] = {"$odict": self.items(value.items(), path)}
            meta = getattr(value, "_metadata", None)
            if meta is not None:
                record["meta"] = self.encode(meta, _join(path, "_metadata"))
            return record

        return self.container(value, path, build)

    def counter(self, value: collections.Counter, path: str) -> Any:
        return {"$counter": self.items(value.items(), path)}

    def deque(self, value: collections.deque, path: str) -> Any:
        return self.container(value, path, lambda: {"$deque": self.seq(value, path), "maxlen": value.maxlen})

    def defaultdict(self, value: collections.defaultdict, path: str) -> Any:
        factory = value.default_factory
        record = None if factory is None else self.type_value(factory, _join(path, "default_factory"))
        return self.container(value, path, lambda: {"$defaultdict": self.items(value.items(), path), "factory": record})

    # Scalars of the standard library.

    def complex(self, value: complex, path: str) -> Any:
        return {"$complex": [_encode_float(value.real), _encode_float(value.imag)]}

    def bytes(self, value: Any, path: str) -> Any:
        tag = "$bytes" if type(value) is bytes else "$bytearray"
        if len(value) <= LARGE_BYTES:
            return {tag: base64.b64encode(value).decode("ascii")}
        import torch

        return {tag: self.on_tensor(torch.frombuffer(bytearray(value), dtype=torch.uint8), path)}

    def datetime(self, value: datetime.datetime, path: str) -> Any:
        parts = [value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond]
        return self.clock({"$datetime": parts}, value, path)

    def time(self, value: datetime.time, path: str) -> Any:
        return self.clock({"$time": [value.hour, value.minute, value.second, value.microsecond]}, value, path)

    def clock(self, record: Dict[str, Any], value: Any, path: str) -> Any:
        if value.fold:
            record["fold"] = value.fold
        if value.tzinfo is not None:
            record["tz"] = self.encode(value.tzinfo, _join(path, "tzinfo"))
        return record

    def date(self, value: datetime.date, path: str) -> Any:
        return {"$date": [value.year, value.month, value.day]}

    def timedelta(self, value: datetime.timedelta, path: str) -> Any:
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}

    def timezone(self, value: datetime.timezone, path: str) -> Any:
        args = value.__getinitargs__()
        offset = args[0]
        return {"$timezone": [[offset.days, offset.seconds, offset.microseconds], args[1] if len(args) > 1 else None]}

    def path(self, value: pathlib.PurePath, path: str) -> Any:
        return {"$path": str(value), "type": type(value).__name__}

    def simple(self, value: Any, path: str) -> Any:
        if type(value) is uuid.UUID:
            return {"$uuid": str(value)}
        if type(value) is decimal.Decimal:
            return {"$decimal": str(value)}
        if type(value) is fractions.Fraction:
            return {"$fraction": [value.numerator, value.denominator]}
        if type(value) is range:
            return {"$range": [value.start, value.stop, value.step]}
        return {"$slice": [self.encode(value.start, path), self.encode(value.stop, path), self.encode(value.step, path)]}

    # Classes, allowed or not.

    def type_value(self, cls: Any, path: str) -> Any:
        name = _builtin_type_name(cls) or self.allowed.get(id(cls))
        if name is None:
            raise self.refused(cls, path, "the class")
        return {"$type": name}

    def refused(self, cls: Any, path: str, what: str = "a") -> UnsafeTypeError:
        name = _safe_types.type_name(cls)
        if "<locals>" in cls.__qualname__:
            return UnsafeTypeError(
                f"cannot save {what} {name} at {_where(path)}: it is defined inside a function, so no loader can find it;"
                " define it at module level and allow it with safeweights.add_safe_types"
            )
        return UnsafeTypeError(
            f"cannot save {what} {name} at {_where(path)}: it is not an allowed type."
            f" Allow it (here and where you load) with `{_safe_types.allowed_line(cls)}`"
        )

    def other(self, value: Any, path: str) -> Any:
        kind = type(value)
        if "torch" in sys.modules:
            from ._torch_types import encode_torch, is_torch_value

            if is_torch_value(value):
                return encode_torch(self, value, path)
        numpy = sys.modules.get("numpy")
        if numpy is not None and (isinstance(value, (numpy.ndarray, numpy.generic, numpy.dtype))):
            from ._numpy_types import encode_numpy

            return encode_numpy(self, value, path)
        if isinstance(value, type):
            return self.type_value(value, path)
        name = self.allowed.get(id(kind))
        if name is None:
            raise self.refused(kind, path)
        if isinstance(value, enum.Enum):
            return {"$enum": name, "value": self.encode(value.value, _join(path, "value"))}
        return self.container(value, path, lambda: self.instance(value, name, path))

    def instance(self, value: Any, name: str, path: str) -> Any:
        """What pickle's protocol 2 would record: `__getnewargs__`, the
        state of `__getstate__`, and list or dict items."""
        kind = type(value)
        if kind.__reduce_ex__ is not object.__reduce_ex__ or kind.__reduce__ is not object.__reduce__:
            raise UnsafeTypeError(
                f"cannot save the {name} at {_where(path)}: it defines its own __reduce__, which a safe loader cannot"
                " follow; save its fields (a dict or a dataclass) instead"
            )
        record: Dict[str, Any] = {"$object": name}
        getnewargs = getattr(value, "__getnewargs__", None)
        if getnewargs is not None:
            record["args"] = self.seq(getnewargs(), path)
        getstate = getattr(value, "__getstate__", None)
        state = getstate() if getstate is not None else getattr(value, "__dict__", None) or None
        if state is not None:
            record["state"] = self.encode(state, path)
        if isinstance(value, list):
            record["items"] = self.seq(value, path)
        if isinstance(value, dict):
            record["dictitems"] = self.items(value.items(), path)
        return record


def _builtin_type_name(cls: Any) -> Optional[str]:
    name = f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', '')}"
    if _BUILTIN_TYPES.get(name) is cls:
        return name
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(cls, type) and issubclass(cls, numpy.generic) and cls.__module__ == "numpy":
        return f"numpy.{cls.__name__}"
    return None


_ENCODERS: Dict[type, Callable[[Encoder, Any, str], Any]] = {
    list: Encoder.list,
    tuple: Encoder.tuple,
    dict: Encoder.dict,
    set: Encoder.set,
    frozenset: Encoder.set,
    collections.OrderedDict: Encoder.odict,
    collections.Counter: Encoder.counter,
    collections.deque: Encoder.deque,
    collections.defaultdict: Encoder.defaultdict,
    complex: Encoder.complex,
    bytes: Encoder.bytes,
    bytearray: Encoder.bytes,
    datetime.datetime: Encoder.datetime,
    datetime.date: Encoder.date,
    datetime.time: Encoder.time,
    datetime.timedelta: Encoder.timedelta,
    datetime.timezone: Encoder.timezone,
    uuid.UUID: Encoder.simple,
    decimal.Decimal: Encoder.simple,
    fractions.Fraction: Encoder.simple,
    range: Encoder.simple,
    slice: Encoder.simple,
    **{cls: Encoder.path for cls in _PATHS.values()},
}


def _zoneinfo_encoder() -> None:
    try:
        import zoneinfo
    except ImportError:  # Python 3.8
        return
    _ENCODERS[zoneinfo.ZoneInfo] = lambda self, value, path: {"$zoneinfo": value.key}


_zoneinfo_encoder()


def encode(obj: Any, on_tensor: OnTensor) -> Any:
    """The JSON-able structure of `obj`."""
    return Encoder(on_tensor).encode(obj, "")


class Decoder:
    """Rebuilds what `Encoder` produced. `tensors.tensor(record)` returns a
    tensor placed as `map_location` says; `tensors.array(record)` the same
    bytes as a cpu tensor (for numpy arrays and byte strings)."""

    def __init__(self, tensors: Any, extra_types: Any = None) -> None:
        self.tensors = tensors
        self.allowed = _safe_types.get_safe_types()
        if extra_types:
            self.allowed.update(_safe_types._named(extra_types))

    def decode(self, value: Any, path: str = "") -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v, _join(path, i)) for i, v in enumerate(value)]
        if not isinstance(value, dict) or not value:
            raise _invalid(path, f"unexpected {type(value).__name__}")
        tag = next(iter(value))
        if tag in ("$tensor", "$view"):
            # Outside the try below: a map_location callable's own errors pass through.
            return self.tensors.tensor(value)
        method = _DECODERS.get(tag)
        if method is None:
            raise _invalid(path, f"unknown tag {tag!r} (written by a newer safeweights?)")
        try:
            return method(self, value, value[tag], path)
        except (CheckpointError, RecursionError):
            raise
        except (TypeError, ValueError, KeyError, IndexError, OverflowError, AttributeError, decimal.InvalidOperation) as error:
            raise _invalid(path, f"bad {tag} record: {error}") from None

    def seq(self, body: Any, path: str) -> List[Any]:
        return [self.decode(v, _join(path, i)) for i, v in enumerate(_list(body, path))]

    def pairs(self, body: Any, path: str) -> List[Tuple[Any, Any]]:
        out = []
        for item in _list(body, path):
            if not isinstance(item, list) or len(item) != 2:
                raise _invalid(path, "dict items must be [key, value] pairs")
            key = self.decode(item[0], path)
            out.append((key, self.decode(item[1], _join(path, key))))
        return out

    def find_type(self, name: Any, path: str) -> Any:
        if not isinstance(name, str):
            raise _invalid(path, "a class name must be a string")
        cls = _BUILTIN_TYPES.get(name) or self.allowed.get(name) or _numpy_type(name)
        if cls is None:
            raise UnsafeTypeError(
                f"the checkpoint holds a {name} at {_where(path)}, which is not an allowed type."
                f" If you trust it, allow it with `safeweights.add_safe_types([{name}])`"
                " (or load(..., safe_types=[...]), or torch.serialization.add_safe_globals)"
            )
        return cls

    def find_class(self, name: Any, path: str) -> Any:
        cls = self.find_type(name, path)
        if not isinstance(cls, type):
            raise _invalid(path, f"{name} is allowed as a function, not a class")
        return cls


def _numpy_type(name: str) -> Any:
    if not name.startswith("numpy."):
        return None
    import numpy

    cls = getattr(numpy, name[len("numpy.") :], None)
    return cls if isinstance(cls, type) and issubclass(cls, numpy.generic) else None


def _invalid(path: str, why: str) -> CheckpointError:
    return CheckpointError(f"invalid checkpoint structure at {_where(path)}: {why}")


def _list(body: Any, path: str) -> List[Any]:
    if not isinstance(body, list):
        raise _invalid(path, "expected a list")
    return body


def _int(value: Any, path: str) -> int:
    if type(value) is not int:
        raise _invalid(path, f"expected an int, got {type(value).__name__}")
    return value


def _float(value: Any, path: str) -> float:
    if isinstance(value, dict) and value.get("$float") in _FLOATS:
        return _FLOATS[value["$float"]]
    if type(value) not in (int, float):
        raise _invalid(path, f"expected a number, got {type(value).__name__}")
    return float(value)


def _str(value: Any, path: str) -> str:
    if type(value) is not str:
        raise _invalid(path, f"expected a string, got {type(value).__name__}")
    return value


def _ints(value: Any, path: str) -> List[int]:
    return [_int(v, path) for v in _list(value, path)]


def _decode_bytes(self: Decoder, record: Any, body: Any, path: str) -> Any:
    if isinstance(body, str):
        data = base64.b64decode(body.encode("ascii"), validate=True)
    else:
        data = self.tensors.array(body).numpy().tobytes()
    return data if "$bytes" in record else bytearray(data)


def _decode_defaultdict(self: Decoder, record: Any, body: Any, path: str) -> Any:
    factory = record.get("factory")
    factory = None if factory is None else self.decode(factory, _join(path, "default_factory"))
    if factory is not None and not callable(factory):
        raise _invalid(path, "the default factory is not callable")
    return collections.defaultdict(factory, self.pairs(body, path))


def _decode_odict(self: Decoder, record: Any, body: Any, path: str) -> Any:
    result = collections.OrderedDict(self.pairs(body, path))
    if "meta" in record:
        result._metadata = self.decode(record["meta"], _join(path, "_metadata"))
    return result


def _decode_clock(self: Decoder, record: Any, body: Any, path: str) -> Any:
    tz = self.decode(record["tz"], _join(path, "tzinfo")) if "tz" in record else None
    if tz is not None and not isinstance(tz, datetime.tzinfo):
        raise _invalid(path, "tz is not a tzinfo")
    fold = _int(record.get("fold", 0), path)
    parts = _ints(body, path)
    if "$datetime" in record:
        return datetime.datetime(*parts, tzinfo=tz, fold=fold)
    return datetime.time(*parts, tzinfo=tz, fold=fold)


def _decode_timezone(self: Decoder, record: Any, body: Any, path: str) -> Any:
    offset, name = _list(body, path)
    delta = datetime.timedelta(*_ints(offset, path))
    return datetime.timezone(delta) if name is None else datetime.timezone(delta, name)


def _decode_zoneinfo(self: Decoder, record: Any, body: Any, path: str) -> Any:
    import zoneinfo

    if not isinstance(body, str):
        raise _invalid(path, "a time zone key must be a string")
    return zoneinfo.ZoneInfo(body)


def _decode_path(self: Decoder, record: Any, body: Any, path: str) -> Any:
    cls = _PATHS.get(record.get("type"))
    if cls is None or not isinstance(body, str):
        raise _invalid(path, f"unknown path type {record.get('type')!r}")
    return cls(body)


def _decode_slice(self: Decoder, record: Any, body: Any, path: str) -> Any:
    return slice(*self.seq(body, path))


def _decode_enum(self: Decoder, record: Any, body: Any, path: str) -> Any:
    cls = self.find_class(body, path)
    if not issubclass(cls, enum.Enum):
        raise _invalid(path, f"{body} is not an enum")
    # EnumMeta.__call__ looks the member up; nothing is constructed.
    return cls(self.decode(record.get("value"), _join(path, "value")))


def _decode_object(self: Decoder, record: Any, body: Any, path: str) -> Any:
    cls = self.find_class(body, path)
    args = tuple(self.seq(record.get("args", []), path))
    state = self.decode(record["state"], path) if "state" in record else None
    instance = _safe_types.rebuild(cls, args, state)
    if "items" in record:
        instance.extend(self.seq(record["items"], path))
    for key, value in self.pairs(record.get("dictitems", []), path):
        instance[key] = value
    return instance


def _decode_torch(self: Decoder, record: Any, body: Any, path: str) -> Any:
    from ._torch_types import decode_torch

    return decode_torch(self, record, path)


def _decode_numpy(self: Decoder, record: Any, body: Any, path: str) -> Any:
    from ._numpy_types import decode_numpy

    return decode_numpy(self, record, path)


_DECODERS: Dict[str, Callable[[Decoder, Any, Any, str], Any]] = {
    "$float": lambda self, record, body, path: _float(record, path),
    "$tuple": lambda self, record, body, path: tuple(self.seq(body, path)),
    "$set": lambda self, record, body, path: set(self.seq(body, path)),
    "$frozenset": lambda self, record, body, path: frozenset(self.seq(body, path)),
    "$dict": lambda self, record, body, path: dict(self.pairs(body, path)),
    "$odict": _decode_odict,
    "$counter": lambda self, record, body, path: collections.Counter(dict(self.pairs(body, path))),
    "$deque": lambda self, record, body, path: collections.deque(
        self.seq(body, path), None if record.get("maxlen") is None else _int(record["maxlen"], path)
    ),
    "$defaultdict": _decode_defaultdict,
    "$complex": lambda self, record, body, path: complex(*(_float(v, path) for v in _list(body, path))),
    "$bytes": _decode_bytes,
    "$bytearray": _decode_bytes,
    "$datetime": _decode_clock,
    "$time": _decode_clock,
    "$date": lambda self, record, body, path: datetime.date(*_ints(body, path)),
    "$timedelta": lambda self, record, body, path: datetime.timedelta(*_ints(body, path)),
    "$timezone": _decode_timezone,
    "$zoneinfo": _decode_zoneinfo,
    "$path": _decode_path,
    "$uuid": lambda self, record, body, path: uuid.UUID(_str(body, path)),
    "$decimal": lambda self, record, body, path: decimal.Decimal(_str(body, path)),
    "$fraction": lambda self, record, body, path: fractions.Fraction(*_ints(body, path)),
    "$range": lambda self, record, body, path: range(*_ints(body, path)),
    "$slice": _decode_slice,
    "$type": lambda self, record, body, path: self.find_type(body, path),
    "$enum": _decode_enum,
    "$object": _decode_object,
    **{tag: _decode_torch for tag in ("$tensor", "$view", "$size", "$dtype", "$device", "$layout", "$memory_format", "$qtensor", "$sparse")},
    **{tag: _decode_numpy for tag in ("$ndarray", "$npscalar", "$npdtype")},
}


def decode(root: Any, tensors: Any, extra_types: Any = None) -> Any:
    """Rebuilds the object from its structure (version 1 or 2)."""
    try:
        return Decoder(tensors, extra_types).decode(root, "")
    except RecursionError:
        raise CheckpointError("invalid checkpoint structure: nested too deeply") from None
