"""Torch checkpoints at a URL, for `safeweights.load`: a `torch.save`
file, or a `pytorch_model.bin.index.json` and the shards it lists. The
safe pickle reader needs whole files, so they are downloaded into a
temporary directory (removed before `load` returns; the tensors are read
into memory). Safetensors files, indexes and prefixes are not handled
here: the native reader reads them by ranges."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional

from ._safeweights_rust import SNIFF_LEN, CheckpointError, fetch_url, sniff_format, url_head

PICKLES = ("zip", "pickle", "tar")


def _name(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name if name not in ("", ".", "..") else "input"


def _shard_names(index_path: str, url: str) -> List[str]:
    with open(index_path, "rb") as file:
        try:
            index = json.loads(file.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            raise CheckpointError(f"{url}: the index is not JSON text: {error}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{url}: the index has no weight_map naming its shards")
    names = sorted({str(name) for name in weight_map.values()})
    for name in names:
        # Only plain file names beside the index: nothing may leave it.
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise CheckpointError(f"{url}: shard name {name!r} is not a plain file name")
    return names


def load_remote_torch(
    url: str, storage_options: Optional[Dict[str, str]], load_file: Callable[[str], Any]
) -> Optional[Any]:
    """What `load_file` (a loader of one local torch file, reading tensors
    into memory) returns for the torch checkpoint at `url`, the shards'
    dicts merged for an index (as transformers merges them); None when
    `url` holds no torch checkpoint (safetensors, read natively)."""
    if url.endswith("/"):
        return None
    try:
        head = url_head(url, storage_options)
    except FileNotFoundError:
        return None  # Perhaps a prefix: the native reader lists it, or says what is missing.
    kind = sniff_format(head[:SNIFF_LEN])
    is_index = kind == "unknown" and head.lstrip().startswith(b"{")
    if kind not in PICKLES and not is_index:
        return None
    base = url.split("?", 1)[0].rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="safeweights-fetch-") as directory:
        try:
            return _load_fetched(url, base, directory, is_index, storage_options, load_file)
        except Exception as error:
            # Name the URL, never the temporary file.
            if error.args and isinstance(error.args[0], str):
                error.args = (error.args[0].replace(directory, base), *error.args[1:])
            raise


def _load_fetched(url: str, base: str, directory: str, is_index: bool,
                  storage_options: Optional[Dict[str, str]], load_file: Callable[[str], Any]) -> Any:
    path = fetch_url(url, directory, _name(url), storage_options)
    if not is_index:
        return load_file(path)
    shards = _shard_names(path, url)
    if all(name.endswith(".safetensors") for name in shards):
        return None
    merged: Dict[str, Any] = {}
    for name in shards:
        shard = fetch_url(f"{base}/{name}", directory, name, storage_options)
        state = load_file(shard)
        if not isinstance(state, dict):
            raise CheckpointError(f"{base}/{name}: a shard of {url} is not a dict of tensors")
        merged.update(state)
        os.unlink(shard)  # Read into memory: the disk is not needed twice.
    return merged
