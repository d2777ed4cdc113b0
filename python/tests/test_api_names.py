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
