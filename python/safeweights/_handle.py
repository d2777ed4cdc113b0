"""`_safe_open_handle`: the reference's entry point for open file objects."""

from __future__ import annotations

from typing import Any

from ._safe_open import safe_open


def _safe_open_handle(f: Any, framework: str, device: Any = "cpu", *, backend: str = "mmap") -> safe_open:
    """Opens an already open binary file object, as `safe_open` on a path.

    A file with a name on disk is reopened by that name (so it is mapped, not
    read); any other file object is read into memory.
    """
    name = getattr(f, "name", None)
    if isinstance(name, str):
        import os

        try:
            opened, named = os.fstat(f.fileno()), os.stat(name)
            if (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino):
                return safe_open(name, framework, device, backend=backend)
        except (OSError, AttributeError, ValueError):
            pass
    return safe_open(f, framework, device, backend=backend)
