"""Turning the native module's tensor records into numpy arrays and torch
tensors, on the device asked for.

Every reader of the native module (`safe_open`, its slices, the legacy
pickle reader) returns `RawTensor` records: `nbytes` bytes at `offset` in a
`_Storage` (a private file map, an owned buffer, or a pinned Python
buffer), with a framework dtype name and shape. `byte_array` wraps those
bytes in a ctypes array that keeps the storage alive; numpy arrays and
torch tensors are zero-copy views built with `np.frombuffer` /
`torch.frombuffer`, which keep the ctypes array (and so the storage) alive
for as long as any view exists. The ctypes route works under the stable ABI
of Python 3.9, where a native class cannot export the buffer protocol.

This module is the one place that parses a `device` argument
(`parse_device`) and converts records (`make_converter`); safetensors and
pickle checkpoints load through the same converters.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Dict, List, Tuple

from . import _dtypes
from ._safeweights_rust import DeviceUnavailableError, RawTensor, SafetensorError, UnsupportedDtypeError


def byte_array(storage: Any, offset: int, nbytes: int) -> Any:
    """A writable ctypes array over bytes `[offset, offset + nbytes)` of
    `storage`, which it keeps alive."""
    if offset < 0 or nbytes < 0 or offset + nbytes > storage.nbytes:
        raise SafetensorError(f"bytes {offset}..{offset + nbytes} lie outside a storage of {storage.nbytes} bytes")
    array_type = ctypes.c_ubyte * nbytes
    array = array_type.from_address(storage.address + offset) if nbytes else array_type()
    array._safeweights_storage = storage
    return array


def _bytes_address(data: bytes) -> int:
    # c_char_p points at the bytes object's own buffer: no copy.
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0


def pin_buffer(source: Any) -> Tuple[Any, int, int, bool]:
    """(owner, address, length, writable) for a buffer or a binary file object.

    Writable buffers are pinned through a ctypes array, which holds a buffer
    export so a `bytearray` cannot be resized under us. File objects are read
    whole into `bytes`.
    """
    if hasattr(source, "read") and not isinstance(source, memoryview):
        data = source.read()
        if not isinstance(data, bytes):
            raise TypeError(f"the file object's read() returned {type(data).__name__}, expected bytes (open it in binary mode)")
        return data, _bytes_address(data), len(data), False
    try:
        view = memoryview(source)
    except TypeError:
        raise TypeError(
            f"expected a path (str or os.PathLike), a binary file object or a bytes-like object, not {type(source).__name__}"
        ) from None
    if not view.c_contiguous:
        raise ValueError("the buffer must be C-contiguous")
    view = view.cast("B") if (view.format, view.ndim) != ("B", 1) else view
    size = view.nbytes
    if not view.readonly:
        array = (ctypes.c_ubyte * size).from_buffer(view)
        return array, ctypes.addressof(array), size, True
    if isinstance(view.obj, bytes) and size == len(view.obj):
        return view.obj, _bytes_address(view.obj), size, False
    try:
        import numpy as np

        array = np.frombuffer(view, dtype=np.uint8)
        return array, array.ctypes.data, size, False
    except ImportError:
        data = view.tobytes()
        return data, _bytes_address(data), size, False


def parse_device(device: Any) -> Any:
    """The `torch.device` for a `device` argument: None (the cpu), a
    `torch.device`, a device string (`"cpu"`, `"cuda"`, `"cuda:1"`, ...) or
    a GPU index. Raises `SafetensorError` for anything else."""
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        return device
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return torch.device("cuda", device)
    if isinstance(device, str):
        try:
            parsed = torch.device(device)
        except RuntimeError:
            parsed = None
        if parsed is not None and parsed.type != "meta":
            return parsed
    raise SafetensorError(f"device {device} is invalid")



def empty_tensor(torch: Any, shape: Any, dtype: Any, device: Any = None) -> Any:
    """A tensor with no elements. `torch.empty(shape)` computes contiguous
    strides first and overflows on shapes such as `[0, 2**40, 2**40]`;
    reshaping an empty tensor gives the reference's shape and strides."""
    return torch.empty(0, dtype=dtype, device=device).reshape(shape)

class NumpyConverter:
    """Builds numpy arrays; read-only when the source memory is (`bytes`)."""

    def tensor(self, record: RawTensor) -> Any:
        import numpy as np

        np_dtype = _dtypes.numpy_dtype(record.dtype)
        if np_dtype is None:
            raise UnsupportedDtypeError(
                f"tensor {record.name!r} has dtype {record.dtype}, which numpy lacks"
                " (install ml_dtypes for bfloat16 and the float8 types, or use framework='pt')"
            )
        if record.nbytes == 0:
            return np.empty(record.shape, dtype=np_dtype)
        array = np.frombuffer(byte_array(record.storage, record.offset, record.nbytes), dtype=np_dtype)
        if not record.storage.writable:
            array.flags.writeable = False
        return array.reshape(record.shape)

    def tensors(self, records: List[RawTensor]) -> List[Any]:
        return [self.tensor(record) for record in records]

    def indexes_whole(self, index: Any) -> bool:
        """Never: every index the reference takes for numpy is gathered from the file."""
        return False


def _torch_only_index(item: Any) -> bool:
    """Whether torch reads `item` as an advanced index (a bool, a sequence,
    an array or tensor of any shape but a 0-d integer one), which only torch
    itself can apply with torch's semantics."""
    if isinstance(item, (bool, list, tuple)):
        return True
    ndim = getattr(item, "ndim", None)
    return ndim is not None and (ndim != 0 or str(getattr(item, "dtype", "")) in ("bool", "torch.bool"))


