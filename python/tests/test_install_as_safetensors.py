"""safeweights.install_as_safetensors(): `import safetensors` is safeweights.

It lasts for the whole process, so every test runs in a fresh interpreter.
"""

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "default"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_safetensors_and_its_submodules_resolve_to_safeweights():
    run(
        """
        import sys
        import safeweights
        safeweights.install_as_safetensors()
        safeweights.install_as_safetensors()  # once is enough, twice is harmless
        import safetensors, safetensors.torch, safetensors.numpy
        from safetensors import safe_open, SafetensorError
        from safetensors.torch import save_file, load_file

        assert safetensors is not safeweights, "a module of its own, for its version"
        assert safetensors.__version__ == safeweights.SAFETENSORS_API_VERSION == "0.8.0", safetensors.__version__
        assert safetensors.torch is sys.modules["safeweights.torch"] is sys.modules["safetensors.torch"]
        assert safetensors.numpy is sys.modules["safeweights.numpy"]
        assert safe_open is safeweights.safe_open and SafetensorError is safeweights.SafetensorError
        assert save_file is safeweights.torch.save_file
        # Importing through the alias leaves safeweights' own modules untouched.
        assert safeweights.torch.__spec__.name == "safeweights.torch", safeweights.torch.__spec__
        assert sum(type(f).__name__ == "_SafetensorsFinder" for f in sys.meta_path) == 1

        import importlib.util
        assert importlib.util.find_spec("safetensors").loader is sys.meta_path[0]

        import torch, tempfile, os
        path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
        save_file({"w": torch.arange(4)}, path)
        assert load_file(path)["w"].tolist() == [0, 1, 2, 3]
        with safe_open(path, "pt") as f:
            assert f.keys() == ["w"]

        try:
            import safetensors.flax
        except ModuleNotFoundError as error:
            assert error.name == "safetensors.flax" and "safeweights.flax" in str(error), error
        else:
            raise AssertionError("safetensors.flax imported")
        assert "safetensors.flax" not in sys.modules
        """
    )


def test_libraries_importing_safetensors_get_safeweights():
    run(
        """
        import safeweights
        safeweights.install_as_safetensors()
        import transformers.modeling_utils as modeling_utils
        import accelerate.utils.modeling as accelerate_modeling
        import huggingface_hub.hub_mixin  # compares safetensors.__version__ with 0.4.3
        import safetensors
        from packaging import version

        assert modeling_utils.safe_open is safeweights.safe_open
        assert modeling_utils.safe_save_file is safeweights.torch.save_file
        assert accelerate_modeling.safe_load_file is safeweights.torch.load_file
        assert version.parse(safetensors.__version__) >= version.parse("0.4.3")
        """
    )


def test_installing_after_the_real_package_warns_and_replaces_it():
    out = run(
        """
        import sys, warnings
        import safetensors.torch as real_torch
        import safeweights
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            safeweights.install_as_safetensors()
        assert any("safetensors" in str(w.message) and w.category is RuntimeWarning for w in caught), caught
        import safetensors.torch
        assert safetensors.torch is safeweights.torch and real_torch is not safeweights.torch
        import safetensors
        assert safetensors.__version__ == "0.8.0" and safetensors.safe_open is safeweights.safe_open
        print("ok")
        """
    )
    assert "ok" in out
