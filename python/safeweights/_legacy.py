"""Legacy `torch.save` checkpoints, read without executing anything.

The native module parses the zip or pre-1.6 stream with an allow-listing
pickle VM (in Rust, no Python pickle involved) and returns the object tree
with `RawTensor` records, the same records `safe_open` returns; they become
torch tensors through the same converter (`_frameworks.TorchConverter`).
Identical views come back as one tensor, and different views of one storage
(a weight and a slice, a transpose or a reshape of it) as views of one
tensor holding the whole storage, sharing its memory, with torch's strides
and storage offsets, as `torch.load` gives them.
Globals the reader records as data (`torch.device`, `OrderedDict` with its
`_metadata`, numpy arrays, allowed classes...) are rebuilt by
`safeweights._legacy_objects`. Each record carries the location its storage
was saved from (`"cuda:1"`), which `map_location` maps as in `torch.load`.
Onto one CUDA device, every record moves in one pass, in file order,
through the pinned buffers of `safeweights._cuda`.
"""

from __future__ import annotations

from typing import Any, Dict

from ._frameworks import TorchConverter, byte_array, parse_device
from ._location import Placement
from ._safeweights_rust import RawTensor, _PickledDtype, _PickledObject, load_torch_pickle
from ._structure import torch_dtype


def load_legacy(source: Any, placement: Placement, allowed: Any = None, mmap: bool = True) -> Any:
    """Loads a torch.save file (path, bytes or bytearray), each storage
    placed as `torch.load` places it: by `map_location` applied to the
    location the file saved it from (`placement`; None: back there).
    `allowed` maps `module.qualname` to the classes the caller allows (see
    `safeweights.add_safe_types`). With `mmap`, cpu tensors stored as they
    load are copy-on-write views of the file; without, every tensor is read
    into memory."""
    allowed = dict(allowed or {})
    tree, records = load_torch_pickle(source, list(allowed), mmap)
    quantized = _quantized()
    # Quantized storages go through map_location like every other storage
    # (torch rebuilds them on the storage's device), as uint8 bytes.
    tensors = {id(record): _quantized_storage(record, placement) for record in records if record.dtype in quantized}
    device = placement.fixed_device
    converter = TorchConverter(device if device is not None else parse_device(None))
    # Views are built on their base (the whole storage), which is loaded once.
    views = [r for r in records if r.base is not None]
    bases = {id(r.base): r.base for r in views}
    plain = [r for r in records if id(r) not in tensors and r.base is None]
    # In file order, so that onto a GPU every record moves in one pass.
    ordered = sorted([*plain, *bases.values()], key=lambda r: (id(r.storage), r.offset))
    converted = converter.tensors(ordered)
    if device is None:
        # A record here is a whole storage, or the one tensor of its
        # storage: map_location is called once per storage, as torch does.
        converted = [placement.place(tensor, record.location) for record, tensor in zip(ordered, converted)]
    tensors.update(zip(map(id, ordered), converted))
    for record in views:
        tensors[id(record)] = _view(tensors[id(record.base)], record)
    return _Rebuild(tensors, allowed).value(tree)


def _view(base: Any, record: RawTensor) -> Any:
    """`record` as a view of its base's tensor, sharing its memory as
    `torch.load` shares one storage between its views."""
    return base.as_strided(record.shape, record.stride, base.storage_offset() + record.storage_offset)


def _quantized_storage(record: RawTensor, placement: Placement) -> Any:
    """A quantized storage's integer representation (uint8), where
    `map_location` puts the storage, for `_legacy_objects`' `_rebuild_qtensor`."""
    import torch

    if record.nbytes == 0:
        raw = torch.empty(0, dtype=torch.uint8)
    else:
        raw = torch.frombuffer(byte_array(record.storage, record.offset, record.nbytes), dtype=torch.uint8)
    raw = placement.place(raw, record.location)
    raw._safeweights_qdtype = torch_dtype(record.dtype)
    return raw


class _Rebuild:
    def __init__(self, tensors: Dict[int, Any], allowed: Dict[str, Any]) -> None:
        # Converted tensors by record identity; equal records are one object.
        self.tensors = tensors
        self.allowed = allowed
        self.containers: Dict[int, Any] = {}

    def value(self, value: Any) -> Any:
        if isinstance(value, RawTensor):
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

    def tensor(self, record: RawTensor) -> Any:
        import torch

        tensor = self.tensors[id(record)]
        quantized = hasattr(tensor, "_safeweights_qdtype")
        if record.requires_grad and not quantized and not isinstance(tensor, torch.nn.Parameter):
            tensor = torch.nn.Parameter(tensor, requires_grad=True)
            self.tensors[id(record)] = tensor
        return tensor


def _quantized() -> Any:
    return ("qint8", "quint8", "qint32", "quint4x2", "quint2x4")
