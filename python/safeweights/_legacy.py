"""Legacy `torch.save` checkpoints, read without executing anything.

The native module parses the zip or pre-1.6 stream with an allow-listing
pickle VM (in Rust, no Python pickle involved) and returns the object tree
with `RawTensor` records, the same records `safe_open` returns; they become
torch tensors through the same converter (`_frameworks.TorchConverter`).
Identical views come back as one tensor, as `torch.load` would share them.
Dicts come back as plain `dict` (an `OrderedDict` in the file compares
equal). Onto a CUDA device, every record moves in one pass, in file order,
through the pinned buffers of `safeweights._cuda`.
"""

from __future__ import annotations

from typing import Any, Dict

from ._frameworks import TorchConverter, parse_device
from ._safeweights_rust import RawTensor, _PickledDtype, load_torch_pickle
from ._structure import torch_dtype


def load_legacy(source: Any, device: Any) -> Any:
    """Loads a torch.save file (path, bytes or bytearray); tensors go to
    `device` (None: cpu)."""
    tree, records = load_torch_pickle(source)
    converter = TorchConverter(device if device is not None else parse_device(None))
    # In file order, so that onto a GPU every record moves in one pass.
    ordered = sorted(records, key=lambda record: (id(record.storage), record.offset))
    tensors = {id(record): tensor for record, tensor in zip(ordered, converter.tensors(ordered))}
    return _Rebuild(tensors).value(tree)


class _Rebuild:
    def __init__(self, tensors: Dict[int, Any]) -> None:
        # Converted tensors by record identity; equal records are one object.
        self.tensors = tensors
        self.containers: Dict[int, Any] = {}

    def value(self, value: Any) -> Any:
        if isinstance(value, RawTensor):
            return self.tensor(value)
        if isinstance(value, _PickledDtype):
            return torch_dtype(value.name)
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
        if record.requires_grad and not isinstance(tensor, torch.nn.Parameter):
            tensor = torch.nn.Parameter(tensor, requires_grad=True)
            self.tensors[id(record)] = tensor
        return tensor