class TorchConverter:
    """Builds torch tensors on the cpu (zero-copy) or another device.

    `device` is a `torch.device` (see `parse_device`)."""

    def __init__(self, device: Any) -> None:
        import torch

        self._torch = torch
        self.device = device
        self._kind = device.type
        self._dtypes: Dict[str, Any] = {}
        self._cuda_checked = False

    def resolve(self, record: RawTensor) -> Tuple[Any, Tuple[int, ...]]:
        """The torch dtype and shape of `record`; raises
        `UnsupportedDtypeError` if this torch cannot hold it."""
        name = record.dtype
        torch_dtype = self._dtypes.get(name)
        if torch_dtype is None:
            torch_dtype = self._dtypes[name] = _dtypes.torch_dtype(name)
        if torch_dtype is None:
            raise UnsupportedDtypeError(
                f"tensor {record.name!r} has dtype {record.dtype}, which torch {self._torch.__version__} lacks"
            )
        return torch_dtype, record.shape

    def cpu_tensor(self, record: RawTensor) -> Any:
        """A cpu tensor over the record's bytes: a view where the memory
        is writable and aligned, a copy otherwise."""
        torch = self._torch
        torch_dtype, shape = self.resolve(record)
        nbytes = record.nbytes
        if nbytes == 0:
            return empty_tensor(torch, shape, torch_dtype)
        storage = record.storage
        buffer = byte_array(storage, record.offset, nbytes)
        if (storage.address + record.offset) % torch_dtype.itemsize:
            # Misaligned (not written by us or the reference): copy into
            # aligned memory rather than hand out a misaligned tensor.
            storage.populate(record.offset, nbytes)  # a truncated file raises
            raw = torch.frombuffer(buffer, dtype=torch.uint8)
            return raw.clone().view(torch_dtype).reshape(shape)
        tensor = torch.frombuffer(buffer, dtype=torch_dtype)
        if not storage.writable:
            tensor = tensor.clone()
        return tensor if len(shape) == 1 else tensor.reshape(shape)

    def _check_device(self) -> None:
        """Refuses, with a clear message, a CUDA device this torch cannot
        reach: a `DeviceUnavailableError`, also the RuntimeError torch raises
        (a torch built without CUDA raises an AssertionError instead)."""
        if self._kind != "cuda" or self._cuda_checked:
            return
        if not self._torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {self.device} is not available: this torch has no CUDA support or sees no GPU"
                " (torch.cuda.is_available() is False); load on the cpu with device='cpu'"
            )
        self._cuda_checked = True

    def tensor(self, record: RawTensor) -> Any:
        if self._kind == "cuda":
            from ._cuda import PINNED_MIN, load_to_cuda

            self._check_device()
            if record.nbytes >= PINNED_MIN:
                return load_to_cuda(self.device, self.resolve, [record])[0]
        tensor = self.cpu_tensor(record)
        if self._kind != "cpu":
            # A copy out of the file map: a file truncated under it raises
            # here (an OSError, errno EIO) instead of a bus error in the copy.
            record.storage.populate(record.offset, record.nbytes)
            tensor = tensor.to(self.device)
        return tensor

    def tensors(self, records: List[RawTensor]) -> List[Any]:
        """Tensors for `records`, in order. Onto a CUDA device, all of them
        move in one pass through pinned buffers: list them in file order."""
        if self._kind == "cuda":
            from ._cuda import load_to_cuda

            self._check_device()
            return load_to_cuda(self.device, self.resolve, records)
        if self._kind == "cpu":
            return [self.cpu_tensor(record) for record in records]
        return [self.tensor(record) for record in records]

    def indexes_whole(self, index: Any) -> bool:
        """Whether `index` needs torch's own indexing of the whole tensor.

        The reference applies any torch index to the whole tensor; integers,
        slices, `...` and `None` select the same elements either way, so only
        the other kinds (booleans, lists, arrays, tensors) go through torch.
        """
        items = index if isinstance(index, tuple) else (index,)
        return any(_torch_only_index(item) for item in items)

    def index_whole(self, record: RawTensor, index: Any) -> Any:
        """`index` applied by torch to the whole tensor of `record` (a view
        of the file where it is mapped), as a new tensor on this device."""
        self._check_device()
        # The result is a copy out of the map: a truncated file raises here.
        record.storage.check_readable(record.offset, record.nbytes)
        whole = self.cpu_tensor(record)
        result = whole[index]
        if result.numel() and result.untyped_storage().data_ptr() == whole.untyped_storage().data_ptr():
            # A sequence of slices (read by torch as a tuple) gives a view:
            # sliced results are copies, never aliases of the file's memory.
            result = result.clone()
        return result.to(self.device) if self.device.type != "cpu" else result


def _numpy(device: Any) -> NumpyConverter:
    if device not in (None, "cpu"):
        raise SafetensorError(f"device {device} is invalid: numpy tensors can only be loaded on the cpu")
    return NumpyConverter()


_FRAMEWORKS: Dict[str, Callable[[Any], Any]] = {
    "pt": lambda device: TorchConverter(parse_device(device)),
    "torch": lambda device: TorchConverter(parse_device(device)),
    "np": _numpy,
    "numpy": _numpy,
}


def make_converter(framework: Any, device: Any) -> Any:
    """The converter for `framework` on `device`; raises SafetensorError if invalid."""
    factory = _FRAMEWORKS.get(framework) if isinstance(framework, str) else None
    if factory is None:
        raise SafetensorError(f"framework {framework} is invalid: safeweights supports 'pt' ('torch') and 'np' ('numpy')")
    return factory(device)
