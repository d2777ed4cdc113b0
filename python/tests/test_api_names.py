"""Everything the reference defines at module level exists here too."""

import importlib

import pytest

import safeweights


def public_names(module):
    return {name for name in dir(module) if not (name.startswith("__") and name.endswith("__"))}


@pytest.mark.parametrize("name", ["", ".torch", ".numpy"])
def test_module_names_cover_the_reference(name):
    reference = importlib.import_module("safetensors" + name)
    ours = importlib.import_module("safeweights" + name)
    missing = public_names(reference) - public_names(ours)
    # Submodules of the reference we do not ship, and its native module.
    missing -= {"_safetensors_rust", "flax", "mlx", "paddle", "tensorflow"}
    assert not missing, f"safeweights{name} lacks {sorted(missing)}"


def test_error_class_has_the_reference_name():
    assert safeweights.SafetensorError.__name__ == "SafetensorError"
    assert issubclass(safeweights.SafetensorError, Exception)
    for subclass in [
        safeweights.InvalidHeaderError,
        safeweights.ForeignFormatError,
        safeweights.TensorNotFoundError,
        safeweights.InvalidSliceError,
        safeweights.InvalidTensorError,
        safeweights.UnsupportedDtypeError,
        safeweights.ShardError,
        safeweights.CheckpointError,
        safeweights.UnsafeCheckpointError,
        safeweights.ClosedFileError,
    ]:
        assert issubclass(subclass, safeweights.SafetensorError)


def test_safe_open_methods_cover_the_reference(tmp_path):
    import safetensors

    reference = {m for m in dir(safetensors.safe_open) if not m.startswith("__")}
    ours = {m for m in dir(safeweights.safe_open) if not m.startswith("__")}
    assert reference <= ours


def test_version_and_typing_files_ship():
    import pathlib

    package = pathlib.Path(safeweights.__file__).parent
    assert isinstance(safeweights.__version__, str)
    assert (package / "py.typed").exists()
    assert (package / "__init__.pyi").exists()


def run_without(blocked, code):
    """Runs `code` in a fresh interpreter where importing `blocked` fails."""
    import subprocess
    import sys

    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120)


def test_numpy_support_works_without_torch(tmp_path):
    # As in the reference: only safeweights.torch needs torch.
    code = f"""
import safeweights, safeweights.numpy
import numpy as np
path = {str(tmp_path / "a.safetensors")!r}
safeweights.numpy.save_file({{"a": np.arange(4.0)}}, path)
assert safeweights.numpy.load_file(path)["a"].tolist() == [0.0, 1.0, 2.0, 3.0]
with safeweights.safe_open(path, "np") as f:
    assert f.get_slice("a")[1:3].tolist() == [1.0, 2.0]
try:
    import safeweights.torch
except ImportError:
    pass
else:
    raise AssertionError("safeweights.torch imported without torch")
"""
    result = run_without(["torch"], code)
    assert result.returncode == 0, result.stderr


def test_importing_the_package_loads_neither_torch_nor_numpy():
    code = """
import sys
import safeweights
assert "torch" not in sys.modules and "numpy" not in sys.modules, sorted(sys.modules)
with safeweights.safe_open(b"\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00{}", "np") as f:
    assert f.keys() == []
"""
    result = run_without([], code)
    assert result.returncode == 0, result.stderr
