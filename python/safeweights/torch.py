"""PyTorch support: a drop-in for `safetensors.torch`, plus safe checkpoints.

Same functions, signatures and errors as the reference (`save`, `load`,
`save_file`, `load_file`, `save_model`, `load_model` and the shared-tensor
helpers), and beyond it:

- `save_checkpoint(obj, f)` / `load_checkpoint(f)`: any nesting of dicts,
  lists and tuples of tensors and Python scalars, with shared tensors kept
  shared, stored as a valid safetensors file (no pickle anywhere);
- `load_checkpoint` also reads legacy `torch.save` files (.bin/.pt/.pth)
  through a safe, non-executing pickle reader.

Example:

```python
import torch
from safeweights.torch import save_file, load_file

save_file({"embedding": torch.zeros(512, 1024)}, "model.safetensors")
tensors = load_file("model.safetensors")
```
"""

import os
import sys
from collections import defaultdict
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import torch

from . import SafetensorError, TensorSpec, UnsupportedDtypeError, _dtypes, deserialize, safe_open, serialize, serialize_file
from ._checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
from ._frameworks import empty_tensor
from ._safe_open import _storage_options


def storage_ptr(tensor: torch.Tensor) -> int:
    """Address of the storage behind `tensor` (0 for meta tensors)."""
    try:
        return tensor.untyped_storage().data_ptr()
    except Exception:
        try:
            return tensor.storage().data_ptr()
        except NotImplementedError:
            return 0


def _end_ptr(tensor: torch.Tensor) -> int:
    if tensor.nelement():
        return tensor.view(-1)[-1].data_ptr() + _SIZE[tensor.dtype]
    return tensor.data_ptr()


def storage_size(tensor: torch.Tensor) -> int:
    """Size in bytes of the storage behind `tensor`."""
    try:
        return tensor.untyped_storage().nbytes()
    except AttributeError:
        try:
            return tensor.storage().size() * _SIZE[tensor.dtype]
        except NotImplementedError:
            return tensor.nelement() * _SIZE[tensor.dtype]


def _filter_shared_not_shared(tensors: List[Set[str]], state_dict: Dict[str, torch.Tensor]) -> List[Set[str]]:
    # Tensors on one storage that do not overlap are not really shared.
    filtered_tensors = []
    for shared in tensors:
        if len(shared) < 2:
            filtered_tensors.append(shared)
            continue
        areas = []
        for name in shared:
            tensor = state_dict[name]
            areas.append((tensor.data_ptr(), _end_ptr(tensor), name))
        areas.sort()
        _, last_stop, last_name = areas[0]
        filtered_tensors.append({last_name})
        for start, stop, name in areas[1:]:
            if start >= last_stop:
                filtered_tensors.append({name})
            else:
                filtered_tensors[-1].add(name)
            last_stop = stop
    return filtered_tensors


def _find_shared_tensors(state_dict: Dict[str, torch.Tensor]) -> List[Set[str]]:
    """Groups of names whose tensors overlap in memory."""
    tensors = defaultdict(set)
    meta = torch.device("meta")
    for k, v in state_dict.items():
        device = v.device
        if device != meta:
            ptr = storage_ptr(v)
            if ptr != 0:
                size = storage_size(v)
                if size != 0:
                    tensors[(device, ptr, size)].add(k)
    tensors = list(sorted(tensors.values()))
    return _filter_shared_not_shared(tensors, state_dict)


def _is_complete(tensor: torch.Tensor) -> bool:
    return tensor.data_ptr() == storage_ptr(tensor) and tensor.nelement() * _SIZE[tensor.dtype] == storage_size(tensor)


