"""`SafeweightsStorageReader`: torch.distributed.checkpoint's StorageReader
for safeweights DCP checkpoints (and tensor-only checkpoints written by
torch's `HuggingFaceStorageWriter`), resharding on load with positioned
reads of only the byte ranges each rank needs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

from .. import _dtypes, _types
from .._checkpoint import _Rebuilder
from .._location import Placement
from .._safe_open import safe_open
from .._safeweights_rust import SNIFF_LEN, SafetensorError, sniff_format, xxh3_128_hex
from ._format import (
    DIGESTS_KEY,
    SHA256_DIGESTS_KEY,
    METADATA_FILE,
    RANK_KEY,
    SAVE_ID_KEY,
    SHARD_FILE,
    SHARDING_KEY,
    TORCH_METADATA_FILE,
    WORLD_SIZE_KEY,
    ChecksumMismatchError,
    DcpError,
    IncompleteCheckpointError,
    MissingShardError,
    PickledCheckpointError,
    ShardMismatchError,
    TruncatedShardError,
    read_document,
    size_of,
)
from ._metadata import ChunkLocation, ObjectLocation, build_metadata

try:
    from torch.distributed.checkpoint.storage import StorageReader as _StorageReader
except ImportError:  # pragma: no cover - torch without distributed
    _StorageReader = object  # type: ignore[misc,assignment]


class SafeweightsStorageReader(_StorageReader):  # type: ignore[misc]
    """Reads a `torch.distributed.checkpoint` checkpoint written by
    `SafeweightsStorageWriter`, into any number of ranks with any sharding,
    or into one process without `torch.distributed`:

    ```python
    import torch.distributed.checkpoint as dcp
    from safeweights.dcp import SafeweightsStorageReader

    state = {"model": model.state_dict(), "optim": optim.state_dict(), "step": 0}
    dcp.load(state, storage_reader=SafeweightsStorageReader("ckpt/step-7"))
    ```

    Each rank opens only the shard files holding chunks it needs and
    reads only the byte ranges of its own slices (`pread`), one file after
    the other, each on `thread_count` threads (default 4). With
    `verify=True` every tensor read is checked against the digest stored
    when saving (XXH3-128, or SHA-256 in older checkpoints). Non-tensor
    values come back with their exact types. A directory of tensor-only
    files written by torch's `HuggingFaceStorageWriter` loads too.

    Errors name the file and the tensors: `MissingShardError`,
    `TruncatedShardError`, `ChecksumMismatchError`, `ShardMismatchError`
    (another save, rank or world size), `IncompleteCheckpointError` (the
    save never finished), `PickledCheckpointError` (torch's pickle-based
    formats); all are `safeweights.dcp.DcpError`. Inside `dcp.load`, errors
    of reading data reach the caller in torch's `CheckpointException`
    (`.failures[rank][0]`); errors of reading the metadata become torch's
    `AssertionError` with our message (torch re-raises them so).
    """

    def __init__(
        self, path: Union[str, "os.PathLike[str]"], *, thread_count: Optional[int] = None, verify: bool = False
    ) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.thread_count = thread_count
        self.verify = verify
        self.document: Optional[Dict[str, Any]] = None
        self.storage: Dict[Any, Any] = {}
        self.load_id: Optional[str] = None

    # StorageReader interface.

    def reset(self, checkpoint_id: Union[str, "os.PathLike[str]", None] = None) -> None:
        if checkpoint_id is not None:
            self.path = os.fspath(checkpoint_id)
        self.document = None
        self.storage = {}

    def read_metadata(self) -> Any:  # type: ignore[override]
        # No `rank=` keyword: there is no per-rank metadata to fall back on.
        # dcp.load turns an error here into an AssertionError carrying its
        # message; call read_metadata() directly for the typed error.
        if os.path.exists(os.path.join(self.path, METADATA_FILE)):
            self.document = read_document(self.path)
            metadata, self.storage = build_metadata(self.document, os.path.join(self.path, METADATA_FILE))
            return metadata
        hf_files = _hf_files(self.path)
        if hf_files:
            metadata, self.storage = _hf_metadata(self.path, hf_files)
            return metadata
        raise read_document_error(self.path)

    def set_up_storage_reader(self, metadata: Any, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        if metadata.storage_data is not None:
            self.storage = metadata.storage_data

    def prepare_local_plan(self, plan: Any) -> Any:
        return plan

    def prepare_global_plan(self, plans: List[Any]) -> List[Any]:
        return plans

    def read_data(self, plan: Any, planner: Any) -> Any:
        from torch.futures import Future

        future: Future = Future()
        try:
            self._read(plan, planner)
            future.set_result(None)
        except BaseException as error:  # noqa: BLE001 - handed to DCP, which reports it on every rank
            future.set_exception(error)
        return future

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Union[str, "os.PathLike[str]"]) -> bool:
        return os.path.isfile(os.path.join(os.fspath(checkpoint_id), METADATA_FILE))

    # Reading.

    def _read(self, plan: Any, planner: Any) -> None:
        per_file: Dict[str, List[Tuple[Any, Any]]] = {}
        objects: List[Tuple[Any, ObjectLocation]] = []
        for item in plan.items:
            location = self.storage.get(item.storage_index)
            if location is None:
                raise DcpError(f"{self.path}: the checkpoint has no data for {item.storage_index.fqn!r}", tensors=[item.storage_index.fqn])
            if isinstance(location, ObjectLocation):
                objects.append((item, location))
            else:
                per_file.setdefault(location.file, []).append((item, location))
        # One file after the other: each file's reads already run on
        # `thread_count` native threads, and a Python thread pool on top
        # cost more than it overlapped (profiled, 4 ranks resharded to 2).
        for name, items in per_file.items():
            self._read_file(name, items, planner)
        for item, location in objects:
            _deliver_object(planner, item, self._decode_object(item.storage_index.fqn, location))

    def _open(self, name: str, tensors: List[str]) -> safe_open:
        """Opens shard `name`, checking that it is the file this save wrote."""
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise DcpError(f"{self.path}: invalid shard file name {name!r} in the metadata", tensors=tensors)
        path = os.path.join(self.path, name)
        size = size_of(path)
        listing = ", ".join(tensors[:4]) + (", ..." if len(tensors) > 4 else "")
        if size is None:
            raise MissingShardError(f"{path}: shard file missing; it holds {listing}", path=path, tensors=tensors)
        expected = None if self.document is None else (self.document["files"].get(name) or {}).get("bytes")
        if isinstance(expected, int) and size < expected:
            raise TruncatedShardError(
                f"{path}: shard file truncated ({size} bytes, {expected} when saved); it holds {listing}",
                path=path,
                tensors=tensors,
            )
        if isinstance(expected, int) and size > expected:
            raise ShardMismatchError(
                f"{path}: shard file is {size} bytes, {expected} when saved (another save's file?); it holds {listing}",
                path=path,
                tensors=tensors,
            )
        try:
            handle = safe_open(path, framework="pt", backend="pread")
        except SafetensorError as error:
            if _is_pickle_file(path):
                raise _mixed_file_error(path) from None
            raise DcpError(f"{path}: shard file unreadable ({error}); it holds {listing}", path=path, tensors=tensors) from None
        if self.document is not None:
            self._check_identity(handle, path, name, tensors)
        return handle

    def _check_identity(self, handle: safe_open, path: str, name: str, tensors: List[str]) -> None:
        assert self.document is not None
        meta = handle.metadata() or {}
        file_info = self.document["files"].get(name) or {}
        expected = {
            SAVE_ID_KEY: self.document["save_id"],
            RANK_KEY: str(file_info.get("rank")),
            WORLD_SIZE_KEY: str(self.document["world_size"]),
        }
        for key, value in expected.items():
            if meta.get(key) != value:
                what = "rank count" if key == WORLD_SIZE_KEY else ("rank" if key == RANK_KEY else "save")
                raise ShardMismatchError(
                    f"{path}: this shard file belongs to another save ({what}: file says {meta.get(key)!r}, the"
                    f" checkpoint's metadata {value!r}); the directory mixes files of different saves",
                    path=path,
                    tensors=tensors,
                )

    def _read_file(self, name: str, items: List[Tuple[Any, ChunkLocation]], planner: Any) -> None:
        entries = sorted({location.entry for _, location in items})
        with self._open(name, entries) as handle:
            digests = self._digests(handle, name, entries) if self.verify else None
            whole: Dict[str, Any] = {}
            # Runs of whole rows go straight into their destinations, all in
            # one native call per file (parallel positioned reads); the rest
            # is sliced and copied here.
            requests: List[Tuple[str, int, int, int]] = []
            direct: List[Tuple[Any, Any]] = []
            for item, location in items:
                target = planner.resolve_tensor(item).detach()
                request = None if digests is not None else _rows_request(handle, location.entry, item, target)
                if request is not None:
                    requests.append(request)
                    direct.append((item, target))  # keeps each target alive through the read
                    continue
                if digests is not None:
                    if location.entry not in whole:
                        whole[location.entry] = _verified(handle, name, location.entry, digests, self.path)
                    source = _narrow(whole[location.entry], item.storage_offsets, item.lengths)
                else:
                    source = _read_box(handle, location.entry, item.storage_offsets, item.lengths)
                if tuple(target.shape) != tuple(source.shape):
                    raise DcpError(
                        f"{os.path.join(self.path, name)}: tensor {location.entry!r}: the slice read has shape"
                        f" {tuple(source.shape)}, the destination {tuple(target.shape)}",
                        path=os.path.join(self.path, name),
                        tensors=[location.entry],
                    )
                target.copy_(source)
                planner.commit_tensor(item, target)
            if requests:
                handle._file.read_ranges_into(requests, self.thread_count or 4)
            for item, target in direct:
                planner.commit_tensor(item, target)

    def _digests(self, handle: safe_open, name: str, entries: List[str]) -> "_Digests":
        """The stored digests and their algorithm: XXH3-128, or SHA-256
        in checkpoints saved before the writer hashed while writing."""
        metadata = handle.metadata() or {}
        algorithm = "xxh3-128" if DIGESTS_KEY in metadata else "sha256"
        text = metadata.get(DIGESTS_KEY, metadata.get(SHA256_DIGESTS_KEY))
        path = os.path.join(self.path, name)
        if text is None:
            raise ChecksumMismatchError(
                f"{path}: verify=True but the file stores no checksums (saved with checksums=False?)",
                path=path,
                tensors=entries,
            )
        try:
            digests = json.loads(text)
        except ValueError:
            raise ChecksumMismatchError(f"{path}: the stored checksums are not valid JSON", path=path, tensors=entries) from None
        return _Digests(algorithm, digests if isinstance(digests, dict) else {})

    def _decode_object(self, fqn: str, location: ObjectLocation) -> Any:
        document = location.value
        if not isinstance(document, dict) or document.get("version") not in _types.READS:
            raise DcpError(f"{self.path}: the value of {fqn!r} has an unknown encoding", tensors=[fqn])
        tensors: Dict[str, Any] = {}
        if location.file is not None:
            with self._open(location.file, [fqn]) as handle:
                prefix = f"__objects__.{fqn}"
                for key in handle.keys():
                    if key == prefix or key.startswith(prefix + ".") or key.startswith(prefix + "#"):
                        tensors[key] = handle.get_tensor(key)
        return _types.decode(document.get("root"), _Rebuilder(tensors, Placement(None)))


def read_document_error(directory: str) -> DcpError:
    """Why `directory` holds nothing to load."""
    from ._format import _no_document

    return _no_document(directory)


def _read_box(handle: safe_open, entry: str, offsets: Any, lengths: Any) -> Any:
    """Reads the box `offsets`..`offsets + lengths` of `entry`: only the
    bytes it covers."""
    if not lengths:
        return handle.get_tensor(entry)
    return handle.get_slice(entry)[tuple(slice(o, o + n) for o, n in zip(offsets, lengths))]


def _rows_request(handle: safe_open, entry: str, item: Any, target: Any) -> Optional[Tuple[str, int, int, int]]:
    """The positioned read `(entry, offset, address, length)` that fills
    `target` straight from the file when the box is a run of whole rows of
    the stored chunk (any resharding along dim 0: FSDP, `Shard(0)`) and
    `target` is a contiguous cpu tensor of the stored dtype: no
    intermediate buffer. None when that does not apply. The caller keeps
    `target` alive until the read is done."""
    if sys.byteorder != "little" or target.device.type != "cpu" or not target.is_contiguous():
        return None
    view = handle.get_slice(entry)
    shape, dtype = view.get_shape(), _dtypes.torch_dtypes().get(view.get_dtype())
    offsets, lengths = list(item.storage_offsets), list(item.lengths)
    if dtype is None or target.dtype != dtype or dtype.itemsize == 0 or len(shape) != len(lengths):
        return None
    if any(offsets[1:]) or lengths[1:] != shape[1:] or tuple(target.shape) != tuple(lengths):
        return None
    row = dtype.itemsize
    for n in shape[1:]:
        row *= n
    first = offsets[0] if offsets else 0
    length = target.numel() * dtype.itemsize
    return (entry, first * row, target.data_ptr() if length else 0, length)


def _narrow(tensor: Any, offsets: Any, lengths: Any) -> Any:
    for dim, (start, length) in enumerate(zip(offsets, lengths)):
        tensor = tensor.narrow(dim, start, length)
    return tensor


class _Digests(NamedTuple):
    algorithm: str  # "xxh3-128" or "sha256"
    by_tensor: Dict[str, str]


def _verified(handle: safe_open, name: str, entry: str, digests: _Digests, directory: str) -> Any:
    import torch

    tensor = handle.get_tensor(entry)
    path = os.path.join(directory, name)
    expected = digests.by_tensor.get(entry)
    if expected is None:
        raise ChecksumMismatchError(f"{path}: no checksum stored for tensor {entry!r}", path=path, tensors=[entry])
    if digests.algorithm == "xxh3-128":
        contiguous = tensor.contiguous()  # get_tensor's result already is; kept alive for the call
        actual = xxh3_128_hex(contiguous.data_ptr(), contiguous.numel() * contiguous.element_size())
    else:
        flat = tensor.reshape(-1)
        data = memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")
        actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumMismatchError(
            f"{path}: tensor {entry!r} is corrupt: its {digests.algorithm} digest is {actual}, {expected} when saved",
            path=path,
            tensors=[entry],
        )
    return tensor


def _deliver_object(planner: Any, item: Any, value: Any) -> None:
    """Hands a decoded value to the planner. The default planner's
    `load_bytes` would `torch.load(weights_only=False)` a byte stream: the
    value is set where that would put it instead, with no pickle. A
    planner with its own `load_bytes` gets the stream its contract asks
    for, made here from the already decoded value."""
    from torch.distributed.checkpoint._traverse import set_element
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    if type(planner).load_bytes is DefaultLoadPlanner.load_bytes:
        fqn = item.dest_index.fqn
        if planner.flatten_state_dict:
            set_element(planner.original_state_dict, planner.mappings[fqn], value)
        else:
            planner.state_dict[fqn] = value
        return
    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    planner.load_bytes(item, buffer)


# torch's HuggingFaceStorageWriter output (tensor-only).


def _hf_files(directory: str) -> List[str]:
    if not os.path.isdir(directory):
        return []
    names = sorted(name for name in os.listdir(directory) if name.endswith(".safetensors"))
    # Our own shard files without metadata are an unfinished save, not HF output.
    if any(SHARD_FILE.match(name) for name in names) or os.path.exists(os.path.join(directory, TORCH_METADATA_FILE)):
        return []
    return names


def _is_pickle_file(path: str) -> bool:
    with open(path, "rb") as file:
        return sniff_format(file.read(SNIFF_LEN)) in ("zip", "pickle")


def _mixed_file_error(path: str) -> PickledCheckpointError:
    return PickledCheckpointError(
        f"{path}: not a safetensors file: it starts with a torch.save pickle (torch's HuggingFaceStorageWriter"
        " writes non-tensor values that way, in front of the safetensors data). Neither safetensors readers nor"
        " zip readers accept it, and loading it would run pickle. Save non-tensor state with"
        " safeweights.dcp.SafeweightsStorageWriter.",
        path=path,
    )


def _hf_metadata(directory: str, names: List[str]) -> Tuple[Any, Dict[Any, Any]]:
    import torch
    from torch.distributed.checkpoint.metadata import (
        ChunkStorageMetadata,
        Metadata,
        MetadataIndex,
        StorageMeta,
        TensorProperties,
        TensorStorageMetadata,
    )

    state: Dict[str, Any] = {}
    storage: Dict[Any, Any] = {}
    for name in names:
        path = os.path.join(directory, name)
        try:
            handle = safe_open(path, framework="pt", backend="pread")
        except SafetensorError as error:
            if _is_pickle_file(path):
                raise _mixed_file_error(path) from None
            raise DcpError(f"{path}: unreadable safetensors file ({error})", path=path) from None
        with handle:
            sharding_text = (handle.metadata() or {}).get(SHARDING_KEY)
            try:
                sharding = json.loads(sharding_text) if sharding_text else {}
            except ValueError:
                raise DcpError(f"{path}: {SHARDING_KEY} is not valid JSON", path=path) from None
            for key in handle.keys():
                view = handle.get_slice(key)
                shape = list(view.get_shape())
                dtype = _dtypes.torch_dtypes().get(view.get_dtype())
                offsets = list((sharding.get(key) or {}).get("saved_offsets") or [0] * len(shape))
                if len(offsets) != len(shape):
                    raise DcpError(f"{path}: tensor {key!r}: offsets {offsets} do not match shape {shape}", path=path, tensors=[key])
                chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(shape))
                ends = [o + n for o, n in zip(offsets, shape)]
                if key in state:
                    state[key].chunks.append(chunk)
                    state[key].size = torch.Size([max(a, b) for a, b in zip(state[key].size, ends)])
                else:
                    state[key] = TensorStorageMetadata(TensorProperties(dtype=dtype), torch.Size(ends), [chunk])
                storage[MetadataIndex(key, offsets)] = ChunkLocation(name, key)
    if not state:
        raise IncompleteCheckpointError(f"{directory}: the safetensors files hold no tensors", path=directory)
    return Metadata(state_dict_metadata=state, storage_data=storage, storage_meta=StorageMeta()), storage
