"""Everything the reference defines at module level exists here too."""

import importlib

import types

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
        safeweights.DeviceUnavailableError,
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


def stub_names(path, imports):
    """Top-level names of a stub file (with the names it imports, if
    `imports`), and the members of each class in it."""
    import ast

    tree = ast.parse(path.read_text())
    names, members = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
            members[node.name] = {
                item.name if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) else item.target.id
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                or (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name))
            }
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and imports:
            names.update(alias.asname or alias.name for alias in node.names)
    return names, members


def test_native_stubs_match_the_native_module():
    import pathlib

    from safeweights import _safeweights_rust as native

    names, members = stub_names(pathlib.Path(native.__file__).with_name("_safeweights_rust.pyi"), imports=False)
    runtime = {name for name in dir(native) if not name.startswith("__") or name == "__version__"}
    assert runtime == names
    for cls, stubbed in members.items():
        # Exceptions are declared as `class X(...): ...`, no members.
        declared = {m for m in vars(getattr(native, cls)) if not m.startswith("__")}
        if stubbed:
            assert stubbed - {"__init__"} == declared, cls


def test_package_stubs_cover_the_package():
    import pathlib

    names, _ = stub_names(pathlib.Path(safeweights.__file__).with_name("__init__.pyi"), imports=True)
    public = {name for name in public_names(safeweights) if not name.startswith("_") or name == "_safe_open_handle"}
    # Submodules are attributes once imported (by this or an earlier test): not stub names.
    submodules = {name for name in public if isinstance(getattr(safeweights, name), types.ModuleType)}
    assert names == (public | {"__version__"}) - submodules


def test_tensor_spec_says_it_trusts_its_pointer():
    assert "trusted" in safeweights.TensorSpec.__doc__ and "crashes" in safeweights.TensorSpec.__doc__