def _remove_duplicate_names(
    state_dict: Dict[str, torch.Tensor],
    *,
    preferred_names: Optional[List[str]] = None,
    discard_names: Optional[List[str]] = None,
) -> Dict[str, List[str]]:
    """For each group of shared tensors, the name kept and the names dropped."""
    preferred_names = set(preferred_names or [])
    discard_names = set(discard_names or [])
    to_remove = defaultdict(list)
    for shared in _find_shared_tensors(state_dict):
        complete_names = {name for name in shared if _is_complete(state_dict[name])}
        if not complete_names:
            raise RuntimeError(
                "Error while trying to find names to remove to save state dict, but found no suitable name to keep"
                f" for saving amongst: {shared}. None is covering the entire storage.Refusing to save/load the model"
                " since you could be storing much more memory than needed. Please refer to"
                " https://huggingface.co/docs/safetensors/torch_shared_tensors for more information. Or open an"
                " issue."
            )
        keep_name = sorted(complete_names)[0]
        preferred = complete_names.difference(discard_names)
        if preferred:
            keep_name = sorted(preferred)[0]
        if preferred_names:
            preferred = preferred_names.intersection(complete_names)
            if preferred:
                keep_name = sorted(preferred)[0]
        for name in sorted(shared):
            if name != keep_name:
                to_remove[keep_name].append(name)
    return to_remove


def save_model(
    model: torch.nn.Module,
    filename: str,
    metadata: Optional[Dict[str, str]] = None,
    force_contiguous: bool = True,
):
    """Saves `model.state_dict()` to `filename`, dropping duplicate names of
    tied weights (each dropped name is recorded in the metadata, pointing at
    the name kept). `load_model` restores them."""
    state_dict = model.state_dict()
    to_removes = _remove_duplicate_names(state_dict)
    for kept_name, to_remove_group in to_removes.items():
        for to_remove in to_remove_group:
            if metadata is None:
                metadata = {}
            if to_remove not in metadata:
                metadata[to_remove] = kept_name
            del state_dict[to_remove]
    if force_contiguous:
        state_dict = {k: v.contiguous() for k, v in state_dict.items()}
    try:
        save_file(state_dict, filename, metadata=metadata)
    except ValueError as e:
        if isinstance(e, SafetensorError):
            # Ours (e.g. UnsupportedDtypeError, also a KeyError, which the
            # reference lets through): not about contiguity.
            raise
        msg = str(e)
        msg += " Or use save_model(..., force_contiguous=True), read the docs for potential caveats."
        raise ValueError(msg)


def load_model(
    model: torch.nn.Module,
    filename: Union[str, os.PathLike],
    strict: bool = True,
    device: Union[str, int] = "cpu",
    *,
    backend: str = "mmap",
) -> Tuple[List[str], List[str]]:
    """Loads `filename` into `model`, handling tied weights saved once by
    `save_model`. Returns `(missing, unexpected)` names; with `strict`,
    raises RuntimeError when either is non-empty."""
    state_dict = load_file(filename, device=device, backend=backend)
    model_state_dict = model.state_dict()
    to_removes = _remove_duplicate_names(model_state_dict, preferred_names=state_dict.keys())
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = set(missing)
    for to_remove_group in to_removes.values():
        for to_remove in to_remove_group:
            if to_remove not in missing:
                unexpected.append(to_remove)
            else:
                missing.remove(to_remove)
    if strict and (missing or unexpected):
        missing_keys = ", ".join([f'"{k}"' for k in sorted(missing)])
        unexpected_keys = ", ".join([f'"{k}"' for k in sorted(unexpected)])
        error = f"Error(s) in loading state_dict for {model.__class__.__name__}:"
        if missing:
            error += f"\n    Missing key(s) in state_dict: {missing_keys}"
        if unexpected:
            error += f"\n    Unexpected key(s) in state_dict: {unexpected_keys}"
        raise RuntimeError(error)
    return missing, unexpected


