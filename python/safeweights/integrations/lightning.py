"""Lightning checkpoints as safetensors files, without pickle.

```python
import lightning as L
import safeweights
from safeweights.integrations.lightning import SafeweightsCheckpointIO

trainer = L.Trainer(plugins=[SafeweightsCheckpointIO()],
                    callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath="ckpts")])
trainer.fit(model)
trainer.fit(model, ckpt_path="ckpts/last.ckpt")       # resumes through the plug-in

with safeweights.patch_torch():                        # load_from_checkpoint calls torch.load
    model = MyModel.load_from_checkpoint("ckpts/last.ckpt")
```

The whole checkpoint (weights, optimizer and scheduler states, loop and
callback states, hyperparameters) is one safetensors file written by
`safeweights.save`: tensors in the data section, the rest as typed JSON, so
hyperparameters come back with their types. Importing this module imports
`lightning`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Union

from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem

from .._patch import _framework_types, _load, _save

__all__ = ["SafeweightsCheckpointIO"]

_PATH = Union[str, "os.PathLike[str]"]


class SafeweightsCheckpointIO(CheckpointIO):
    """A `CheckpointIO` that saves with `safeweights.save` and loads with
    `safeweights.load`: `Trainer(plugins=[SafeweightsCheckpointIO()])`.

    Local paths are written to a temporary file renamed into place, so a
    failed save never leaves a partial checkpoint; other fsspec URLs are
    serialised in memory and written in one call. Loading reads safetensors
    checkpoints and, through the safe reader, checkpoints that Lightning
    wrote with `torch.save` (pickle ones that need code are refused).

    `safe_types`: classes (dataclasses, enums, named tuples...) held in the
    checkpoint, typically in the hyperparameters, allowed on save and load
    beside those allowed through `safeweights.add_safe_types`, and
    Lightning's own `AttributeDict` (see `safeweights._patch.FRAMEWORK_TYPES`).
    """

    def __init__(self, *, safe_types: Optional[list] = None) -> None:
        super().__init__()
        self._given_types = tuple(safe_types or ())

    @property
    def safe_types(self) -> tuple:
        """The classes this plug-in allows: those given, then the
        frameworks' own."""
        return self._given_types + _framework_types()

    def save_checkpoint(self, checkpoint: Dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        """Writes `checkpoint` to `path` as a safetensors file."""
        if storage_options is not None:
            raise TypeError(
                "`Trainer.save_checkpoint(..., storage_options=...)` is not supported by SafeweightsCheckpointIO:"
                " pass metadata through the checkpoint dict instead"
            )
        fs = get_filesystem(path)
        fs.makedirs(os.path.dirname(str(path)), exist_ok=True)
        if _is_local(fs):
            _save(checkpoint, os.fspath(path), self.safe_types)
            return
        import io

        buffer = io.BytesIO()
        _save(checkpoint, buffer, self.safe_types)
        with fs.open(str(path), "wb") as file:
            file.write(buffer.getvalue())

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Optional[Union[Callable[..., Any], str, Any]] = "cpu",
        weights_only: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Reads the checkpoint at `path`. Tensors go to the CPU unless
        `map_location` says otherwise (as `TorchCheckpointIO`'s default
        does); `weights_only` is accepted for compatibility, and nothing in
        the file runs whatever its value."""
        fs = get_filesystem(path)
        if not fs.exists(str(path)):
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        if _is_local(fs):
            return _load(os.fspath(path), map_location, weights_only, None, self.safe_types)
        with fs.open(str(path), "rb") as file:
            return _load(file, map_location, weights_only, None, self.safe_types)

    def remove_checkpoint(self, path: _PATH) -> None:
        """Deletes the checkpoint at `path` (a file, or a sharded checkpoint's directory)."""
        fs = get_filesystem(path)
        if fs.exists(str(path)):
            fs.rm(str(path), recursive=True)


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)
