"""`save_checkpoint` / `load_checkpoint`: whole training states (nested dicts,
lists and tuples of tensors and Python values) as safetensors files.

A checkpoint is an ordinary safetensors file: every tensor is a named
entry (named by its path in the object, e.g. `model.fc.weight` or
`optimizer.state.0.exp_avg`), so any safetensors reader can open it. The
object's structure is JSON in the metadata under `safeweights.checkpoint`:
`{"version": 1, "root": ...}` (see `_structure` for the encoding).

Tensors that share memory are stored once and come back sharing memory:

- identical views of one storage (tied weights) are one entry, and every
  place that held them gets the same tensor;
- different views of one storage (a weight and a slice of it, partially
  overlapping views) store the byte range of the storage they span once,
  as one entry, and each view is rebuilt on it with its exact offset, shape
  and strides (`{"$view": entry, "dtype", "offset", "shape", "stride"}`);
- any other non-contiguous tensor is stored contiguous.

Tensors whose dtype the format lacks (complex128, ...) are stored as raw
bytes (`U8`) and reinterpreted on load. No pickle is involved anywhere.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Dict, List, Optional, Tuple, Union

from . import _dtypes, _structure, _types
from ._location import Placement
from ._safe_open import _storage_options, safe_open
from ._safeweights_rust import (
    SNIFF_LEN,
    CheckpointError,
    serialize,
    serialize_file,
    serialize_sharded,
    sniff_format,
)

STRUCTURE_KEY = "safeweights.checkpoint"
FORMAT_VERSION = _types.VERSION

PathOrFile = Union[str, "os.PathLike[str]", io.IOBase, Any]


def save_checkpoint(
    obj: Any,
    f: PathOrFile,
    *,
    metadata: Optional[Dict[str, str]] = None,
    max_shard_size: Union[int, str, None] = None,
    overwrite: bool = False,
    durable: bool = True,
    storage_options: Optional[Dict[str, Any]] = None,
) -> None:
    """Saves `obj` to `f`, a path, an `s3://` URL (multipart upload, see
    `save_file`) or a binary file object, without pickle:
    `safeweights.save` (see there for the types it keeps exactly).

    With `max_shard_size` (bytes, or a string such as `"5GB"`), `f` is a
    directory that receives `model-0000N-of-0000M.safetensors` shards and a
    Hugging Face compatible `model.safetensors.index.json` (or a single
    `model.safetensors` when everything fits in one shard). A checkpoint
    already in that directory raises `FileExistsError` unless
    `overwrite=True`; it is then replaced atomically as a set: a crash
    leaves the old checkpoint or the new one, never a mix that loads.

    With `durable` (the default) every file and directory written is
    flushed to disk before this returns; `durable=False` skips that.

    Example:

    ```python
    save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "step": step}, "ckpt.safetensors")
    ```
    """
    from .torch import _tensor_spec

    plan = _Plan()
    root = _types.encode(obj, plan.add)
    entries = plan.finish()
    header = dict(metadata or {})
    header[STRUCTURE_KEY] = json.dumps(
        {"version": FORMAT_VERSION, "root": root}, allow_nan=False, separators=(",", ":"), ensure_ascii=False
    )
    keep_alive: List[Any] = []
    specs = {}
    for name, tensor in entries.items():
        specs[name] = _tensor_spec(name, tensor, keep_alive)
    if max_shard_size is not None:
        if not _is_path(f):
            raise TypeError("max_shard_size needs a directory path, not a file object")
        serialize_sharded(specs, os.fspath(f), max_shard_size, header, overwrite=overwrite, durable=durable)
    elif _is_path(f):
        serialize_file(specs, os.fspath(f), header, durable=durable, storage_options=_storage_options(storage_options))
    else:
        f.write(serialize(specs, header))


def load_checkpoint(
    f: PathOrFile,
    *,
    map_location: Any = None,
    mmap: bool = True,
    safe_types: Optional[List[Any]] = None,
    storage_options: Optional[Dict[str, Any]] = None,
) -> Any:
    """Loads what `save_checkpoint` saved, rebuilding the exact object
    (types, key types and order, shared tensors).

    `f` is a path (a file, a sharded checkpoint's directory or
    `*.index.json`) or a binary file object. `map_location` moves tensors
    as in `torch.load` (None, a device string, a `torch.device`, a dict of
    locations or a callable); with None they go back to the device they
    were saved from. `safe_types` allows classes for this call (see
    `safeweights.add_safe_types`). With `mmap=True` (default) cpu tensors are
    copy-on-write views of the file; with `mmap=False` they are read into
    memory.

    A plain safetensors file without checkpoint structure (written by
    `save_file`, the reference, or `safeweights convert`) loads as a flat
    dict of tensors, as `load_file` returns, plus the tied weights stored
    once: each metadata entry `alias: kept_name` (as the reference's
    `convert` and `save_model` record them) whose key is not a tensor and
    whose value is, gives `alias` the very tensor object of `kept_name`.

    A legacy `torch.save` file (zip or pre-1.6 format) is read with a safe
    pickle reader that executes nothing and returns what
    `torch.load(weights_only=True)` would; a file that would need code
    execution raises `UnsafeCheckpointError` naming the offending global.

    Example: `state = load_checkpoint("ckpt.safetensors", map_location="cpu")`.
    """
    placement = Placement(map_location)
    device = placement.fixed_device
    if _is_path(f) and _is_url(os.fspath(f)):
        from ._legacy import load_legacy
        from ._remote import load_remote_torch

        # A torch checkpoint (a file, or an index of torch shards) is
        # downloaded whole for the pickle reader; safetensors files, indexes
        # and prefixes are read by ranges (below).
        loaded = load_remote_torch(
            os.fspath(f),
            _storage_options(storage_options),
            lambda path: load_legacy(path, placement, _allowed(safe_types), False),
        )
        if loaded is not None:
            return loaded
        source: Any = os.fspath(f)
    elif _is_path(f):
        path = os.fspath(f)
        if os.path.isfile(path) and not path.endswith(".json") and _is_pickle(_head(path)):
            from ._legacy import load_legacy

            return load_legacy(path, placement, _allowed(safe_types), mmap)
        source = path
    else:
        source = _read_all(f)
        if _is_pickle(bytes(source[:SNIFF_LEN])):
            from ._legacy import load_legacy

            return load_legacy(source, placement, _allowed(safe_types))
    # Onto a GPU, every tensor moves in one pass through pinned buffers.
    load_device = device if device is not None and device.type == "cuda" else None
    with safe_open(
        source,
        framework="pt",
        device=load_device,
        backend="mmap" if mmap else "pread",
        storage_options=storage_options,
    ) as handle:
        structure = (handle.metadata() or {}).get(STRUCTURE_KEY)
        tensors = handle.get_tensors()
        if structure is None:
            flat = {name: placement.place(t, "cpu") for name, t in tensors.items()}
            for alias, kept in _aliases(handle._all_metadata(), tensors):
                flat[alias] = flat[kept]
            return flat
    try:
        document = json.loads(structure)
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"the checkpoint structure is not valid JSON: {error}") from None
    if not isinstance(document, dict) or document.get("version") not in _types.READS:
        raise CheckpointError(
            f"unsupported checkpoint structure version {document.get('version') if isinstance(document, dict) else None!r}"
            f" (this safeweights reads versions {', '.join(map(str, _types.READS))}): upgrade safeweights"
        )
    return _types.decode(document.get("root"), _Rebuilder(tensors, placement), safe_types)


def _allowed(safe_types: Any) -> Dict[str, Any]:
    from . import _safe_types

    allowed = _safe_types.get_safe_types()
    allowed.update(_safe_types._named(safe_types or []))
    return allowed


def _aliases(metadata: List[Dict[str, str]], tensors: Dict[str, Any]) -> List[Tuple[str, str]]:
    """Tied weights stored once, as the reference's `convert` and
    `save_model` record them (and `safeweights convert` does): a metadata
    key that is not a tensor name, whose value is one. `format` and the
    `safeweights.*` keys are never aliases."""
    found = []
    for entries in metadata:
        for alias, kept in entries.items():
            if alias in tensors or kept not in tensors or alias == "format" or alias.startswith("safeweights."):
                continue
            found.append((alias, kept))
    return found


class _Plan:
    """Decides which bytes become file entries, storage by storage."""

    def __init__(self) -> None:
        self.groups: Dict[Tuple[Any, ...], List[Tuple[Any, str, Dict[str, Any]]]] = {}
        self.names: set = set()
        self.entries: Dict[str, Any] = {}

    def add(self, tensor: Any, path: str) -> Dict[str, Any]:
        import torch

        if tensor.layout != torch.strided:
            raise TypeError(f"cannot save the sparse tensor at {path or 'the root'}: call .to_dense() first")
        if tensor.device.type == "meta":
            raise TypeError(f"cannot save the meta tensor at {path or 'the root'}: it has no data")
        record: Dict[str, Any] = {}
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr()) if storage.nbytes() and storage.data_ptr() else ("own", id(record))
        self.groups.setdefault(key, []).append((tensor, path, record))
        return record

    def finish(self) -> Dict[str, Any]:
        for members in self.groups.values():
            views = {_view_key(t): None for t, _, _ in members}
            if len(views) == 1:
                self._store_whole(members)
            else:
                self._store_region(members)
        return self.entries

    def _name(self, path: str) -> str:
        name = path or "tensor"
        unique, suffix = name, 1
        while unique in self.names or unique == "__metadata__":
            suffix += 1
            unique = f"{name}#{suffix}"
        self.names.add(unique)
        return unique

    def _store_whole(self, members: List[Tuple[Any, str, Dict[str, Any]]]) -> None:
        import torch

        tensor, path, _ = members[0]
        name = self._name(path)
        data = tensor.detach().contiguous()
        storable = data.dtype in _dtypes.torch_to_format()
        # A dtype the format lacks is stored as its raw bytes.
        self.entries[name] = data if storable else data.reshape(-1).view(torch.uint8)
        for member, _, record in members:
            record["$tensor"] = name
            if not storable:
                record.update(dtype=_dtypes.torch_name(data.dtype), shape=list(data.shape))
            _describe(member, record)

    def _store_region(self, members: List[Tuple[Any, str, Dict[str, Any]]]) -> None:
        import torch

        tensors = [t for t, _, _ in members]
        itemsizes = {t.element_size() for t in tensors}
        align = max(itemsizes)
        spans = [_byte_span(t) for t in tensors]
        low = min(s for s, _ in spans) // align * align
        high = max(e for _, e in spans)
        storage = tensors[0].untyped_storage()
        region = torch.empty(0, dtype=torch.uint8, device=tensors[0].device)
        region.set_(storage, low, (high - low,), (1,))
        dtypes = {t.dtype for t in tensors}
        dtype = next(iter(dtypes))
        if len(dtypes) == 1 and dtype in _dtypes.torch_to_format() and (high - low) % align == 0:
            region = region.view(dtype)
        name = self._name(members[0][1])
        self.entries[name] = region.detach().clone()
        for (tensor, _, record), (start, _) in zip(members, spans):
            record.update(
                {
                    "$view": name,
                    "dtype": _dtypes.torch_name(tensor.dtype),
                    "offset": (start - low) // tensor.element_size(),
                    "shape": list(tensor.shape),
                    "stride": list(tensor.stride()),
                }
            )
            _describe(tensor, record)


def _describe(tensor: Any, record: Dict[str, Any]) -> None:
    import torch

    if isinstance(tensor, torch.nn.Parameter):
        record["parameter"] = True
    if tensor.requires_grad:
        record["requires_grad"] = True
    if tensor.device.type != "cpu":
        record["device"] = str(tensor.device)


def _view_key(tensor: Any) -> Tuple[Any, ...]:
    return (tensor.dtype, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))


def _byte_span(tensor: Any) -> Tuple[int, int]:
    """[start, end) in bytes of the storage that a view touches."""
    size = tensor.element_size()
    start = tensor.storage_offset() * size
    if tensor.numel() == 0:
        return start, start
    last = sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride()))
    return start, start + (last + 1) * size


class _Rebuilder:
    """Turns tensor records back into tensors, sharing what was shared."""

    def __init__(self, tensors: Dict[str, Any], placement: Placement) -> None:
        self.tensors = tensors
        self.placement = placement
        self.built: Dict[Tuple[str, bool], Any] = {}

    def array(self, record: Dict[str, Any]) -> Any:
        """The record's tensor on the cpu, wherever map_location puts
        tensors (numpy arrays and byte strings)."""
        return self.tensor(record, cpu=True)

    def tensor(self, record: Any, cpu: bool = False) -> Any:
        import torch

        if not isinstance(record, dict) or not ("$tensor" in record or "$view" in record):
            raise CheckpointError(f"invalid checkpoint structure: {record!r} is not a tensor record")
        if "$tensor" in record:
            name = record["$tensor"]
            base = self._entry(name, record, cpu)
            if "dtype" in record:
                dtype = _structure.torch_dtype(record["dtype"])
                base = base.view(dtype).reshape(_shape(record.get("shape")))
        else:
            entry = self._entry(record["$view"], record, cpu)
            dtype = _structure.torch_dtype(record.get("dtype"))
            offset = record.get("offset")
            shape, stride = _shape(record.get("shape")), _shape(record.get("stride"))
            if not isinstance(offset, int) or len(shape) != len(stride):
                raise CheckpointError(f"invalid view record for entry {record['$view']!r}")
            start = entry.storage_offset() * entry.element_size()
            if start % dtype.itemsize:
                raise CheckpointError(f"view of {record['$view']!r} is misaligned for {dtype}")
            _check_view_inside(record["$view"], entry, dtype, offset, shape, stride)
            base = torch.empty(0, dtype=dtype, device=entry.device)
            base.set_(entry.untyped_storage(), start // dtype.itemsize + offset, shape, stride)
        if record.get("parameter"):
            return torch.nn.Parameter(base, requires_grad=bool(record.get("requires_grad")))
        if record.get("requires_grad"):
            return base.detach().requires_grad_(True)
        return base

    def _entry(self, name: Any, record: Dict[str, Any], cpu: bool) -> Any:
        if not isinstance(name, str) or name not in self.tensors:
            raise CheckpointError(f"the checkpoint structure names a missing tensor {name!r}")
        key = (name, cpu)
        if key not in self.built:
            tensor = self.tensors[name]
            if cpu:
                self.built[key] = tensor.cpu()
            else:
                self.built[key] = self.placement.place(tensor, str(record.get("device", "cpu")))
        return self.built[key]


def _check_view_inside(name: str, entry: Any, dtype: Any, offset: int, shape: List[int], stride: List[int]) -> None:
    """Refuses a view record that reaches outside its entry's bytes.

    The entry may itself be a view of a larger storage (all tensors of a
    load onto a GPU share one allocation), so torch's own check against the
    storage is not enough."""
    if offset < 0 or any(n < 0 for n in shape) or any(s < 0 for s in stride):
        raise CheckpointError(f"invalid view record for entry {name!r}: negative offset, size or stride")
    if 0 in shape:
        return
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
    if (last + 1) * dtype.itemsize > entry.numel() * entry.element_size():
        raise CheckpointError(f"a view of entry {name!r} reaches past the entry's {entry.numel() * entry.element_size()} bytes")


def _shape(value: Any) -> List[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CheckpointError(f"invalid checkpoint structure: {value!r} is not a shape")
    return value


def _is_path(f: Any) -> bool:
    return isinstance(f, str) or hasattr(f, "__fspath__")


def _is_url(path: Any) -> bool:
    """`s3://`, `http://` or `https://`: the URLs the native reader takes."""
    return isinstance(path, str) and path.lower().startswith(("s3://", "http://", "https://"))


def _head(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read(SNIFF_LEN)


def _is_pickle(head: bytes) -> bool:
    """A torch.save file (a zip archive, a bare pickle stream, or torch's
    pre-0.4 tar format, which the pickle reader names when it refuses it),
    as the core's one sniffer recognises it: a safetensors file whose header
    length starts with 0x80 is not a pickle."""
    return sniff_format(head) in ("zip", "pickle", "tar")


def _read_all(f: Any) -> bytearray:
    """The rest of a binary file object, in a buffer we own (tensors are
    zero-copy views of it, so they stay writable and independent of `f`)."""
    try:
        remaining = os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        remaining = -1
    if remaining >= 0 and hasattr(f, "readinto"):
        buffer = bytearray(remaining)
        view, filled = memoryview(buffer), 0
        while filled < remaining:
            n = f.readinto(view[filled:])
            if not n:
                break
            filled += n
        view.release()
        del buffer[filled:]
        return buffer
    data = f.read()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("the file object must be opened in binary mode")
    return bytearray(data)
