"""The on-disk layout of a safeweights DCP checkpoint, and its errors.

A checkpoint is a directory:

- `__R_P.safetensors`: the shard files of rank R (part P when a rank's
  data is split by `max_shard_size`). Each is a plain safetensors file
  whose tensors are named by their fully qualified name (`model.fc.weight`);
  a rank holds at most one chunk of a tensor per file. Their
  `__metadata__` carries `DCP_SHARDING_INFO` (each tensor's chunk offsets,
  the key torch's `HuggingFaceStorageReader` reads), `format: pt`, the save
  id, rank and world size, and `safeweights.sha256` (per-tensor digests,
  what `safeweights verify` checks).
- `safeweights.dcp.json`: the global metadata, JSON (never pickle),
  written last by the coordinator: which chunk of which tensor lives in
  which file, the non-tensor values (encoded as `safeweights.save`
  encodes them), and the planner's key mappings. Its presence marks a
  complete checkpoint; a save removes the old one before any rank writes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any, Dict, List, Optional

from .._safeweights_rust import CheckpointError

METADATA_FILE = "safeweights.dcp.json"
FORMAT_NAME = "safeweights.dcp"
FORMAT_VERSION = 1
# torch's default DCP storage (FileSystemWriter): a pickled Metadata.
TORCH_METADATA_FILE = ".metadata"

# Keys of each shard file's `__metadata__`.
SHARDING_KEY = "DCP_SHARDING_INFO"  # torch's HF storage reads this one
DCP_VERSION_KEY = "DCP_VERSION"
SAVE_ID_KEY = "safeweights.dcp.save_id"
RANK_KEY = "safeweights.dcp.rank"
WORLD_SIZE_KEY = "safeweights.dcp.world_size"
# Per-tensor XXH3-128 digests, computed by the Rust writer while it writes
# (the core's `checksum::XXH3_128_KEY`; see crates/safeweights/src/checksum.rs
# for why not SHA-256). Checkpoints saved before then carry SHA-256 digests
# under the CLI's `checksum` key, still verified on load.
DIGESTS_KEY = "safeweights.xxh3_128"
SHA256_DIGESTS_KEY = "safeweights.sha256"

SHARD_FILE = re.compile(r"^__(\d+)_(\d+)\.safetensors$")


def shard_file_name(rank: int, part: int) -> str:
    return f"__{rank}_{part}.safetensors"


class DcpError(CheckpointError):
    """A distributed checkpoint that cannot be loaded as asked. `path` is
    the file concerned, `tensors` the tensors it holds (when known)."""

    def __init__(self, message: str, *, path: Optional[str] = None, tensors: Optional[List[str]] = None) -> None:
        super().__init__(message)
        self.path = path
        self.tensors = list(tensors or [])


class IncompleteCheckpointError(DcpError):
    """The directory holds no finished checkpoint: no `safeweights.dcp.json`
    (the save did not reach the coordinator's `finish`)."""


class MissingShardError(DcpError):
    """A shard file named by the metadata does not exist."""


class TruncatedShardError(DcpError):
    """A shard file is shorter than when it was saved."""


class ChecksumMismatchError(DcpError):
    """A tensor's bytes differ from the SHA-256 digest stored when saving."""


class ShardMismatchError(DcpError):
    """A shard file belongs to another save: another save id, rank or
    world size (a rank-count mismatch) than the metadata says."""


class PickledCheckpointError(DcpError):
    """The directory holds pickle where a safe load needs data: torch's
    default DCP format (`.metadata` and `.distcp` files), or files written
    by torch's `HuggingFaceStorageWriter` with a `torch.save` pickle in
    front of the safetensors data."""


def size_of(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def write_json_atomically(path: str, document: Dict[str, Any], durable: bool) -> None:
    """Writes `document` to a temporary file beside `path`, then renames
    it into place: readers see the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    text = json.dumps(document, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    if durable:
        sync_directory(directory)


def sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_if_present(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def read_document(directory: str) -> Dict[str, Any]:
    """The global metadata of the checkpoint in `directory`, checked for
    its format and version."""
    path = os.path.join(directory, METADATA_FILE)
    try:
        with open(path, "rb") as file:
            document = json.loads(file.read().decode("utf-8"))
    except FileNotFoundError:
        raise _no_document(directory) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise DcpError(f"{path}: the checkpoint metadata is not valid JSON ({error})", path=path) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise DcpError(f"{path}: not a safeweights DCP checkpoint's metadata", path=path)
    if document.get("version") != FORMAT_VERSION:
        raise DcpError(
            f"{path}: checkpoint format version {document.get('version')!r}; this safeweights reads"
            f" version {FORMAT_VERSION}: upgrade safeweights",
            path=path,
        )
    for key, kind in (("state", dict), ("files", dict), ("save_id", str), ("world_size", int)):
        if not isinstance(document.get(key), kind):
            raise DcpError(f"{path}: invalid checkpoint metadata: {key!r} is missing or not a {kind.__name__}", path=path)
    return document


def _no_document(directory: str) -> DcpError:
    if os.path.exists(os.path.join(directory, TORCH_METADATA_FILE)):
        return PickledCheckpointError(
            f"{directory} is a checkpoint in torch's default DCP format (a pickled .metadata and .distcp files):"
            " loading it would run pickle, which safeweights never does. If you trust its origin, load it once"
            " with torch's FileSystemReader and save it again with safeweights.dcp.SafeweightsStorageWriter",
            path=os.path.join(directory, TORCH_METADATA_FILE),
        )
    if not os.path.isdir(directory):
        return MissingShardError(f"{directory}: no such checkpoint directory", path=directory)
    shards = sorted(name for name in os.listdir(directory) if SHARD_FILE.match(name))
    if shards:
        return IncompleteCheckpointError(
            f"{directory} holds shard files ({', '.join(shards[:4])}{', ...' if len(shards) > 4 else ''}) but no"
            f" {METADATA_FILE}: the save did not finish (a rank failed or the job stopped before the coordinator's"
            " finish). Load an earlier checkpoint.",
            path=os.path.join(directory, METADATA_FILE),
        )
    return IncompleteCheckpointError(
        f"{directory} holds no safeweights DCP checkpoint (no {METADATA_FILE})", path=os.path.join(directory, METADATA_FILE)
    )
