"""`safeweights.save` / `safeweights.load`: torch.save and torch.load's
signatures, no pickle anywhere.

`save` writes a valid safetensors file (tensors and numpy arrays in the data
section, the structure as JSON in the metadata: see `_types` and
`_checkpoint`). `load` reads that, plain safetensors files, sharded
checkpoints, `torch.save` files (zip and legacy, through the safe pickle
reader) and numpy `.npy`/`.npz` files, executing and importing nothing.
"""

from __future__ import annotations

import io
import os
from typing import Any, Dict, Iterable, Optional, Union

from ._checkpoint import PathOrFile, _is_path, _is_url, load_checkpoint, save_checkpoint
from ._safe_types import SafeType
from ._safeweights_rust import SNIFF_LEN, sniff_format


def save(
    obj: Any,
    f: PathOrFile,
    *,
    metadata: Optional[Dict[str, str]] = None,
    max_shard_size: Union[int, str, None] = None,
    overwrite: bool = False,
    durable: bool = True,
    storage_options: Optional[Dict[str, Any]] = None,
) -> None:
    """Saves `obj` to `f` (a path, a path-like or a binary file object) as a
    safetensors file, without pickle: `torch.save`'s signature.

    Tensors (and numpy arrays, and large byte strings) go to the data
    section, each named by its path in `obj` (`model.fc.weight`); tensors
    that share memory are stored once and come back sharing it. The rest is
    JSON in the metadata under `safeweights.checkpoint`, with exact types:
    what comes back is the same type and value, or `save` refuses it,
    naming where it is and what to do.

    Built in: None, bool, int, float, complex, str, bytes, bytearray,
    list, tuple, dict, set, frozenset, OrderedDict (with a state dict's
    `_metadata`), Counter, deque, defaultdict (builtin factories),
    datetime/date/time/timedelta/timezone/ZoneInfo, pathlib paths, UUID,
    Decimal, Fraction, range, slice; torch tensors and parameters
    (requires_grad kept), quantized (per tensor and per channel) and sparse
    (COO, CSR, CSC, BSR, BSC) tensors, torch.Size/dtype/device/layout;
    numpy arrays, scalars and dtypes. Dataclasses, named tuples, enums,
    `argparse.Namespace` and other plain classes once allowed with
    `safeweights.add_safe_types` (or torch's `add_safe_globals`).

    `metadata` adds string entries to the file's `__metadata__`. With
    `max_shard_size` (bytes or `"5GB"`), `f` is a directory that receives
    Hugging Face style shards and `model.safetensors.index.json`; a
    checkpoint already there is replaced only with `overwrite=True`, and
    then atomically as a set. With `durable` (the default) the files and
    their directory are on disk when this returns; `durable=False` skips
    the flushes.

    Example:

    ```python
    safeweights.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                      "rng": torch.get_rng_state(), "step": 100}, "ckpt.safetensors")
    ```
    """
    save_checkpoint(
        obj,
        f,
        metadata=metadata,
        max_shard_size=max_shard_size,
        overwrite=overwrite,
        durable=durable,
        storage_options=storage_options,
    )


def load(
    f: PathOrFile,
    map_location: Any = None,
    *,
    weights_only: bool = True,
    mmap: Optional[bool] = None,
    safe_types: Optional[Iterable[SafeType]] = None,
    storage_options: Optional[Dict[str, Any]] = None,
) -> Any:
    """Loads `f` without executing or importing anything in it:
    `torch.load`'s argument order.

    `f` is a path, a path-like or a binary file object holding:

    - a safetensors file written by `save` (the exact object back) or by
      anyone else (a dict of tensors; tied weights recorded in the metadata
      come back shared);
    - a sharded checkpoint: its `*.index.json` or its directory;
    - a `torch.save` file (zip or legacy): read by a safe pickle reader
      that accepts what `torch.load(weights_only=True)` accepts and raises
      `UnsafeCheckpointError` naming anything else;
    - a numpy `.npy` file (an array) or `.npz` file (a dict of arrays);
      object arrays are refused.
    - a GGUF file (a path): every tensor dequantized, bit for bit as
      `gguf.quants`, as `{name: torch tensor}` with GGUF's names
      (`safeweights.gguf.open` reads it lazily).

    `map_location` is `torch.load`'s: None (where they were saved), a
    device string, a `torch.device`, a dict `{"cuda:1": "cuda:0"}`, or a
    callable `(storage, location) -> storage or None`. `weights_only` is
    accepted for compatibility and changes nothing: nothing in the file is
    ever run. With `mmap` (default True) cpu tensors are copy-on-write
    views of the file; `mmap=False` reads them into memory. `safe_types`
    allows classes for this call (see `add_safe_types`).

    Example: `state = safeweights.load("ckpt.safetensors", "cpu")`.
    """
    del weights_only  # Nothing is ever executed, whatever it says.
    use_mmap = True if mmap is None else bool(mmap)
    if _is_path(f) and _is_url(os.fspath(f)):
        pass  # load_checkpoint tells torch checkpoints from safetensors by content.
    elif _is_path(f):
        path = os.fspath(f)
        if os.path.isfile(path):
            with open(path, "rb") as file:
                kind = sniff_format(file.read(SNIFF_LEN))
            if kind in ("numpy", "zip"):
                arrays = _load_numpy(path, kind, use_mmap)
                if arrays is not None:
                    return arrays
            if kind == "gguf":
                from .gguf import load as load_gguf

                return load_gguf(path)
    else:
        f = _peekable(f)
        head = f.read(SNIFF_LEN)
        f.seek(-len(head), io.SEEK_CUR)
        kind = sniff_format(head)
        if kind in ("numpy", "zip"):
            data = f.read()
            # `data` is already a copy of our own: no second one.
            arrays = _load_numpy(data, kind, True)
            if arrays is not None:
                return arrays
            f = io.BytesIO(data)
    return load_checkpoint(
        f,
        map_location=map_location,
        mmap=use_mmap,
        safe_types=list(safe_types or []),
        storage_options=storage_options,
    )


def _peekable(f: Any) -> Any:
    try:
        if f.seekable():
            return f
    except (AttributeError, ValueError, OSError):
        pass
    data = f.read()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("the file object must be opened in binary mode")
    return io.BytesIO(data)


def _load_numpy(source: Any, kind: str, mmap: bool) -> Any:
    """An `.npy` file's array, or an `.npz` file's dict of arrays, read by
    our own readers (the zip reader that refuses ambiguous archives, the
    `.npy` reader that refuses object arrays), never by `numpy.load`; with
    numpy's dtypes, byte order and memory layout. None for a zip that is
    no `.npz` (a torch checkpoint). With `mmap`, an `.npy` stored as it
    loads is a copy-on-write view of the file."""
    from ._frameworks import NumpyConverter
    from ._safeweights_rust import load_numpy

    arrays = load_numpy(source)
    if arrays is None:
        return None
    converter = NumpyConverter()
    out = {name: _as_numpy_holds_it(converter.tensor(record), descr, fortran)
           for name, descr, fortran, record in arrays}
    if kind == "numpy":
        # Only an .npy is ever a view of the file's map; mmap=False copies it.
        return out[None] if mmap else out[None].copy(order="K")
    return out


def _as_numpy_holds_it(array: Any, descr: str, fortran: bool) -> Any:
    """`array` (C-order, little-endian) as `numpy.load` returns it: in the
    file's byte order and memory order."""
    import numpy as np

    if descr.startswith(">") and array.dtype.itemsize > 1:
        array = array.astype(np.dtype(descr))
    if fortran:
        array = np.asfortranarray(array)
    return array
