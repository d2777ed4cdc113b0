"""safeweights: a strict, fast drop-in for the `safetensors` package, plus
safe torch checkpoints with no pickle.

```python
import safeweights.torch as sw

sw.save_file({"w": torch.zeros(2, 3)}, "model.safetensors")
tensors = sw.load_file("model.safetensors")

import safeweights
safeweights.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 10}, "ckpt.safetensors")
state = safeweights.load("ckpt.safetensors", map_location="cpu")
```

`safeweights.save`/`safeweights.load` take `torch.save`/`torch.load`'s
arguments and never pickle: values come back with their exact types (or
are refused when saving), other classes once allowed with
`safeweights.add_safe_types` (or torch's `add_safe_globals`), and `load`
also reads `torch.save` files safely. `safeweights.torch.save/load` keep
the `safetensors.torch` meaning (a dict of tensors to and from bytes).

In frameworks: `with safeweights.patch_torch():` sends torch.save and
torch.load themselves through save/load (Hugging Face Trainer,
accelerate, Lightning's load_from_checkpoint);
`safeweights.integrations.lightning.SafeweightsCheckpointIO` is a
Lightning plug-in; `safeweights.install_as_safetensors()` makes
`import safetensors` resolve to safeweights.

Replace `import safetensors` with `import safeweights` (and
`safetensors.torch` with `safeweights.torch`): names, signatures, return
values and exception classes match the reference. Where the reference
raises a built-in exception, ours derives from it as well as from
`SafetensorError`: a failed write is a `SafetensorError` and an `OSError`
(`SafetensorFileNotFoundError` is also a `FileNotFoundError`, ...), a torch
dtype the format cannot store raises `UnsupportedDtypeError`, also a
`KeyError` and a `ValueError`, and an index out of range raises
`InvalidSliceError`, also an `IndexError`. Missing files on read raise
`FileNotFoundError`, as in the reference.
"""

from ._safeweights_rust import (  # noqa: F401
    CheckpointError,
    DeviceUnavailableError,
    ClosedFileError,
    ForeignFormatError,
    InvalidHeaderError,
    InvalidSliceError,
    InvalidTensorError,
    SafetensorError,
    SafetensorFileExistsError,
    SafetensorFileNotFoundError,
    SafetensorIsADirectoryError,
    SafetensorNotADirectoryError,
    SafetensorOSError,
    SafetensorPermissionError,
    ShardDirectoryError,
    ShardError,
    TensorSpec,
    TensorNotFoundError,
    UnsafeCheckpointError,
    UnsupportedDtypeError,
    UnsupportedIndexError,
    __version__,
    deserialize,
    serialize,
    serialize_file,
)
from ._handle import _safe_open_handle  # noqa: F401
from ._safe_open import PySafeSlice, safe_open  # noqa: F401
from ._safe_types import UnsafeTypeError, add_safe_types, get_safe_types, safe_types  # noqa: F401
from ._api import load, save  # noqa: F401
from ._alias import SAFETENSORS_API_VERSION, install_as_safetensors  # noqa: F401
from ._patch import TorchPatch, patch_torch  # noqa: F401