def save(tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serializes tensors (contiguous, not sharing memory) to `bytes`.

    Example: `data = save({"embedding": torch.zeros(512, 1024)})`."""
    keep_references_alive = []
    return serialize(_flatten_as_ptr(tensors, keep_references_alive), metadata=metadata)


def save_file(
    tensors: Dict[str, torch.Tensor],
    filename: Union[str, os.PathLike],
    metadata: Optional[Dict[str, str]] = None,
    *,
    durable: bool = True,
    storage_options: Optional[Dict[str, Any]] = None,
):
    """Writes tensors (contiguous, not sharing memory) to `filename`.

    The file is written to a temporary name beside `filename` and renamed
    into place, so readers (and maps of the old file) never see a partial
    file. The file's blocks are allocated up front and the tensors' bytes are
    written in place, in file order, with no intermediate copy. With
    `durable` (the default) the file and its directory are flushed to disk
    before this returns, so a power cut cannot lose it; `durable=False`
    skips that, for scratch files.

    To an `s3://` URL the file is streamed by multipart upload (memory
    bounded by the part size); the object appears only when the upload
    completes, and a failed or interrupted upload leaves nothing.
    `storage_options` as in `safe_open`.

    Example: `save_file({"embedding": torch.zeros(512, 1024)}, "model.safetensors")`."""
    keep_references_alive = []
    serialize_file(
        _flatten_as_ptr(tensors, keep_references_alive),
        filename,
        metadata=metadata,
        durable=durable,
        storage_options=_storage_options(storage_options),
    )


def load_file(
    filename: Union[str, os.PathLike],
    device: Union[str, int] = "cpu",
    *,
    backend: str = "mmap",
    storage_options: Optional[Dict[str, Any]] = None,
) -> Dict[str, torch.Tensor]:
    """Loads every tensor of a file (or of a sharded checkpoint's
    `*.index.json`) as a dict in file order.

    On the cpu the tensors are zero-copy views of a private (copy-on-write)
    map of the file: writable, and writes never reach the file.

    On a CUDA device (`"cuda"`, `"cuda:N"` or an index) the bytes go
    through pinned host buffers with overlapped asynchronous copies into one
    device allocation, of which every tensor is a 256-byte aligned view; it
    is freed when the last of them is. The copies are complete on return.

    `filename` may be an `s3://` or `https://` URL (see `safe_open` for
    `storage_options`).

    Example: `tensors = load_file("model.safetensors", device="cuda")`."""
    with safe_open(filename, framework="pt", device=device, backend=backend, storage_options=storage_options) as f:
        return f.get_tensors()


def load(data: bytes) -> Dict[str, torch.Tensor]:
    """Loads tensors from the bytes of a safetensors file.

    The tensors are writable and independent of `data` (its bytes are
    copied once, as the reference does).

    Example: `tensors = load(open("model.safetensors", "rb").read())`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"argument 'bytes': expected bytes, bytearray or memoryview, got {type(data).__name__}")
    with safe_open(bytearray(data), framework="pt") as f:
        return f.get_tensors()


# Bytes per element of every dtype the format can store (the reference's name).
_SIZE = {dtype: dtype.itemsize for dtype in _dtypes.torch_to_format()}
# "float32" for torch.float32: the names TensorSpec takes.
_DTYPE_NAMES = {dtype: _dtypes.torch_name(dtype) for dtype in _SIZE}
# Format name -> torch dtype (the reference's name), from the one table.
_TYPES = dict(_dtypes.torch_dtypes())
# The reference's names for the newer dtypes (None where torch lacks one).
_float8_e4m3fn = _TYPES.get("F8_E4M3")
_float8_e4m3fnuz = _TYPES.get("F8_E4M3FNUZ")
_float8_e5m2 = _TYPES.get("F8_E5M2")
_float8_e5m2fnuz = _TYPES.get("F8_E5M2FNUZ")
_float8_e8m0 = _TYPES.get("F8_E8M0")
_float4_e2m1_x2 = _TYPES.get("F4")


def _getdtype(dtype_str: str) -> torch.dtype:
    return _TYPES[dtype_str]


