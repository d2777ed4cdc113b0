"""Turning bytes held by the native module into numpy arrays and torch tensors.

The native module hands out `_Storage` objects (a private file map, an owned
buffer, or a pinned Python buffer). `make_buffer` wraps one in a ctypes array
that keeps it alive; numpy arrays and torch tensors are then zero-copy views
built with `np.frombuffer` / `torch.frombuffer`, which keep the ctypes array
(and so the storage) alive for as long as any view exists.

The ctypes route works under the stable ABI of Python 3.9, where a native
class cannot export the buffer protocol itself.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Dict, List, Tuple

from ._safeweights_rust import SafetensorError, UnsupportedDtypeError

# (buffer, offset, nbytes, dtype, shape, writable), as the native module passes them.
TensorArgs = Tuple[Any, int, int, str, Tuple[int, ...], bool]


def make_buffer(storage: Any) -> Any:
    """A writable ctypes byte array over `storage` that keeps it alive."""
    size = storage.nbytes
    array_type = ctypes.c_ubyte * size
    array = array_type.from_address(storage.address) if size else array_type()
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


def _check_cpu(device: Any, framework: str) -> None:
    if device not in (None, "cpu"):
        raise SafetensorError(f"device {device} is invalid: {framework} tensors can only be loaded on the cpu")


def empty_tensor(torch: Any, shape: Any, dtype: Any, device: Any = None) -> Any:
    """A tensor with no elements. `torch.empty(shape)` computes contiguous
    strides first and overflows on shapes such as `[0, 2**40, 2**40]`;
    reshaping an empty tensor gives the reference's shape and strides."""
    return torch.empty(0, dtype=dtype, device=device).reshape(shape)


class NumpyConverter:
    """Builds numpy arrays; read-only when the source memory is (`bytes`)."""

    def __init__(self) -> None:
        from . import _dtypes

        self._dtypes = _dtypes.numpy_dtypes()

    def __call__(self, buffer: Any, offset: int, nbytes: int, dtype: str, shape: Tuple[int, ...], writable: bool) -> Any:
        import numpy as np

        np_dtype = self._dtypes.get(dtype)
        if np_dtype is None:
            raise UnsupportedDtypeError(
                f"dtype {dtype} has no numpy equivalent (install ml_dtypes for BF16 and F8 types, or use framework='pt')"
            )
        if nbytes == 0:
            return np.empty(shape, dtype=np_dtype)
        array = np.frombuffer(buffer, dtype=np_dtype, count=nbytes // np_dtype.itemsize, offset=offset)
        if not writable:
            array.flags.writeable = False
        return array.reshape(shape)

    def load_all(self, entries: List[Tuple[str, TensorArgs]]) -> Dict[str, Any]:
        return {name: self(*args) for name, args in entries}

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
    """Builds torch tensors on the cpu (zero-copy) or another device."""

    def __init__(self, device: Any) -> None:
        import torch

        from . import _dtypes

        self._torch = torch
        self._dtypes = _dtypes.torch_dtypes()
        self.device = _parse_torch_device(device)

    def resolve(self, dtype: str, shape: Tuple[int, ...]) -> Tuple[Any, Tuple[int, ...]]:
        """The torch dtype and shape of a tensor of the format's `dtype` and
        `shape`; raises `UnsupportedDtypeError` if torch cannot hold it."""
        torch_dtype = self._dtypes.get(dtype)
        if torch_dtype is None:
            raise UnsupportedDtypeError(f"dtype {dtype} has no equivalent in torch {self._torch.__version__}")
        return torch_dtype, _packed_f4_shape(shape) if dtype == "F4" else shape

    def cpu_tensor(self, buffer: Any, offset: int, nbytes: int, dtype: str, shape: Tuple[int, ...], writable: bool) -> Any:
        torch = self._torch
        torch_dtype, shape = self.resolve(dtype, shape)
        if nbytes == 0:
            return empty_tensor(torch, shape, torch_dtype)
        itemsize = torch_dtype.itemsize
        if offset % itemsize:
            # Misaligned in the file (not written by us or the reference):
            # copy into aligned memory rather than hand out a misaligned tensor.
            raw = torch.frombuffer(buffer, dtype=torch.uint8, count=nbytes, offset=offset)
            return raw.clone().view(torch_dtype).reshape(shape)
        tensor = torch.frombuffer(buffer, dtype=torch_dtype, count=nbytes // itemsize, offset=offset)
        if not writable:
            tensor = tensor.clone()
        return tensor.reshape(shape)

    def __call__(self, *args: Any) -> Any:
        if self.device.type == "cuda":
            from ._cuda import PINNED_MIN, load_to_cuda

            if args[2] >= PINNED_MIN:
                return load_to_cuda(self.device, self.resolve, [("", args)])[""]
        tensor = self.cpu_tensor(*args)
        if self.device.type != "cpu":
            tensor = tensor.to(self.device)
        return tensor

    def indexes_whole(self, index: Any) -> bool:
        """Whether `index` needs torch's own indexing of the whole tensor.

        The reference applies any torch index to the whole tensor; integers,
        slices, `...` and `None` select the same elements either way, so only
        the other kinds (booleans, lists, arrays, tensors) go through torch.
        """
        items = index if isinstance(index, tuple) else (index,)
        return any(_torch_only_index(item) for item in items)

    def index_whole(self, args: TensorArgs, index: Any) -> Any:
        """`index` applied by torch to the whole tensor (a view of the file
        where it is mapped), as a new tensor on this converter's device."""
        whole = self.cpu_tensor(*args)
        result = whole[index]
        if result.numel() and result.untyped_storage().data_ptr() == whole.untyped_storage().data_ptr():
            # A sequence of slices (read by torch as a tuple) gives a view:
            # sliced results are copies, never aliases of the file's memory.
            result = result.clone()
        return result.to(self.device) if self.device.type != "cpu" else result

    def load_all(self, entries: List[Tuple[str, TensorArgs]]) -> Dict[str, Any]:
        if self.device.type == "cuda":
            from ._cuda import load_to_cuda

            return load_to_cuda(self.device, self.resolve, entries)
        return {name: self(*args) for name, args in entries}


def _packed_f4_shape(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    if not shape or shape[-1] % 2:
        raise UnsupportedDtypeError(
            f"an F4 tensor of shape {list(shape)} cannot be loaded as torch.float4_e2m1fn_x2, which packs pairs along the last dimension"
        )
    return (*shape[:-1], shape[-1] // 2)


def _parse_torch_device(device: Any) -> Any:
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


_FRAMEWORKS: Dict[str, Callable[[Any], Any]] = {
    "pt": TorchConverter,
    "torch": TorchConverter,
    "np": lambda device: (_check_cpu(device, "numpy"), NumpyConverter())[1],
    "numpy": lambda device: (_check_cpu(device, "numpy"), NumpyConverter())[1],
}


def make_converter(framework: Any, device: Any) -> Any:
    """The converter for `framework` on `device`; raises SafetensorError if invalid."""
    factory = _FRAMEWORKS.get(framework) if isinstance(framework, str) else None
    if factory is None:
        raise SafetensorError(f"framework {framework} is invalid: safeweights supports 'pt' ('torch') and 'np' ('numpy')")
    return factory(device)
