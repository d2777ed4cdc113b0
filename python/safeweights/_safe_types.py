"""Allowed types: the classes a checkpoint may hold beyond the built-in ones.

Mirrors torch's `torch.serialization.add_safe_globals` / `safe_globals`:

- `add_safe_types([cls, ...])` allows classes for the rest of the process;
- `with safe_types([cls, ...]):` allows them inside the block (per thread
  and per asyncio task: a context variable);
- classes the caller allowed through torch's own `add_safe_globals` or
  `safe_globals` are honoured as well, under the same names;
- `load(..., safe_types=[...])` allows them for one call.

A class is known by `module.qualname` (torch's name for it), or by the name
given in a `(cls, "name")` pair, as torch accepts. Loading never imports
anything: a name in a file is only ever looked up among the allowed
classes. An allowed class is rebuilt the way torch's `weights_only`
unpickler rebuilds an allowed global: `cls.__new__(cls, *args)`, then
`__setstate__(state)` when the class defines it, else a `__dict__` update
(and `setattr` for slot state); its `__init__` never runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Any, Dict, Iterable, Iterator, Tuple, Union

from ._safeweights_rust import CheckpointError

SafeType = Union[type, Tuple[type, str]]

_lock = threading.Lock()
_process_wide: Dict[str, Any] = {}
_scoped: contextvars.ContextVar[Tuple[Tuple[str, Any], ...]] = contextvars.ContextVar("safeweights_safe_types", default=())


class UnsafeTypeError(CheckpointError, TypeError):
    """A value's class is not allowed: saving or loading it would need
    `safeweights.add_safe_types([...])` (the message gives the exact line)."""


def type_name(cls: Any) -> str:
    """`module.qualname`, the name torch gives an allowed global."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _named(types: Iterable[SafeType]) -> Iterator[Tuple[str, Any]]:
    if isinstance(types, type):
        types = [types]
    for entry in types:
        if isinstance(entry, tuple):
            if len(entry) != 2 or not isinstance(entry[1], str):
                raise TypeError(f"expected a class or a (class, 'module.name') pair, got {entry!r}")
            yield entry[1], entry[0]
        elif callable(entry):
            yield type_name(entry), entry
        else:
            raise TypeError(f"expected a class or a (class, 'module.name') pair, got {entry!r}")


def add_safe_types(types: Iterable[SafeType]) -> None:
    """Allows `types` (classes, or `(cls, "module.name")` pairs) in every
    later `safeweights.save`/`load` of this process.

    Example: `safeweights.add_safe_types([TrainingConfig, argparse.Namespace])`.
    """
    named = list(_named(types))
    with _lock:
        _process_wide.update(named)


def get_safe_types() -> Dict[str, Any]:
    """Every allowed class by name: `add_safe_types`, the enclosing
    `safe_types` blocks and torch's `add_safe_globals`/`safe_globals`."""
    allowed: Dict[str, Any] = {}
    allowed.update(_torch_safe_globals())
    with _lock:
        allowed.update(_process_wide)
    allowed.update(_scoped.get())
    return allowed


@contextlib.contextmanager
def safe_types(types: Iterable[SafeType]) -> Iterator[None]:
    """Allows `types` inside the `with` block only.

    Example:

    ```python
    with safeweights.safe_types([TrainingConfig]):
        state = safeweights.load("ckpt.safetensors")
    ```
    """
    token = _scoped.set(_scoped.get() + tuple(_named(types)))
    try:
        yield
    finally:
        _scoped.reset(token)


def _torch_safe_globals() -> Dict[str, Any]:
    """torch's user allow-list (never its built-in one: those are functions
    whose calling we interpret ourselves)."""
    import sys

    serialization = sys.modules.get("torch.serialization")
    if serialization is None or not hasattr(serialization, "get_safe_globals"):
        return {}
    return dict(_named(serialization.get_safe_globals()))


def allowed_line(cls: Any) -> str:
    """The one line that allows `cls`."""
    return f"safeweights.add_safe_types([{type_name(cls)}])"


def rebuild(cls: Any, args: Tuple[Any, ...], state: Any) -> Any:
    """`cls.__new__(cls, *args)` then BUILD with `state`, as torch's
    weights_only unpickler does for an allowed class."""
    instance = cls.__new__(cls, *args)
    if state is None:
        return instance
    setstate = getattr(instance, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return instance
    slotstate = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slotstate = state
    if state:
        instance.__dict__.update(state)
    if slotstate:
        for key, value in slotstate.items():
            setattr(instance, key, value)
    return instance
