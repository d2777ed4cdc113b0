"""`map_location`, as `torch.load` takes it: where each loaded tensor goes.

- None: back to the device it was saved from;
- a string or `torch.device`: everything there;
- a dict `{saved location: new location}` (others stay where they were);
- a callable `(storage, location) -> storage or None`: given each storage on
  the cpu and its saved location tag (`"cpu"`, `"cuda:0"`); None means "as
  saved". torch passes an `UntypedStorage`; so do we.

The saved location is the one the file records: torch's location tag in a
`torch.save` file's persistent ids (carried by the native reader's records
as `RawTensor.location`), a checkpoint record's `device` in a file written
by `safeweights.save`, and `"cpu"` for plain safetensors files.
"""

from __future__ import annotations

from typing import Any, Optional

from ._frameworks import parse_device


class Placement:
    """Places tensors as a `map_location` says."""

    def __init__(self, map_location: Any = None) -> None:
        import torch

        self.mapping = None
        self.function = None
        self.device: Optional[Any] = None
        if map_location is None:
            return
        if isinstance(map_location, bytes):
            map_location = map_location.decode()
        if isinstance(map_location, str) and map_location.partition(":")[0] == "meta":
            # torch.load maps to `meta` (shapes without data); load_file's
            # `device` refuses it, as the reference's does.
            self.device = torch.device(map_location)
        elif isinstance(map_location, (str, torch.device)):
            # The one device parser, as load_file's `device` is read.
            self.device = parse_device(map_location)
        elif isinstance(map_location, dict):
            self.mapping = {str(k): str(v) for k, v in map_location.items()}
        elif callable(map_location):
            self.function = map_location
        else:
            raise TypeError(
                "map_location must be None, a device string, a torch.device, a dict of locations or a callable,"
                f" not {type(map_location).__name__}"
            )

    @property
    def fixed_device(self) -> Optional[Any]:
        """The one device every tensor goes to, when there is one."""
        return self.device

    def target(self, location: str) -> Any:
        """Where a tensor saved on `location` goes (not for callables)."""
        if self.device is not None:
            return self.device
        if self.mapping is not None:
            location = self.mapping.get(location, location)
        return _device_named(location)

    def place(self, tensor: Any, location: str) -> Any:
        """`tensor` (on the cpu, or already on its device) where it belongs."""
        if self.function is None:
            return _to_device(tensor, self.target(location))
        import torch

        if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size() or tensor.storage_offset():
            # A view of a larger buffer (the file's map): hand over only its bytes.
            tensor = tensor.clone()
        result = self.function(tensor.untyped_storage(), location)
        if result is None:
            return _to_device(tensor, _device_named(location))
        if isinstance(result, torch.storage.TypedStorage):
            result = result._untyped_storage
        if not isinstance(result, torch.UntypedStorage):
            raise TypeError(f"map_location returned a {type(result).__name__}, not a storage or None")
        if result.nbytes() < tensor.numel() * tensor.element_size():
            raise ValueError("map_location returned a storage smaller than the tensor it was given")
        placed = torch.empty(0, dtype=tensor.dtype, device=result.device)
        return placed.set_(result, 0, tensor.shape, tensor.stride())


def _device_named(location: str) -> Any:
    """The device a saved location tag (or a dict's value) names."""
    import torch

    try:
        return torch.device(location)
    except (RuntimeError, TypeError, ValueError):
        from ._safeweights_rust import CheckpointError

        raise CheckpointError(
            f"a tensor was saved on {location!r}, which torch {torch.__version__} does not know as a device:"
            f" pass map_location (a device, or a dict such as {{{location!r}: 'cpu'}})"
        ) from None


def _to_device(tensor: Any, device: Any) -> Any:
    if tensor.device == device:
        return tensor
    if device.type == "cuda":
        import torch

        from ._safeweights_rust import CheckpointError

        if not torch.cuda.is_available():
            raise CheckpointError(
                f"the checkpoint holds tensors saved on {device} but CUDA is not available: pass map_location='cpu'"
            )
    return tensor.to(device)
