"""`SafeweightsStorageWriter`: torch.distributed.checkpoint's StorageWriter
that writes each rank's shards as safetensors files through safeweights'
Rust writer, and the global metadata as JSON."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple, Union

from .. import _types
from .._checkpoint import _Plan
from .._safeweights_rust import serialize_file, serialize_file_checksummed
from ._format import (
    DCP_VERSION_KEY,
    DIGESTS_KEY,
    METADATA_FILE,
    RANK_KEY,
    SAVE_ID_KEY,
    SHARD_FILE,
    SHARDING_KEY,
    WORLD_SIZE_KEY,
    remove_if_present,
    shard_file_name,
    sync_directory,
    write_json_atomically,
)
from ._metadata import build_document
from .._safeweights_rust import parse_size

try:
    from torch.distributed.checkpoint.storage import StorageWriter as _StorageWriter
except ImportError:  # pragma: no cover - torch without distributed
    _StorageWriter = object  # type: ignore[misc,assignment]

# The chunk offsets format torch's HuggingFaceStorageReader reads.
_DCP_VERSION = "1.0"


class SafeweightsStorageWriter(_StorageWriter):  # type: ignore[misc]
    """Writes a `torch.distributed.checkpoint` checkpoint as safetensors
    files, with no pickle anywhere:

    ```python
    import torch.distributed.checkpoint as dcp
    from safeweights.dcp import SafeweightsStorageWriter

    dcp.save({"model": model.state_dict(), "optim": optim.state_dict(), "step": 7},
             storage_writer=SafeweightsStorageWriter("ckpt/step-7"))
    ```

    Each rank writes its own chunks straight from the tensors' memory into
    `__RANK_PART.safetensors` (a temporary file renamed into place, flushed
    to disk unless `durable=False`), with per-tensor XXH3-128 digests in
    its metadata, computed by the Rust writer in the same pass as it writes
    (`checksums=False` skips them). `max_shard_size` (bytes
    or `"5GB"`) splits a rank's data over several files; `thread_count`
    files are written at once (default: one per file, at most 4).
    Non-tensor values are stored with `safeweights.save`'s exact-type JSON
    encoding. The coordinator writes `safeweights.dcp.json` last: until it
    exists the directory holds no checkpoint that loads (a save removes
    the previous one's before any rank writes).
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        max_shard_size: Union[int, str, None] = None,
        thread_count: Optional[int] = None,
        checksums: bool = True,
        durable: bool = True,
    ) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.max_shard_size = None if max_shard_size is None else parse_size(max_shard_size)
        self.thread_count = thread_count
        self.checksums = checksums
        self.durable = durable
        self.rank: Optional[int] = None
        self.is_coordinator = False
        self.save_id: Optional[str] = None

    # StorageWriter interface.

    def reset(self, checkpoint_id: Union[str, "os.PathLike[str]", None] = None) -> None:
        if checkpoint_id is not None:
            self.path = os.fspath(checkpoint_id)
        self.save_id = None

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self.is_coordinator = is_coordinator
        self.rank = kwargs.get("rank")
        os.makedirs(self.path, exist_ok=True)

    def prepare_local_plan(self, plan: Any) -> Any:
        return plan

    def prepare_global_plan(self, plans: List[Any]) -> List[Any]:
        import dataclasses

        # Runs on the coordinator before any rank writes: the previous
        # checkpoint's metadata goes first, so a save that fails half way
        # leaves nothing that looks complete.
        if remove_if_present(os.path.join(self.path, METADATA_FILE)) and self.durable:
            sync_directory(self.path)
        save_id = uuid.uuid4().hex
        world_size = len(plans)
        return [
            dataclasses.replace(plan, storage_data={"rank": rank, "world_size": world_size, "save_id": save_id})
            for rank, plan in enumerate(plans)
        ]

    def write_data(self, plan: Any, planner: Any) -> Any:
        from torch.futures import Future

        future: Future = Future()
        try:
            future.set_result(self._write(plan, planner))
        except BaseException as error:  # noqa: BLE001 - handed to DCP, which reports it on every rank
            future.set_exception(error)
        return future

    def finish(self, metadata: Any, results: List[List[Any]]) -> None:
        files: Dict[str, Dict[str, Any]] = {}
        save_id = None
        world_size = len(results)
        for rank_results in results:
            for result in rank_results:
                stored = result.storage_data
                save_id = stored["save_id"]
                world_size = stored["world_size"]
                if stored.get("file") is not None:
                    files.setdefault(stored["file"], {"rank": stored["rank"], "bytes": stored["file_bytes"]})
        document = build_document(
            metadata, results, save_id=save_id or uuid.uuid4().hex, world_size=world_size, files=files
        )
        self._remove_stale_shards(set(files))
        write_json_atomically(os.path.join(self.path, METADATA_FILE), document, self.durable)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Union[str, "os.PathLike[str]"]) -> bool:
        return isinstance(checkpoint_id, (str, os.PathLike))

    def storage_meta(self) -> Any:
        from torch.distributed.checkpoint.metadata import StorageMeta

        return StorageMeta(checkpoint_id=self.path, save_id=self.save_id)

    # Writing.

    def _write(self, plan: Any, planner: Any) -> List[Any]:
        from torch.distributed.checkpoint.planner import WriteItemType

        storage = plan.storage_data or {}
        rank = self.rank if self.rank is not None else storage.get("rank", 0)
        save_id, world_size = storage.get("save_id", uuid.uuid4().hex), storage.get("world_size", 1)
        tensor_items = [item for item in plan.items if item.type != WriteItemType.BYTE_IO]
        object_items = [item for item in plan.items if item.type == WriteItemType.BYTE_IO]
        files = self._split(tensor_items)
        if object_items and not files:
            files = [[]]
        common = {"rank": rank, "world_size": world_size, "save_id": save_id}
        # Non-tensor values (and any tensors inside them) go to the first file.
        objects, object_tensors = self._encode_objects(object_items, planner)
        jobs = []
        for part, items in enumerate(files):
            name = shard_file_name(rank, part)
            extra = object_tensors if part == 0 else {}
            jobs.append((name, items, extra))
        results: List[Any] = []
        threads = min(len(jobs), self.thread_count or 4) or 1
        file_meta = {"save_id": save_id, "rank": rank, "world_size": world_size}
        if threads == 1:
            written = [self._write_file(name, items, extra, planner, file_meta) for name, items, extra in jobs]
        else:
            with ThreadPoolExecutor(threads) as pool:
                written = list(pool.map(lambda job: self._write_file(*job, planner, file_meta), jobs))
        from torch.distributed.checkpoint.storage import WriteResult

        for (name, items, _), (size, sizes) in zip(jobs, written):
            for item in items:
                stored = dict(common, file=name, entry=item.index.fqn, file_bytes=size)
                results.append(WriteResult(index=item.index, size_in_bytes=sizes[item.index.fqn], storage_data=stored))
        first = jobs[0][0] if jobs else None
        first_size = written[0][0] if written else 0
        for item in object_items:
            value = objects[item.index.fqn]
            stored = dict(common, file=first if value[1] else None, file_bytes=first_size, value=value[0])
            results.append(WriteResult(index=item.index, size_in_bytes=0, storage_data=stored))
        return results

    def _split(self, items: List[Any]) -> List[List[Any]]:
        """Groups a rank's chunks into files: at most `max_shard_size`
        bytes each (a larger chunk alone), one chunk of a tensor per file."""
        files: List[List[Any]] = []
        current: List[Any] = []
        names: set = set()
        size = 0
        for item in items:
            nbytes = _item_bytes(item)
            full = self.max_shard_size is not None and current and size + nbytes > self.max_shard_size
            if full or item.index.fqn in names:
                files.append(current)
                current, names, size = [], set(), 0
            current.append(item)
            names.add(item.index.fqn)
            size += nbytes
        if current:
            files.append(current)
        return files

    def _encode_objects(self, items: List[Any], planner: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Each non-tensor value, encoded as `safeweights.save` encodes
        values, with whether it names tensors; and those tensors."""
        tensors: Dict[str, Any] = {}
        encoded: Dict[str, Any] = {}
        for item in items:
            value = _lookup_object(planner, item)
            plan = _Plan()
            prefix = f"__objects__.{item.index.fqn}"
            root = _types.encode(value, lambda tensor, path: plan.add(tensor, _join(prefix, path)))
            entries = plan.finish()
            tensors.update(entries)
            encoded[item.index.fqn] = ({"version": _types.VERSION, "root": root}, bool(entries))
        return encoded, tensors

    def _write_file(
        self, name: str, items: List[Any], extra: Dict[str, Any], planner: Any, file_meta: Dict[str, Any]
    ) -> Tuple[int, Dict[str, int]]:
        import json

        from ..torch import _tensor_spec

        keep_alive: List[Any] = []
        specs: Dict[str, Any] = {}
        sharding: Dict[str, Any] = {}
        sizes: Dict[str, int] = {}
        tensors: List[Tuple[str, Any]] = []
        for item in items:
            # Resolved here, file by file, so a rank holds one file's worth
            # of copies at most (none for cpu tensors already contiguous).
            tensor = _storable(planner.resolve_data(item), item.index.fqn)
            tensors.append((item.index.fqn, tensor))
            sharding[item.index.fqn] = {"saved_offsets": list(item.tensor_data.chunk.offsets)}
            sizes[item.index.fqn] = tensor.numel() * tensor.element_size()
        for entry, tensor in extra.items():
            tensor = _storable(tensor, entry)
            tensors.append((entry, tensor))
            sharding[entry] = {"saved_offsets": [0] * tensor.dim()}
        for entry, tensor in tensors:
            specs[entry] = _tensor_spec(entry, tensor, keep_alive)
        metadata = {
            "format": "pt",
            SHARDING_KEY: json.dumps(sharding, separators=(",", ":")),
            DCP_VERSION_KEY: _DCP_VERSION,
            SAVE_ID_KEY: file_meta["save_id"],
            RANK_KEY: str(file_meta["rank"]),
            WORLD_SIZE_KEY: str(file_meta["world_size"]),
        }
        path = os.path.join(self.path, name)
        if self.checksums:
            serialize_file_checksummed(specs, path, metadata, DIGESTS_KEY, durable=self.durable)
        else:
            serialize_file(specs, path, metadata, durable=self.durable)
        return os.stat(path).st_size, sizes

    def _remove_stale_shards(self, keep: set) -> None:
        """Shard files of an earlier save with more ranks or parts: removed,
        so that readers listing the directory (torch's HF reader) never mix
        them in."""
        for name in os.listdir(self.path):
            if SHARD_FILE.match(name) and name not in keep:
                remove_if_present(os.path.join(self.path, name))


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if path else prefix


def _item_bytes(item: Any) -> int:
    data = item.tensor_data
    if data is None:
        return 0
    count = 1
    for n in data.chunk.sizes:
        count *= n
    return count * data.properties.dtype.itemsize


def _lookup_object(planner: Any, item: Any) -> Any:
    """The value itself, never the `torch.save` bytes the default
    planner's `resolve_data` would make of it."""
    lookup = getattr(planner, "lookup_object", None)
    if lookup is None:
        raise TypeError(
            f"cannot save the non-tensor value {item.index.fqn!r} without pickle: the planner"
            f" {type(planner).__name__} has no lookup_object (use DefaultSavePlanner or a subclass)"
        )
    return lookup(item.index)


def _storable(tensor: Any, name: str) -> Any:
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"the planner resolved {name!r} to a {type(tensor).__name__}, not a tensor")
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    return tensor.contiguous()
