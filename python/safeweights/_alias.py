"""`install_as_safetensors()`: `import safetensors` gives safeweights.

Libraries that `import safetensors` (transformers, diffusers, accelerate,
huggingface_hub...) then use safeweights without a change to their code.
A finder first on `sys.meta_path` answers for `safetensors` and every
`safetensors.X`, serving `safeweights.X`:

- `safetensors` itself is a module of its own (not `safeweights`), so that
  its `__version__` is the version of the reference API that safeweights
  implements (`SAFETENSORS_API_VERSION`): libraries that compare
  `safetensors.__version__` keep their fast paths. Every other name is
  looked up on `safeweights`.
- `safetensors.torch`, `safetensors.numpy` are `safeweights.torch`,
  `safeweights.numpy` themselves; a submodule safeweights lacks
  (`safetensors.flax`...) raises `ModuleNotFoundError` naming it.

It lasts for the rest of the process. Modules that imported the real
`safetensors` before the call keep it: call it first.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
import warnings
from typing import Any, Optional, Sequence

__all__ = ["SAFETENSORS_API_VERSION", "install_as_safetensors"]

# The reference release whose API and file format safeweights implements,
# and which its interop tests pin (requirements-dev.txt).
SAFETENSORS_API_VERSION = "0.8.0"

_ALIAS = "safetensors"
_lock = threading.Lock()


def install_as_safetensors() -> None:
    """Makes `import safetensors` (and `safetensors.torch`,
    `safetensors.numpy`, ...) resolve to safeweights for the rest of the
    process. Calling it again does nothing.

    ```python
    import safeweights
    safeweights.install_as_safetensors()
    import transformers  # its `import safetensors.torch` is safeweights.torch
    ```

    If the real `safetensors` was already imported, its entries in
    `sys.modules` are replaced (later imports get safeweights) and a
    `RuntimeWarning` says that modules holding the old one keep it.
    """
    with _lock:
        if any(isinstance(finder, _SafetensorsFinder) for finder in sys.meta_path):
            return
        stale = sorted(name for name in sys.modules if _is_alias(name) and not _is_ours(sys.modules[name]))
        for name in stale:
            del sys.modules[name]
        sys.meta_path.insert(0, _SafetensorsFinder())
    if stale:
        warnings.warn(
            f"safeweights.install_as_safetensors(): {', '.join(stale)} had already been imported; modules that"
            " imported it before this call keep the real package. Call install_as_safetensors() first.",
            RuntimeWarning,
            stacklevel=2,
        )


def _is_alias(name: str) -> bool:
    return name == _ALIAS or name.startswith(_ALIAS + ".")


def _is_ours(module: Any) -> bool:
    return getattr(module, "__safeweights_alias__", False) or getattr(module, "__name__", "").startswith("safeweights")


class _SafetensorsFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `safetensors[.X]` as `safeweights[.X]`."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None, target: Any = None) -> Any:
        if not _is_alias(fullname):
            return None
        is_package = fullname == _ALIAS
        spec = importlib.machinery.ModuleSpec(fullname, self, is_package=is_package)
        if is_package:
            spec.submodule_search_locations = []
        return spec

    def create_module(self, spec: Any) -> Optional[types.ModuleType]:
        if spec.name == _ALIAS:
            return _top_level_module()
        # A placeholder: `exec_module` puts safeweights.X in its place. The
        # import system stamps its own spec on what this returns, which
        # must not be safeweights.X itself.
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        name = module.__name__
        if name == _ALIAS:
            return
        target = "safeweights" + name[len(_ALIAS) :]
        try:
            served = importlib.import_module(target)
        except ModuleNotFoundError as error:
            if error.name != target:
                raise
            raise ModuleNotFoundError(
                f"No module named {name!r}: safeweights.install_as_safetensors() serves safetensors from"
                f" safeweights, which has no {target!r}",
                name=name,
            ) from None
        # The import system returns whatever sys.modules holds once this
        # returns, and binds it on the parent package.
        sys.modules[name] = served


def _top_level_module() -> types.ModuleType:
    import safeweights

    module = types.ModuleType(_ALIAS, safeweights.__doc__)
    for name, value in vars(safeweights).items():
        if not name.startswith("__"):
            setattr(module, name, value)
    module.__version__ = SAFETENSORS_API_VERSION
    module.__safeweights_alias__ = True

    def __getattr__(name: str) -> Any:
        # Names added to safeweights later (lazily imported submodules).
        try:
            return getattr(safeweights, name)
        except AttributeError:
            raise AttributeError(f"module 'safetensors' (safeweights) has no attribute {name!r}") from None

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return module