def _view2torch(safeview) -> Dict[str, torch.Tensor]:
    """Tensors from `deserialize` output (copies)."""
    result = {}
    for k, v in safeview:
        dtype = _getdtype(v["dtype"])
        shape = v["shape"]
        if v["dtype"] == "F4" and shape:
            shape = [*shape[:-1], shape[-1] // 2]
        if len(v["data"]) == 0:
            arr = empty_tensor(torch, shape, dtype)
        else:
            arr = torch.frombuffer(v["data"], dtype=dtype).reshape(shape)
        if sys.byteorder == "big":
            arr = torch.from_numpy(arr.numpy().byteswap(inplace=False))
        result[k] = arr
    return result


def _to_ndarray(tensor: torch.Tensor):
    """A numpy byte view of a (cpu) tensor's memory, and the tensor it views."""
    import ctypes

    import numpy as np

    if tensor.device.type != "cpu":
        tensor = tensor.to("cpu")
    total_bytes = tensor.nelement() * _SIZE[tensor.dtype]
    ptr = tensor.data_ptr()
    if ptr == 0:
        return np.empty(0), 0
    newptr = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_ubyte))
    return np.ctypeslib.as_array(newptr, (total_bytes,)), tensor


def _evaluate_tensors_for_save(tensors: Dict[str, torch.Tensor]) -> None:
    if not isinstance(tensors, dict):
        raise ValueError(f"Expected a dict of [str, torch.Tensor] but received {type(tensors)}")
    sparse_tensors = []
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"Key `{k}` is invalid, expected torch.Tensor but received {type(v)}")
        if v.layout != torch.strided:
            sparse_tensors.append(k)
    if sparse_tensors:
        raise ValueError(
            f"You are trying to save a sparse tensors: `{sparse_tensors}` which this library does not support."
            " You can make it a dense tensor before saving with `.to_dense()` but be aware this might"
            " make a much larger file than needed."
        )
    failing = [names for names in _find_shared_tensors(tensors) if len(names) > 1]
    if failing:
        raise RuntimeError(
            f"""
            Some tensors share memory, this will lead to duplicate memory on disk and potential differences when loading them again: {failing}.
            A potential way to correctly save your model is to use `save_model`, or `save_checkpoint` which keeps shared tensors shared.
            More information at https://huggingface.co/docs/safetensors/torch_shared_tensors
            """
        )


def _tensor_spec(name: str, tensor: torch.Tensor, keep_alive_buffer: List) -> TensorSpec:
    """A TensorSpec pointing at a cpu tensor's own memory (no copy)."""
    if tensor.dtype not in _SIZE:
        # Also a KeyError and a ValueError: the reference raises KeyError here.
        raise UnsupportedDtypeError(
            f"Tensor `{name}` has dtype {tensor.dtype}, which the safetensors format cannot store"
            " (save_checkpoint can, as raw bytes)"
        )
    if tensor.device.type != "cpu":
        tensor = tensor.to("cpu")
    if sys.byteorder == "big":
        tensor = torch.from_numpy(tensor.numpy().byteswap(inplace=False))
    keep_alive_buffer.append(tensor)
    dtype = tensor.dtype
    return TensorSpec(
        dtype=_DTYPE_NAMES[dtype],
        shape=tensor.shape,
        data_ptr=tensor.data_ptr(),
        data_len=tensor.nelement() * _SIZE[dtype],
    )


def _flatten_as_ptr(tensors: Dict[str, torch.Tensor], keep_alive_buffer: List) -> Dict[str, Any]:
    _evaluate_tensors_for_save(tensors)
    flattened = {}
    for k, v in tensors.items():
        if not v.is_contiguous():
            raise ValueError(
                f"You are trying to save a non contiguous tensor: `{k}` which is not allowed. It either means you"
                " are trying to save tensors which are reference of each other in which case it's recommended to save"
                " only the full tensors, and reslice at load time, or simply call `.contiguous()` on your tensor to"
                " pack it before saving."
            )
        flattened[k] = _tensor_spec(k, v, keep_alive_buffer)
    return flattened
