"""Legacy `torch.save` checkpoints, read without executing anything.

The native module parses the zip or pre-1.6 stream with an allow-listing
pickle VM (in Rust, no Python pickle involved) and returns the object tree
with tensor records; this module turns those into torch tensors. Identical
views come back as one tensor, and different views of one storage (a
weight and a slice or transpose of it) as views of one shared storage,
as `torch.load` gives them, wherever the storage lies unchanged in the
file (then it is the file's private map). Globals
the reader records as data (`torch.device`, `OrderedDict` with its
`_metadata`, numpy arrays, allowed classes...) are rebuilt by
`safeweights._legacy_objects`. Onto a
CUDA device, every record moves in one pass, in file order, through the
pinned buffers of `safeweights._cuda`.
"""

from __future__ import annotations

from typing import Any, Dict, List

from ._safeweights_rust import _PickledDtype, _PickledObject, _PickledTensor, load_torch_pickle
from ._structure import torch_dtype


def load_legacy(source: Any, device: Any, allowed: Any = None) -> Any:
    """Loads a torch.save file (path, bytes or bytearray); tensors go to
    `device` (None: cpu). `allowed` maps `module.qualname` to the classes
    the caller allows (see `safeweights.add_safe_types`)."""
    allowed = dict(allowed or {})
    tree, records = load_torch_pickle(source, list(allowed))
    rebuild = _Rebuild(device)
    rebuild.allowed = allowed
    if device is not None and device.type == "cuda":
        rebuild.loaded = _load_records_to_cuda(records, device)
    return rebuild.value(tree)


def _load_records_to_cuda(records: List[_PickledTensor], device: Any) -> Dict[int, Any]:
    """All records in one pass through pinned buffers, in file order."""
    from ._cuda import load_to_cuda

    records = sorted(records, key=lambda record: (id(record.buffer), record.offset))
    entries = [
        (record.index, (record.buffer, record.offset, record.nbytes, record.dtype, tuple(record.shape), True))
        for record in records
    ]
    # The records carry torch dtype names, already in torch's own shapes.
    return load_to_cuda(device, lambda name, shape: (torch_dtype(name), shape), entries)


class _Rebuild:
    def __init__(self, device: Any) -> None:
        self.device = device
        self.tensors: Dict[int, Any] = {}
        self.containers: Dict[int, Any] = {}
        # Tensors already on the device, by record index.
        self.loaded: Dict[int, Any] = {}
        # Storages shared by several views: bytes (uint8) by storage key.
        self.storages: Dict[str, Any] = {}
        self.allowed: Dict[str, Any] = {}

    def value(self, value: Any) -> Any:
        if isinstance(value, _PickledTensor):
            return self.tensor(value)
        if isinstance(value, _PickledDtype):
            return torch_dtype(value.name)
        if isinstance(value, _PickledObject):
            key = id(value)
            if key not in self.containers:
                from ._legacy_objects import build

                self.containers[key] = build(value, self.value, self.allowed)
            return self.containers[key]
        if isinstance(value, (list, dict, tuple, set)):
            key = id(value)
            if key not in self.containers:
                self.containers[key] = self.container(value)
            return self.containers[key]
        return value

    def container(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        if isinstance(value, set):
            return {self.value(v) for v in value}
        return {self.value(k): self.value(v) for k, v in value.items()}

    def tensor(self, record: Any) -> Any:
        import torch

        if record.index in self.tensors:
            return self.tensors[record.index]
        dtype = torch_dtype(record.dtype)
        shape = list(record.shape)
        if dtype in _quantized():
            # A quantized storage's integer representation, for _rebuild_qtensor.
            raw = torch.frombuffer(record.buffer, dtype=torch.uint8, count=record.nbytes, offset=record.offset)
            raw._safeweights_qdtype = dtype
            self.tensors[record.index] = raw
            return raw
        if record.index in self.loaded:
            tensor = self.loaded[record.index]
        elif record.storage is not None and (shared := self.shared_view(record, dtype)) is not None:
            tensor = shared
        elif record.nbytes == 0:
            tensor = torch.empty(shape, dtype=dtype)
        else:
            # A view of the record's buffer: the file's private map (copy on
            # write, so writes never reach the file) or a copy of its bytes.
            raw = torch.frombuffer(record.buffer, dtype=torch.uint8, count=record.nbytes, offset=record.offset)
            tensor = raw.view(dtype).reshape(shape)
        if self.device is not None and tensor.device != self.device:
            tensor = tensor.to(self.device)
        if record.requires_grad:
            tensor = torch.nn.Parameter(tensor, requires_grad=True)
        self.tensors[record.index] = tensor
        return tensor

    def shared_view(self, record: Any, dtype: Any) -> Any:
        """The record as a view (offset, shape, strides) of its storage,
        one storage object per key; None when the bytes do not divide into
        elements of `dtype`."""
        import torch

        key, buffer, offset, nbytes = record.storage
        itemsize = torch.empty((), dtype=dtype).element_size()
        if nbytes % itemsize:
            return None
        if key not in self.storages:
            self.storages[key] = torch.frombuffer(buffer, dtype=torch.uint8, count=nbytes, offset=offset)
        typed = self.storages[key].view(dtype)
        return typed.as_strided(list(record.shape), list(record.stride), record.storage_offset)


def _quantized() -> Any:
    import torch

    return (torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4)
