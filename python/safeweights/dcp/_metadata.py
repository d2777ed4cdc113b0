"""torch's DCP `Metadata` to and from our JSON document (never pickle).

The document's `state` maps each key of the flattened state dict, in
order, to either

- `{"tensor": {"dtype": "float32", "size": [...], "stride": [...] | null,
  "requires_grad": bool, "chunks": [{"offsets", "sizes", "file",
  "entry"}, ...]}}`: a tensor saved in chunks, each an entry of a shard
  file; or
- `{"object": {"file": name | null, "value": {"version", "root"}}}`: a
  non-tensor value, encoded as `safeweights.save` encodes values (`root`
  may name tensors stored as entries of `file`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .. import _dtypes, _types
from ._format import FORMAT_NAME, FORMAT_VERSION, DcpError


@dataclass(frozen=True)
class ChunkLocation:
    """Where one saved chunk lives: `entry` of shard `file`."""

    file: str
    entry: str


@dataclass(frozen=True)
class ObjectLocation:
    """A non-tensor value: its encoded document, and the shard file that
    holds the tensors it names (if any)."""

    file: Optional[str]
    value: Dict[str, Any]


def _no_tensors(tensor: Any, path: str) -> Dict[str, Any]:
    raise TypeError(f"the planner data holds a tensor at {path}")


def encode_planner_data(planner_data: Any) -> Any:
    """The planner's key mappings (`{fqn: ("model", "fc", "weight")}` for
    the default planner), with exact types (tuples stay tuples)."""
    if planner_data is None:
        return None
    return {"version": _types.VERSION, "root": _types.encode(planner_data, _no_tensors)}


def decode_planner_data(document: Any) -> Any:
    if document is None:
        return None
    if not isinstance(document, dict) or document.get("version") not in _types.READS:
        raise DcpError("invalid checkpoint metadata: planner_data has an unknown encoding")
    return _types.decode(document.get("root"), None)


def build_document(
    metadata: Any, results: List[List[Any]], *, save_id: str, world_size: int, files: Dict[str, Dict[str, Any]]
) -> Dict[str, Any]:
    """The global metadata document of a finished save, from torch's
    `Metadata` and every rank's `WriteResult`s."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    where: Dict[Tuple[str, Optional[Tuple[int, ...]]], Any] = {}
    for rank_results in results:
        for result in rank_results:
            offset = None if result.index.offset is None else tuple(result.index.offset)
            where[(result.index.fqn, offset)] = result.storage_data
    state: Dict[str, Any] = {}
    for fqn, item in metadata.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            chunks = []
            for chunk in item.chunks:
                stored = where.get((fqn, tuple(chunk.offsets)))
                if stored is None:
                    raise DcpError(f"no rank wrote chunk {list(chunk.offsets)} of tensor {fqn!r}", tensors=[fqn])
                chunks.append(
                    {"offsets": list(chunk.offsets), "sizes": list(chunk.sizes), "file": stored["file"], "entry": stored["entry"]}
                )
            strides = item.properties.strides
            state[fqn] = {
                "tensor": {
                    "dtype": _dtypes.torch_name(item.properties.dtype),
                    "size": list(item.size),
                    "stride": None if strides is None else list(strides),
                    "requires_grad": bool(item.properties.requires_grad),
                    "chunks": chunks,
                }
            }
        else:
            stored = where.get((fqn, None)) or next((v for (k, _), v in where.items() if k == fqn), None)
            if stored is None:
                raise DcpError(f"no rank wrote the value of {fqn!r}", tensors=[fqn])
            state[fqn] = {"object": {"file": stored.get("file"), "value": stored["value"]}}
    storage_meta = getattr(metadata, "storage_meta", None)
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "save_id": save_id,
        "world_size": world_size,
        "dcp_version": getattr(metadata, "version", None),
        "files": files,
        "state": state,
        "planner_data": encode_planner_data(metadata.planner_data),
        "storage_meta": None
        if storage_meta is None
        else {
            "checkpoint_id": None if storage_meta.checkpoint_id is None else str(storage_meta.checkpoint_id),
            "save_id": storage_meta.save_id,
            "modules": list(storage_meta.modules),
        },
    }


def build_metadata(document: Dict[str, Any], where: str) -> Tuple[Any, Dict[Any, Any]]:
    """torch's `Metadata` and the storage data (MetadataIndex -> location)
    of a document read from `where`."""
    import torch
    from torch.distributed.checkpoint.metadata import (
        BytesStorageMetadata,
        ChunkStorageMetadata,
        Metadata,
        MetadataIndex,
        StorageMeta,
        TensorProperties,
        TensorStorageMetadata,
    )

    state_dict_metadata: Dict[str, Any] = {}
    storage: Dict[Any, Any] = {}
    try:
        for fqn, item in document["state"].items():
            if "tensor" in item:
                tensor = item["tensor"]
                dtype = _dtypes.torch_dtype(tensor["dtype"])
                if dtype is None:
                    raise DcpError(f"{where}: tensor {fqn!r} has unknown dtype {tensor['dtype']!r}", tensors=[fqn])
                chunks = []
                for chunk in tensor["chunks"]:
                    offsets, sizes = _ints(chunk["offsets"]), _ints(chunk["sizes"])
                    chunks.append(ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes)))
                    storage[MetadataIndex(fqn, offsets)] = ChunkLocation(_str(chunk["file"]), _str(chunk["entry"]))
                stride = tensor.get("stride")
                properties = TensorProperties(
                    dtype=dtype,
                    requires_grad=bool(tensor.get("requires_grad")),
                    strides=None if stride is None else tuple(_ints(stride)),
                )
                state_dict_metadata[fqn] = TensorStorageMetadata(properties, torch.Size(_ints(tensor["size"])), chunks)
            elif "object" in item:
                stored = item["object"]
                state_dict_metadata[fqn] = BytesStorageMetadata()
                storage[MetadataIndex(fqn)] = ObjectLocation(stored.get("file"), stored["value"])
            else:
                raise DcpError(f"{where}: entry {fqn!r} is neither a tensor nor a value", tensors=[fqn])
    except (KeyError, TypeError, AttributeError) as error:
        raise DcpError(f"{where}: invalid checkpoint metadata ({type(error).__name__}: {error})", path=where) from None
    meta = document.get("storage_meta")
    storage_meta = StorageMeta() if not isinstance(meta, dict) else StorageMeta(
        checkpoint_id=meta.get("checkpoint_id"), save_id=meta.get("save_id"), modules=list(meta.get("modules") or [])
    )
    metadata = Metadata(
        state_dict_metadata=state_dict_metadata,
        planner_data=decode_planner_data(document.get("planner_data")),
        storage_data=storage,
        storage_meta=storage_meta,
        version=document.get("dcp_version"),
    )
    return metadata, storage


def _ints(value: Any) -> List[int]:
    if not isinstance(value, list) or not all(type(v) is int and v >= 0 for v in value):
        raise TypeError(f"{value!r} is not a list of non-negative integers")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def dumps(document: Dict[str, Any]) -> str:
    return json.dumps(document, allow_nan=False, ensure_ascii=False)
