"""`patch_torch()`: `torch.save` and `torch.load` through safeweights.

While a patch is active, `torch.save(obj, f)` writes a safetensors
checkpoint with `safeweights.save` and `torch.load(f, ...)` reads with
`safeweights.load`, so code that only knows `torch.save`/`torch.load`
(Hugging Face `Trainer`, `accelerate`, Lightning's `load_from_checkpoint`)
stops writing and reading pickle without any change to that code.

The patch is process-wide, as the functions it replaces are: every thread
sees it. Patches nest and may be undone in any order; the originals come
back, as the very same function objects, when the last one is undone.
Installing and undoing are serialised by one lock, so threads may patch and
unpatch concurrently.

A module that bound the functions before the patch (`from torch import
load`) keeps the originals; the frameworks above all call `torch.save` and
`torch.load` through the module, as most code does.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

__all__ = ["TorchPatch", "patch_torch"]

_lock = threading.Lock()
# The patches not yet undone, oldest first.
_active: List["TorchPatch"] = []
# (owner, attribute, original, wrapper) for each function replaced, while installed.
_installed: List[Tuple[Any, str, Any, Any]] = []


class TorchPatch:
    """The handle `patch_torch()` returns: a context manager, and an undo
    handle for plain calls (`undo()`). Undoing twice is harmless."""

    def __init__(self, safe_types: Sequence[type], framework_types: bool) -> None:
        self.safe_types = tuple(safe_types)
        self.framework_types = framework_types
        self._done = False
        with _lock:
            if not _active:
                _install()
            _active.append(self)

    @property
    def active(self) -> bool:
        """Whether this patch is still in force (not undone)."""
        return not self._done

    def undo(self) -> None:
        """Ends this patch. `torch.save`/`torch.load` go back to the exact
        original functions when no other patch is active."""
        with _lock:
            if self._done:
                return
            self._done = True
            _active.remove(self)
            if not _active:
                _uninstall()

    def __enter__(self) -> "TorchPatch":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.undo()

    def __repr__(self) -> str:
        state = "active" if self.active else "undone"
        return f"<safeweights.TorchPatch {state}>"


def patch_torch(*, safe_types: Optional[Iterable[type]] = None, framework_types: bool = True) -> TorchPatch:
    """Makes `torch.save` write safetensors checkpoints (`safeweights.save`)
    and `torch.load` read through `safeweights.load`, until undone.

    `torch.load` keeps its whole signature (`map_location` of any kind,
    `weights_only`, `mmap`, `pickle_module` and pickle keyword arguments,
    paths and file objects), but whatever `weights_only` says, nothing in
    the file is executed or imported: a pickle checkpoint is read by the
    safe reader, and one that needs code is refused with
    `UnsafeCheckpointError`. `safe_types` are classes allowed while this
    patch is active, on save and on load, beside those allowed through
    `safeweights.add_safe_types` or torch's `add_safe_globals`. With
    `framework_types` (default), so are the classes that transformers,
    accelerate and Lightning save themselves (`TrainingArguments` and the
    enums and configs it holds, `PartialState`, `AttributeDict`: see
    `FRAMEWORK_TYPES`), when their module is imported.

    Use it as a context manager:

    ```python
    with safeweights.patch_torch():
        trainer.train(resume_from_checkpoint=True)
    ```

    or as a call whose result undoes it:

    ```python
    patch = safeweights.patch_torch()
    try:
        trainer.train()
    finally:
        patch.undo()
    ```
    """
    return TorchPatch(tuple(safe_types or ()), framework_types)


def _active_safe_types() -> Tuple[type, ...]:
    """The classes the active patches allow, in order, each once."""
    with _lock:
        patches = list(_active)
    seen: dict = {}
    for patch in patches:
        for cls in patch.safe_types:
            seen.setdefault(cls, None)
    if any(patch.framework_types for patch in patches):
        for cls in _framework_types():
            seen.setdefault(cls, None)
    return tuple(seen)


def _install() -> None:
    import torch
    import torch.serialization

    originals = {"save": torch.serialization.save, "load": torch.serialization.load}
    wrappers = {"save": _make_save(originals["save"]), "load": _make_load(originals["load"])}
    for owner in (torch, torch.serialization):
        for name in ("save", "load"):
            _installed.append((owner, name, getattr(owner, name), wrappers[name]))
            setattr(owner, name, wrappers[name])


def _uninstall() -> None:
    while _installed:
        owner, name, original, wrapper = _installed.pop()
        # Someone patched over us: leave theirs in place (ours, which theirs
        # may call, falls through to the original once no patch is active).
        if getattr(owner, name) is wrapper:
            setattr(owner, name, original)


def _make_save(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if not _active:
            return original(obj, f, *args, **kwargs)
        # torch.save's own argument checks; its pickle options describe a
        # format that is not written.
        signature.bind(obj, f, *args, **kwargs)
        _save(obj, f, _active_safe_types())

    return save


def _make_load(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        if not _active:
            return original(f, *args, **kwargs)
        # `pickle_module` and its keyword arguments (`encoding`...) would
        # drive an unpickler; the safe reader has none to drive.
        given = signature.bind(f, *args, **kwargs).arguments
        return _load(
            f,
            given.get("map_location"),
            given.get("weights_only"),
            given.get("mmap"),
            _active_safe_types(),
        )

    return load


# Classes the frameworks themselves hand to torch.save (transformers'
# `training_args.bin` is `torch.save(self.args)`), allowed while a patch
# with `framework_types=True` is active. Only classes whose module is already
# imported are looked up: nothing is imported for them.
FRAMEWORK_TYPES = (
    "transformers.training_args.TrainingArguments",
    "transformers.training_args.OptimizerNames",
    "transformers.training_args_seq2seq.Seq2SeqTrainingArguments",
    "transformers.trainer_utils.IntervalStrategy",
    "transformers.trainer_utils.SaveStrategy",
    "transformers.trainer_utils.HubStrategy",
    "transformers.trainer_utils.SchedulerType",
    "transformers.trainer_utils.FSDPOption",
    "transformers.debug_utils.DebugOption",
    "transformers.trainer_pt_utils.AcceleratorConfig",
    "accelerate.state.PartialState",
    "accelerate.utils.dataclasses.DistributedType",
    "lightning.fabric.utilities.data.AttributeDict",
)


def _framework_types() -> Tuple[type, ...]:
    found = []
    for dotted in FRAMEWORK_TYPES:
        module_name, _, name = dotted.rpartition(".")
        module = sys.modules.get(module_name)
        cls = getattr(module, name, None) if module is not None else None
        if isinstance(cls, type) and f"{cls.__module__}.{cls.__qualname__}" == dotted:
            found.append(cls)
    return tuple(found)


def _save(obj: Any, f: Any, safe_types: Tuple[type, ...]) -> None:
    from . import _api, _safe_types

    with _safe_types.safe_types(safe_types):
        _api.save(obj, f)


def _load(f: Any, map_location: Any, weights_only: Optional[bool], mmap: Optional[bool], safe_types: Tuple[type, ...]) -> Any:
    from . import _api

    return _api.load(f, map_location, weights_only=True if weights_only is None else weights_only, mmap=mmap, safe_types=safe_types)
