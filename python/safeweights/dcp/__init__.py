"""`safeweights.dcp`: safeweights as a `torch.distributed.checkpoint`
storage layer. Distributed checkpoints as safetensors files, with no
pickle anywhere.

```python
import torch.distributed.checkpoint as dcp
from safeweights.dcp import SafeweightsStorageReader, SafeweightsStorageWriter, consolidate

# Every rank (FSDP2, DTensor, or a single process):
dcp.save({"model": model.state_dict(), "optim": optim.state_dict(), "step": step},
         storage_writer=SafeweightsStorageWriter("ckpt/step-100"))
# Load into any number of ranks, with any sharding, or into one process:
dcp.load(state, storage_reader=SafeweightsStorageReader("ckpt/step-100"))
# Full tensors in a standard Hugging Face layout:
consolidate("ckpt/step-100", "hf-model", max_shard_size="5GB")
```

Each rank writes `__RANK_PART.safetensors` files (ordinary safetensors
files: every safetensors tool opens them; torch's `HuggingFaceStorageReader`
loads the directory); the coordinator writes the global metadata,
`safeweights.dcp.json`, last. Non-tensor values (a step counter, a
config) are stored with `safeweights.save`'s exact-type JSON encoding and
come back with their exact types. The layout is described in `_format`.
"""

from ._consolidate import consolidate
from ._format import (
    METADATA_FILE,
    ChecksumMismatchError,
    DcpError,
    IncompleteCheckpointError,
    MissingShardError,
    PickledCheckpointError,
    ShardMismatchError,
    TruncatedShardError,
)
from ._reader import SafeweightsStorageReader
from ._writer import SafeweightsStorageWriter

__all__ = [
    "METADATA_FILE",
    "ChecksumMismatchError",
    "DcpError",
    "IncompleteCheckpointError",
    "MissingShardError",
    "PickledCheckpointError",
    "SafeweightsStorageReader",
    "SafeweightsStorageWriter",
    "ShardMismatchError",
    "TruncatedShardError",
    "consolidate",
]
