"""`consolidate`: a sharded DCP checkpoint to a standard Hugging Face layout
of full tensors (`model-0000N-of-0000M.safetensors` and
`model.safetensors.index.json`)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple, Union

from .._safeweights_rust import dcp_consolidate, parse_size, serialize_file
from ._format import METADATA_FILE, DcpError, write_json_atomically
from ._metadata import ChunkLocation
from ._reader import SafeweightsStorageReader, _verified

INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_SIZE = "5GB"


def consolidate(
    checkpoint_dir: Union[str, "os.PathLike[str]"],
    output_dir: Union[str, "os.PathLike[str]"],
    *,
    max_shard_size: Union[int, str] = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    verify: bool = False,
    durable: bool = True,
) -> List[str]:
    """Writes the full tensors of the DCP checkpoint in `checkpoint_dir`
    (ours, or tensor-only output of torch's `HuggingFaceStorageWriter`) to
    `output_dir` as `model-0000N-of-0000M.safetensors` shards of at most
    `max_shard_size` (a tensor larger than that gets a shard of its own)
    plus `model.safetensors.index.json`, which every Hugging Face tool and
    torch's `HuggingFaceStorageReader` load. Returns the paths written.

    It streams: for a safeweights checkpoint the Rust writer takes each
    tensor's chunks from their byte ranges (positioned reads) into the
    output in 16 MiB pieces when they split the first dimension, one tensor
    at a time otherwise, so memory stays bounded by the largest tensor;
    output of torch's HF writer is assembled one output shard at a time. Non-tensor values are not part of a
    Hugging Face layout and are left out. An index already in `output_dir`
    is refused unless `overwrite=True`. With `verify=True` every chunk is
    checked against its stored digest (XXH3-128) first.

    Example: `consolidate("ckpt/step-1000", "hf-model", max_shard_size="2GB")`.
    """
    import torch

    source = os.fspath(checkpoint_dir)
    target = os.fspath(output_dir)
    limit = parse_size(max_shard_size)
    index_path = os.path.join(target, INDEX_FILE)
    if os.path.exists(index_path) and not overwrite:
        raise FileExistsError(f"{index_path} exists: pass overwrite=True (--force) to replace it")
    reader = SafeweightsStorageReader(source, verify=verify)
    if verify:
        # Every chunk read once, whole, checked against its digest.
        reader.read_metadata()
        for name in {loc.file for loc in reader.storage.values() if isinstance(loc, ChunkLocation)}:
            with reader._open(name, []) as handle:
                digests = reader._digests(handle, name, [])
                for entry in handle.keys():
                    _verified(handle, name, entry, digests, source)
    if os.path.isfile(os.path.join(source, METADATA_FILE)):
        # Ours: the core's streaming consolidation (GIL released, memory
        # bounded by the largest tensor).
        return [os.fspath(p) for p in dcp_consolidate(source, target, limit, durable=durable)]
    metadata = reader.read_metadata()
    tensors = _tensors(metadata)
    if not tensors:
        raise DcpError(f"{source}: the checkpoint holds no tensors to consolidate", path=source)
    os.makedirs(target, exist_ok=True)
    shards = _plan(tensors, limit)
    count = len(shards)
    weight_map: Dict[str, str] = {}
    written: List[str] = []
    total = 0
    for number, members in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{count:05d}.safetensors"
        full = {fqn: _assemble(reader, fqn, item, torch) for fqn, item in members}
        _write(full, os.path.join(target, name), durable)
        for fqn, tensor in full.items():
            weight_map[fqn] = name
            total += tensor.numel() * tensor.element_size()
        written.append(os.path.join(target, name))
        del full
    write_json_atomically(index_path, {"metadata": {"total_size": total}, "weight_map": weight_map}, durable)
    return written + [index_path]


def _tensors(metadata: Any) -> List[Tuple[str, Any]]:
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    return [(fqn, item) for fqn, item in metadata.state_dict_metadata.items() if isinstance(item, TensorStorageMetadata)]


def _nbytes(item: Any) -> int:
    count = 1
    for n in item.size:
        count *= n
    return count * item.properties.dtype.itemsize


def _plan(tensors: List[Tuple[str, Any]], limit: int) -> List[List[Tuple[str, Any]]]:
    shards: List[List[Tuple[str, Any]]] = []
    current: List[Tuple[str, Any]] = []
    size = 0
    for fqn, item in tensors:
        nbytes = _nbytes(item)
        if current and size + nbytes > limit:
            shards.append(current)
            current, size = [], 0
        current.append((fqn, item))
        size += nbytes
    if current:
        shards.append(current)
    return shards


def _assemble(reader: SafeweightsStorageReader, fqn: str, item: Any, torch: Any) -> Any:
    """The full tensor `fqn`, its chunks read into place."""
    from torch.distributed.checkpoint.metadata import MetadataIndex
    from torch.distributed.checkpoint.planner import LoadItemType, ReadItem

    full = torch.empty(tuple(item.size), dtype=item.properties.dtype)
    items = []
    for chunk in item.chunks:
        index = MetadataIndex(fqn, list(chunk.offsets))
        location = reader.storage.get(index)
        if not isinstance(location, ChunkLocation):
            raise DcpError(f"{reader.path}: no data for chunk {list(chunk.offsets)} of {fqn!r}", tensors=[fqn])
        read = ReadItem(
            type=LoadItemType.TENSOR,
            dest_index=index,
            dest_offsets=torch.Size(chunk.offsets),
            storage_index=index,
            storage_offsets=torch.Size([0] * len(chunk.offsets)),
            lengths=torch.Size(chunk.sizes),
        )
        items.append((read, location))
    by_file: Dict[str, List[Tuple[Any, ChunkLocation]]] = {}
    for read, location in items:
        by_file.setdefault(location.file, []).append((read, location))
    for name, reads in by_file.items():
        reader._read_file(name, reads, _IntoFull(full))
    return full


class _IntoFull:
    """The two planner calls `_read_file` makes, aimed at one full tensor."""

    def __init__(self, full: Any) -> None:
        self.full = full

    def resolve_tensor(self, read: Any) -> Any:
        tensor = self.full
        for dim, (start, length) in enumerate(zip(read.dest_offsets, read.lengths)):
            tensor = tensor.narrow(dim, start, length)
        return tensor

    def commit_tensor(self, read: Any, tensor: Any) -> None:
        pass


def _write(tensors: Dict[str, Any], path: str, durable: bool) -> None:
    from ..torch import _tensor_spec

    keep_alive: List[Any] = []
    specs = {name: _tensor_spec(name, tensor, keep_alive) for name, tensor in tensors.items()}
    serialize_file(specs, path, {"format": "pt"}, durable=durable)

