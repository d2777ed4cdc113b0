"""GGUF files (llama.cpp's format), read safely and lazily.

```python
import safeweights.gguf

with safeweights.gguf.open("model.gguf") as f:
    print(f.metadata["general.architecture"])
    w = f.get_tensor("blk.0.attn_q.weight")                  # numpy float32, dequantized
    t = f.get_tensor("token_embd.weight", framework="pt")    # torch float32
    blocks = f.get_tensor("blk.0.attn_q.weight", dequantize=False)  # raw uint8 blocks

state = safeweights.load("model.gguf")   # {name: torch.float32 tensor}
```

The file is validated when opened by the strict reader (every count,
length, dimension and offset checked against the file; duplicate keys or
names, overlapping or misaligned tensors, unknown types and data past the
end refused). Dequantized values are bit for bit those of
`gguf.quants.dequantize` for every type it can dequantize. Names and shapes
are GGUF's own (numpy order); `safeweights convert model.gguf out.safetensors
--hf` maps Llama names to Hugging Face's.
"""

import os
from typing import Any, Dict, List, Optional, Tuple, Union

from ._safeweights_rust import GgufHandle

__all__ = ["GGUFFile", "open", "load"]

_PLAIN = {"F32": "float32", "F16": "float16", "F64": "float64", "I8": "int8", "I16": "int16",
          "I32": "int32", "I64": "int64"}


class GGUFFile:
    """An open GGUF file: `metadata` (a dict, read on first use),
    `tensor_names()`, `ggml_type(name)`, `shape(name)` and `get_tensor`."""

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self._path = os.fspath(path)
        self._handle = GgufHandle(self._path)
        self._tensors = {name: (tuple(shape), ty, size) for name, shape, ty, size in self._handle.tensors()}
        self._metadata: Optional[Dict[str, Any]] = None
        self._types: Optional[Dict[str, str]] = None

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"<GGUFFile {self._path!r}: {len(self._tensors)} tensors>"

    @property
    def version(self) -> int:
        """The GGUF version (2 or 3)."""
        return self._handle.version()

    def _load_metadata(self) -> None:
        rows = self._handle.metadata()
        self._metadata = {key: value for key, _, value in rows}
        self._types = {key: ty for key, ty, _ in rows}

    @property
    def metadata(self) -> Dict[str, Any]:
        """Every key/value pair, in file order (arrays as lists)."""
        if self._metadata is None:
            self._load_metadata()
        assert self._metadata is not None
        return self._metadata

    @property
    def metadata_types(self) -> Dict[str, str]:
        """Each key's GGUF value type (`UINT32`, `STRING`, `ARRAY`...)."""
        if self._types is None:
            self._load_metadata()
        assert self._types is not None
        return self._types

    def tensor_names(self) -> List[str]:
        """Tensor names in file order."""
        return list(self._tensors)

    def keys(self) -> List[str]:
        """Tensor names in file order (as `safe_open`)."""
        return self.tensor_names()

    def ggml_type(self, name: str) -> str:
        """The tensor's ggml type name (`Q4_K`, `F16`...)."""
        return self._info(name)[1]

    def shape(self, name: str) -> Tuple[int, ...]:
        """The tensor's shape in numpy order (GGUF's dimensions reversed)."""
        return self._info(name)[0]

    def _info(self, name: str) -> Tuple[Tuple[int, ...], str, int]:
        try:
            return self._tensors[name]
        except KeyError:
            from ._safeweights_rust import TensorNotFoundError

            raise TensorNotFoundError(f"no tensor named {name!r} in {self._path}") from None

    def get_tensor(self, name: str, framework: str = "numpy", dequantize: bool = True) -> Any:
        """The tensor as a numpy array (`framework="numpy"`, `"np"`) or a
        torch tensor (`"pt"`, `"torch"`).

        With `dequantize` (the default) quantized tensors come back as
        float32 and F32/F16/BF16/integer tensors with their own dtype. With
        `dequantize=False` a quantized tensor is its raw blocks: uint8 of
        shape `(*shape[:-1], bytes_per_row)`, as `gguf.GGUFReader` gives.
        """
        import numpy as np

        shape, ty, _ = self._info(name)
        if ty in _PLAIN:
            array = np.frombuffer(self._handle.raw(name), dtype=np.dtype(_PLAIN[ty]).newbyteorder("<"))
            array = array.reshape(shape)
        elif ty == "BF16" and not dequantize:
            array = np.frombuffer(self._handle.raw(name), dtype="<u2").reshape(shape)
        elif dequantize:
            array = np.frombuffer(self._handle.dequantize(name), dtype="<f4").reshape(shape)
            if ty == "BF16" and framework in ("pt", "torch"):
                import torch

                return torch.from_numpy(array.copy()).to(torch.bfloat16)
        else:
            raw = np.frombuffer(self._handle.raw(name), dtype=np.uint8)
            array = raw.reshape(*shape[:-1], -1) if shape else raw
        array = array.copy()
        if framework in ("numpy", "np"):
            return array
        if framework in ("pt", "torch"):
            import torch

            return torch.from_numpy(array)
        raise ValueError(f"framework {framework!r}: choose 'numpy' or 'pt'")


def open(path: Union[str, "os.PathLike[str]"]) -> GGUFFile:  # noqa: A001 - the module's entry point
    """Opens and validates a GGUF file; metadata and tensors are read on demand."""
    return GGUFFile(path)


def load(path: Union[str, "os.PathLike[str]"], framework: str = "pt") -> Dict[str, Any]:
    """Every tensor dequantized: `{name: tensor}` (torch by default)."""
    with GGUFFile(path) as f:
        return {name: f.get_tensor(name, framework=framework) for name in f.tensor_names()}
