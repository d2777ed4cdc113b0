"""`safe_open` and its slices: the native handle (`_SafeFile`) reads, this
module converts its records to numpy or torch on the device asked for."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from . import _frameworks
from ._safeweights_rust import _SafeFile, _SafeSlice


def _storage_options(options: Optional[Dict[str, Any]]) -> Optional[Dict[str, str]]:
    """fsspec-style options as strings (`True` as "true"), for the store."""
    if options is None:
        return None
    return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in options.items()}


def _open_native(source: Any, backend: str, storage_options: Optional[Dict[str, Any]] = None) -> _SafeFile:
    if isinstance(source, str) or hasattr(source, "__fspath__"):
        return _SafeFile.open(os.fspath(source), backend, _storage_options(storage_options))
    if isinstance(source, bytes):
        return _SafeFile.from_bytes(source)
    # bytearray, memoryview, file objects: pinned (or read) here.
    owner, address, length, writable = _frameworks.pin_buffer(source)
    return _SafeFile.from_memory(owner, address, length, writable)


class safe_open:
    """Opens a safetensors file lazily: the header is read and validated at
    once, tensor data only when asked for.

    `filename` may be a path (`str` or `os.PathLike`), a sharded checkpoint
    (its `*.index.json` or its directory), a URL (`s3://bucket/key`,
    `https://host/path`, of a file or an index), a binary file object, or a
    buffer (`bytes`, `bytearray`, `memoryview`: an extension over the
    reference).

    A URL is read by byte ranges: opening fetches the header (one request,
    two for a large header), each tensor or slice only its bytes, and
    `get_tensors` the whole data section in parallel requests.
    `storage_options` configures it: `endpoint_url`, `region`, `key`,
    `secret`, `token`, `anon`, `allow_http` (else the standard `AWS_*`
    variables and `~/.aws` files), plus `timeout` (seconds), `retries`,
    `max_in_flight`. A server that ignores Range is downloaded once, with a
    `RuntimeWarning`.

    `framework` is `"pt"`/`"torch"` or `"np"`/`"numpy"`; `device` is `"cpu"`
    (default), `"cuda"`, `"cuda:N"`, a `torch.device` or an integer GPU
    index (torch only). `backend="pread"` reads with positioned reads
    instead of a memory map, for network filesystems.

    Memory semantics: with the default mmap backend the file is mapped
    privately (copy-on-write) and tensors are zero-copy views of the map.
    They are writable; a write copies the touched page in memory and never
    reaches the file. Tensors stay valid after the handle is closed. For a
    writable buffer input (`bytearray`, writable `memoryview`) tensors are
    views of the caller's buffer; for `bytes` numpy arrays are read-only
    views and torch tensors copies (torch has no read-only tensors).

    Example:

    ```python
    from safeweights import safe_open

    with safe_open("model.safetensors", framework="pt") as f:
        for name in f.keys():
            tensor = f.get_tensor(name)
        rows = f.get_slice("embedding")[:128, ::2]
    ```
    """

    def __init__(
        self,
        filename: Any,
        framework: str,
        device: Any = "cpu",
        *,
        backend: str = "mmap",
        storage_options: Optional[Dict[str, Any]] = None,
    ) -> None:
        self._converter = _frameworks.make_converter(framework, device)
        self._file = _open_native(filename, backend, storage_options)
        # Tensors bound for the GPU are read chunk by chunk by the CUDA
        # pipeline, which overlaps reads and copies itself (_cuda.py).
        self._read_ahead = getattr(self._converter, "_kind", "cpu") != "cuda"

    def __enter__(self) -> "safe_open":
        return self

    def __exit__(self, _exc_type: Any = None, _exc_value: Any = None, _traceback: Any = None) -> bool:
        self._file.close()
        return False

    def keys(self) -> List[str]:
        """Tensor names, sorted alphabetically."""
        return self._file.keys()

    def offset_keys(self) -> List[str]:
        """Tensor names in the order of their data in the file."""
        return self._file.offset_keys()

    def metadata(self) -> Optional[Dict[str, str]]:
        """The `__metadata__` string map, or None when the file has none."""
        return self._file.metadata()

    def _all_metadata(self) -> List[Dict[str, str]]:
        """The `__metadata__` of every file (one per shard of a sharded
        checkpoint, in shard order), each a dict, empty when a file has none."""
        return self._file.all_metadata()

    def get_tensor(self, name: str) -> Any:
        """One whole tensor, in the framework and on the device of this handle."""
        if self._read_ahead:
            self._file.read_ahead(name)
        return self._converter.tensor(self._file.tensor(name))

    def get_tensors(self) -> Dict[str, Any]:
        """Every tensor, as a dict in file order."""
        if self._read_ahead:
            self._file.read_ahead()
        records = self._file.tensors()
        return dict(zip([record.name for record in records], self._converter.tensors(records)))

    def get_slice(self, name: str) -> "PySafeSlice":
        """A lazy slice object: index it (`f.get_slice("w")[:, 2:8:2]`) to
        read only the selected elements."""
        return PySafeSlice(self._file.slice(name), self._converter)


class PySafeSlice:
    """A tensor that has not been read yet; indexing reads the selection.

    Indices follow numpy: integers (negative count from the end), slices
    with any step (negative steps included), one `...`, and `None` for a new
    axis. Out-of-range slice bounds are clipped; out-of-range integers raise.
    As in the reference, booleans count as integers and `[]` selects nothing
    for numpy, while torch slices also take torch's advanced indices
    (booleans, lists, arrays, tensors), applied by torch to the whole tensor.
    The result is a new, writable tensor holding only the selected elements.
    """

    def __init__(self, native: _SafeSlice, converter: Any) -> None:
        self._native = native
        self._converter = converter

    def get_shape(self) -> List[int]:
        """The tensor's shape, as in the header."""
        return self._native.get_shape()

    def get_dtype(self) -> str:
        """The tensor's dtype as in the header (e.g. `"F32"`)."""
        return self._native.get_dtype()

    def __getitem__(self, index: Any) -> Any:
        if self._converter.indexes_whole(index):
            # Indices only torch can apply (booleans, lists, tensors): the
            # reference's torch slices take them, so torch applies them here.
            return self._converter.index_whole(self._native.whole(), index)
        return self._converter.tensor(self._native.read(index))
